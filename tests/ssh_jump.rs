//! Hosts reached only through a jump host: the targets live in a network namespace that
//! only the jump host's namespace can route to. Also the poll-mode measurements.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sshd::*;
use lookout::collectors::ssh::{self, PollMode};
use lookout::model::{HostStatus, Metric, Update};

/// Test range: routed nowhere from the root namespace except the jump's /24.
const RANGE: &str = "10.237.0.0/16";
const JUMP_ADDR: &str = "10.237.0.2";
const TARGET_ADDR: &str = "10.237.1.2";

/// Two namespaces (jump, target) wired root <-> jump <-> target. Drop removes everything.
struct Netns {
    jump: String,
    target: String,
    root_veth: String,
}

fn ip(args: &[&str]) {
    run("ip", args);
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 100_000;
        let n = Netns {
            jump: format!("lookout-sshj-{id}"),
            target: format!("lookout-ssht-{id}"),
            root_veth: format!("lsj{id}a"),
        };
        // First: nothing in the test range may leave by the default route.
        let _ = Command::new("ip")
            .args(["route", "del", "unreachable", RANGE])
            .output();
        ip(&["route", "add", "unreachable", RANGE]);
        ip(&["netns", "add", &n.jump]);
        ip(&["netns", "add", &n.target]);
        let (jb, jc, td) = (format!("lsj{id}b"), format!("lsj{id}c"), format!("lsj{id}d"));
        ip(&["link", "add", &n.root_veth, "type", "veth", "peer", "name", &jb]);
        ip(&["link", "set", &jb, "netns", &n.jump]);
        ip(&["link", "add", &jc, "type", "veth", "peer", "name", &td]);
        ip(&["link", "set", &jc, "netns", &n.jump]);
        ip(&["link", "set", &td, "netns", &n.target]);
        ip(&["addr", "add", "10.237.0.1/24", "dev", &n.root_veth]);
        ip(&["link", "set", &n.root_veth, "up"]);
        for (ns, dev, addr) in [
            (&n.jump, &jb, "10.237.0.2/24"),
            (&n.jump, &jc, "10.237.1.1/24"),
            (&n.target, &td, "10.237.1.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.root_veth]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.jump]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.target]).output();
        let _ = Command::new("ip")
            .args(["route", "del", "unreachable", RANGE])
            .output();
    }
}

struct World {
    // field order = drop order: daemons before the namespaces they live in
    targets: Vec<Sshd>,
    jump: Sshd,
    dir: tempfile::TempDir,
    key: std::path::PathBuf,
    _net: Netns,
    /// Tests of this binary share the address range: one at a time.
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn world() -> World {
    let serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let net = Netns::create();
    let dir = tempfile::tempdir().expect("tmp");
    let key = keygen(dir.path(), "id_ed25519", "");
    let pubkey = public_key(&key);
    let jump = Sshd::start_at(JUMP_ADDR, 22, Some(&net.jump), std::slice::from_ref(&pubkey));
    let targets = vec![
        Sshd::start_at(TARGET_ADDR, 22, Some(&net.target), std::slice::from_ref(&pubkey)),
        Sshd::start_at(
            TARGET_ADDR,
            2222,
            Some(&net.target),
            std::slice::from_ref(&pubkey),
        ),
    ];
    let lines: Vec<String> = std::iter::once(&jump)
        .chain(&targets)
        .map(Sshd::known_hosts_line)
        .collect();
    std::fs::write(dir.path().join("known_hosts"), lines.join("\n") + "\n").expect("kh");
    std::fs::write(
        dir.path().join("ssh_config"),
        format!(
            "Host bastion\n  HostName {JUMP_ADDR}\n  User root\n\nHost t1\n  HostName {TARGET_ADDR}\n  ProxyJump bastion\n\n\
             Host t2\n  HostName {TARGET_ADDR}\n  Port 2222\n  ProxyJump bastion\n\nHost *\n  User root\n"
        ),
    )
    .expect("ssh_config");
    World {
        targets,
        jump,
        dir,
        key,
        _net: net,
        _serial: serial,
    }
}

impl World {
    fn config(&self, hosts: &[&str]) -> Arc<lookout::config::Config> {
        let names = hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        parse_config(&config_text(
            self.dir.path(),
            &self.key,
            &self.dir.path().join("known_hosts"),
            "strict",
            "",
            &format!("[[hosts]]\nnames = [{names}]\n"),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_behind_one_shared_jump_connection() {
    if !can_run() {
        return;
    }
    let mut w = world();
    // The targets cannot be reached from here directly.
    let direct = std::net::TcpStream::connect_timeout(
        &format!("{TARGET_ADDR}:22").parse().expect("addr"),
        Duration::from_secs(1),
    );
    assert!(
        direct.is_err(),
        "the target namespace must not be routable from the root one"
    );

    let running = lookout::runtime::start(w.config(&["t1", "t2"]));
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(15), "both up via bastion", |s| {
        host(s, "t1").rounds >= 2 && host(s, "t2").rounds >= 2
    })
    .await;
    assert!(host(&snap, "t1").value(Metric::CpuUsage, "").is_some());
    // the target namespace has only lo and its veth
    let ifaces: Vec<String> = host(&snap, "t1")
        .values(Metric::NetRxBytes)
        .map(|r| r.instance.to_string())
        .collect();
    assert_eq!(ifaces.len(), 1, "{ifaces:?}");
    assert!(ifaces[0].starts_with("lsj"), "{ifaces:?}");
    // one connection to the jump host serves both
    assert_eq!(
        w.jump.log_text().matches("Accepted publickey").count(),
        1,
        "{}",
        w.jump.log_text()
    );

    // jump host down: both targets unreachable because of it
    w.jump.kill();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "unreachable via bastion", |s| {
        ["t1", "t2"].iter().all(|h| {
            status_is(s, h, HostStatus::Unreachable)
                && host(s, h)
                    .error
                    .as_deref()
                    .unwrap_or("")
                    .contains("via jump host bastion")
        })
    })
    .await;
    let e = host(&snap, "t1").error.clone().unwrap_or_default();
    assert!(e.contains("connection refused"), "{e}");
    assert!(w.targets.iter().all(|t| t.pid().is_some()));

    // back again: both reconnect, again over one jump connection
    w.jump.launch();
    running.reconnect.send("t1".into()).expect("reconnect");
    running.reconnect.send("t2".into()).expect("reconnect");
    let before = [host(&snap, "t1").rounds, host(&snap, "t2").rounds];
    wait_for(&mut rx, Duration::from_secs(15), "both up again", |s| {
        host(s, "t1").rounds > before[0] + 1 && host(s, "t2").rounds > before[1] + 1
    })
    .await;
    assert_eq!(w.jump.log_text().matches("Accepted publickey").count(), 2);
}

/// CPU seconds (user + system, children included) of a set of processes.
fn cpu_seconds(pids: &[u32]) -> f64 {
    let tck = 100.0;
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let (_, rest) = s.rsplit_once(") ")?;
            let f: Vec<u64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
            // fields 14-17 (utime stime cutime cstime) are at 11..15 after the state field
            Some(f.get(10..14)?.iter().sum::<u64>() as f64 / tck)
        })
        .sum()
}

fn own_cpu_seconds() -> f64 {
    cpu_seconds(&[std::process::id()])
}

/// Polls `host` for `duration` in `mode`; returns (polls, mean poll ms, client CPU ms per
/// poll, remote CPU ms per poll).
async fn measure(
    w: &World,
    sshd: &Sshd,
    host: &str,
    mode: PollMode,
    duration: Duration,
) -> (usize, f64, f64, f64) {
    let config = {
        let text = config_text(
            w.dir.path(),
            &w.key,
            &w.dir.path().join("known_hosts"),
            "strict",
            "",
            &format!("[[hosts]]\nnames = [\"{host}\"]\n"),
        )
        .replace("interval = \"300ms\"", "interval = \"100ms\"");
        parse_config(&text)
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (reconnect, _) = tokio::sync::broadcast::channel(4);
    ssh::spawn_with_mode(&config, &tx, &reconnect, mode);
    // skip the connection and the first sample
    let mut polls = Vec::new();
    let mut start: Option<(Instant, f64, f64)> = None;
    let end = Instant::now() + duration + Duration::from_secs(5);
    while Instant::now() < end {
        let Ok(Some(u)) = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await else {
            break;
        };
        if let Update::Sample(s) = u {
            let ms = s
                .readings
                .iter()
                .find(|r| r.metric == Metric::HostPollMs)
                .map(|r| r.value);
            match start {
                None => start = Some((Instant::now(), own_cpu_seconds(), cpu_seconds(&sshd.processes()))),
                Some((t, _, _)) => {
                    polls.extend(ms);
                    if t.elapsed() >= duration {
                        break;
                    }
                }
            }
        }
    }
    let (_, c0, r0) = start.expect("connected");
    let (c1, r1) = (own_cpu_seconds(), cpu_seconds(&sshd.processes()));
    drop(rx);
    let n = polls.len().max(1) as f64;
    (
        polls.len(),
        polls.iter().sum::<f64>() / n,
        (c1 - c0) * 1000.0 / n,
        (r1 - r0) * 1000.0 / n,
    )
}

/// Exec per poll against one streaming command, direct and through the jump host.
/// Prints figures for docs/ssh.md; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: cargo test --test ssh_jump -- --ignored --nocapture"]
async fn measure_exec_per_poll_against_streaming() {
    if !can_run() {
        return;
    }
    let w = world();
    let direct = Sshd::start_at("127.0.0.1", free_port(), None, &[public_key(&w.key)]);
    let mut kh = std::fs::read_to_string(w.dir.path().join("known_hosts")).expect("kh");
    kh.push_str(&(direct.known_hosts_line() + "\n"));
    std::fs::write(w.dir.path().join("known_hosts"), kh).expect("kh");
    let direct_name = format!("root@127.0.0.1:{}", direct.port);
    for (label, name, sshd) in [
        ("direct", direct_name.as_str(), &direct),
        ("via jump", "t1", &w.targets[0]),
    ] {
        for mode in [PollMode::ExecPerPoll, PollMode::Stream] {
            // the remote CPU of a jumped host includes the jump sshd's forwarding
            let (n, ms, client, remote) = measure(&w, sshd, name, mode, Duration::from_secs(10)).await;
            let jump_cpu = if label == "via jump" {
                " (target sshd only)"
            } else {
                ""
            };
            println!(
                "{label:9} {mode:?}: {n} polls, {ms:.2} ms per poll, client CPU {client:.2} ms/poll, remote CPU {remote:.2} ms/poll{jump_cpu}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
