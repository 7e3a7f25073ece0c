//! `lookout test FILE...`: rule tests, as `promtool test rules` does for Prometheus.
//!
//! A test file gives series of samples per host over time and the trigger states and
//! notifications expected at given times. It runs on the real engine and trigger state
//! machine with a [`FakeClock`], so `for`, `clear`, `cooldown` and `repeat` behave exactly
//! as in production, in no real time. The format is in the README ("Rule tests").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::FakeClock;
use crate::config::Config;
use crate::engine::Engine;
use crate::event::EventKind;
use crate::model::{HostStatus, Metric, Reading, Sample, Source, Update};
use crate::triggers::{Command, TriggerState};

/// One test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    /// A lookout config (relative to the test file) whose hosts and triggers are tested;
    /// without one, the built-in default rules over the hosts the series name.
    config: Option<String>,
    /// Time between two values of a series (default: the config's `[general] interval`).
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    ack: Vec<Ack>,
    #[serde(default)]
    silence: Vec<Silence>,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Series {
    host: String,
    metric: String,
    #[serde(default)]
    instance: String,
    /// `"50 50 95x3 _ 40"`: one value per interval; `VxN` is V N times, `_` no sample.
    /// For `host.up`, 1 and 0 set the host's status (up / unreachable).
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    #[serde(with = "humantime_serde")]
    at: Duration,
    trigger: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    instance: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Silence {
    #[serde(with = "humantime_serde")]
    at: Duration,
    trigger: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    instance: String,
    #[serde(rename = "for", with = "humantime_serde")]
    duration: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    #[serde(with = "humantime_serde")]
    at: Duration,
    /// With `state`: the line of this trigger...
    trigger: Option<String>,
    /// ...on this host (omitted: whichever host the line is on, for max-risk rules)...
    host: Option<String>,
    #[serde(default)]
    instance: String,
    /// ...is in this state (`ok` when it is not listed at all).
    state: Option<String>,
    /// The notifications (the actions that run) since the previous `actions` check, as
    /// `"trigger @host instance: state"`, in order.
    actions: Option<Vec<String>>,
}

/// What running one file found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub checked: usize,
    /// One line per failed expectation (or the reason the file could not run).
    pub failures: Vec<String>,
}

/// `lookout test`: runs every file, prints each failure; 0 when all pass, else 1.
pub fn main(files: &[PathBuf], out: &mut impl std::io::Write) -> std::io::Result<u8> {
    let mut failed = false;
    for f in files {
        let shown = f.display();
        match run_file(f) {
            Ok(o) if o.failures.is_empty() => writeln!(out, "{shown}: ok ({} expectations)", o.checked)?,
            Ok(o) => {
                failed = true;
                for line in &o.failures {
                    writeln!(out, "{shown}: {line}")?;
                }
                writeln!(
                    out,
                    "{shown}: FAILED ({} of {} expectations)",
                    o.failures.len(),
                    o.checked
                )?;
            }
            Err(e) => {
                failed = true;
                writeln!(out, "{shown}: error: {e}")?;
            }
        }
    }
    Ok(u8::from(failed))
}

/// Runs one test file. `Err` when it cannot run (unreadable, invalid, a bad config).
pub fn run_file(path: &Path) -> Result<Outcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the test file: {e}"))?;
    let test: TestFile = toml::from_str(&text).map_err(|e| e.to_string().trim_end().to_string())?;
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut config = match &test.config {
        Some(c) => crate::config::load(Some(&dir.join(c))).map_err(|e| e.to_string())?,
        None => {
            let mut hosts: Vec<&str> = test.series.iter().map(|s| s.host.as_str()).collect();
            hosts.dedup();
            let names: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
            let text = format!("[[hosts]]\nnames = [{}]\n", names.join(", "));
            crate::config::parse(&text, "test hosts", None).map_err(|e| e.to_string())?
        }
    };
    if let Some(i) = test.interval {
        config.general.interval = i;
    }
    run(&test, Arc::new(config))
}

/// A series ready to run: host, metric, instance, values.
type SeriesValues = (Arc<str>, Metric, Arc<str>, Vec<Value>);

/// One parsed series value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    At(f64),
    Missing,
}

/// `"1 2x3 _"` -> 1, 2, 2, 2, missing.
fn expand(values: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for item in values.split_whitespace() {
        let (v, n) = match item.split_once('x') {
            Some((v, n)) => (
                v,
                n.parse::<usize>()
                    .map_err(|_| format!("`{item}`: the count after `x` must be a whole number"))?,
            ),
            None => (item, 1),
        };
        let v = if v == "_" {
            Value::Missing
        } else {
            Value::At(
                v.parse::<f64>()
                    .map_err(|_| format!("`{item}`: expected a number, `_`, or `VALUExCOUNT`"))?,
            )
        };
        out.extend(std::iter::repeat_n(v, n));
    }
    Ok(out)
}

fn line_label(trigger: &str, host: &str, instance: &str) -> String {
    let mut s = trigger.to_string();
    if !host.is_empty() {
        s.push_str(&format!(" @{host}"));
    }
    if !instance.is_empty() {
        s.push_str(&format!(" {instance}"));
    }
    s
}

fn run(test: &TestFile, config: Arc<Config>) -> Result<Outcome, String> {
    let interval = config.general.interval;
    let rules: Vec<&str> = config.triggers.iter().map(|r| r.name.as_str()).collect();
    let known_trigger = |name: &str| -> Result<(), String> {
        if rules.contains(&name) {
            return Ok(());
        }
        let hint = crate::suggest::nearest(name, rules.iter().copied())
            .map(|n| format!(" — did you mean `{n}`?"))
            .unwrap_or_default();
        Err(format!("no trigger is named `{name}`{hint}"))
    };
    let mut series: Vec<SeriesValues> = Vec::new();
    for s in &test.series {
        if !config.hosts.iter().any(|h| *h.name == *s.host) {
            return Err(format!(
                "series host `{}` is not one of the config's hosts",
                s.host
            ));
        }
        let metric: Metric = s
            .metric
            .parse()
            .map_err(|e| format!("series on `{}`: {e}", s.host))?;
        let values = expand(&s.values).map_err(|e| format!("series {} {}: {e}", s.host, s.metric))?;
        series.push((
            Arc::from(s.host.as_str()),
            metric,
            Arc::from(s.instance.as_str()),
            values,
        ));
    }
    for name in test
        .ack
        .iter()
        .map(|a| &a.trigger)
        .chain(test.silence.iter().map(|s| &s.trigger))
        .chain(test.expect.iter().filter_map(|e| e.trigger.as_ref()))
    {
        known_trigger(name)?;
    }
    for e in &test.expect {
        if e.state.is_some() != e.trigger.is_some() {
            return Err(format!(
                "expectation at {}: `state` and `trigger` go together",
                humantime::format_duration(e.at)
            ));
        }
        if let Some(s) = &e.state
            && !STATES.iter().any(|(n, _)| n == s)
        {
            return Err(format!(
                "expectation at {}: unknown state `{s}` (one of {})",
                humantime::format_duration(e.at),
                STATES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ));
        }
    }

    // Every moment something happens: each interval step with values, each command and
    // each expectation, in order.
    let steps = series.iter().map(|s| s.3.len()).max().unwrap_or(0);
    let mut moments: Vec<Duration> = (0..steps).map(|i| interval * i as u32).collect();
    moments.extend(test.ack.iter().map(|a| a.at));
    moments.extend(test.silence.iter().map(|s| s.at));
    moments.extend(test.expect.iter().map(|e| e.at));
    moments.sort();
    moments.dedup();

    let clock = Arc::new(FakeClock::at_epoch());
    let start = crate::clock::Clock::now(&*clock);
    let mut engine = Engine::new(config.clone(), clock.clone());
    // Hosts answer from the start unless a host.up series says otherwise.
    for h in &config.hosts {
        engine.apply(Update::Status {
            host: h.name.clone(),
            status: HostStatus::Up,
            error: None,
        });
    }
    let mut outcome = Outcome::default();
    let mut notified: Vec<String> = Vec::new();
    let mut elapsed = Duration::ZERO;
    for t in moments {
        clock.advance(t - elapsed);
        elapsed = t;
        let on_step = t.as_nanos() % interval.as_nanos().max(1) == 0;
        let step = (t.as_nanos() / interval.as_nanos().max(1)) as usize;
        if on_step && step < steps {
            let mut per_host: BTreeMap<Arc<str>, Vec<Reading>> = BTreeMap::new();
            for (host, metric, instance, values) in &series {
                let Some(Value::At(v)) = values.get(step) else {
                    continue;
                };
                if *metric == Metric::HostUp {
                    let status = if *v >= 1.0 {
                        HostStatus::Up
                    } else {
                        HostStatus::Unreachable
                    };
                    engine.apply(Update::Status {
                        host: host.clone(),
                        status,
                        error: None,
                    });
                    continue;
                }
                per_host
                    .entry(host.clone())
                    .or_default()
                    .push(Reading::new(*metric, instance.clone(), *v));
            }
            for (host, readings) in per_host {
                engine.apply(Update::Sample(Sample {
                    host,
                    source: Source::System,
                    readings,
                    processes: Vec::new(),
                }));
            }
        }
        for a in test.ack.iter().filter(|a| a.at == t) {
            engine.command(&Command::Acknowledge {
                trigger: a.trigger.clone(),
                host: a.host.clone(),
                instance: a.instance.clone(),
            });
        }
        for s in test.silence.iter().filter(|s| s.at == t) {
            engine.command(&Command::Silence {
                trigger: s.trigger.clone(),
                host: s.host.clone(),
                instance: s.instance.clone(),
                until: start + t + s.duration,
            });
        }
        engine.tick();
        for e in engine.drain_events() {
            if let EventKind::Trigger(ev) = e.kind
                && ev.notify
            {
                notified.push(format!(
                    "{}: {}",
                    line_label(&ev.trigger, &ev.host, &ev.instance),
                    ev.state
                ));
            }
        }
        let snap = engine.snapshot();
        let at = humantime::format_duration(t);
        for e in test.expect.iter().filter(|e| e.at == t) {
            if let (Some(trigger), Some(want)) = (&e.trigger, &e.state) {
                outcome.checked += 1;
                let line = snap.triggers.iter().find(|l| {
                    l.name == *trigger
                        && l.instance == e.instance
                        && e.host.as_ref().is_none_or(|h| *h == l.host)
                });
                let got = line.map_or(TriggerState::Ok, |l| l.state);
                if got.as_str() != want {
                    let label = line_label(trigger, e.host.as_deref().unwrap_or(""), &e.instance);
                    let value = line
                        .and_then(|l| l.value)
                        .map(|v| format!(" (value {})", crate::triggers::state::format_value(v)))
                        .unwrap_or_default();
                    outcome
                        .failures
                        .push(format!("at {at}: {label}: expected {want}, got {got}{value}"));
                }
            }
            if let Some(want) = &e.actions {
                outcome.checked += 1;
                let got = std::mem::take(&mut notified);
                if *want != got {
                    outcome.failures.push(format!(
                        "at {at}: expected actions [{}], got [{}]",
                        quoted(want),
                        quoted(&got)
                    ));
                }
            }
        }
    }
    Ok(outcome)
}

const STATES: &[(&str, TriggerState)] = &[
    ("ok", TriggerState::Ok),
    ("pending", TriggerState::Pending),
    ("firing", TriggerState::Firing),
    ("resolved", TriggerState::Resolved),
    ("acknowledged", TriggerState::Acknowledged),
    ("silenced", TriggerState::Silenced),
];

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expand() {
        assert_eq!(
            expand("1 2x3 _ 4.5").expect("valid"),
            [
                Value::At(1.0),
                Value::At(2.0),
                Value::At(2.0),
                Value::At(2.0),
                Value::Missing,
                Value::At(4.5)
            ]
        );
        assert!(expand("1 ax2").is_err());
        assert!(expand("1x").is_err());
    }
}
