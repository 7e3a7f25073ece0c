//! The log panel (tui-logger): lookout's own `log` records (collector errors and the like)
//! and the engine's events (host status changes, trigger transitions, action results).
//!
//! No background thread: records go into tui-logger's buffer through [`UiLogger`], and are
//! moved into the widget's buffer just before the panel is drawn. A [`Notify`] wakes the
//! event loop so an open log panel shows new lines at once.

use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;
use tokio::sync::Notify;
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerWidget};

use super::app::{App, Panel};
use super::draw;
use crate::event::{Event, EventKind};
use crate::model::HostStatus;

/// Woken whenever a record is logged.
pub fn notify() -> &'static Notify {
    static NOTIFY: OnceLock<Notify> = OnceLock::new();
    NOTIFY.get_or_init(Notify::new)
}

/// Forwards records to tui-logger: lookout's own at info and above, other crates' warnings.
pub struct UiLogger;

impl Log for UiLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        let ours = m.target().starts_with("lookout") || m.target() == "event";
        m.level() <= if ours { Level::Info } else { Level::Warn }
    }
    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            tui_logger::Drain::new().log(record);
            notify().notify_one();
        }
    }
    fn flush(&self) {}
}

/// Installs [`UiLogger`] as the `log` logger (once; later calls do nothing).
pub fn init() {
    static LOGGER: UiLogger = UiLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
        tui_logger::set_default_level(LevelFilter::Info);
        tui_logger::set_hot_buffer_depth(256);
        tui_logger::set_buffer_depth(1000);
    }
}

/// Logs one engine event into the panel.
pub fn record_event(e: &Event) {
    let level = match &e.kind {
        EventKind::HostStatus { status, .. } if *status != HostStatus::Up => Level::Warn,
        EventKind::Trigger(_) | EventKind::Action(_) => Level::Warn,
        EventKind::Reload { applied: false, .. } => Level::Error,
        _ => Level::Info,
    };
    log::log!(target: "event", level, "{}", e.summary());
}

pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    tui_logger::move_events();
    let focused = draw::is_focused(app, Panel::Log);
    let t = &app.theme;
    let block = draw::panel(t, Line::raw("Log"), focused);
    let ts = app.log_timestamps.then(|| "%H:%M:%S".to_string());
    TuiLoggerWidget::default()
        .block(block)
        .style(t.text)
        .style_error(t.critical)
        .style_warn(t.warning)
        .style_info(t.text)
        .style_debug(t.muted)
        .style_trace(t.muted)
        .output_separator(' ')
        .output_timestamp(ts)
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .state(&app.log_state)
        .render(area, buf);
}
