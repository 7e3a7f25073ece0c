//! Config reload against real sshd instances: hosts added and removed, one trigger changed
//! while another stays firing and acknowledged, the unchanged host's SSH connection kept
//! (sshd logs no second "Accepted publickey"), and a broken config refused whole. Also
//! SIGHUP on a headless run.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sshd::*;
use lookout::event::EventKind;
use lookout::model::HostStatus;
use lookout::reload::ReloadOutcome;
use lookout::triggers::{Command as TriggerCommand, TriggerState};

fn accepted(sshd: &Sshd) -> usize {
    sshd.log_text().matches("Accepted publickey").count()
}

fn state(snap: &lookout::snapshot::Snapshot, trigger: &str, host: &str) -> Option<TriggerState> {
    snap.triggers
        .iter()
        .find(|t| t.name == trigger && t.host == host)
        .map(|t| t.state)
}

/// Two triggers on alpha that fire at once (any uptime is above 0); `for_changed` goes
/// into the second one, the one the reload changes.
fn triggers(for_changed: &str) -> String {
    format!(
        "[[trigger]]\nname = \"kept\"\nmetric = \"host.uptime_s\"\nhosts = [\"alpha\"]\nscope = \"each\"\nabove = 0\n\n\
         [[trigger]]\nname = \"changed\"\nmetric = \"host.uptime_s\"\nhosts = [\"alpha\"]\nscope = \"each\"\nabove = 0\n{for_changed}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_hosts_and_triggers() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let key = keygen(dir.path(), "id_ed25519", "");
    let known_hosts = dir.path().join("known_hosts");
    let [a, b, c] = [0, 1, 2].map(|_| Sshd::start(&[public_key(&key)]));
    trust(&known_hosts, &[&a, &b, &c]);
    ssh_alias(dir.path(), &[("alpha", &a), ("beta", &b), ("gamma", &c)]);

    // The main file has the settings and includes conf.d, where hosts and triggers live.
    let main = dir.path().join("lookout.toml");
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).expect("conf.d");
    let base = config_text(dir.path(), &key, &known_hosts, "strict", "", "");
    std::fs::write(&main, format!("include = [\"conf.d/*.toml\"]\n{base}")).expect("main");
    let write_hosts = |names: &str| {
        std::fs::write(
            conf_d.join("10-hosts.toml"),
            format!("[[hosts]]\nnames = [{names}]\n"),
        )
        .expect("hosts")
    };
    let write_triggers =
        |text: &str| std::fs::write(conf_d.join("20-triggers.toml"), text).expect("triggers");
    write_hosts("\"alpha\", \"beta\"");
    write_triggers(&triggers(""));

    let config = std::sync::Arc::new(lookout::config::load(Some(&main)).unwrap_or_else(|e| panic!("{e}")));
    let mut running = lookout::runtime::start(config);
    running.actions.close();
    let mut events = running.subscribe_from_start();
    let mut snaps = running.snapshots.clone();
    wait_for(
        &mut snaps,
        Duration::from_secs(15),
        "alpha and beta up, both firing",
        |s| {
            status_is(s, "alpha", HostStatus::Up)
                && status_is(s, "beta", HostStatus::Up)
                && state(s, "kept", "alpha") == Some(TriggerState::Firing)
                && state(s, "changed", "alpha") == Some(TriggerState::Firing)
        },
    )
    .await;
    running
        .commands
        .send(TriggerCommand::Acknowledge {
            trigger: "kept".into(),
            host: "alpha".into(),
            instance: String::new(),
        })
        .await
        .expect("engine runs");
    let before = wait_for(&mut snaps, Duration::from_secs(5), "kept acknowledged", |s| {
        state(s, "kept", "alpha") == Some(TriggerState::Acknowledged)
    })
    .await;
    let alpha_rounds = host(&before, "alpha").rounds;
    assert_eq!(accepted(&a), 1, "{}", a.log_text());
    assert_eq!(accepted(&b), 1);

    // beta goes, gamma comes, "changed" now waits an hour before it fires
    write_hosts("\"alpha\", \"gamma\"");
    write_triggers(&triggers("for = \"1h\""));
    let outcome = running.reload().await;
    let ReloadOutcome::Applied(details) = outcome else {
        panic!("refused: {outcome:?}");
    };
    assert_eq!(
        details,
        [
            "hosts added: gamma",
            "hosts removed: beta",
            "triggers changed, restarted from ok: changed",
        ]
    );
    let after = wait_for(
        &mut snaps,
        Duration::from_secs(15),
        "gamma up, alpha polled on",
        |s| {
            s.hosts.iter().all(|h| &*h.name != "beta")
                && status_is(s, "gamma", HostStatus::Up)
                && host(s, "alpha").rounds > alpha_rounds + 2
        },
    )
    .await;
    assert_eq!(after.hosts.len(), 2, "{}", describe(&after));
    assert_eq!(state(&after, "kept", "alpha"), Some(TriggerState::Acknowledged));
    assert_eq!(
        state(&after, "changed", "alpha"),
        Some(TriggerState::Pending),
        "the changed rule restarted from ok"
    );
    // The same connection to alpha all along; gamma connected; beta's connection closed.
    assert_eq!(accepted(&a), 1, "alpha reconnected:\n{}", a.log_text());
    assert_eq!(accepted(&c), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.log_text().contains("Disconnected from") && !b.log_text().contains("Connection closed") {
        assert!(
            Instant::now() < deadline,
            "beta's connection stays open:\n{}",
            b.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken config changes nothing and says why.
    write_triggers("[[trigger]]\nname = \"kept\"\nmetric = \"host.uptme_s\"\nabove = 0\n");
    write_hosts("\"alpha\", \"delta\"");
    let outcome = running.reload().await;
    let bad = conf_d.join("20-triggers.toml");
    assert_eq!(
        outcome,
        ReloadOutcome::Refused(vec![format!(
            "{}:3:10: trigger `kept`: unknown metric `host.uptme_s` — did you mean `host.uptime_s`?",
            bad.display()
        )])
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let still = running.snapshots.borrow().clone();
    let names: Vec<&str> = still.hosts.iter().map(|h| &*h.name).collect();
    assert_eq!(names, ["alpha", "gamma"]);
    assert_eq!(state(&still, "kept", "alpha"), Some(TriggerState::Acknowledged));
    assert_eq!(accepted(&a), 1);
    // Both reloads are events, for the log and the headless output.
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let EventKind::Reload { applied, .. } = &e.kind {
            seen.push(*applied);
        }
    }
    assert_eq!(seen, [true, false]);
    running.engine.abort();
}

/// `lookout run --headless` reloads on SIGHUP and prints the outcome as a JSON line.
#[test]
fn sighup_reloads_a_headless_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let main = dir.path().join("lookout.toml");
    let rule = |above: u32| {
        format!(
            "[general]\ninterval = \"200ms\"\n[[hosts]]\nnames = [\"me\"]\nvia = \"local\"\n\
             [[trigger]]\nname = \"t\"\nmetric = \"host.up\"\nbelow = {above}\n"
        )
    };
    std::fs::write(&main, rule(0)).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--headless", "--duration", "20s", "--config"])
        .arg(&main)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lookout");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_event = |kind: &str| -> serde_json::Value {
        for line in lines.by_ref() {
            let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
            if v["event"] == kind {
                return v;
            }
        }
        panic!("no {kind} event");
    };
    next_event("started");
    let hup = || run("kill", &["-HUP", &pid.to_string()]);
    std::fs::write(&main, rule(1)).expect("config");
    hup();
    let ok = next_event("reload");
    assert_eq!(ok["applied"], true, "{ok}");
    assert_eq!(ok["details"][0], "triggers changed, restarted from ok: t", "{ok}");
    std::fs::write(&main, "[general]\ninterval = \"soon\"\n").expect("config");
    hup();
    let refused = next_event("reload");
    assert_eq!(refused["applied"], false, "{refused}");
    assert_eq!(
        refused["details"][0],
        format!(
            "{}:2:12: `interval` in [general]: invalid value: string \"soon\", expected a duration",
            main.display()
        )
    );
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
}

/// `[general] reload = "watch"`: a changed file is reloaded without a signal, a file added
/// to an included folder too.
#[test]
fn watched_files_reload_on_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let main = dir.path().join("lookout.toml");
    std::fs::create_dir(dir.path().join("conf.d")).expect("conf.d");
    std::fs::write(
        &main,
        "include = [\"conf.d/*.toml\"]\n[general]\ninterval = \"200ms\"\nreload = \"watch\"\n\
         [[hosts]]\nnames = [\"me\"]\nvia = \"local\"\n",
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["run", "--headless", "--duration", "30s", "--config"])
        .arg(&main)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lookout");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_event = |kind: &str| -> serde_json::Value {
        for line in lines.by_ref() {
            let v: serde_json::Value = serde_json::from_str(&line.expect("line")).expect("json");
            if v["event"] == kind {
                return v;
            }
        }
        panic!("no {kind} event");
    };
    next_event("started");
    std::fs::write(
        dir.path().join("conf.d/t.toml"),
        "[[trigger]]\nname = \"t\"\nmetric = \"host.up\"\nbelow = 1\n",
    )
    .expect("trigger");
    let started = Instant::now();
    let ev = next_event("reload");
    assert_eq!(ev["applied"], true, "{ev}");
    assert_eq!(ev["details"][0], "triggers added: t", "{ev}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();
}
