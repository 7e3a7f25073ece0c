//! The host table: one row per host, cells coloured by how bad they look. Only the rows that
//! fit on screen are built; columns are dropped right to left by priority on narrow screens.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::app::{App, Panel, SortColumn};
use super::draw::{self, Level, cell, level, level_style};
use crate::format;
use crate::model::{HostStatus, Metric};
use crate::snapshot::HostView;

#[derive(Clone, Copy)]
struct Col {
    title: &'static str,
    width: u16,
    right: bool,
    /// Lower numbers stay longer when the screen is narrow.
    prio: u8,
    sort: SortColumn,
}

const HOST_MIN: u16 = 12;
const HOST_MAX: u16 = 28;
pub const SPARK: usize = 10;

const COLS: [Col; 13] = [
    Col {
        title: "group",
        width: 8,
        right: false,
        prio: 4,
        sort: SortColumn::Config,
    },
    Col {
        title: "status",
        width: 11,
        right: false,
        prio: 0,
        sort: SortColumn::Status,
    },
    Col {
        title: "cpu%",
        width: 5,
        right: true,
        prio: 0,
        sort: SortColumn::Cpu,
    },
    Col {
        title: "load/c",
        width: 6,
        right: true,
        prio: 1,
        sort: SortColumn::Load,
    },
    Col {
        title: "mem%",
        width: 5,
        right: true,
        prio: 0,
        sort: SortColumn::Mem,
    },
    Col {
        title: "disk%",
        width: 5,
        right: true,
        prio: 1,
        sort: SortColumn::Disk,
    },
    Col {
        title: "rx/s",
        width: 6,
        right: true,
        prio: 2,
        sort: SortColumn::Rx,
    },
    Col {
        title: "tx/s",
        width: 6,
        right: true,
        prio: 2,
        sort: SortColumn::Tx,
    },
    Col {
        title: "ping",
        width: 7,
        right: true,
        prio: 3,
        sort: SortColumn::Ping,
    },
    Col {
        title: "loss",
        width: 5,
        right: true,
        prio: 3,
        sort: SortColumn::Loss,
    },
    Col {
        title: "trig",
        width: 4,
        right: true,
        prio: 1,
        sort: SortColumn::Trig,
    },
    // The worst check status of the host (shown only when some host runs checks).
    Col {
        title: "chk",
        width: 4,
        right: false,
        prio: 1,
        sort: SortColumn::Config,
    },
    Col {
        title: "cpu",
        width: SPARK as u16,
        right: false,
        prio: 5,
        sort: SortColumn::Config,
    },
];

/// The columns that fit in `width` cells and the host column's width.
fn layout(width: u16, longest: u16, checks: bool) -> (Vec<Col>, u16) {
    let mut cols: Vec<Col> = COLS
        .iter()
        .filter(|c| checks || c.title != "chk")
        .copied()
        .collect();
    let need = |cols: &[Col]| cols.iter().map(|c| c.width + 1).sum::<u16>() + HOST_MIN;
    while need(&cols) > width {
        let Some((i, _)) = cols.iter().enumerate().max_by_key(|(i, c)| (c.prio, *i)) else {
            break;
        };
        cols.remove(i);
    }
    let others: u16 = cols.iter().map(|c| c.width + 1).sum();
    let host = width
        .saturating_sub(others)
        .clamp(HOST_MIN.min(width), HOST_MAX.min(longest.max(HOST_MIN)));
    (cols, host)
}

pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    let focused = draw::is_focused(app, Panel::Hosts);
    let t = app.theme.clone();
    let mut title = vec![Span::raw(format!("Hosts ({}", app.order.len()))];
    if app.order.len() != app.snap.hosts.len() {
        title.push(Span::raw(format!(" of {}", app.snap.hosts.len())));
    }
    if app.sort != SortColumn::Config || app.sort_desc {
        let arrow = if app.sort_desc { "▼" } else { "▲" };
        title.push(Span::raw(format!(", sort: {} {arrow}", app.sort.label())));
    }
    if !app.filter.is_empty() || app.filter_editing {
        title.push(Span::raw(", filter: "));
        title.push(Span::styled(app.filter.clone(), t.filter));
    }
    title.push(Span::raw(")"));
    let block = draw::panel(&t, Line::from(title), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 || inner.width < 20 {
        return;
    }

    let longest = app
        .snap
        .hosts
        .iter()
        .map(|h| h.name.chars().count())
        .max()
        .unwrap_or(0) as u16;
    let checks = app.snap.hosts.iter().any(|h| !h.checks.is_empty());
    let (cols, host_w) = layout(inner.width - 1, longest, checks);

    // Header.
    let y = inner.y;
    let mut x = inner.x + 1;
    let arrow = if app.sort_desc { "▼" } else { "▲" };
    let head = |c_title: &str, sorted: bool| {
        if sorted {
            format!("{c_title}{arrow}")
        } else {
            c_title.to_string()
        }
    };
    cell(
        buf,
        x,
        y,
        host_w,
        &head("host", app.sort == SortColumn::Host),
        t.header,
        false,
    );
    x += host_w + 1;
    for c in &cols {
        let sorted = c.sort == app.sort && c.sort != SortColumn::Config;
        cell(buf, x, y, c.width, &head(c.title, sorted), t.header, c.right);
        x += c.width + 1;
    }

    let rows = (inner.height - 1) as usize;
    app.host_page = rows;
    app.host_offset = draw::scroll_offset(app.host_sel, app.host_offset, rows, app.order.len());
    if app.order.is_empty() {
        let msg = if app.snap.hosts.is_empty() {
            "no hosts configured".to_string()
        } else {
            format!("no host matches `{}`", app.filter)
        };
        cell(
            buf,
            inner.x + 1,
            inner.y + 1,
            inner.width - 1,
            &msg,
            t.muted,
            false,
        );
        return;
    }
    let end = (app.host_offset + rows).min(app.order.len());
    for (row, pos) in (app.host_offset..end).enumerate() {
        let y = inner.y + 1 + row as u16;
        let host = &app.snap.hosts[app.order[pos]];
        let selected = pos == app.host_sel;
        let rect = Rect::new(inner.x, y, inner.width, 1);
        if selected {
            buf.set_style(rect, t.selection(focused));
            buf.set_string(inner.x, y, "▶", t.selection(focused));
        }
        let firing = app.firing_on(&host.name);
        render_row(buf, rect, host, &cols, host_w, firing, app);
    }
}

fn render_row(
    buf: &mut Buffer,
    rect: Rect,
    h: &HostView,
    cols: &[Col],
    host_w: u16,
    firing: usize,
    app: &App,
) {
    let t = &app.theme;
    let stale = h.status == HostStatus::Up && h.is_stale(app.now, app.snap.interval);
    let base = if stale { t.stale } else { t.text };
    let y = rect.y;
    let mut x = rect.x + 1;
    let name_style = if firing > 0 { t.critical } else { base };
    cell(buf, x, y, host_w, &h.name, name_style, false);
    x += host_w + 1;
    let down = !matches!(h.status, HostStatus::Up);
    for (ci, c) in cols.iter().enumerate() {
        let (text, style): (String, Style) = match c.title {
            "group" => (h.group.clone().unwrap_or_default(), t.muted),
            "status" => {
                let style = match h.status {
                    HostStatus::Up if stale => t.stale,
                    HostStatus::Up => t.ok,
                    HostStatus::Connecting => t.muted,
                    _ => t.critical,
                };
                let text = if stale { "stale" } else { h.status.as_str() };
                (text.to_string(), style)
            }
            _ if down => {
                // A host that is not up: its error takes the rest of the row.
                let width = rect.right().saturating_sub(x);
                let (msg, style) = match (&h.error, h.status) {
                    (Some(e), _) => (e.clone(), t.error),
                    (None, HostStatus::Connecting) => ("waiting for the first sample…".to_string(), t.muted),
                    (None, _) => ("no answer".to_string(), t.error),
                };
                let _ = ci;
                cell(buf, x, y, width, &msg, style, false);
                return;
            }
            "cpu%" => num(h, Metric::CpuUsage, base, t, |v| format!("{v:.1}")),
            "load/c" => num(h, Metric::LoadPerCore, base, t, |v| format!("{v:.2}")),
            "mem%" => num(h, Metric::MemUsedPct, base, t, |v| format!("{v:.1}")),
            "disk%" => num(h, Metric::DiskUsedPct, base, t, |v| format!("{v:.1}")),
            "rx/s" => rate(h, Metric::NetRxBps, base, t),
            "tx/s" => rate(h, Metric::NetTxBps, base, t),
            "ping" => num(h, Metric::PingRtt, base, t, |v| {
                if v < 10.0 {
                    format!("{v:.2}ms")
                } else {
                    format!("{v:.0}ms")
                }
            }),
            "loss" => num(h, Metric::PingLoss, base, t, |v| format!("{v:.0}%")),
            "trig" => {
                if firing > 0 {
                    let style = if app.flash_on { t.flash_on } else { t.flash_off };
                    (firing.to_string(), style)
                } else {
                    (String::new(), base)
                }
            }
            "chk" => match h.worst_check() {
                None => ("-".to_string(), t.muted),
                Some(0) => ("ok".to_string(), t.ok),
                Some(1) => ("warn".to_string(), t.warning),
                Some(2) => ("crit".to_string(), t.critical),
                Some(_) => ("unkn".to_string(), t.warning),
            },
            "cpu" => {
                let hist = h.history(Metric::CpuUsage, "", SPARK);
                (draw::sparkline(&hist, Some(100.0)), t.sparkline)
            }
            _ => (String::new(), base),
        };
        cell(buf, x, y, c.width, &text, style, c.right);
        x += c.width + 1;
    }
}

fn num(
    h: &HostView,
    m: Metric,
    base: Style,
    t: &super::theme::Theme,
    f: impl Fn(f64) -> String,
) -> (String, Style) {
    match h.worst(m) {
        Some(r) => (f(r.value), level_style(t, level(m, r.value), base)),
        None => ("-".to_string(), t.muted),
    }
}

fn rate(h: &HostView, m: Metric, base: Style, t: &super::theme::Theme) -> (String, Style) {
    let mut any = false;
    let total: f64 = h.values(m).inspect(|_| any = true).map(|r| r.value).sum();
    if any {
        (format::bytes(total), level_style(t, Level::Normal, base))
    } else {
        ("-".to_string(), t.muted)
    }
}
