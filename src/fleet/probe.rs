//! `lookout-fleet probe`: runs lookout's runtime (the same collectors and engine as the
//! dashboard and `lookout run --headless`) against a config and prints, once per period, how
//! many hosts are up and how many have fresh data, read from the snapshots the engine
//! publishes. Measuring its CPU and memory from outside (/proc/PID) measures lookout's
//! collection and engine at that scale.
//!
//! A host is *fresh* when it is `up` and its last sample arrived less than two intervals ago
//! (by the snapshot's `last_update`, stamped by the engine when the sample was applied).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::model::HostStatus;
use crate::snapshot::Snapshot;

/// One line of the probe's output.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Count {
    pub hosts: usize,
    pub up: usize,
    pub fresh: usize,
    pub unreachable: usize,
    pub timeout: usize,
    pub other: usize,
}

/// Counts the hosts of a snapshot at `now`.
pub fn count(snap: &Snapshot, now: SystemTime) -> Count {
    let mut c = Count {
        hosts: snap.hosts.len(),
        up: 0,
        fresh: 0,
        unreachable: 0,
        timeout: 0,
        other: 0,
    };
    let window = snap.interval * 2;
    for h in &snap.hosts {
        match h.status {
            HostStatus::Up => {
                c.up += 1;
                if h.last_update
                    .is_some_and(|t| now.duration_since(t).unwrap_or_default() < window)
                {
                    c.fresh += 1;
                }
            }
            HostStatus::Unreachable => c.unreachable += 1,
            HostStatus::Timeout => c.timeout += 1,
            _ => c.other += 1,
        }
    }
    c
}

/// Runs for `duration`, writing one line every `every`:
/// `t=SECONDS hosts=N up=N fresh=N unreachable=N timeout=N other=N`, and a line
/// `all_up t=SECONDS` the first time `expect_up` hosts are up.
pub async fn run(
    config: Arc<Config>,
    duration: Duration,
    every: Duration,
    expect_up: usize,
    mut out: impl Write,
) -> std::io::Result<()> {
    let started = Instant::now();
    let running = crate::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let mut all_up = false;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = tokio::time::Instant::now() + duration;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let snap = rx.borrow().clone();
                let c = count(&snap, SystemTime::now());
                writeln!(
                    out,
                    "t={:.1} hosts={} up={} fresh={} unreachable={} timeout={} other={}",
                    started.elapsed().as_secs_f64(), c.hosts, c.up, c.fresh, c.unreachable, c.timeout, c.other
                )?;
                out.flush()?;
            }
            r = rx.changed(), if !all_up => {
                if r.is_err() {
                    break;
                }
                let up = rx.borrow_and_update().count_status(HostStatus::Up);
                if up >= expect_up {
                    all_up = true;
                    writeln!(out, "all_up t={:.2}", started.elapsed().as_secs_f64())?;
                    out.flush()?;
                }
            }
            () = tokio::time::sleep_until(end) => break,
        }
    }
    running.engine.abort();
    Ok(())
}
