//! `lookout replay [DIR] [--at TIME] [--speed N]`: a recording played in the dashboard,
//! with no collectors and no network. A player task publishes the recorded snapshot of each
//! interval on the same `watch` the engine would, at N times real speed (0: paused at the
//! start); rewind keys work on the recording as in the live dashboard; the recorded events
//! of each step go to the log panel.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::{Feeds, check_terminal, log, prepare, run_with};
use crate::config::Config;
use crate::record::{Recording, timespec};

/// Runs the dashboard over a recording until the user quits.
pub async fn run(
    config: Arc<Config>,
    theme: Option<&str>,
    dir: &Path,
    at: Option<&str>,
    speed: f64,
) -> anyhow::Result<()> {
    if !speed.is_finite() || speed < 0.0 {
        anyhow::bail!("--speed must be 0 or more (got {speed})");
    }
    let rec = Recording::open(dir)?;
    for p in rec.take_problems() {
        eprintln!("lookout: recording: {p}");
    }
    let (start, end) = rec.span();
    // Relative times count back from the end of the recording.
    let t0 = match at {
        Some(a) => timespec::parse(a, end).map_err(anyhow::Error::msg)?,
        None => start,
    };
    rec.check_time(t0)?;
    let interval = rec.interval();
    let mut cfg = Config::clone(&config);
    cfg.record.dir = dir.to_path_buf();
    cfg.record.enabled = false;
    cfg.record.replay_speed = Some(speed);
    cfg.general.interval = interval;
    let (theme, keymap) = prepare(&cfg, theme)?;
    check_terminal()?;
    log::init();
    let sparks = move |t| super::rewind::overview_history(t, interval);
    let first = rec.snapshot_at(t0, Some(sparks(t0)))?;
    ::log::info!(
        target: "lookout",
        "replaying {} from {} at x{speed} (recorded {})",
        dir.display(),
        timespec::full(t0),
        timespec::span_text(start, end)
    );
    let (snap_tx, snap_rx) = watch::channel(Arc::new(first));
    let (events_tx, events_rx) = broadcast::channel(1024);
    let (commands, mut ignored) = mpsc::channel(64);
    let (reconnect, _) = broadcast::channel(4);
    // Acknowledging or silencing a recorded trigger changes nothing.
    tokio::spawn(async move { while ignored.recv().await.is_some() {} });
    let rec = Arc::new(rec);
    let player = tokio::spawn(async move {
        if speed == 0.0 {
            return;
        }
        let mut t = t0;
        let pause = Duration::from_secs_f64((interval.as_secs_f64() / speed).max(0.05));
        while t < end {
            tokio::time::sleep(pause).await;
            let prev = t;
            t = (t + interval).min(end);
            let r = rec.clone();
            let step = tokio::task::spawn_blocking(move || {
                let snap = r.snapshot_at(t, Some(sparks(t)));
                let events = r.events(prev + Duration::from_millis(1), t);
                (snap, events)
            })
            .await;
            let Ok((snap, events)) = step else { break };
            for (_, line) in events {
                ::log::info!(target: "lookout", "recorded: {}", crate::record::query::describe(&line));
            }
            match snap {
                Ok(s) => {
                    if snap_tx.send(Arc::new(s)).is_err() {
                        break;
                    }
                }
                // A gap in the recording: keep playing past it.
                Err(e) => ::log::debug!(target: "lookout", "replay: {e}"),
            }
        }
        ::log::info!(target: "lookout", "end of the recording ({})", timespec::full(end));
        let _ = events_tx;
    });
    let feeds = Feeds {
        snapshots: snap_rx,
        events: events_rx,
        commands,
        reconnect,
        link: None,
        reloader: None,
        detail: None,
    };
    let result = run_with(&cfg, theme, keymap, feeds).await;
    player.abort();
    result
}
