//! The maximal-risk panel: one line per metric with the worst value anywhere in the cluster,
//! where it is, and a bar. Enter jumps to that host.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

use super::app::{App, Panel};
use super::draw::{self, cell, level, level_style};
use crate::format;
use crate::model::{Metric, Unit};

/// How full the bar of a value is (None: no meaningful bar for this unit).
fn ratio(metric: Metric, v: f64) -> Option<f64> {
    match metric.info().unit {
        Unit::Percent => Some(v / 100.0),
        Unit::Load if metric == Metric::LoadPerCore => Some(v / 2.0),
        _ => None,
    }
}

pub fn render(area: Rect, buf: &mut Buffer, app: &mut App) {
    let focused = draw::is_focused(app, Panel::MaxRisk);
    let t = app.theme.clone();
    let block = draw::panel(&t, Line::raw("Maximal risk"), focused);
    let inner = block.inner(area);
    block.render(area, buf);
    let lines = &app.snap.max_risk;
    if inner.height == 0 || inner.width < 30 {
        return;
    }
    if lines.is_empty() {
        cell(
            buf,
            inner.x + 1,
            inner.y,
            inner.width - 1,
            "no data yet",
            t.muted,
            false,
        );
        return;
    }
    let rows = inner.height as usize;
    app.risk_offset = draw::scroll_offset(app.risk_sel, app.risk_offset, rows, lines.len());
    let end = (app.risk_offset + rows).min(lines.len());
    let w = inner.width - 1;
    // metric | value | host | instance | bar
    let (mw, vw) = if w < 60 { (15u16, 7u16) } else { (19, 9) };
    let rest = w.saturating_sub(mw + vw + 3);
    // Narrow panels drop the bar before they cut host names.
    let (hw, iw, bw) = if rest >= 36 {
        let hw = (rest * 2 / 5).clamp(8, 16);
        let iw = (rest.saturating_sub(hw + 1) / 2).min(12);
        (hw, iw, rest.saturating_sub(hw + iw + 2))
    } else if rest >= 20 {
        let iw = (rest / 3).min(8);
        (rest.saturating_sub(iw + 1), iw, 0)
    } else {
        (rest, 0, 0)
    };
    for (row, i) in (app.risk_offset..end).enumerate() {
        let l = &lines[i];
        let y = inner.y + row as u16;
        if i == app.risk_sel {
            buf.set_style(Rect::new(inner.x, y, inner.width, 1), t.selection(focused));
            buf.set_string(inner.x, y, "▶", t.selection(focused));
        }
        let lvl = level(l.metric, l.value);
        let style = level_style(&t, lvl, t.text);
        let mut x = inner.x + 1;
        cell(buf, x, y, mw, l.metric.name(), t.text, false);
        x += mw + 1;
        cell(
            buf,
            x,
            y,
            vw,
            &format::value(l.metric.info().unit, l.value),
            style,
            true,
        );
        x += vw + 1;
        cell(buf, x, y, hw, &l.host, t.text, false);
        x += hw + 1;
        cell(buf, x, y, iw, &l.instance, t.muted, false);
        x += iw + 1;
        if let Some(r) = ratio(l.metric, l.value)
            && bw > 0
        {
            let bar_style = level_style(&t, lvl, t.bar);
            cell(buf, x, y, bw, &draw::bar(r, bw as usize), bar_style, false);
        }
    }
}
