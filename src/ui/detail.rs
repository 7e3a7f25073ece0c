//! The host detail view (Enter on a host): connection state and last error, per-core bars,
//! memory and swap gauges, history sparklines, disks, interfaces with rates, and the watched
//! processes with their pids. Esc goes back.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::app::App;
use super::draw::{self, cell, level, level_style};
use crate::format;
use crate::model::{HostStatus, Metric};
use crate::snapshot::HostView;

pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    let t = app.theme.clone();
    let Some(h) = app.detail_host().cloned() else {
        let block = draw::panel(&t, Line::raw("Host"), true);
        let inner = block.inner(area);
        block.render(area, buf);
        let name = app.detail.as_deref().unwrap_or("");
        cell(
            buf,
            inner.x + 1,
            inner.y,
            inner.width.saturating_sub(1),
            &format!("{name} is no longer watched"),
            t.muted,
            false,
        );
        return;
    };
    let mut title = vec![Span::raw(format!("{} ", h.name))];
    if let Some(g) = &h.group {
        title.push(Span::raw(format!("({g}) ")));
    }
    let block = draw::panel(&t, Line::from(title), true);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 6 {
        return;
    }

    let cores: Vec<(usize, f64)> = {
        let mut c: Vec<(usize, f64)> = h
            .values(Metric::CpuCoreUsage)
            .map(|r| (r.instance.parse().unwrap_or(usize::MAX), r.value))
            .collect();
        c.sort_by_key(|(i, _)| *i);
        c
    };
    let disks = h.values(Metric::DiskUsedPct).count() as u16;
    let ifaces = interfaces(&h).len() as u16;
    let top_h = (cores.len() as u16 + 3).clamp(11, 14);
    let mid_h = (disks.max(ifaces) + 3).clamp(4, 9);
    let [head, top, mid, procs] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(top_h),
        Constraint::Length(mid_h),
        Constraint::Min(3),
    ])
    .areas(inner);
    header(head, buf, app, &h);
    let [cpu_area, mem_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(top);
    cpu(cpu_area, buf, app, &h, &cores);
    memory_and_history(mem_area, buf, app, &h);
    let [disk_area, if_area] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(mid);
    disks_table(disk_area, buf, app, &h);
    interfaces_table(if_area, buf, app, &h);
    // The host's checks, when it runs any, above the processes.
    let want = super::checks::height(&h).min(procs.height.saturating_sub(3));
    let [checks_area, procs] = Layout::vertical([Constraint::Length(want), Constraint::Min(3)]).areas(procs);
    if want > 0 {
        super::checks::render(checks_area, buf, app, &h);
    }
    processes(procs, buf, app, &h);
}

fn header(area: Rect, buf: &mut Buffer, app: &App, h: &HostView) {
    let t = &app.theme;
    let via = match h.via {
        crate::config::Via::Ssh => "ssh",
        crate::config::Via::Local => "local",
        crate::config::Via::Ping => "ping",
        crate::config::Via::Prometheus => "prometheus",
    };
    let status_style = match h.status {
        HostStatus::Up => t.ok,
        HostStatus::Connecting => t.muted,
        _ => t.critical,
    };
    let mut spans = vec![
        Span::styled("status ", t.muted),
        Span::styled(h.status.as_str(), status_style),
        Span::styled(format!("  via {via}"), t.muted),
    ];
    if let Some(up) = h.value(Metric::HostUptime, "") {
        spans.push(Span::styled(
            format!("  uptime {}", format::duration_secs(up)),
            t.text,
        ));
    }
    match h.last_update {
        Some(at) => {
            let age = app.now.duration_since(at).unwrap_or_default().as_secs_f64();
            let stale = h.is_stale(app.now, app.snap.interval);
            spans.push(Span::styled(
                format!("  updated {age:.1}s ago"),
                if stale { t.stale } else { t.text },
            ));
        }
        None => spans.push(Span::styled("  no data yet", t.muted)),
    }
    if let Some(ms) = h.value(Metric::HostPollMs, "") {
        spans.push(Span::styled(format!("  poll {ms:.0}ms"), t.muted));
    }
    spans.push(Span::styled(format!("  rounds {}", h.rounds), t.muted));
    Line::from(spans).render(
        Rect::new(area.x + 1, area.y, area.width.saturating_sub(1), 1),
        buf,
    );
    let err = match &h.error {
        Some(e) => Line::from(vec![
            Span::styled("last error ", t.muted),
            Span::styled(e.as_str(), t.error),
        ]),
        None => Line::styled("no errors", t.muted),
    };
    err.render(
        Rect::new(area.x + 1, area.y + 1, area.width.saturating_sub(1), 1),
        buf,
    );
}

fn cpu(area: Rect, buf: &mut Buffer, app: &App, h: &HostView, cores: &[(usize, f64)]) {
    let t = &app.theme;
    let mut title = "CPU".to_string();
    if let Some(v) = h.value(Metric::CpuUsage, "") {
        title.push_str(&format!(" {v:.1}%"));
    }
    if let Some(v) = h.value(Metric::CpuIowait, "") {
        title.push_str(&format!(" iowait {v:.1}%"));
    }
    let block = draw::panel(t, Line::raw(title), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 16 {
        return;
    }
    let mut y = inner.y;
    let load: Vec<String> = [Metric::Load1, Metric::Load5, Metric::Load15]
        .iter()
        .map(|&m| h.value(m, "").map_or("-".into(), |v| format!("{v:.2}")))
        .collect();
    let per_core = h
        .value(Metric::LoadPerCore, "")
        .map_or("-".into(), |v| format!("{v:.2}"));
    let lstyle = h
        .value(Metric::LoadPerCore, "")
        .map_or(t.text, |v| level_style(t, level(Metric::LoadPerCore, v), t.text));
    cell(
        buf,
        inner.x + 1,
        y,
        inner.width - 1,
        &format!("load {} {} {}  per core {per_core}", load[0], load[1], load[2]),
        lstyle,
        false,
    );
    y += 1;
    if cores.is_empty() {
        cell(
            buf,
            inner.x + 1,
            y,
            inner.width - 1,
            "no per-core data",
            t.muted,
            false,
        );
        return;
    }
    // Two columns of cores when they do not fit in one.
    let rows = (inner.bottom() - y) as usize;
    let ncols = if cores.len() > rows { 2 } else { 1 };
    let col_w = (inner.width - 1) / ncols as u16;
    let bar_w = col_w.saturating_sub(13) as usize;
    for (k, (i, v)) in cores.iter().enumerate() {
        let (c, r) = (k / rows.max(1), k % rows.max(1));
        if c >= ncols {
            break;
        }
        let x = inner.x + 1 + c as u16 * col_w;
        let yy = y + r as u16;
        let style = level_style(t, level(Metric::CpuCoreUsage, *v), t.bar);
        cell(buf, x, yy, 4, &format!("{i:>3}"), t.muted, false);
        cell(
            buf,
            x + 4,
            yy,
            bar_w as u16,
            &draw::bar(v / 100.0, bar_w),
            style,
            false,
        );
        cell(buf, x + 4 + bar_w as u16, yy, 7, &format!("{v:.0}%"), style, true);
    }
}

/// The history charts of the detail view: label, series (of the first interface for the
/// per-interface ones), fixed top of the scale. The catalogue keeps history for exactly
/// these series (checked by a test): history is most of the memory a large fleet costs.
pub const CHARTS: [(&str, Metric, Option<f32>); 6] = [
    ("cpu", Metric::CpuUsage, Some(100.0)),
    ("mem", Metric::MemUsedPct, Some(100.0)),
    ("load", Metric::Load1, None),
    ("rx", Metric::NetRxBps, None),
    ("tx", Metric::NetTxBps, None),
    ("ping", Metric::PingRtt, None),
];

fn memory_and_history(area: Rect, buf: &mut Buffer, app: &App, h: &HostView) {
    let t = &app.theme;
    let block = draw::panel(t, Line::raw("Memory and history"), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 30 {
        return;
    }
    let label_w = 6u16;
    let val_w = 22u16;
    let bar_w = inner.width.saturating_sub(label_w + val_w + 3);
    let mut y = inner.y;
    let total = h.value(Metric::MemTotal, "");
    let used = h.value(Metric::MemUsed, "");
    for (label, m, detail) in [
        (
            "mem",
            Metric::MemUsedPct,
            match (used, total) {
                (Some(u), Some(tt)) => format!("{} of {}", format::bytes(u), format::bytes(tt)),
                _ => String::new(),
            },
        ),
        ("swap", Metric::SwapUsedPct, String::new()),
    ] {
        if y >= inner.bottom() {
            return;
        }
        cell(buf, inner.x + 1, y, label_w, label, t.muted, false);
        match h.value(m, "") {
            Some(v) => {
                let style = level_style(t, level(m, v), t.gauge);
                // A gauge: the filled part in the gauge style, the rest in its background.
                let filled = draw::bar(v / 100.0, bar_w as usize);
                buf.set_style(Rect::new(inner.x + 1 + label_w, y, bar_w, 1), t.muted);
                cell(buf, inner.x + 1 + label_w, y, bar_w, &filled, style, false);
                cell(
                    buf,
                    inner.x + 2 + label_w + bar_w,
                    y,
                    val_w,
                    &format!("{v:5.1}% {detail}"),
                    level_style(t, level(m, v), t.text),
                    false,
                );
            }
            None => cell(buf, inner.x + 1 + label_w, y, bar_w, "-", t.muted, false),
        }
        y += 1;
    }
    y += 1;
    let spark_w = inner.width.saturating_sub(label_w + 12) as usize;
    let first_if = interfaces(h)
        .first()
        .map(|(n, _, _)| n.clone())
        .unwrap_or_default();
    for (label, m, max) in CHARTS {
        if y >= inner.bottom() {
            break;
        }
        let inst = if m.info().instance.is_empty() {
            ""
        } else {
            &first_if
        };
        let hist = h.history(m, inst, spark_w);
        if hist.is_empty() {
            continue;
        }
        cell(buf, inner.x + 1, y, label_w, label, t.muted, false);
        cell(
            buf,
            inner.x + 1 + label_w,
            y,
            spark_w as u16,
            &draw::sparkline(&hist, max),
            t.sparkline,
            false,
        );
        let last = hist.last().copied().unwrap_or(0.0) as f64;
        cell(
            buf,
            inner.x + 2 + label_w + spark_w as u16,
            y,
            10,
            &format::value(m.info().unit, last),
            t.text,
            true,
        );
        y += 1;
    }
}

fn disks_table(area: Rect, buf: &mut Buffer, app: &App, h: &HostView) {
    let t = &app.theme;
    let block = draw::panel(t, Line::raw("Disks"), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 30 {
        return;
    }
    let w = inner.width - 1;
    let mount_w = w.saturating_sub(6 + 8 + 8 + 3);
    let mut y = inner.y;
    let x = inner.x + 1;
    let header = |buf: &mut Buffer, y| {
        cell(buf, x, y, mount_w, "mount", t.header, false);
        cell(buf, x + mount_w + 1, y, 6, "used%", t.header, true);
        cell(buf, x + mount_w + 8, y, 8, "used", t.header, true);
        cell(buf, x + mount_w + 17, y, 8, "free", t.header, true);
    };
    header(buf, y);
    y += 1;
    for r in h.values(Metric::DiskUsedPct) {
        if y >= inner.bottom() {
            break;
        }
        let style = level_style(t, level(Metric::DiskUsedPct, r.value), t.text);
        let opt = |m| h.value(m, &r.instance).map_or("-".to_string(), format::bytes);
        cell(buf, x, y, mount_w, &r.instance, t.text, false);
        cell(
            buf,
            x + mount_w + 1,
            y,
            6,
            &format!("{:.1}", r.value),
            style,
            true,
        );
        cell(buf, x + mount_w + 8, y, 8, &opt(Metric::DiskUsed), t.text, true);
        cell(buf, x + mount_w + 17, y, 8, &opt(Metric::DiskFree), t.text, true);
        y += 1;
    }
    if y == inner.y + 1 {
        cell(buf, x, y, w, "no disk data", t.muted, false);
    }
}

/// (interface, rx/s, tx/s) for every interface with a rate, in the order reported.
fn interfaces(h: &HostView) -> Vec<(String, f64, f64)> {
    h.values(Metric::NetRxBps)
        .map(|r| {
            let tx = h.value(Metric::NetTxBps, &r.instance).unwrap_or(0.0);
            (r.instance.to_string(), r.value, tx)
        })
        .collect()
}

fn interfaces_table(area: Rect, buf: &mut Buffer, app: &App, h: &HostView) {
    let t = &app.theme;
    let block = draw::panel(t, Line::raw("Interfaces"), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 40 {
        return;
    }
    let x = inner.x + 1;
    let name_w = (inner.width - 1).saturating_sub(9 * 2 + 8 * 2 + 4).min(16);
    let cols = [
        (name_w, "interface", false),
        (9, "rx/s", true),
        (9, "tx/s", true),
        (8, "errors", true),
        (8, "drops", true),
    ];
    let mut cx = x;
    for (w, title, right) in cols {
        cell(buf, cx, inner.y, w, title, t.header, right);
        cx += w + 1;
    }
    let mut y = inner.y + 1;
    for (name, rx, tx) in interfaces(h) {
        if y >= inner.bottom() {
            break;
        }
        let count =
            |a: Metric, b: Metric| h.value(a, &name).unwrap_or(0.0) + h.value(b, &name).unwrap_or(0.0);
        let errors = count(Metric::NetRxErrors, Metric::NetTxErrors);
        let drops = count(Metric::NetRxDrops, Metric::NetTxDrops);
        let vals = [
            (name.clone(), t.text),
            (format::bytes(rx), t.text),
            (format::bytes(tx), t.text),
            (
                format!("{errors:.0}"),
                if errors > 0.0 { t.warning } else { t.muted },
            ),
            (
                format!("{drops:.0}"),
                if drops > 0.0 { t.warning } else { t.muted },
            ),
        ];
        let mut cx = x;
        for ((w, _, right), (text, style)) in cols.iter().zip(vals) {
            cell(buf, cx, y, *w, &text, style, *right);
            cx += w + 1;
        }
        y += 1;
    }
    if y == inner.y + 1 {
        cell(
            buf,
            x,
            y,
            inner.width - 1,
            "no interface data yet",
            t.muted,
            false,
        );
    }
}

fn processes(area: Rect, buf: &mut Buffer, app: &mut App, h: &HostView) {
    let t = app.theme.clone();
    let block = draw::panel(
        &t,
        Line::raw(format!("Watched processes ({})", h.processes.len())),
        true,
    );
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 || inner.width < 40 {
        return;
    }
    let x = inner.x + 1;
    let cols: [(u16, &str, bool); 8] = [
        (10, "watch", false),
        (7, "pid", true),
        (6, "cpu%", true),
        (6, "mem%", true),
        (7, "rss", true),
        (7, "vms", true),
        (9, "cpus", false),
        (0, "command", false),
    ];
    let fixed: u16 = cols.iter().map(|c| c.0 + 1).sum();
    let cmd_w = (inner.width - 1).saturating_sub(fixed);
    let mut cx = x;
    for (w, title, right) in cols {
        let w = if w == 0 { cmd_w } else { w };
        cell(buf, cx, inner.y, w, title, t.header, right);
        cx += w + 1;
    }
    if h.processes.is_empty() {
        let text = if h.status == HostStatus::Up {
            "no watched processes (see [[watch.processes]])"
        } else {
            "host is not up"
        };
        cell(buf, x, inner.y + 1, inner.width - 1, text, t.muted, false);
        return;
    }
    let rows = (inner.height - 1) as usize;
    let first = app.detail_scroll.min(h.processes.len().saturating_sub(rows));
    for (row, p) in h.processes.iter().skip(first).take(rows).enumerate() {
        let y = inner.y + 1 + row as u16;
        if first + row == app.detail_scroll {
            buf.set_style(Rect::new(inner.x, y, inner.width, 1), t.selected_unfocused);
        }
        let affinity = affinity_text(&p.cpu_affinity);
        let vals: [(String, ratatui::style::Style); 8] = [
            (p.watch.to_string(), t.text),
            (p.pid.to_string(), t.text),
            (
                format!("{:.1}", p.cpu_pct),
                level_style(&t, level(Metric::ProcCpu, p.cpu_pct), t.text),
            ),
            (format!("{:.1}", p.mem_pct), t.text),
            (format::bytes(p.rss_bytes as f64), t.text),
            (format::bytes(p.vms_bytes as f64), t.muted),
            (affinity, t.muted),
            (
                if p.cmdline.is_empty() {
                    p.name.to_string()
                } else {
                    p.cmdline.to_string()
                },
                t.muted,
            ),
        ];
        let mut cx = x;
        for ((w, _, right), (text, style)) in cols.iter().zip(vals) {
            let w = if *w == 0 { cmd_w } else { *w };
            cell(buf, cx, y, w, &text, style, *right);
            cx += w + 1;
        }
    }
}

/// `0-3,6` for a CPU list; `all`-like lists stay short.
fn affinity_text(cpus: &[usize]) -> String {
    if cpus.is_empty() {
        return "-".into();
    }
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end > start {
            out.push_str(&format!("{start}-{end}"));
        } else {
            out.push_str(&start.to_string());
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::CHARTS;
    use crate::model::{CATALOGUE, Metric};

    #[test]
    fn history_is_kept_for_exactly_the_charted_series() {
        let kept: Vec<Metric> = CATALOGUE.iter().filter(|m| m.history).map(|m| m.metric).collect();
        let mut charted: Vec<Metric> = CHARTS.iter().map(|(_, m, _)| *m).collect();
        charted.sort_by_key(|m| m.index());
        assert_eq!(kept, charted);
        // the overview's sparkline is one of them
        assert!(charted.contains(&Metric::CpuUsage));
    }
}
