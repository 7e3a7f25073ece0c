//! `lookout run --headless`: the engine, collectors, triggers and actions with no screen.
//! Every event is written as one JSON line to stdout (flushed per line), from a `started`
//! line to a `stopped` line. It stops on SIGINT or SIGTERM, at `--duration`, or when stdout
//! closes; running actions are given their timeout before it exits. SIGHUP reloads the
//! config in place (src/reload.rs).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::event::{Event, EventKind};

/// Writes one event as a JSON line; an error means stdout is gone.
fn emit(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, e)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Runs until a signal, `duration` or a closed stdout. Events go to `out`.
pub async fn run(config: Arc<Config>, duration: Option<Duration>, mut out: impl Write) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let hosts = config.hosts.len();
    let triggers = config.triggers.len();
    let mut running = crate::runtime::start(config.clone());
    running.reload_on_sighup();
    running.watch_config();
    let mut events = running.subscribe_from_start();
    let recorder = crate::record::start(&config, &running);
    let mut rec_watch = tokio::time::interval(Duration::from_secs(1));
    let mut rec_failure: Option<String> = None;
    let started = Event::new(SystemTime::now(), EventKind::Started { hosts, triggers });
    if emit(&mut out, &started).is_err() {
        return Ok(());
    }
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let reason = loop {
        tokio::select! {
            _ = sigint.recv() => break "SIGINT".to_string(),
            _ = sigterm.recv() => break "SIGTERM".to_string(),
            () = &mut deadline => break "duration reached".to_string(),
            _ = rec_watch.tick(), if recorder.is_some() => {
                // stdout carries events only: a recording failure is told on stderr.
                let now = recorder.as_ref().and_then(|r| r.status.failure());
                if now != rec_failure {
                    match &now {
                        Some(e) => eprintln!("lookout: recording stopped: {e}"),
                        None => eprintln!("lookout: recording again"),
                    }
                    rec_failure = now;
                }
            }
            e = events.recv() => match e {
                Ok(e) => if emit(&mut out, &e).is_err() { return Ok(()) },
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    log::warn!("headless output fell behind: {n} events skipped");
                }
                Err(broadcast::error::RecvError::Closed) => break "engine stopped".to_string(),
            },
        }
    };
    // No new actions from here; running ones finish or hit their timeout. Their results
    // (and anything else the engine reports meanwhile) are still printed.
    let actions = running.actions.clone();
    let drained = actions.shutdown();
    tokio::pin!(drained);
    loop {
        tokio::select! {
            () = &mut drained => break,
            e = events.recv() => match e {
                Ok(e) => if emit(&mut out, &e).is_err() { return Ok(()) },
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            // A second signal stops waiting for actions (they are killed with the runtime).
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
    }
    while let Ok(e) = events.try_recv() {
        if emit(&mut out, &e).is_err() {
            return Ok(());
        }
    }
    if let Some(r) = recorder {
        let _ = tokio::task::spawn_blocking(move || r.stop()).await;
    }
    running.engine.abort();
    let _ = emit(
        &mut out,
        &Event::new(SystemTime::now(), EventKind::Stopped { reason }),
    );
    Ok(())
}
