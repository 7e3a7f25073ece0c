//! The terminal dashboard (ratatui + crossterm): `lookout [--config F] [--theme NAME]`.
//!
//! [`app`] holds the state and handles keys; one file per panel draws it ([`overview`],
//! [`maxrisk`], [`triggers`], [`log`], [`status`], [`detail`], [`help`]); [`theme`] and
//! [`keymap`] come from files. This module owns the terminal: it enters the alternate screen
//! and raw mode, always restores them (quit, Ctrl-C, SIGTERM, SIGHUP, panic), and runs the
//! event loop, which draws only when input or data changed.

pub mod app;
pub mod checks;
pub mod demo;
pub mod detail;
pub mod draw;
pub mod help;
pub mod keymap;
pub mod log;
pub mod maxrisk;
pub mod overview;
pub mod replay;
pub mod rewind;
pub mod selfstat;
pub mod status;
pub mod theme;
pub mod triggers;

#[cfg(test)]
mod tests;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, watch};

use crate::config::Config;
use crate::event::Event;
use crate::model::HostName;
use crate::snapshot::Snapshot;
use crate::triggers::Command;
use app::{App, Effect};
use keymap::Keymap;
use theme::Theme;

/// What the dashboard reads and writes: the engine's channels.
pub struct Feeds {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub events: broadcast::Receiver<Event>,
    pub commands: mpsc::Sender<Command>,
    pub reconnect: broadcast::Sender<HostName>,
    /// Where the reload key goes (`None`: this dashboard cannot reload, e.g. attached).
    pub reloader: Option<Arc<tokio::sync::Mutex<crate::reload::Reloader>>>,
    /// For a dashboard fed by a server (`lookout attach`): what to say about the link, None
    /// while it is well.
    pub link: Option<watch::Receiver<Option<String>>>,
    /// For a dashboard fed by a server: where it says which host's detail view is open (the
    /// server sends only that host's processes).
    pub detail: Option<watch::Sender<Option<HostName>>>,
}

impl Feeds {
    pub fn from_running(r: &crate::runtime::Running) -> Self {
        Feeds {
            snapshots: r.snapshots.clone(),
            events: r.subscribe(),
            commands: r.commands.clone(),
            reconnect: r.reconnect.clone(),
            reloader: Some(r.reloader()),
            link: None,
            detail: None,
        }
    }
}

/// Theme and bindings as the config and command line ask, or the error to print.
pub fn prepare(config: &Config, theme: Option<&str>) -> anyhow::Result<(Theme, Keymap)> {
    let keymap = Keymap::from_config(config)?;
    let name = theme.unwrap_or(&config.general.theme);
    let theme = Theme::load(name, Theme::no_color_env()).map_err(anyhow::Error::msg)?;
    Ok((theme, keymap))
}

/// `lookout`: starts the engine and collectors and runs the dashboard until the user quits.
pub async fn run(config: Arc<Config>, theme: Option<&str>) -> anyhow::Result<()> {
    let (theme, keymap) = prepare(&config, theme)?;
    check_terminal()?;
    log::init();
    ::log::info!(
        target: "lookout",
        "watching {} hosts with {} triggers{}",
        config.hosts.len(),
        config.triggers.len(),
        config.path.as_ref().map(|p| format!(" ({})", p.display())).unwrap_or_default()
    );
    let running = crate::runtime::start(config.clone());
    running.watch_config();
    let recorder = crate::record::start(&config, &running);
    let feeds = Feeds::from_running(&running);
    let result = run_with(&config, theme, keymap, feeds).await;
    if let Some(r) = recorder {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    result
}

/// The reload key: re-reads the config, checks what only the dashboard checks (key
/// bindings, theme) as well, and applies it or refuses it whole; the outcome arrives as an
/// event. Bindings and theme themselves change at the next start.
async fn reload(reloader: Arc<tokio::sync::Mutex<crate::reload::Reloader>>) {
    let mut r = reloader.lock().await;
    match r.load() {
        Ok(new) => match prepare(&new, None) {
            Ok(_) => {
                r.apply(new).await;
            }
            Err(e) => {
                r.refuse(e.to_string().lines().map(String::from).collect());
            }
        },
        Err(errors) => {
            r.refuse(errors);
        }
    }
}

/// `lookout attach`: the dashboard over the state of a `lookout serve`.
pub async fn attach(
    config: Arc<Config>,
    theme: Option<&str>,
    target: crate::serve::Target,
) -> anyhow::Result<()> {
    let (theme, keymap) = prepare(&config, theme)?;
    check_terminal()?;
    log::init();
    ::log::info!(target: "lookout", "attaching to {}", target.describe());
    let feeds = crate::serve::client::attach_feeds(&config, target);
    run_with(&config, theme, keymap, feeds).await
}

fn check_terminal() -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "the dashboard needs a terminal; use `lookout snapshot` or `lookout run --headless` without one"
        );
    }
    Ok(())
}

/// Leaves the alternate screen and raw mode. Safe to call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = crossterm::execute!(
        out,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = out.flush();
}

/// Restores the terminal when dropped, whatever way the dashboard ends.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        // A panic of the dashboard must not leave the user's terminal in raw mode. Panics on
        // other threads (a collector task) become host errors and leave the screen alone.
        let ui_thread = std::thread::current().id();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == ui_thread {
                restore_terminal();
            }
            previous(info);
        }));
        enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        let guard = TerminalGuard;
        crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)
            .context("cannot enter the alternate screen")?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// Runs the dashboard on the real terminal over the given feeds.
pub async fn run_with(config: &Config, theme: Theme, keymap: Keymap, mut feeds: Feeds) -> anyhow::Result<()> {
    check_terminal()?;
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut hup_sig = signal(SignalKind::hangup())?;
    let mut int_sig = signal(SignalKind::interrupt())?;
    let _guard = TerminalGuard::enter()?;
    let out = std::io::BufWriter::with_capacity(16 * 1024, std::io::stdout());
    let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
    terminal.clear()?;

    let first = feeds.snapshots.borrow_and_update().clone();
    let mut app = App::new(config, theme, keymap, first, SystemTime::now());
    app.link = feeds.link.as_mut().and_then(|l| l.borrow_and_update().clone());
    let mut stat = selfstat::SelfStat::default();
    if let Some(u) = stat.sample() {
        app.usage = u;
    }
    let mut input = EventStream::new();
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flash = tokio::time::interval(Duration::from_millis(500));
    flash.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_flashing = false;
    let mut dirty = true;
    // The once-a-second redraw (for the clock, ages and lookout's own usage) waits a second
    // (and a little) from the last draw, whatever caused it: an idle dashboard at a 1 s interval draws
    // once a second (for each new snapshot), not twice. Own usage is read at most once a
    // second, so its percentage keeps a whole second of clock ticks.
    let mut stat_at = tokio::time::Instant::now();
    let mut events_open = true;
    let mut snapshots_open = true;

    loop {
        if dirty {
            app.now = rewind::frame_now(&app, SystemTime::now());
            if stat_at.elapsed() >= Duration::from_millis(990) {
                stat_at = tokio::time::Instant::now();
                if let Some(u) = stat.sample() {
                    app.usage = u;
                }
            }
            terminal.draw(|f| draw::draw(f, &mut app))?;
            dirty = false;
            // a little over a second: at a 1 s interval the next snapshot comes first
            second.reset_after(Duration::from_millis(1100));
        }
        let flashing = app.flashing();
        if flashing && !was_flashing {
            flash.reset();
            app.flash_on = true;
        }
        was_flashing = flashing;
        tokio::select! {
            ev = input.next() => match ev {
                Some(Ok(ev)) => dirty |= app.on_event(&ev),
                Some(Err(e)) => anyhow::bail!("reading the terminal: {e}"),
                None => break,
            },
            changed = feeds.snapshots.changed(), if snapshots_open => {
                if changed.is_ok() {
                    let snap = feeds.snapshots.borrow_and_update().clone();
                    app.set_snapshot(snap);
                    dirty = true;
                } else {
                    snapshots_open = false;
                }
            }
            ev = feeds.events.recv(), if events_open => match ev {
                Ok(e) => {
                    if let crate::event::EventKind::Reload { .. } = &e.kind {
                        // The outcome on the status line too: refused reloads must be seen.
                        app.message = Some(e.summary());
                        dirty = true;
                    }
                    log::record_event(&e)
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    ::log::warn!(target: "lookout", "the log missed {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => events_open = false,
            },
            () = log::notify().notified() => {
                // Keep tui-logger's small hot buffer drained even while the panel is hidden.
                tui_logger::move_events();
                dirty |= app.show_log;
            }
            _ = flash.tick(), if flashing => {
                app.toggle_flash();
                dirty = true;
            }
            _ = second.tick() => dirty = true,
            () = link_changed(&mut feeds.link) => {
                app.link = feeds.link.as_mut().and_then(|l| l.borrow_and_update().clone());
                dirty = true;
            }
            _ = term_sig.recv() => break,
            _ = hup_sig.recv() => break,
            _ = int_sig.recv() => break,
        }
        let mut quit = false;
        for effect in app.take_effects() {
            match effect {
                Effect::Quit => quit = true,
                Effect::Command(c) => {
                    if feeds.commands.try_send(c).is_err() {
                        app.message = Some("the engine is busy; try again".into());
                    }
                }
                Effect::Reconnect(h) => {
                    let _ = feeds.reconnect.send(h);
                }
                Effect::Seek(t) => {
                    rewind::seek(&mut app, t);
                    dirty = true;
                }
                Effect::Reload => match &feeds.reloader {
                    Some(r) => {
                        tokio::spawn(reload(r.clone()));
                    }
                    None => app.message = Some("this dashboard cannot reload the config".into()),
                },
                Effect::Bell => {
                    let w = terminal.backend_mut();
                    let _ = w.write_all(b"\x07");
                    let _ = Write::flush(w);
                }
            }
        }
        if quit {
            break;
        }
        if let Some(d) = &feeds.detail {
            d.send_if_modified(|open| {
                let changed = *open != app.detail;
                if changed {
                    open.clone_from(&app.detail);
                }
                changed
            });
        }
    }
    terminal.show_cursor()?;
    Ok(())
}

/// Resolves when the link note changes; never when there is no link (or it closed).
async fn link_changed(link: &mut Option<watch::Receiver<Option<String>>>) {
    let open = match link {
        Some(l) => l.changed().await.is_ok(),
        None => false,
    };
    if !open {
        *link = None;
        std::future::pending::<()>().await;
    }
}
