//! The one-shot subcommands: `check` and `snapshot`.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Via};
use crate::format;
use crate::model::{HostStatus, Metric};
use crate::snapshot::Snapshot;

/// `lookout check`: a summary of what the config watches, and its warnings.
pub fn check_report(config: &Config) -> String {
    let mut out = String::new();
    let source = config
        .path
        .as_ref()
        .map_or_else(|| "built-in default".to_string(), |p| p.display().to_string());
    out.push_str(&format!("{source}: ok\n"));
    out.push_str(&format!(
        "  interval {}, history {}\n",
        humantime::format_duration(config.general.interval),
        humantime::format_duration(config.general.history)
    ));
    out.push_str(&format!("  {} hosts:\n", config.hosts.len()));
    for h in &config.hosts {
        let via = match h.via {
            Via::Ssh => "ssh",
            Via::Local => "local",
            Via::Ping => "ping",
            Via::Prometheus => "prometheus",
        };
        let mut line = format!("    {} ({via}", h.name);
        if let Some(g) = &h.group {
            line.push_str(&format!(", group {g}"));
        }
        if h.ping && h.via != Via::Ping {
            line.push_str(", ping");
        }
        line.push(')');
        if !h.processes.is_empty() {
            let names: Vec<&str> = h.processes.iter().map(|p| &**p).collect();
            line.push_str(&format!(" processes: {}", names.join(", ")));
        }
        if !h.mounts.is_empty() {
            line.push_str(&format!(" disks: {}", h.mounts.join(", ")));
        }
        if !h.interfaces.is_empty() {
            line.push_str(&format!(" interfaces: {}", h.interfaces.join(", ")));
        }
        out.push_str(&line);
        out.push('\n');
    }
    let kind = if config.default_triggers {
        " (built-in defaults)"
    } else {
        ""
    };
    out.push_str(&format!("  {} triggers{kind}:\n", config.triggers.len()));
    for r in &config.triggers {
        let cond = match r.condition {
            crate::triggers::rule::Condition::Above(t) => format!("above {t}"),
            crate::triggers::rule::Condition::Below(t) => format!("below {t}"),
        };
        out.push_str(&format!(
            "    {}: {} {cond} for {} ({})\n",
            r.name,
            r.metric,
            humantime::format_duration(r.hold),
            r.severity.as_str()
        ));
    }
    out.push_str(&crate::collectors::checks::describe(&config.checks));
    for w in &config.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// Runs collectors until every host has `rounds` samples (or has given up connecting) and
/// returns the snapshot of that moment.
pub async fn collect_snapshot(config: Arc<Config>, rounds: u32) -> Arc<Snapshot> {
    let interval = config.general.interval;
    // Enough for a slow connect and the rounds, never forever.
    let deadline = Instant::now()
        + config.ssh.connect_timeout
        + config.ssh.poll_timeout
        + interval * (rounds + 1)
        + Duration::from_secs(1)
        // Every check runs at least once; one still running waits for its timeout at most.
        + crate::collectors::checks::longest_timeout(&config.checks);
    let checks = config.checks.clone();
    let running = crate::runtime::start(config);
    // A one-shot snapshot shows trigger states; it notifies nobody.
    running.actions.close();
    let mut rx = running.snapshots.clone();
    loop {
        let snap = rx.borrow_and_update().clone();
        let done = !snap.hosts.is_empty()
            && snap.hosts.iter().all(|h| {
                let answered =
                    h.rounds >= u64::from(rounds) && crate::collectors::checks::all_reported(&checks, h);
                answered || !matches!(h.status, HostStatus::Up | HostStatus::Connecting)
            });
        if done {
            return snap;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
            return rx.borrow().clone();
        }
    }
}

/// The human-readable form of `lookout snapshot`.
pub fn print_table(snap: &Snapshot, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:<10} {:<12} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9}",
        "HOST", "GROUP", "STATUS", "CPU%", "LOAD/C", "MEM%", "DISK%", "RX/S", "TX/S"
    )?;
    for h in &snap.hosts {
        let num = |m: Metric, f: &dyn Fn(f64) -> String| h.worst(m).map_or("-".to_string(), |r| f(r.value));
        let sum = |m: Metric| {
            let mut it = h.values(m).peekable();
            if it.peek().is_some() {
                format!("{}/s", format::bytes(it.map(|r| r.value).sum()))
            } else {
                "-".into()
            }
        };
        writeln!(
            out,
            "{:<20} {:<10} {:<12} {:>6} {:>6} {:>6} {:>6} {:>9} {:>9}",
            h.name,
            h.group.as_deref().unwrap_or("-"),
            h.status.as_str(),
            num(Metric::CpuUsage, &|v| format!("{v:.1}")),
            num(Metric::LoadPerCore, &|v| format!("{v:.2}")),
            num(Metric::MemUsedPct, &|v| format!("{v:.1}")),
            num(Metric::DiskUsedPct, &|v| format!("{v:.1}")),
            sum(Metric::NetRxBps),
            sum(Metric::NetTxBps),
        )?;
        if let Some(e) = &h.error {
            writeln!(out, "    error: {e}")?;
        }
        for c in h.checks.iter() {
            writeln!(
                out,
                "    check {}: {} {}",
                c.name,
                crate::collectors::checks::status_name(c.status),
                c.message
            )?;
        }
    }
    writeln!(out, "\nMAXIMAL RISK")?;
    for l in &snap.max_risk {
        writeln!(
            out,
            "  {:<20} {:>12}  {} {}",
            l.metric.name(),
            format::value(l.metric.info().unit, l.value),
            l.host,
            l.instance
        )?;
    }
    if !snap.triggers.is_empty() {
        writeln!(out, "\nTRIGGERS")?;
        for t in &snap.triggers {
            writeln!(
                out,
                "  {:<24} {:<12} {} {}",
                t.name,
                format!("{:?}", t.state).to_lowercase(),
                t.host,
                t.instance
            )?;
        }
    }
    Ok(())
}
