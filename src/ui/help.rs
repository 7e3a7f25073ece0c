//! Popups: the `?` help, generated from the key bindings in force (so it cannot drift from
//! them), and the chooser of how long to silence a trigger.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget};

use super::app::{App, SILENCE_CHOICES};
use super::keymap::Action;

/// A rectangle of at most `w` x `h` centred in `area`.
fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// The help text: one line per action with its keys.
pub fn help_lines(app: &App) -> Vec<Line<'static>> {
    let t = &app.theme;
    let key_w = Action::ALL
        .iter()
        .map(|&a| Span::raw(app.keymap.label(a)).width())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut lines: Vec<Line> = Action::ALL
        .iter()
        .map(|&a| {
            let label = app.keymap.label(a);
            let pad = key_w.saturating_sub(Span::raw(label.as_str()).width());
            Line::from(vec![
                Span::styled(format!(" {label}{}", " ".repeat(pad)), t.hint_key),
                Span::styled(format!("  {}", a.help()), t.popup),
            ])
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " Ctrl-c always quits. Mouse: wheel scrolls, click selects.",
        t.muted,
    ));
    lines.push(Line::styled(
        " While filtering: type to narrow, Enter keeps, Esc clears.",
        t.muted,
    ));
    lines.push(Line::styled(
        " Rebind keys in the config's [keys] table (docs/ui.md).",
        t.muted,
    ));
    lines
}

pub fn render_help(area: Rect, buf: &mut Buffer, app: &App) {
    let lines = help_lines(app);
    let width = lines.iter().map(Line::width).max().unwrap_or(40) as u16 + 3;
    let rect = centred(area, width, lines.len() as u16 + 2);
    Clear.render(rect, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border_focused)
        .title(Line::styled(" Keys ", app.theme.title_focused))
        .style(app.theme.popup);
    Paragraph::new(lines).block(block).render(rect, buf);
}

pub fn render_silence(area: Rect, buf: &mut Buffer, app: &App, choice: usize) {
    let t = &app.theme;
    let target = app
        .action_trigger()
        .map(|tv| format!("{} {}", tv.name, tv.host))
        .unwrap_or_default();
    let mut lines = vec![Line::styled(format!(" {target}"), t.popup), Line::raw("")];
    for (i, (label, _)) in SILENCE_CHOICES.iter().enumerate() {
        let style = if i == choice { t.selected } else { t.popup };
        lines.push(Line::styled(format!(" {} {:<6}", i + 1, label), style));
    }
    let width = (lines.iter().map(Line::width).max().unwrap_or(20) as u16 + 3).max(24);
    let rect = centred(area, width, lines.len() as u16 + 2);
    Clear.render(rect, buf);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(t.border_focused)
        .title(Line::styled(" Silence for ", t.title_focused))
        .style(t.popup);
    Paragraph::new(lines).block(block).render(rect, buf);
}
