//! The frame: lays out the status bar, the overview panels or the host detail, the hint line
//! and any popup, and holds the small helpers the panels share.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Widget};

use super::app::{App, Overlay, Panel};
use super::theme::Theme;
use crate::model::Metric;

/// The smallest terminal the dashboard draws into.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let buf = frame.buffer_mut();
    render(area, buf, app);
}

/// Draws into a buffer (what [`draw`] does, callable without a terminal).
pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(area, buf, &app.theme);
        return;
    }
    let [status, main, hint] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    super::status::render_status(status, buf, app);
    super::status::render_hint(hint, buf, app);
    if app.detail.is_some() {
        app.areas = super::app::Areas::default();
        super::detail::render(main, buf, app);
    } else {
        overview(main, buf, app);
    }
    match app.overlay {
        Overlay::None => {}
        Overlay::Help => super::help::render_help(area, buf, app),
        Overlay::Silence { choice } => super::help::render_silence(area, buf, app, choice),
    }
}

fn overview(area: Rect, buf: &mut Buffer, app: &mut App) {
    let bottom_h = (area.height / 3).clamp(7, 14);
    let log_h = if app.show_log {
        (area.height / 4).clamp(5, 12)
    } else {
        0
    };
    let [hosts, bottom, log] = Layout::vertical([
        Constraint::Min(5),
        Constraint::Length(bottom_h),
        Constraint::Length(log_h),
    ])
    .areas(area);
    let [risk, triggers] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
    app.areas = super::app::Areas {
        hosts,
        risk,
        triggers,
        log,
    };
    super::overview::render(hosts, buf, app);
    super::maxrisk::render(risk, buf, app);
    super::triggers::render(triggers, buf, app);
    if app.show_log {
        super::log::render(log, buf, app);
    }
}

fn too_small(area: Rect, buf: &mut Buffer, theme: &Theme) {
    let text = vec![
        Line::styled("lookout needs a larger terminal", theme.warning),
        Line::styled(
            format!(
                "now {}x{}, at least {MIN_WIDTH}x{MIN_HEIGHT}",
                area.width, area.height
            ),
            theme.text,
        ),
        Line::styled("q quits", theme.muted),
    ];
    let y = area.y + area.height.saturating_sub(3) / 2;
    let rect = Rect::new(area.x, y, area.width, 3.min(area.height));
    Paragraph::new(text)
        .centered()
        .render(rect.intersection(area), buf);
}

/// A bordered panel whose border and title show whether it has the focus.
pub fn panel<'a>(theme: &Theme, title: Line<'a>, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(title.style(theme.title(focused)))
}

/// Whether a panel has the focus (never while a popup is open).
pub fn is_focused(app: &App, panel: Panel) -> bool {
    app.focus == panel && app.overlay == Overlay::None && !app.filter_editing
        || (panel == Panel::Hosts && app.filter_editing)
}

/// Writes `text` into `width` cells at (x, y), left- or right-aligned, truncated with `…`.
pub fn cell(buf: &mut Buffer, x: u16, y: u16, width: u16, text: &str, style: Style, right: bool) {
    if width == 0 {
        return;
    }
    let w = Span::raw(text).width();
    if w > width as usize {
        let (end_x, _) = buf.set_stringn(x, y, text, width as usize - 1, style);
        buf.set_stringn(end_x, y, "…", 1, style);
    } else if right {
        buf.set_stringn(x + width - w as u16, y, text, width as usize, style);
    } else {
        buf.set_stringn(x, y, text, width as usize, style);
    }
}

/// How bad a value looks: none, warning or critical (display levels, see docs/ui.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Normal,
    Warning,
    Critical,
}

pub fn level(metric: Metric, v: f64) -> Level {
    let (warn, crit, higher) = match metric {
        Metric::CpuUsage | Metric::CpuCoreUsage | Metric::ProcCpu => (75.0, 90.0, true),
        Metric::MemUsedPct | Metric::DiskUsedPct => (80.0, 90.0, true),
        Metric::SwapUsedPct => (50.0, 80.0, true),
        Metric::CpuIowait => (20.0, 50.0, true),
        Metric::LoadPerCore => (1.0, 2.0, true),
        Metric::PingLoss => (0.5, 20.0, true),
        Metric::PingRtt => (100.0, 500.0, true),
        Metric::PingJitter => (50.0, 200.0, true),
        Metric::HostUp => (0.5, 0.5, false),
        Metric::ProcCount => (0.5, 0.5, false),
        Metric::NetRxErrors | Metric::NetTxErrors | Metric::NetRxDrops | Metric::NetTxDrops => {
            (f64::INFINITY, f64::INFINITY, true)
        }
        _ => return Level::Normal,
    };
    if higher {
        if v >= crit {
            Level::Critical
        } else if v >= warn {
            Level::Warning
        } else {
            Level::Normal
        }
    } else if v < crit {
        Level::Critical
    } else {
        Level::Normal
    }
}

pub fn level_style(theme: &Theme, level: Level, normal: Style) -> Style {
    match level {
        Level::Normal => normal,
        Level::Warning => theme.warning,
        Level::Critical => theme.critical,
    }
}

/// A horizontal bar of `width` cells filled to `ratio` with eighth blocks.
pub fn bar(ratio: f64, width: usize) -> String {
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    let eighths = (ratio.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    s.push_str(PARTS[eighths % 8]);
    s
}

/// A text sparkline of values scaled to `max` (or to their own maximum when `max` is None).
pub fn sparkline(values: &[f32], max: Option<f32>) -> String {
    const TICKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = max
        .unwrap_or_else(|| values.iter().copied().fold(0.0, f32::max))
        .max(f32::EPSILON);
    values
        .iter()
        .map(|v| TICKS[((v / top).clamp(0.0, 1.0) * 7.0).round() as usize])
        .collect()
}

/// Keeps the selected row visible: returns the new first visible row.
pub fn scroll_offset(selected: usize, offset: usize, visible: usize, len: usize) -> usize {
    if visible == 0 || len == 0 {
        return 0;
    }
    let mut off = offset.min(len.saturating_sub(visible));
    if selected < off {
        off = selected;
    } else if selected >= off + visible {
        off = selected + 1 - visible;
    }
    off
}
