//! The checks panel of the host detail view: each `[[check]]` the host runs with its
//! status, values, message and how long its last run took.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

use super::app::App;
use super::draw::{self, cell};
use crate::format;
use crate::snapshot::HostView;

/// Rows the panel wants for a host (its border and header included); 0 without checks.
pub fn height(h: &HostView) -> u16 {
    if h.checks.is_empty() {
        0
    } else {
        (h.checks.len() as u16).min(8) + 3
    }
}

pub fn render(area: Rect, buf: &mut Buffer, app: &App, h: &HostView) {
    let t = &app.theme;
    let block = draw::panel(t, Line::raw(format!("Checks ({})", h.checks.len())), false);
    let inner = block.inner(area);
    block.render(area, buf);
    if inner.height < 2 || inner.width < 40 {
        return;
    }
    let x = inner.x + 1;
    let w = inner.width - 1;
    let (name_w, status_w, values_w, took_w) = (16u16, 8u16, (w / 4).clamp(10, 40), 7u16);
    let message_w = w.saturating_sub(name_w + status_w + values_w + took_w + 4);
    let columns = [
        (name_w, "check", false),
        (status_w, "status", false),
        (values_w, "values", false),
        (message_w, "message", false),
        (took_w, "took", true),
    ];
    let mut cx = x;
    for (cw, title, right) in columns {
        cell(buf, cx, inner.y, cw, title, t.header, right);
        cx += cw + 1;
    }
    for (row, c) in h.checks.iter().take((inner.height - 1) as usize).enumerate() {
        let y = inner.y + 1 + row as u16;
        let status_style = match c.status {
            0 => t.ok,
            2 => t.critical,
            _ => t.warning,
        };
        // The values after the status reading, `instance=value` (just the value for one
        // without an instance), as many as fit.
        let values: Vec<String> = c
            .readings
            .iter()
            .skip(1)
            .map(|r| {
                let v = format::value(r.metric.info().unit, r.value);
                if r.instance.is_empty() {
                    v
                } else {
                    format!("{}={v}", r.instance)
                }
            })
            .collect();
        let texts = [
            (c.name.to_string(), t.text),
            (
                crate::collectors::checks::status_name(c.status).to_string(),
                status_style,
            ),
            (
                if values.is_empty() {
                    "-".to_string()
                } else {
                    values.join(" ")
                },
                t.text,
            ),
            (c.message.to_string(), t.muted),
            (format!("{:.0}ms", c.duration_ms), t.muted),
        ];
        let mut cx = x;
        for ((cw, _, right), (text, style)) in columns.iter().zip(texts) {
            cell(buf, cx, y, *cw, &text, style, *right);
            cx += cw + 1;
        }
    }
}
