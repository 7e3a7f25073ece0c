//! The top status line (host and trigger counts, data age, lookout's own footprint) and the
//! bottom hint line (keys from the bindings, the filter prompt, or a one-off message).

use std::fmt::Write as _;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::app::{App, Overlay, Panel};
use super::keymap::Action;
use crate::format;
use crate::model::HostStatus;
use crate::triggers::TriggerState;

pub fn render_status(area: Rect, buf: &mut Buffer, app: &App) {
    let t = &app.theme;
    buf.set_style(area, t.status_bar);
    let snap = &app.snap;
    let total = snap.hosts.len();
    let up = snap.count_status(HostStatus::Up);
    let connecting = snap.count_status(HostStatus::Connecting);
    let down = total - up - connecting;
    let firing = snap
        .triggers
        .iter()
        .filter(|x| x.state == TriggerState::Firing)
        .count();
    let pending = snap
        .triggers
        .iter()
        .filter(|x| x.state == TriggerState::Pending)
        .count();

    // Below 100 columns the line drops the name and shortens its words to fit 80.
    let compact = area.width < 100;
    let gap = if compact { "  " } else { "   " };
    let mut spans = Vec::new();
    if compact {
        spans.push(Span::styled(" ", t.status_bar));
    } else {
        spans.push(Span::styled(" lookout  ", t.status_bar.patch(t.title)));
    }
    let plural = if total == 1 { "" } else { "s" };
    let mut hosts = format!("{total} host{plural}: {up} up");
    if connecting > 0 {
        let word = if compact { "conn" } else { "connecting" };
        let _ = write!(hosts, ", {connecting} {word}");
    }
    spans.push(Span::styled(hosts, t.status_bar));
    if down > 0 {
        spans.push(Span::styled(", ", t.status_bar));
        spans.push(Span::styled(
            format!("{down} down"),
            t.status_bar.patch(t.critical),
        ));
    }
    spans.push(Span::styled(gap, t.status_bar));
    let fstyle = if firing > 0 {
        t.status_bar.patch(t.critical)
    } else {
        t.status_bar
    };
    spans.push(Span::styled(format!("{firing} firing"), fstyle));
    let pstyle = if pending > 0 {
        t.status_bar.patch(t.pending)
    } else {
        t.status_bar
    };
    spans.push(Span::styled(", ", t.status_bar));
    let pword = if compact { "pend" } else { "pending" };
    spans.push(Span::styled(format!("{pending} {pword}"), pstyle));
    spans.push(Span::styled(gap, t.status_bar));
    let newest = snap.hosts.iter().filter_map(|h| h.last_update).max();
    let old = if compact { "" } else { " old" };
    let age = match newest {
        Some(at) => {
            let s = app.now.duration_since(at).unwrap_or_default().as_secs_f64();
            if s < 10.0 {
                format!("data {s:.1}s{old}")
            } else {
                format!("data {}{old}", format::duration_secs(s))
            }
        }
        None => "no data yet".to_string(),
    };
    let stale = newest.is_some_and(|at| app.now.duration_since(at).unwrap_or_default() > snap.interval * 3);
    spans.push(Span::styled(
        age,
        if stale {
            t.status_bar.patch(t.stale)
        } else {
            t.status_bar
        },
    ));
    spans.push(Span::styled(
        format!(
            "{gap}self {:.1}% {}",
            app.usage.cpu_pct,
            format::bytes(app.usage.rss_bytes as f64)
        ),
        t.status_bar,
    ));
    Line::from(spans).render(area, buf);
    if let Some(link) = &app.link {
        // The data on screen is the last the server sent: say so over the right part.
        let text = format!(" {link} ");
        let w = (text.chars().count() as u16).min(area.width);
        let x = area.right().saturating_sub(w);
        buf.set_stringn(x, area.y, &text, w as usize, t.status_bar.patch(t.critical));
    }
    if app.paused {
        let label = " PAUSED ";
        let x = area.right().saturating_sub(label.len() as u16 + 1);
        buf.set_string(x, area.y, label, t.paused);
    }
}

pub fn render_hint(area: Rect, buf: &mut Buffer, app: &App) {
    let t = &app.theme;
    buf.set_style(area, t.hint);
    if app.filter_editing {
        let line = Line::from(vec![
            Span::styled(" filter: ", t.hint),
            Span::styled(app.filter.as_str(), t.filter),
            Span::styled("▏", t.filter),
            Span::styled(format!("  {} match", app.order.len()), t.muted),
            Span::styled("   Enter", t.hint_key),
            Span::styled(" keep  ", t.hint),
            Span::styled("Esc", t.hint_key),
            Span::styled(" clear", t.hint),
        ]);
        line.render(area, buf);
        return;
    }
    if let Some(m) = &app.message {
        Line::styled(format!(" {m}"), t.hint).render(area, buf);
        return;
    }
    let km = &app.keymap;
    let pairs: Vec<(String, &str)> = match app.overlay {
        Overlay::Help => vec![
            (km.first(Action::Back), "close"),
            (km.first(Action::Quit), "quit"),
        ],
        Overlay::Silence { .. } => vec![
            (
                format!("{}/{}", km.first(Action::Up), km.first(Action::Down)),
                "choose",
            ),
            ("Enter".into(), "silence"),
            (km.first(Action::Back), "cancel"),
        ],
        Overlay::None if app.detail.is_some() => vec![
            (km.first(Action::Back), "back"),
            (
                format!("{}/{}", km.first(Action::Up), km.first(Action::Down)),
                "processes",
            ),
            (km.first(Action::Acknowledge), "ack"),
            (km.first(Action::Silence), "silence"),
            (km.first(Action::Reconnect), "reconnect"),
            (km.first(Action::Pause), "pause"),
            (km.first(Action::Help), "help"),
            (km.first(Action::Quit), "quit"),
        ],
        Overlay::None => {
            let open = match app.focus {
                Panel::Hosts | Panel::Log => "detail",
                Panel::MaxRisk | Panel::Triggers => "go to host",
            };
            vec![
                (
                    format!("{}{}", km.first(Action::Up), km.first(Action::Down)),
                    "move",
                ),
                (km.first(Action::NextPanel), "panel"),
                (km.first(Action::Open), open),
                (km.first(Action::Filter), "filter"),
                (km.first(Action::Sort), "sort"),
                (km.first(Action::Acknowledge), "ack"),
                (km.first(Action::Silence), "silence"),
                (km.first(Action::Reconnect), "reconnect"),
                (km.first(Action::Log), "log"),
                (km.first(Action::Pause), "pause"),
                (km.first(Action::Help), "help"),
                (km.first(Action::Quit), "quit"),
            ]
        }
    };
    // When the line is too narrow, hints go from the end of the middle: the first three
    // (how to move and open) and the last two (help, quit) stay.
    let mut pairs: Vec<(String, &str)> = pairs.into_iter().filter(|(k, _)| !k.is_empty()).collect();
    let width = |p: &[(String, &str)]| {
        1 + p
            .iter()
            .map(|(k, w)| Span::raw(k.as_str()).width() + w.len() + 3)
            .sum::<usize>()
    };
    while width(&pairs) > area.width as usize && pairs.len() > 5 {
        pairs.remove(pairs.len() - 3);
    }
    let mut spans = vec![Span::raw(" ")];
    for (key, what) in &pairs {
        spans.push(Span::styled(key.clone(), t.hint_key));
        spans.push(Span::styled(format!(" {what}  "), t.hint));
    }
    Line::from(spans).render(area, buf);
}
