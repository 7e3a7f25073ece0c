//! Trigger scenarios: each file in tests/scenarios/ is a config, then steps of scripted
//! updates at fake-clock times, each with the exact trigger events it must produce (in
//! order, as `TriggerEvent::brief`) and optionally the trigger lines the snapshot lists.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lookout::clock::FakeClock;
use lookout::config;
use lookout::engine::Engine;
use lookout::event::EventKind;
use lookout::model::{HostStatus, Reading, Sample, Source, Update};
use lookout::triggers::Command;
use lookout::triggers::state::format_value;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    config: String,
    #[serde(rename = "step")]
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// Time since the start of the scenario.
    #[serde(with = "humantime_serde")]
    at: Duration,
    /// host -> { "metric [instance]" = value }
    #[serde(default)]
    samples: BTreeMap<String, BTreeMap<String, f64>>,
    /// host -> status
    #[serde(default)]
    status: BTreeMap<String, String>,
    /// [trigger, host, instance]
    ack: Option<[String; 3]>,
    /// [trigger, host, instance, duration] ("0s" lifts a silence)
    silence: Option<[String; 4]>,
    #[serde(default)]
    expect: Vec<String>,
    /// `name @host instance: state value` for every listed line, in panel order.
    views: Option<Vec<String>>,
}

fn status(s: &str) -> HostStatus {
    match s {
        "up" => HostStatus::Up,
        "connecting" => HostStatus::Connecting,
        "unreachable" => HostStatus::Unreachable,
        "timeout" => HostStatus::Timeout,
        "error" => HostStatus::Error,
        other => panic!("unknown status {other}"),
    }
}

fn run(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let sc: Scenario = toml::from_str(&text).map_err(|e| format!("bad scenario: {e}"))?;
    let cfg = config::parse(&sc.config, "scenario", None).map_err(|e| e.to_string())?;
    let clock = Arc::new(FakeClock::at_epoch());
    let start = lookout::clock::Clock::now(&*clock);
    let mut engine = Engine::new(Arc::new(cfg), clock.clone());
    let mut elapsed = Duration::ZERO;
    for (i, step) in sc.steps.iter().enumerate() {
        let here = format!("step {} (at {})", i + 1, humantime::format_duration(step.at));
        if step.at < elapsed {
            return Err(format!("{here}: steps must not go back in time"));
        }
        clock.advance(step.at - elapsed);
        elapsed = step.at;
        for (host, s) in &step.status {
            engine.apply(Update::Status {
                host: Arc::from(host.as_str()),
                status: status(s),
                error: None,
            });
        }
        for (host, values) in &step.samples {
            let readings = values
                .iter()
                .map(|(k, v)| {
                    let (metric, instance) = k.split_once(' ').unwrap_or((k, ""));
                    Reading::new(metric.parse().expect("metric"), instance, *v)
                })
                .collect();
            engine.apply(Update::Sample(Sample {
                host: Arc::from(host.as_str()),
                source: Source::System,
                readings,
                processes: Vec::new(),
            }));
        }
        let now = engine.now();
        if let Some([t, h, i]) = &step.ack {
            engine.command(&Command::Acknowledge {
                trigger: t.clone(),
                host: h.clone(),
                instance: i.clone(),
            });
        }
        if let Some([t, h, i, d]) = &step.silence {
            engine.command(&Command::Silence {
                trigger: t.clone(),
                host: h.clone(),
                instance: i.clone(),
                until: now + humantime::parse_duration(d).expect("duration"),
            });
        }
        engine.tick();
        let got: Vec<String> = engine
            .drain_events()
            .into_iter()
            .filter_map(|e| match e.kind {
                EventKind::Trigger(t) => Some(t.brief()),
                _ => None,
            })
            .collect();
        if got != step.expect {
            return Err(format!(
                "{here}: events differ\n  expected: {:#?}\n  got:      {:#?}",
                step.expect, got
            ));
        }
        let snap = engine.snapshot();
        assert_eq!(snap.taken_at, start + elapsed);
        if let Some(want) = &step.views {
            let got: Vec<String> = snap
                .triggers
                .iter()
                .map(|v| {
                    let inst = if v.instance.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", v.instance)
                    };
                    let value = v.value.map_or("-".to_string(), format_value);
                    format!("{} @{}{inst}: {} {value}", v.name, v.host, v.state)
                })
                .collect();
            if &got != want {
                return Err(format!(
                    "{here}: views differ\n  expected: {want:#?}\n  got:      {got:#?}"
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| run(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
