//! `[[check]]`: any command's answer as a metric. A check runs one shell command on every
//! selected host (locally with `sh -c`, remotely over the host's existing SSH session),
//! parses its output (a number, Nagios plugin output, Prometheus text) and sends a
//! [`CheckReport`] — values as `check.<name>`, the status as `check.<name>.status`, the
//! first line of output as its message. Like every collector it only measures and sends.
//!
//! - [`config`]: the tables as written and their validation;
//! - [`parse`]: output parsers and the verdict on one run;
//! - [`run`]: running one command locally, bounded in time and output;
//! - [`batch`]: running the checks due on a remote host together on one channel;
//! - [`recipes`]: built-in checks (`use = "systemd"`, ...).

pub mod batch;
pub mod config;
pub mod parse;
pub mod recipes;
pub mod run;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::collectors::ssh::connect::Session;
use crate::model::{CheckReport, HostName, Metric, NewMetric, Reading, Risk, Unit, Update};

/// How a check's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The first number on stdout.
    Number,
    /// Nagios plugin output: the exit code is the status, perfdata the values.
    Nagios,
    /// Prometheus exposition text: one value per series.
    Prometheus,
}

impl Format {
    pub const NAMES: &[&str] = &["number", "nagios", "prometheus"];

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "number" => Some(Format::Number),
            "nagios" => Some(Format::Nagios),
            "prometheus" => Some(Format::Prometheus),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Number => "number",
            Format::Nagios => "nagios",
            Format::Prometheus => "prometheus",
        }
    }
}

/// One validated `[[check]]`.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: Arc<str>,
    /// The hosts that run it, in config order.
    pub hosts: Vec<HostName>,
    pub command: Arc<str>,
    pub format: Format,
    pub interval: Duration,
    pub timeout: Duration,
    pub risk: Risk,
    pub unit: Option<String>,
    /// The recipe it came from (`use = "..."`).
    pub recipe: Option<&'static str>,
    /// `check.<name>` and `check.<name>.status` in the metric registry.
    pub metric: Metric,
    pub status_metric: Metric,
}

/// Registers `check.<name>` and `check.<name>.status`. Called while the config is
/// validated, so that triggers on them resolve like any metric.
pub fn register(
    name: &str,
    format: Format,
    risk: Risk,
    unit: Option<&str>,
) -> Result<(Metric, Metric), String> {
    // One leaked string per distinct unit: the registry keeps `&'static` entries.
    let unit = Unit::Custom(match unit {
        None | Some("") => "",
        Some(u) => Box::leak(u.to_string().into_boxed_str()),
    });
    let instance = match format {
        Format::Number => "",
        Format::Nagios => "perfdata label",
        Format::Prometheus => "series",
    };
    let metric = Metric::register(NewMetric {
        name: format!("check.{name}"),
        unit,
        instance,
        risk,
        description: format!("the values of check `{name}`"),
    })?;
    let status_metric = Metric::register(NewMetric {
        name: format!("check.{name}.status"),
        unit: Unit::Custom(""),
        instance: "",
        risk: Risk::Higher,
        description: format!("check `{name}`: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"),
    })?;
    Ok((metric, status_metric))
}

/// Where a host's checks run.
#[derive(Clone, Copy)]
pub enum Runner<'a> {
    Local,
    Remote(&'a Session),
}

/// Settings every check run shares.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of stdout accepted from one run.
    pub max_output: usize,
    /// Most batches of checks of one host running at once: each is one channel on a remote
    /// host (sshd's MaxSessions is 10 by default, and the sample stream holds one).
    pub per_host: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_output: 1 << 20,
            per_host: 4,
        }
    }
}

/// The checks one host runs.
pub fn for_host(checks: &[Arc<Check>], host: &str) -> Vec<Arc<Check>> {
    checks
        .iter()
        .filter(|c| c.hosts.iter().any(|h| &**h == host))
        .cloned()
        .collect()
}

/// Runs one check once and judges it.
pub async fn run_once(check: &Check, runner: Runner<'_>, limits: Limits) -> CheckReport {
    let mut reports = Vec::with_capacity(1);
    run_due(&[check], runner, limits, |_, r| reports.push(r)).await;
    reports.pop().expect("one report per check")
}

/// Runs `due` once each: locally each as its own process, remotely all on one channel
/// ([`batch`]). `done` gets each check's report (with its index in `due`) as soon as it
/// ends; every check gets exactly one.
async fn run_due(
    due: &[&Check],
    runner: Runner<'_>,
    limits: Limits,
    mut done: impl FnMut(usize, CheckReport),
) {
    let started = Instant::now();
    match runner {
        Runner::Local => {
            let mut runs: futures::stream::FuturesUnordered<_> = due
                .iter()
                .enumerate()
                .map(|(i, check)| async move {
                    let outcome = run::local(&check.command, check.timeout, limits.max_output).await;
                    (i, outcome, started.elapsed())
                })
                .collect();
            while let Some((i, outcome, took)) = futures::StreamExt::next(&mut runs).await {
                done(i, report(due[i], parse::judge(due[i].format, &outcome), took));
            }
        }
        Runner::Remote(session) => {
            let runs: Vec<batch::Run> = due
                .iter()
                .map(|c| batch::Run {
                    command: c.command.to_string(),
                    timeout: c.timeout,
                })
                .collect();
            batch::remote(session, &runs, limits.max_output, |i, outcome| {
                let verdict = parse::judge(due[i].format, &outcome);
                done(i, report(due[i], verdict, started.elapsed()));
            })
            .await;
        }
    }
}

/// The report of one judged run: the values as `check.<name>`, the status as
/// `check.<name>.status`.
pub fn report(check: &Check, verdict: parse::Verdict, duration: Duration) -> CheckReport {
    let mut readings = Vec::with_capacity(verdict.values.len() + 1);
    readings.push(Reading::host(check.status_metric, f64::from(verdict.status)));
    readings.extend(verdict.values.into_iter().map(|(instance, value)| {
        let instance: Arc<str> = if instance.is_empty() {
            crate::model::empty_instance()
        } else {
            Arc::from(instance)
        };
        Reading::new(check.metric, instance, value)
    }));
    CheckReport {
        name: check.name.clone(),
        status: verdict.status,
        message: Arc::from(verdict.message),
        duration_ms: duration.as_secs_f64() * 1000.0,
        readings,
    }
}

/// How early a check may start to join a batch of others due then: a 10 s check may run
/// up to a quarter second early rather than on a channel of its own.
fn batch_slack(interval: Duration) -> Duration {
    (interval / 10).min(Duration::from_millis(250))
}

/// Runs a host's checks every interval until the engine is gone (returns false) or, for a
/// remote host, forever (the caller drops this future when the session ends). Each check
/// keeps its own interval; the checks due at one moment run together ([`run_due`]: one
/// channel on a remote host), a check is not started again while its last run goes on,
/// and at most `limits.per_host` batches run at once.
pub async fn run_host(
    host: HostName,
    checks: Vec<Arc<Check>>,
    runner: Runner<'_>,
    limits: Limits,
    tx: mpsc::Sender<Update>,
) -> bool {
    if checks.is_empty() {
        return std::future::pending().await;
    }
    let start = tokio::time::Instant::now();
    let mut next = vec![start; checks.len()];
    let mut running = vec![false; checks.len()];
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(usize, CheckReport)>();
    let mut batches = futures::stream::FuturesUnordered::new();
    loop {
        let now = tokio::time::Instant::now();
        if batches.len() < limits.per_host.max(1) {
            let due: Vec<usize> = (0..checks.len())
                .filter(|&i| !running[i] && next[i] <= now + batch_slack(checks[i].interval))
                .collect();
            if !due.is_empty() {
                for &i in &due {
                    running[i] = true;
                }
                let (checks, done_tx) = (&checks, done_tx.clone());
                // Boxed: a batch's state (pipes, buffers, the channel) lives only while it
                // runs.
                batches.push(Box::pin(async move {
                    let these: Vec<&Check> = due.iter().map(|&i| &*checks[i]).collect();
                    run_due(&these, runner, limits, |k, report| {
                        let _ = done_tx.send((due[k], report));
                    })
                    .await;
                }));
            }
        }
        // The next moment a check falls due, if another batch may start then.
        let wake = (batches.len() < limits.per_host.max(1))
            .then(|| (0..checks.len()).filter(|&i| !running[i]).map(|i| next[i]).min())
            .flatten();
        tokio::select! {
            Some(first) = done_rx.recv() => {
                // The reports that came in together go to the engine as one update.
                let mut reports = Vec::new();
                let mut ended = Some(first);
                let now = tokio::time::Instant::now();
                while let Some((i, report)) = ended {
                    running[i] = false;
                    next[i] += checks[i].interval;
                    if next[i] < now {
                        next[i] = now;
                    }
                    reports.push(report);
                    ended = done_rx.try_recv().ok();
                }
                let update = Update::Checks { host: host.clone(), reports };
                if tx.send(update).await.is_err() {
                    return false;
                }
            }
            Some(()) = futures::StreamExt::next(&mut batches), if !batches.is_empty() => {}
            () = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
        }
    }
}

/// Starts the checks of one local host, if it has any; the handle stops them (a reload).
pub fn spawn_local_host(
    config: &crate::config::Config,
    host: &HostName,
    tx: &mpsc::Sender<Update>,
) -> Option<tokio::task::AbortHandle> {
    let limits = Limits {
        max_output: config.ssh.max_output.min(Limits::default().max_output),
        ..Limits::default()
    };
    let checks: Vec<Arc<Check>> = config.checks.iter().cloned().map(Arc::new).collect();
    let mine = for_host(&checks, host);
    if mine.is_empty() {
        return None;
    }
    let (name, tx) = (host.clone(), tx.clone());
    Some(tokio::spawn(async move { run_host(name, mine, Runner::Local, limits, tx).await }).abort_handle())
}

/// How the checks of `host` are configured, comparable across two configs: a reload
/// restarts a host whose checks changed.
pub fn fingerprint(config: &crate::config::Config, host: &str) -> String {
    let checks: Vec<&Check> = config
        .checks
        .iter()
        .filter(|c| c.hosts.iter().any(|h| &**h == host))
        .collect();
    format!("{checks:?}")
}

/// Gives each trigger event on a check's metric the check's current message on that host
/// (`{message}`, `LOOKOUT_MESSAGE`).
pub fn attach_messages(
    checks: &[Check],
    views: &[Arc<crate::snapshot::HostView>],
    events: &mut [crate::triggers::state::TriggerEvent],
) {
    if checks.is_empty() {
        return;
    }
    for e in events.iter_mut() {
        let Some(check) = checks
            .iter()
            .find(|c| c.metric == e.metric || c.status_metric == e.metric)
        else {
            continue;
        };
        e.message = views
            .iter()
            .find(|v| *v.name == *e.host)
            .and_then(|v| v.check(&check.name))
            .map(|r| r.message.to_string());
    }
}

/// `OK`, `WARNING`, `CRITICAL`, `UNKNOWN` (anything else).
pub fn status_name(status: u8) -> &'static str {
    match status {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// The longest timeout of any check (how long `lookout snapshot` may wait for one).
pub fn longest_timeout(checks: &[Check]) -> Duration {
    checks.iter().map(|c| c.timeout).max().unwrap_or_default()
}

/// Whether every check a host runs has reported at least once.
pub fn all_reported(checks: &[Check], host: &crate::snapshot::HostView) -> bool {
    checks
        .iter()
        .filter(|c| c.hosts.contains(&host.name))
        .all(|c| host.check(&c.name).is_some())
}

/// The checks part of `lookout check`: each check with its format, interval and hosts.
pub fn describe(checks: &[Check]) -> String {
    let mut out = format!("  {} checks:\n", checks.len());
    for c in checks {
        let what = match c.recipe {
            Some(r) => format!("use {r}"),
            None => c.format.as_str().to_string(),
        };
        let hosts: Vec<&str> = c.hosts.iter().map(|h| &**h).collect();
        out.push_str(&format!(
            "    {}: {what} every {}, timeout {}, on {}: {}\n",
            c.name,
            humantime::format_duration(c.interval),
            humantime::format_duration(c.timeout),
            if hosts.is_empty() {
                "no host".to_string()
            } else {
                format!("{} hosts", hosts.len())
            },
            hosts.join(", ")
        ));
    }
    if checks.is_empty() {
        out.clear();
    }
    out
}
