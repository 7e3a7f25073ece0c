//! End to end: the real binary in `run --headless` mode watching the local host, with a rule
//! that fires at once and runs an action; JSON lines on stdout; clean exit on SIGTERM and at
//! `--duration` (after the running action finished).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn start(config: &str, extra: &[&str]) -> (Child, mpsc::Receiver<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--headless", "--config"])
        .arg(&path)
        .args(extra)
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lookout");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx, dir)
}

/// Reads lines until one satisfies `what`; returns every line read.
fn read_until(rx: &mpsc::Receiver<String>, within: Duration, what: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no matching line in time; got {seen:#?}"));
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
        assert!(v["at"].is_string() && v["event"].is_string(), "{line}");
        let done = what(&v);
        seen.push(v);
        if done {
            return seen;
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lookout did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

const CONFIG: &str = r#"
[general]
interval = "500ms"
action_timeout = "10s"

[[trigger]]
name = "alive"
metric = "host.up"
scope = "each"
above = 0.5
for = "0s"
run = ["sh", "-c", "read -r line; echo \"fired $LOOKOUT_TRIGGER on $LOOKOUT_HOST ($LOOKOUT_STATE)\"; sleep \"$1\"", "sh", "SLEEP"]
"#;

#[test]
fn headless_prints_events_and_stops_on_sigterm() {
    let (mut child, rx, _dir) = start(&CONFIG.replace("SLEEP", "0"), &[]);
    let lines = read_until(&rx, Duration::from_secs(30), |v| v["event"] == "action");
    assert_eq!(lines[0]["event"], "started", "{lines:#?}");
    assert_eq!(lines[0]["hosts"], 1);
    assert_eq!(lines[0]["triggers"], 1);
    let firing = lines
        .iter()
        .find(|v| v["event"] == "trigger")
        .unwrap_or_else(|| panic!("no trigger event: {lines:#?}"));
    assert_eq!(firing["trigger"], "alive");
    assert_eq!(firing["previous"], "ok");
    assert_eq!(firing["state"], "firing");
    assert_eq!(firing["notify"], true);
    assert_eq!(firing["value"], 1.0);
    let host = firing["host"].as_str().expect("host").to_string();
    let action = lines.last().expect("action");
    assert_eq!(action["result"], "ok", "{action}");
    assert_eq!(action["exit_code"], 0);
    assert_eq!(action["stdout"], format!("fired alive on {host} (firing)\n"));

    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let rest = read_until(&rx, Duration::from_secs(5), |v| v["event"] == "stopped");
    assert_eq!(rest.last().expect("stopped")["reason"], "SIGTERM");
}

#[test]
fn headless_duration_waits_for_running_actions() {
    // The action sleeps 2s; --duration ends the run at 1s; its result still comes out.
    let (mut child, rx, _dir) = start(&CONFIG.replace("SLEEP", "2"), &["--duration", "1s"]);
    let started = Instant::now();
    let lines = read_until(&rx, Duration::from_secs(30), |v| v["event"] == "stopped");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let kinds: Vec<&str> = lines.iter().filter_map(|v| v["event"].as_str()).collect();
    let action = kinds.iter().position(|k| *k == "action");
    assert!(action.is_some_and(|a| a == kinds.len() - 2), "{kinds:?}");
    assert_eq!(lines[lines.len() - 2]["result"], "ok");
    assert_eq!(lines.last().expect("stopped")["reason"], "duration reached");
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[test]
fn snapshot_json_lists_trigger_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        r#"
[general]
interval = "200ms"

[[trigger]]
name = "up for an hour"
metric = "host.up"
scope = "each"
above = 0.5
for = "1h"
severity = "info"

[[trigger]]
name = "never"
metric = "host.up"
below = 0
"#,
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["snapshot", "--json", "--rounds", "1", "--config"])
        .arg(&path)
        .output()
        .expect("run lookout");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let triggers = snap["triggers"].as_array().expect("triggers");
    assert_eq!(triggers.len(), 1, "only lines that are not ok: {triggers:#?}");
    let t = &triggers[0];
    assert_eq!(t["name"], "up for an hour");
    assert_eq!(t["state"], "pending");
    assert_eq!(t["severity"], "info");
    assert_eq!(t["host"], snap["hosts"][0]["host"]);
    assert_eq!(t["value"], 1.0);
    assert!(t["since"].is_string() && t["fires_at"].is_string(), "{t}");
}
