//! Actions with real child processes: environment and stdin, a failing and a missing
//! program, a hang killed at the timeout while the engine keeps going, the concurrency cap,
//! and a hostile instance name that must never become code.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lookout::clock::{Clock, SystemClock};
use lookout::config;
use lookout::engine::{self, Engine, EngineChannels};
use lookout::event::{Event, EventKind};
use lookout::model::{HostStatus, Metric, Reading, Sample, Source, Update};
use lookout::snapshot::Snapshot;
use lookout::triggers::action::{ActionEvent, ActionResult, ActionRunner, ActionSettings};
use lookout::triggers::rule::Severity;
use lookout::triggers::state::{Reason, TriggerEvent, TriggerState};
use tokio::sync::{broadcast, mpsc, watch};

/// A firing trigger event that asks for `run`.
fn firing(run: &[&str], host: &str, instance: &str) -> Event {
    let t = TriggerEvent {
        trigger: "disk full".into(),
        previous: TriggerState::Pending,
        state: TriggerState::Firing,
        reason: Reason::Held,
        severity: Severity::Critical,
        metric: Metric::DiskUsedPct,
        host: host.into(),
        instance: instance.into(),
        value: Some(97.25),
        threshold: 90.0,
        since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600),
        notify: true,
        note: None,
        silenced_until: None,
        message: None,
        by: None,
        bell: false,
        run: Some(run.iter().map(|s| s.to_string()).collect::<Vec<_>>().into()),
    };
    Event::new(SystemTime::now(), EventKind::Trigger(t))
}

fn runner(timeout: Duration, max: usize) -> (ActionRunner, broadcast::Receiver<Event>) {
    let (tx, rx) = broadcast::channel(256);
    let r = ActionRunner::new(
        ActionSettings {
            timeout,
            max_running: max,
        },
        tx,
        Arc::new(SystemClock),
    );
    (r, rx)
}

async fn next_action(rx: &mut broadcast::Receiver<Event>, within: Duration) -> ActionEvent {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, rx.recv())
            .await
            .expect("an action event in time")
            .expect("channel open");
        if let EventKind::Action(a) = e.kind {
            return a;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_gets_placeholders_environment_and_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let out_s = out.to_str().expect("utf-8 path");
    let (r, mut rx) = runner(Duration::from_secs(10), 4);
    let script = r#"env | grep '^LOOKOUT_' | sort > "$1.env"; cat > "$1.stdin"; printf '%s\n' "$2" "$3" > "$1.args"; echo done"#;
    let event = firing(
        &[
            "sh",
            "-c",
            script,
            "sh",
            out_s,
            "{host} {instance}",
            "{value}/{threshold}",
        ],
        "alpha",
        "/var",
    );
    assert!(r.dispatch(&event));
    let a = next_action(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(a.result, ActionResult::Ok, "{a:?}");
    assert_eq!(a.exit_code, Some(0));
    assert_eq!(a.stdout, "done\n");
    assert_eq!(a.argv[5], "alpha /var");
    let env = std::fs::read_to_string(format!("{out_s}.env")).expect("env file");
    assert_eq!(
        env,
        "LOOKOUT_HOST=alpha\nLOOKOUT_INSTANCE=/var\nLOOKOUT_MESSAGE=\nLOOKOUT_METRIC=disk.used_pct\n\
         LOOKOUT_SEVERITY=critical\nLOOKOUT_SINCE=2026-01-01T00:00:00.000Z\nLOOKOUT_STATE=firing\n\
         LOOKOUT_THRESHOLD=90\nLOOKOUT_TRIGGER=disk full\nLOOKOUT_VALUE=97.25\n"
    );
    let args = std::fs::read_to_string(format!("{out_s}.args")).expect("args file");
    assert_eq!(args, "alpha /var\n97.25/90\n");
    let stdin = std::fs::read_to_string(format!("{out_s}.stdin")).expect("stdin file");
    let json: serde_json::Value = serde_json::from_str(&stdin).expect("one JSON event on stdin");
    assert_eq!(json["event"], "trigger");
    assert_eq!(json["trigger"], "disk full");
    assert_eq!(json["state"], "firing");
    assert_eq!(json["host"], "alpha");
    assert_eq!(json["value"], 97.25);
    r.idle().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_missing_programs_are_reported() {
    let (r, mut rx) = runner(Duration::from_secs(10), 4);
    r.dispatch(&firing(&["sh", "-c", "echo oops >&2; exit 3"], "alpha", ""));
    let a = next_action(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(a.result, ActionResult::Failed);
    assert_eq!(a.exit_code, Some(3));
    assert_eq!(a.stderr, "oops\n");
    assert!(a.summary().contains("exit 3"), "{}", a.summary());

    r.dispatch(&firing(&["/nonexistent/lookout-notify", "{host}"], "alpha", ""));
    let a = next_action(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(a.result, ActionResult::NotStarted);
    assert!(
        a.error
            .as_deref()
            .is_some_and(|e| e.contains("/nonexistent/lookout-notify")),
        "{a:?}"
    );

    // Output is bounded; the flood does not block the action either.
    r.dispatch(&firing(
        &["sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x"],
        "alpha",
        "",
    ));
    let a = next_action(&mut rx, Duration::from_secs(10)).await;
    assert_eq!(a.result, ActionResult::Ok);
    assert!(a.truncated);
    assert_eq!(a.stdout.len(), lookout::triggers::action::OUTPUT_LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_capped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log");
    let log_s = log.to_str().expect("utf-8");
    let (r, mut rx) = runner(Duration::from_secs(10), 1);
    let script = r#"echo start >> "$1"; sleep 0.3; echo end >> "$1""#;
    for _ in 0..3 {
        r.dispatch(&firing(&["sh", "-c", script, "sh", log_s], "alpha", ""));
    }
    assert_eq!(r.in_flight(), 3);
    for _ in 0..3 {
        assert_eq!(
            next_action(&mut rx, Duration::from_secs(10)).await.result,
            ActionResult::Ok
        );
    }
    let text = std::fs::read_to_string(&log).expect("log");
    assert_eq!(text, "start\nend\nstart\nend\nstart\nend\n", "one at a time");
    r.idle().await;
    assert_eq!(r.in_flight(), 0);
}

/// An engine driven by hand (no collectors), with an action runner on its events.
struct Rig {
    updates: mpsc::Sender<Update>,
    events: broadcast::Receiver<Event>,
    actions: ActionRunner,
    _commands: mpsc::Sender<lookout::triggers::Command>,
    _snapshots: watch::Receiver<Arc<Snapshot>>,
}

fn rig(config_text: &str) -> Rig {
    let cfg = Arc::new(config::parse(config_text, "test.toml", None).expect("valid config"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::new(cfg.clone(), clock.clone());
    let (utx, urx) = mpsc::channel(64);
    let (ctx, crx) = mpsc::channel(8);
    let (etx, _) = broadcast::channel(1024);
    let (stx, srx) = watch::channel(Arc::new(Snapshot::empty(cfg.general.interval)));
    let actions = ActionRunner::new(
        ActionSettings {
            timeout: cfg.general.action_timeout,
            max_running: cfg.general.max_actions,
        },
        etx.clone(),
        clock,
    );
    tokio::spawn(actions.clone().serve(etx.subscribe()));
    let events = etx.subscribe();
    tokio::spawn(engine::run(
        engine,
        EngineChannels {
            updates: urx,
            commands: crx,
            snapshots: stx,
            events: etx,
        },
    ));
    Rig {
        updates: utx,
        events,
        actions,
        _commands: ctx,
        _snapshots: srx,
    }
}

async fn next_event(
    rx: &mut broadcast::Receiver<Event>,
    within: Duration,
    what: impl Fn(&EventKind) -> bool,
) -> Event {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, rx.recv())
            .await
            .expect("the expected event in time")
            .expect("channel open");
        if what(&e.kind) {
            return e;
        }
    }
}

fn status(host: &str, status: HostStatus) -> Update {
    Update::Status {
        host: Arc::from(host),
        status,
        error: None,
    }
}

fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid).join("stat")) {
        Err(_) => true,
        // A zombie waiting for a parent that does not reap is gone too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_action_is_killed_with_its_group_and_never_blocks_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let config = format!(
        r#"
[general]
interval = "1s"
action_timeout = "1500ms"
[[hosts]]
names = ["alpha"]
[[trigger]]
name = "host down"
metric = "host.up"
scope = "each"
below = 1
run = ["sh", "-c", "sleep 30 & echo $! > \"$1\"; wait", "sh", "{pidfile}"]
"#,
        pidfile = pidfile.display()
    );
    let mut rig = rig(&config);
    let started = Instant::now();
    rig.updates
        .send(status("alpha", HostStatus::Unreachable))
        .await
        .expect("send");
    next_event(
        &mut rig.events,
        Duration::from_secs(5),
        |k| matches!(k, EventKind::Trigger(t) if t.state == TriggerState::Firing && t.notify),
    )
    .await;
    // While the action hangs, the engine keeps applying updates and evaluating triggers.
    tokio::time::sleep(Duration::from_millis(200)).await;
    rig.updates
        .send(status("alpha", HostStatus::Up))
        .await
        .expect("send");
    let resolved = next_event(
        &mut rig.events,
        Duration::from_millis(600),
        |k| matches!(k, EventKind::Trigger(t) if t.state == TriggerState::Resolved),
    )
    .await;
    assert!(matches!(resolved.kind, EventKind::Trigger(_)));
    assert_eq!(rig.actions.in_flight(), 1, "the action is still hanging");
    let e = next_event(&mut rig.events, Duration::from_secs(5), |k| {
        matches!(k, EventKind::Action(_))
    })
    .await;
    let EventKind::Action(a) = e.kind else {
        unreachable!()
    };
    assert_eq!(a.result, ActionResult::TimedOut, "{a:?}");
    assert!(a.duration_ms >= 1500 && a.duration_ms < 4000, "{}", a.duration_ms);
    assert!(started.elapsed() < Duration::from_secs(6));
    let child = std::fs::read_to_string(&pidfile).expect("pid file");
    let child = child.trim();
    // The background `sleep 30` was in the action's process group: killed too.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !process_gone(child) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(process_gone(child), "grandchild {child} survived the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_instance_name_never_becomes_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hostile = "$(touch pwned-a);touch pwned-b";
    let config = format!(
        r#"
[general]
interval = "1s"
[[hosts]]
names = ["alpha"]
[[trigger]]
name = "process missing"
metric = "proc.count"
scope = "each"
below = 1
run = ["sh", "-c", "cd \"$1\" && echo \"$LOOKOUT_INSTANCE\" > seen && printf '%s\n' \"$2\" >> seen", "sh", "{dir}", "{{instance}}"]
"#,
        dir = dir.path().display()
    );
    let mut rig = rig(&config);
    rig.updates
        .send(Update::Sample(Sample {
            host: Arc::from("alpha"),
            source: Source::System,
            readings: vec![Reading::new(Metric::ProcCount, hostile, 0.0)],
            processes: Vec::new(),
        }))
        .await
        .expect("send");
    let e = next_event(&mut rig.events, Duration::from_secs(10), |k| {
        matches!(k, EventKind::Action(_))
    })
    .await;
    let EventKind::Action(a) = e.kind else {
        unreachable!()
    };
    assert_eq!(a.result, ActionResult::Ok, "{a:?}");
    assert_eq!(a.instance, hostile);
    let seen = std::fs::read_to_string(dir.path().join("seen")).expect("seen");
    assert_eq!(seen, format!("{hostile}\n{hostile}\n"));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    assert_eq!(names, ["seen"], "the instance name ran as code");
    for name in ["pwned-a", "pwned-b"] {
        assert!(
            !Path::new(name).exists(),
            "{name} created in the working directory"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_runner_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    let (r, mut rx) = runner(Duration::from_secs(10), 2);
    r.close();
    r.dispatch(&firing(&["touch", marker.to_str().expect("utf-8")], "alpha", ""));
    let a = next_action(&mut rx, Duration::from_secs(5)).await;
    assert_eq!(a.result, ActionResult::NotStarted);
    assert_eq!(a.error.as_deref(), Some("lookout is stopping"));
    assert!(!marker.exists());
}
