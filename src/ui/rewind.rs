//! Rewind: the dashboard showing a recorded moment instead of the live one.
//!
//! `[` / `]` step one interval back / forward, `{` / `}` five minutes, `t` asks for a time
//! (`03:10`, `2026-12-01 03:10`, `-45m`), Esc returns to live. While rewound every panel
//! shows the recorded snapshot (hosts, max-risk lines, triggers as they were, host detail
//! with history ending there) and the header says `REWIND 03:10:42 (-1h04m)`; the live
//! snapshots keep arriving (and being recorded) underneath. The app asks for a moment with
//! [`Effect::Seek`]; [`seek`] reads it from the recording (the event loop calls it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use super::app::{App, Effect};
use super::keymap::Action;
use crate::record::chunk::{HistorySpec, ms};
use crate::record::{Recording, timespec};

/// How far `{` and `}` move.
pub const BIG_STEP: Duration = Duration::from_secs(300);

/// The rewind state of the dashboard.
#[derive(Debug, Clone)]
pub struct Rewind {
    /// The moment on screen while rewound.
    pub at: Option<SystemTime>,
    /// The time being typed after `t`.
    pub prompt: Option<String>,
    /// The recording it reads.
    pub dir: PathBuf,
    pub interval: Duration,
    /// History the host detail charts (`[general] history`).
    pub history: Duration,
    /// Set when replaying a recording at this speed (no live data at all).
    pub replay: Option<f64>,
    /// The recording as last read: kept between steps, so each step re-indexes only the
    /// segment being written.
    opened: Opened,
}

/// An opened recording kept by the dashboard (a clone of the state starts without one).
#[derive(Default)]
struct Opened(Option<Recording>);

impl Clone for Opened {
    fn clone(&self) -> Self {
        Opened(None)
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Opened(..)"
        } else {
            "Opened(None)"
        })
    }
}

impl Rewind {
    pub fn new(config: &crate::config::Config) -> Self {
        Rewind {
            at: None,
            prompt: None,
            dir: config.record.dir.clone(),
            interval: config.general.interval,
            history: config.general.history,
            replay: config.record.replay_speed,
            opened: Opened::default(),
        }
    }
    pub fn is_active(&self) -> bool {
        self.at.is_some()
    }
}

/// The rewind actions.
pub fn act(app: &mut App, action: Action) {
    let interval = app.rewind.interval.max(Duration::from_millis(100));
    let live = app.latest().taken_at;
    let base = app.rewind.at.unwrap_or(live);
    let back = |d: Duration| base.checked_sub(d).unwrap_or(base);
    let target = match action {
        Action::RewindBack => back(interval),
        Action::RewindBack5m => back(BIG_STEP),
        Action::RewindForward | Action::RewindForward5m => {
            if !app.rewind.is_active() {
                app.message = Some("showing live data: nothing after now".into());
                return;
            }
            let step = if action == Action::RewindForward {
                interval
            } else {
                BIG_STEP
            };
            let t = base + step;
            if t >= live {
                go_live(app);
                return;
            }
            t
        }
        Action::RewindTo => {
            app.rewind.prompt = Some(String::new());
            return;
        }
        _ => return,
    };
    app.effects.push(Effect::Seek(target));
}

/// Back to the live (or replayed) data.
pub fn go_live(app: &mut App) {
    app.rewind.at = None;
    if let Some(rec) = &app.rewind.opened.0 {
        // What the steps decoded is not needed until the next rewind.
        rec.clear_cache();
    }
    app.snap = app.latest().clone();
    app.rebuild();
    app.message = Some(
        if app.rewind.replay.is_some() {
            "back to the replay"
        } else {
            "live"
        }
        .into(),
    );
}

/// Keys while typing a time; true when consumed.
pub fn prompt_key(app: &mut App, key: &KeyEvent) -> bool {
    let Some(text) = app.rewind.prompt.as_mut() else {
        return false;
    };
    match key.code {
        KeyCode::Esc => app.rewind.prompt = None,
        KeyCode::Backspace => {
            text.pop();
        }
        KeyCode::Enter => {
            let typed = std::mem::take(text);
            app.rewind.prompt = None;
            let now = reference_now(app);
            match timespec::parse(&typed, now) {
                Ok(t) if t >= app.latest().taken_at && app.rewind.replay.is_none() => go_live(app),
                Ok(t) => app.effects.push(Effect::Seek(t)),
                Err(e) => app.message = Some(e),
            }
        }
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
                && text.chars().count() < 40
                && !c.is_control() =>
        {
            text.push(c);
        }
        _ => {}
    }
    true
}

/// What relative times count from: the wall clock, or the replay's position.
fn reference_now(app: &App) -> SystemTime {
    if app.rewind.replay.is_some() {
        app.latest().taken_at
    } else {
        SystemTime::now()
    }
}

/// The time drawing uses for ages and staleness: the moment on screen when rewound or
/// replaying, else the wall clock.
pub fn frame_now(app: &App, wall: SystemTime) -> SystemTime {
    match (app.rewind.at, app.rewind.replay) {
        (Some(t), _) => t,
        (None, Some(_)) => app.latest().taken_at,
        (None, None) => wall,
    }
}

/// Reads the moment `t` from the recording and puts it on screen (or says why not).
pub fn seek(app: &mut App, t: SystemTime) {
    let opened = match app.rewind.opened.0.take() {
        Some(mut rec) if rec.dir == app.rewind.dir => rec.refresh().map(|()| rec),
        _ => Recording::open(&app.rewind.dir),
    };
    let rec = match opened {
        Ok(r) => r,
        Err(e) => {
            app.message = Some(e.to_string());
            return;
        }
    };
    let interval = app.rewind.interval;
    // The detail charts its host's whole history; the overview needs its sparklines only.
    let history = match &app.detail {
        Some(host) => HistorySpec {
            from: ms(t.checked_sub(app.rewind.history).unwrap_or(t)),
            cap: history_len(app.rewind.history, interval),
            only: Some(vec![host.clone()]),
            metrics: None,
        },
        None => overview_history(t, interval),
    };
    match rec.snapshot_at(t, Some(history)) {
        Ok(snap) => {
            app.rewind.at = Some(t);
            app.snap = Arc::new(snap);
            app.rebuild();
        }
        Err(e) => app.message = Some(e.to_string()),
    }
    for p in rec.take_problems() {
        log::warn!(target: "lookout", "recording: {p}");
    }
    app.rewind.opened.0 = Some(rec);
}

/// The history the overview draws: its CPU sparkline, the last few samples. Asking for no
/// more keeps a seek to what it must decode: a day's recording of 1,000 hosts answers in
/// tens of milliseconds (README, Performance).
pub fn overview_history(t: SystemTime, interval: Duration) -> HistorySpec {
    let samples = super::overview::SPARK;
    HistorySpec {
        // Two samples of slack: a host's rows are spread over the interval.
        from: ms(t.checked_sub(interval * (samples as u32 + 2)).unwrap_or(t)),
        cap: samples,
        only: None,
        metrics: Some(vec![crate::model::Metric::CpuUsage]),
    }
}

fn history_len(history: Duration, interval: Duration) -> usize {
    ((history.as_secs_f64() / interval.as_secs_f64().max(0.001)).ceil() as usize).clamp(2, 100_000)
}

/// The header's markers at its right end: REWIND / REPLAY, and a stopped recording.
pub fn render_marker(area: Rect, buf: &mut Buffer, app: &App) {
    let t = &app.theme;
    let mut label = String::new();
    if let Some(at) = app.rewind.at {
        label = format!(
            " REWIND {} ({}) ",
            timespec::clock(at),
            timespec::ago(at, reference_now(app))
        );
    } else if let Some(speed) = app.rewind.replay {
        label = format!(" REPLAY {} x{speed} ", timespec::clock(app.latest().taken_at));
    }
    let failed = crate::record::writer::current_failure();
    let rec = failed.map(|_| " REC STOPPED ".to_string()).unwrap_or_default();
    let width = (label.chars().count() + rec.chars().count()) as u16;
    if width == 0 {
        return;
    }
    let x = area.right().saturating_sub(width + 1).max(area.x);
    buf.set_string(x, area.y, &rec, t.status_bar.patch(t.critical));
    buf.set_string(x + rec.chars().count() as u16, area.y, &label, t.paused);
}

/// The hint line while a time is typed; true when drawn.
pub fn render_prompt(area: Rect, buf: &mut Buffer, app: &App) -> bool {
    let Some(text) = &app.rewind.prompt else {
        return false;
    };
    let t = &app.theme;
    Line::from(vec![
        Span::styled(" rewind to: ", t.hint),
        Span::styled(text.as_str(), t.filter),
        Span::styled("▏", t.filter),
        Span::styled("  03:10, 2026-12-01 03:10, -45m", t.muted),
        Span::styled("   Enter", t.hint_key),
        Span::styled(" go  ", t.hint),
        Span::styled("Esc", t.hint_key),
        Span::styled(" cancel", t.hint),
    ])
    .render(area, buf);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::demo::Fleet;
    use crate::ui::keymap::Keymap;
    use crate::ui::theme::Theme;

    fn app() -> App {
        let config = crate::config::parse("[general]\ninterval = \"2s\"\n", "t.toml", None).expect("config");
        let snap = Arc::new(Fleet::warm(3, 4));
        let now = snap.taken_at;
        App::new(
            &config,
            Theme::load("default", false).expect("theme"),
            Keymap::default(),
            snap,
            now,
        )
    }

    fn press(app: &mut App, c: char) {
        app.on_key(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }

    fn header(app: &mut App) -> String {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 30)).expect("terminal");
        t.draw(|f| crate::ui::draw::draw(f, app)).expect("draw");
        let buf = t.backend().buffer();
        (0..160).map(|x| buf[(x, 0)].symbol().to_string()).collect()
    }

    #[test]
    fn keys_ask_for_moments_and_esc_returns_live() {
        let mut a = app();
        let live = a.latest().taken_at;
        press(&mut a, '[');
        match a.take_effects().as_slice() {
            [Effect::Seek(t)] => assert_eq!(*t, live - Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        press(&mut a, ']');
        assert!(a.take_effects().is_empty(), "nothing after live");
        press(&mut a, '{');
        assert!(matches!(a.take_effects().as_slice(), [Effect::Seek(t)] if *t == live - BIG_STEP));

        // The event loop puts a recorded moment on screen.
        let at = live - Duration::from_secs(3840);
        let mut past = crate::snapshot::Snapshot::clone(a.latest());
        past.taken_at = at;
        past.hosts.truncate(1);
        a.rewind.at = Some(at);
        a.snap = Arc::new(past);
        a.rebuild();
        a.now = frame_now(&a, live);
        assert!(header(&mut a).contains("REWIND"), "{}", header(&mut a));
        // Live snapshots keep arriving underneath without replacing the moment.
        a.set_snapshot(Arc::new(Fleet::warm(3, 5)));
        assert_eq!(a.snap.hosts.len(), 1);
        press(&mut a, ']');
        assert!(
            matches!(a.take_effects().as_slice(), [Effect::Seek(t)] if *t == at + Duration::from_secs(2))
        );

        // `t` and a typed time.
        press(&mut a, 't');
        // (Relative times count from the wall clock; the demo data lives in the past.)
        let typed = humantime::format_rfc3339_seconds(live - Duration::from_secs(3600)).to_string();
        for c in typed.chars() {
            press(&mut a, c);
        }
        assert_eq!(a.rewind.prompt.as_deref(), Some(typed.as_str()));
        a.on_key(&KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert!(
            matches!(a.take_effects().as_slice(), [Effect::Seek(t)] if *t == live - Duration::from_secs(3600))
        );
        press(&mut a, 't');
        for c in "soon".chars() {
            press(&mut a, c);
        }
        a.on_key(&KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        assert!(a.message.as_deref().is_some_and(|m| m.contains("is not a time")));

        a.on_key(&KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        assert!(!a.rewind.is_active());
        assert_eq!(a.snap.hosts.len(), 3, "live again");
        assert!(!header(&mut a).contains("REWIND"));
    }

    #[test]
    fn seek_reports_a_missing_recording() {
        let mut a = app();
        a.rewind.dir = PathBuf::from("/nonexistent/lookout-recordings");
        let t = a.latest().taken_at - Duration::from_secs(2);
        seek(&mut a, t);
        assert!(!a.rewind.is_active());
        assert!(
            a.message
                .as_deref()
                .is_some_and(|m| m.contains("cannot read the recording directory"))
        );
    }
}
