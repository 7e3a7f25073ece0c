//! The fleet simulator: a real OpenSSH client logs into a simulated host and runs lookout's
//! command; lookout's SSH collector gets `up`, `unreachable` and `timeout` from up, down, hung
//! and resetting hosts; and a 100-host smoke run of the whole path (not a timing test).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lookout::collectors::remote::{self, Watch};
use lookout::model::HostStatus;
use lookout::snapshot::Snapshot;

/// A running `lookout-fleet serve`; dropping it kills it (also when the test fails).
struct Sim {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    /// Starts the simulator in a new temp dir on a free port and waits for its ready line.
    fn start(first: &str, args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().expect("tmp");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lookout-fleet"))
            .args(["serve", "--port", "0", "--first", first, "--dir"])
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lookout-fleet starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut sim = Sim { child, dir, port: 0 };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("ready line");
        assert!(line.starts_with("ready "), "simulator said: {line:?}");
        sim.port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("port="))
            .and_then(|p| p.parse().ok())
            .expect("port in the ready line");
        sim
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// (name, mode) of every host, from hosts.tsv.
    fn manifest(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.path("hosts.tsv"))
            .expect("hosts.tsv")
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[0].to_string(), f[2].to_string())
            })
            .collect()
    }

    fn config(&self) -> Arc<lookout::config::Config> {
        Arc::new(lookout::config::load(Some(&self.path("fleet.toml"))).unwrap_or_else(|e| panic!("{e}")))
    }
}

fn have(program: &str) -> bool {
    Command::new(program).arg("-V").output().is_ok()
}

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let snap = rx.borrow_and_update().clone();
        if !snap.hosts.is_empty() && pred(&snap) {
            return snap;
        }
        if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
            let state: Vec<String> = snap
                .hosts
                .iter()
                .filter(|h| h.status != HostStatus::Up)
                .take(10)
                .map(|h| format!("{} {} {:?}", h.name, h.status, h.error))
                .collect();
            panic!(
                "timed out waiting for {what}: {} up; {state:?}",
                snap.count_status(HostStatus::Up)
            );
        }
    }
}

#[test]
fn openssh_client_runs_the_command_and_its_output_parses() {
    if !have("ssh") {
        eprintln!("skipped: no OpenSSH client");
        return;
    }
    let sim = Sim::start("127.43.0.1", &["--hosts", "2", "--procs", "30"]);
    let command = remote::command(true);
    let mut ssh = Command::new("ssh")
        .arg("-F")
        .arg(sim.path("ssh_config"))
        .args(["-o", "ConnectTimeout=10", "fleet-0002", &command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh runs");
    ssh.stdin
        .take()
        .expect("stdin")
        .write_all(b"7\n8\n")
        .expect("requests");
    let out = ssh.wait_with_output().expect("ssh output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh: {:?} {}{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // two samples, each ending with the end marker of its request
    let (first, second) = stdout.split_once("@@end 7\n").expect("first sample");
    assert!(second.ends_with("@@end 8\n"), "{second}");
    let watch = Watch {
        processes: vec![Arc::from("nginx"), Arc::from("python3")],
        ..Watch::default()
    };
    let mut state = remote::RemoteState::default();
    for text in [format!("{first}@@end 7\n"), second.to_string()] {
        let parsed = remote::parse(&text, &watch).expect("the project's parser reads it");
        let (readings, _) = state.complete(parsed, &watch);
        assert!(readings.len() > 20, "{readings:?}");
    }

    // the host key is verified: with an empty known_hosts a strict client refuses
    let empty = sim.path("empty_known_hosts");
    std::fs::write(&empty, "").expect("write");
    let refused = Command::new("ssh")
        .arg("-F")
        .arg(sim.path("ssh_config"))
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", empty.display()))
        .args(["fleet-0001", &command])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("verification failed"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // another command fails as on a host without that program
    let other = Command::new("ssh")
        .arg("-F")
        .arg(sim.path("ssh_config"))
        .args(["fleet-0001", "uname -a"])
        .stdin(Stdio::null())
        .output()
        .expect("ssh runs");
    assert_eq!(other.status.code(), Some(127));
    assert!(sim.port > 0);
}

fn status_of(snap: &Snapshot, name: &str) -> HostStatus {
    snap.host(name).unwrap_or_else(|| panic!("no host {name}")).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_sees_up_down_hung_and_reset_hosts() {
    // 8 hosts: a quarter down, an eighth hung, an eighth reset
    let sim = Sim::start(
        "127.44.0.1",
        &[
            "--hosts",
            "8",
            "--down",
            "0.25",
            "--hung",
            "0.125",
            "--reset",
            "0.125",
            "--interval",
            "500ms",
            "--connect-timeout",
            "2s",
            "--latency",
            "5ms",
        ],
    );
    let manifest = sim.manifest();
    let of = |mode: &str| -> Vec<String> {
        manifest
            .iter()
            .filter(|(_, m)| m == mode)
            .map(|(n, _)| n.clone())
            .collect()
    };
    let (up, down, hung, reset) = (of("up"), of("down"), of("hung"), of("reset"));
    assert_eq!((up.len(), down.len(), hung.len(), reset.len()), (4, 2, 1, 1));
    let running = lookout::runtime::start(sim.config());
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(30), "every host settled", |s| {
        up.iter().all(|h| s.host(h).is_some_and(|v| v.rounds >= 2))
            && down.iter().all(|h| status_of(s, h) == HostStatus::Unreachable)
            && reset.iter().all(|h| status_of(s, h) == HostStatus::Unreachable)
            && hung.iter().all(|h| status_of(s, h) == HostStatus::Timeout)
    })
    .await;
    for h in &up {
        let v = snap.host(h).expect("host");
        assert_eq!(v.status, HostStatus::Up);
        assert!(
            v.value(lookout::model::Metric::CpuUsage, "").is_some(),
            "{h}: cpu% after two rounds"
        );
        assert!(
            v.value(lookout::model::Metric::ProcCount, "nginx")
                .is_some_and(|n| n >= 1.0)
        );
    }
    let err = |h: &str| snap.host(h).and_then(|v| v.error.clone()).unwrap_or_default();
    assert!(err(&down[0]).contains("connection refused"), "{}", err(&down[0]));
    assert!(err(&hung[0]).contains("no answer"), "{}", err(&hung[0]));
    running.engine.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_a_hundred_hosts_all_come_up() {
    let sim = Sim::start("127.45.0.1", &["--hosts", "100", "--interval", "2s"]);
    let running = lookout::runtime::start(sim.config());
    let mut rx = running.snapshots.clone();
    // Generous: this is a check that the whole path works at scale, not a timing test.
    let snap = wait_for(&mut rx, Duration::from_secs(45), "100 hosts up with data", |s| {
        s.count_status(HostStatus::Up) == 100 && s.hosts.iter().all(|h| h.rounds >= 1)
    })
    .await;
    assert_eq!(snap.hosts.len(), 100);
    assert!(
        snap.max_risk
            .iter()
            .any(|l| l.metric == lookout::model::Metric::DiskUsedPct)
    );
    running.engine.abort();
    let _: &Path = sim.dir.path();
}

/// The scale script itself, end to end at 100 hosts with the binaries of this build: the
/// simulator, `lookout-fleet probe`, `lookout run --headless` and (with tmux) the dashboard
/// in a terminal each see every host up. A smoke test of the benchmark's whole path; its
/// figures are printed, never compared with a target.
#[test]
fn bench_script_smoke_at_a_hundred_hosts() {
    let out = tempfile::tempdir().expect("tmp");
    let tui = have("tmux");
    if !tui {
        eprintln!("tmux is missing: the script's dashboard run is skipped");
    }
    let run = Command::new("scripts/bench-fleet.sh")
        .arg("100")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BUILD", "0")
        .env("BIN", env!("CARGO_BIN_EXE_lookout-fleet"))
        .env("LOOKOUT", env!("CARGO_BIN_EXE_lookout"))
        .env("FIRST", "127.46.0.1")
        .env("OUT", out.path())
        .env("SETTLE", "1")
        .env("WINDOW", "3")
        // Generous: debug binaries on a busy CI machine.
        .env("UP_WITHIN", "90")
        .env("TUI", if tui { "1" } else { "0" })
        .stdin(Stdio::null())
        .output()
        .expect("scripts/bench-fleet.sh runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(run.status.success(), "the script failed: {:?}", run.status);
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r[1]).collect();
    let mut expected = vec!["probe", "headless"];
    if tui {
        expected.push("tui");
    }
    assert_eq!(kinds, expected, "{stdout}");
    for r in &rows {
        assert_eq!(r[0], "100");
        let up: f64 = r[2].parse().unwrap_or_else(|_| panic!("all_up_s of {r:?}"));
        assert!(up < 90.0);
        let rss: u64 = r[4].parse().unwrap_or_else(|_| panic!("rss_mb of {r:?}"));
        assert!(rss > 0, "{r:?}");
    }
    // The probe saw data from hosts in the window (any share: not a timing test).
    assert!(rows[0][5].ends_with('%'), "{:?}", rows[0]);
}

/// The mode lookout reports for a simulated host's mode once it has settled.
fn expected_status(mode: &str) -> HostStatus {
    match mode {
        "up" => HostStatus::Up,
        "hung" => HostStatus::Timeout,
        _ => HostStatus::Unreachable,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_hosts_go_and_come_back_and_lookout_follows() {
    // every 500 ms half the hosts change (down, hung, reset, back up) for 3 s, then stay
    let sim = Sim::start(
        "127.44.1.1",
        &[
            "--hosts",
            "8",
            "--interval",
            "500ms",
            "--connect-timeout",
            "1s",
            "--flap",
            "500ms",
            "--flap-share",
            "0.5",
            "--flap-for",
            "3s",
            "--seed",
            "3",
        ],
    );
    let first = sim.manifest();
    assert!(first.iter().all(|(_, m)| m == "up"), "{first:?}");
    let running = lookout::runtime::start(sim.config());
    let mut rx = running.snapshots.clone();
    // the manifest follows the modes: some host left `up` while flapping
    let mut seen_modes = std::collections::BTreeSet::new();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(4) {
        seen_modes.extend(sim.manifest().into_iter().map(|(_, m)| m));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_modes.len() >= 3, "modes seen while flapping: {seen_modes:?}");
    // settled: a down host refuses connections, an up host accepts, and lookout agrees
    let settled = sim.manifest();
    for (name, mode) in &settled {
        let i: u8 = name.trim_start_matches("fleet-").parse().expect("fleet-NNNN");
        let addr = std::net::SocketAddr::from(([127, 44, 1, i], sim.port));
        let connect = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        assert_eq!(connect.is_ok(), mode != "down", "{name} {mode}: {connect:?}");
    }
    wait_for(
        &mut rx,
        Duration::from_secs(60),
        "every host's status to match the simulator's",
        |s| settled.iter().all(|(h, m)| status_of(s, h) == expected_status(m)),
    )
    .await;
    running.engine.abort();
}
