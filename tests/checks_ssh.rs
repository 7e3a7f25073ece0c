//! `[[check]]` on remote hosts over the host's own SSH session: real Monitoring Plugins on a
//! real sshd (directly and through a jump host), and a hung check on a host in a network
//! namespace that must leave nothing running there, while the base samples go on.

mod common;
// Only the namespace helpers are used here (the NFQUEUE holder is the ping tests').
#[allow(dead_code)]
mod support;

use std::process::Command;
use std::time::Duration;

use common::sshd::*;
use lookout::collectors::checks::parse;
use support::netns::TestNet;

const PLUGINS: &str = "/usr/lib/nagios/plugins";

struct Setup {
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tmp");
    let key = keygen(dir.path(), "id_ed25519", "");
    let known_hosts = dir.path().join("known_hosts");
    Setup {
        dir,
        key,
        known_hosts,
    }
}

impl Setup {
    fn trust(&self, sshds: &[&Sshd]) {
        trust(&self.known_hosts, sshds);
    }
    fn ssh_config(&self, text: &str) {
        std::fs::write(self.dir.path().join("ssh_config"), text).expect("ssh_config");
    }
    fn config(&self, hosts: &str, checks: &str) -> String {
        config_text(
            self.dir.path(),
            &self.key,
            &self.known_hosts,
            "strict",
            "",
            &format!("{hosts}{checks}"),
        )
    }
}

fn plugin_checks(hosts: &str) -> String {
    format!(
        "[[check]]\nname = \"load\"\nhosts = [{hosts}]\ncommand = \"{PLUGINS}/check_load -w 1000,1000,1000 -c 2000,2000,2000\"\nformat = \"nagios\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"disk\"\nhosts = [{hosts}]\ncommand = \"{PLUGINS}/check_disk -w 20% -c 10% -p /\"\nformat = \"nagios\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"procs\"\nhosts = [{hosts}]\ncommand = \"{PLUGINS}/check_procs -C sshd\"\nformat = \"nagios\"\ninterval = \"1s\"\n"
    )
}

/// The plugin run directly (the test hosts share this machine's filesystem and processes).
fn direct(cmd: &str) -> (u8, Vec<String>) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().expect("sh");
    let (_, values) = parse::nagios(&String::from_utf8_lossy(&out.stdout));
    (
        out.status.code().unwrap_or(3) as u8,
        values.into_iter().map(|v| v.0).collect(),
    )
}

fn assert_plugins(h: &lookout::snapshot::HostView) {
    for (name, cmd) in [
        (
            "load",
            format!("{PLUGINS}/check_load -w 1000,1000,1000 -c 2000,2000,2000"),
        ),
        ("disk", format!("{PLUGINS}/check_disk -w 20% -c 10% -p /")),
        ("procs", format!("{PLUGINS}/check_procs -C sshd")),
    ] {
        let c = h
            .check(name)
            .unwrap_or_else(|| panic!("{}: no report of {name}", h.name));
        let (status, labels) = direct(&cmd);
        assert_eq!(c.status, status, "{} {name}: {}", h.name, c.message);
        let got: Vec<String> = c
            .readings
            .iter()
            .skip(1)
            .map(|r| r.instance.to_string())
            .collect();
        assert_eq!(got, labels, "{} {name}", h.name);
        assert!(!c.message.is_empty());
    }
}

/// Whether any process on the machine (every namespace shares its pid namespace) has
/// `marker` in its command line.
fn processes_with(marker: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(marker))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_over_the_hosts_session_directly_and_through_a_jump_host() {
    if !can_run() {
        return;
    }
    assert!(
        std::path::Path::new(PLUGINS).join("check_load").exists(),
        "apt-get install -y monitoring-plugins-basic"
    );
    let s = setup();
    let sshd = Sshd::start(&[public_key(&s.key)]);
    let jump = Sshd::start(&[public_key(&s.key)]);
    let behind = Sshd::start(&[public_key(&s.key)]);
    s.trust(&[&sshd, &jump, &behind]);
    s.ssh_config(&format!(
        "Host box\n  HostName {}\n  Port {}\n  User root\n\nHost bastion\n  HostName {}\n  Port {}\n  User root\n\n\
         Host inner\n  HostName {}\n  Port {}\n  User root\n  ProxyJump bastion\n",
        sshd.addr, sshd.port, jump.addr, jump.port, behind.addr, behind.port
    ));
    let config = parse_config(&s.config(
        "[[hosts]]\nnames = [\"box\", \"inner\"]\n",
        &plugin_checks("\"box\", \"inner\""),
    ));
    let running = lookout::runtime::start(config.clone());
    let mut rx = running.snapshots.clone();
    let snap = wait_for(
        &mut rx,
        Duration::from_secs(20),
        "every check on both hosts",
        |s| ["box", "inner"].iter().all(|h| host(s, h).checks.len() == 3),
    )
    .await;
    for h in ["box", "inner"] {
        assert_plugins(host(&snap, h));
    }
    // Each check ran on the host's one connection: sshd logged one session per host.
    let accepted = |d: &Sshd| d.log_text().matches("Accepted publickey").count();
    assert_eq!(accepted(&sshd), 1, "{}", sshd.log_text());
    assert_eq!(accepted(&behind), 1, "{}", behind.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_remote_check_is_killed_on_the_host_and_samples_go_on() {
    if !can_run() {
        return;
    }
    let s = setup();
    let net = TestNet::with_veth();
    let addr = net.inside().to_string();
    let sshd = Sshd::start_at(&addr, 22, Some(&net.ns), &[public_key(&s.key)]);
    s.trust(&[&sshd]);
    s.ssh_config(&format!("Host nshost\n  HostName {addr}\n  User root\n"));
    let marker = format!("lookout-remote-hang-{}", std::process::id());
    let checks = format!(
        "[[check]]\nname = \"hang\"\ncommand = \"sh -c 'sleep 300; : {marker}' & (sleep 301; : {marker}) & sleep 302; : {marker}\"\ntimeout = \"1s\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"flood\"\ncommand = \"head -c 100000000 /dev/zero; : {marker}\"\ntimeout = \"5s\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"missing\"\ncommand = \"nosuchcommand-lookout\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"answer\"\ncommand = \"echo 42\"\ninterval = \"1s\"\n\
         [[check]]\nname = \"background\"\ncommand = \"sh -c 'sleep 303; : {marker}' & echo 7\"\ninterval = \"1s\"\n"
    );
    let config = parse_config(&s.config("[[hosts]]\nnames = [\"nshost\"]\n", &checks));
    let running = lookout::runtime::start(config.clone());
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(20), "every check reported", |s| {
        host(s, "nshost").checks.len() == 5
    })
    .await;
    let h = host(&snap, "nshost");
    let hang = h.check("hang").expect("hang");
    assert_eq!((hang.status, &*hang.message), (3, "timed out after 1s"));
    assert!(
        hang.duration_ms >= 900.0 && hang.duration_ms < 6000.0,
        "{}",
        hang.duration_ms
    );
    let flood = h.check("flood").expect("flood");
    assert_eq!(flood.status, 3);
    assert!(
        flood.message.starts_with("printed more than"),
        "{}",
        flood.message
    );
    let missing = h.check("missing").expect("missing");
    assert_eq!(missing.status, 3);
    assert!(
        missing.message.starts_with("command not found (exit 127)"),
        "{}",
        missing.message
    );
    let answer = h.check("answer").expect("answer");
    assert_eq!(
        (answer.status, answer.readings.get(1).map(|r| r.value)),
        (0, Some(42.0))
    );
    // A background child holding stdout neither holds the answer back nor stays behind
    // (the look on the host at the end).
    let bg = h.check("background").expect("background");
    assert_eq!((bg.status, bg.readings.get(1).map(|r| r.value)), (0, Some(7.0)));
    assert!(bg.duration_ms < 2000.0, "{}", bg.duration_ms);
    // The base samples never waited for the hung check.
    let rounds = h.rounds;
    let later = wait_for(&mut rx, Duration::from_secs(10), "more samples", |s| {
        host(s, "nshost").rounds >= rounds + 5
    })
    .await;
    assert_eq!(host(&later, "nshost").status, lookout::model::HostStatus::Up);
    // Stop lookout, give the remote watchdogs their timeout, then look on the host.
    running.engine.abort();
    drop(running);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let left = processes_with(&marker);
    assert!(left.is_empty(), "left running on the host: {left:?}");
    drop(sshd);
    drop(net);
}
