//! The trigger panel: firing, pending (with the time left before it fires), acknowledged and
//! silenced lines, most urgent first. Unacknowledged firing lines alternate between the
//! theme's two flash styles about twice a second.

use std::time::SystemTime;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

use super::app::{App, Panel};
use super::draw::{self, cell};
use crate::format;
use crate::triggers::rule::Severity;
use crate::triggers::{TriggerState, TriggerView};

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The marker, state word and trailing time of one line.
fn describe(t: &TriggerView, now: SystemTime) -> (&'static str, &'static str, String) {
    match t.state {
        TriggerState::Firing => {
            let sev = match t.severity {
                Severity::Critical => "CRIT",
                Severity::Warning => "WARN",
                Severity::Info => "INFO",
            };
            ("●", sev, format::duration_secs(secs_between(t.since, now)))
        }
        TriggerState::Pending => {
            let left = t.fires_at.map_or(0.0, |f| secs_between(now, f).ceil());
            ("◌", "pend", format!("({})", format::duration_secs(left)))
        }
        TriggerState::Acknowledged => ("✓", "ack", format::duration_secs(secs_between(t.since, now))),
        TriggerState::Silenced => {
            let left = t.silenced_until.map_or(0.0, |u| secs_between(now, u));
            ("◯", "mute", format!("{} left", format::duration_secs(left)))
        }
        TriggerState::Resolved => ("✓", "ok", format::duration_secs(secs_between(t.since, now))),
        TriggerState::Ok => (" ", "ok", String::new()),
    }
}

pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    let focused = draw::is_focused(app, Panel::Triggers);
    let t = app.theme.clone();
    let block = draw::panel(&t, Line::raw("Triggers"), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height == 0 || inner.width < 30 {
        return;
    }
    if app.trigger_order.is_empty() {
        cell(
            buf,
            inner.x + 1,
            inner.y,
            inner.width - 1,
            "all quiet",
            t.ok,
            false,
        );
        return;
    }
    let rows = inner.height as usize;
    app.trig_offset = draw::scroll_offset(app.trig_sel, app.trig_offset, rows, app.trigger_order.len());
    let end = (app.trig_offset + rows).min(app.trigger_order.len());
    let name_w = ((inner.width - 1) / 3).clamp(10, 24);
    for (row, pos) in (app.trig_offset..end).enumerate() {
        let tv = &app.snap.triggers[app.trigger_order[pos]];
        let y = inner.y + row as u16;
        let line_rect = Rect::new(inner.x, y, inner.width, 1);
        let style = match tv.state {
            TriggerState::Firing if app.flash_on => t.flash_on,
            TriggerState::Firing => t.flash_off,
            TriggerState::Pending => t.pending,
            TriggerState::Acknowledged => t.acknowledged,
            TriggerState::Silenced => t.silenced,
            TriggerState::Resolved | TriggerState::Ok => t.ok,
        };
        let selected = pos == app.trig_sel;
        if selected {
            buf.set_style(line_rect, t.selection(focused));
        }
        if tv.state == TriggerState::Firing {
            buf.set_style(line_rect, style);
        }
        let (mark, word, time) = describe(tv, app.now);
        let mut x = inner.x;
        buf.set_string(x, y, if selected { "▶" } else { " " }, style);
        x += 1;
        cell(buf, x, y, 1, mark, style, false);
        x += 2;
        cell(buf, x, y, 4, word, style, false);
        x += 5;
        cell(buf, x, y, name_w, &tv.name, style, false);
        x += name_w + 1;
        let value = tv
            .value
            .map(|v| format::value(tv.metric.info().unit, v))
            .unwrap_or_default();
        let mut what = tv.host.clone();
        if !tv.instance.is_empty() {
            what.push(' ');
            what.push_str(&tv.instance);
        }
        if !value.is_empty() {
            what.push(' ');
            what.push_str(&value);
        }
        if let Some(by) = &tv.by {
            what.push_str(" by ");
            what.push_str(by);
        }
        let time_w = time.chars().count() as u16;
        let right = inner.right();
        let what_w = right.saturating_sub(x + time_w + 1);
        cell(buf, x, y, what_w, &what, style, false);
        if time_w > 0 && right > time_w + x {
            cell(buf, right - time_w, y, time_w, &time, style, true);
        }
    }
}
