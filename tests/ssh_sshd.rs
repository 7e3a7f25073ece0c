//! The SSH collector against real OpenSSH sshd instances on loopback.

mod common;

use std::time::{Duration, Instant};

use common::sshd::*;
use lookout::model::{HostStatus, Metric};

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
    fn config(&self, policy: &str, hosts: &[&str]) -> String {
        let names = hosts
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        config_text(
            self.dir.path(),
            &self.key,
            &self.known_hosts,
            policy,
            "",
            &format!("[[hosts]]\nnames = [{names}]\n"),
        )
    }
    fn trust(&self, sshds: &[&Sshd]) {
        trust(&self.known_hosts, sshds);
    }
    /// An ssh config giving `alias` the address and port of `sshd`.
    fn alias(&self, entries: &[(&str, &Sshd)]) {
        ssh_alias(self.dir.path(), entries);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_hashed_known_hosts_and_metrics_agree_with_local() {
    if !can_run() {
        return;
    }
    let s = setup();
    let sshd = Sshd::start(&[public_key(&s.key)]);
    s.trust(&[&sshd]);
    // hashed entries, as HashKnownHosts writes them
    run(
        "ssh-keygen",
        &["-q", "-H", "-f", s.known_hosts.to_str().expect("utf8")],
    );
    assert!(
        std::fs::read_to_string(&s.known_hosts)
            .expect("kh")
            .starts_with("|1|")
    );
    s.alias(&[("box", &sshd)]);
    let config = parse_config(
        &(s.config("strict", &["box"]) + "[[watch.processes]]\nhosts = [\"box\"]\nnames = [\"sshd\"]\n"),
    );
    let running = lookout::runtime::start(config.clone());
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "3 rounds", |s| {
        host(s, "box").rounds >= 3
    })
    .await;
    let h = host(&snap, "box");
    assert_eq!(h.status, HostStatus::Up);
    assert!(h.value(Metric::CpuUsage, "").is_some());
    assert!(h.value(Metric::HostPollMs, "").expect("poll ms") < 1500.0);
    // the sshd serving us is a watched process
    assert!(h.value(Metric::ProcCount, "sshd").expect("sshd count") >= 1.0);

    // Remote figures agree with the local collector's.
    let mut local = lookout::collectors::local::LocalCollector::new(&config.hosts[0]).expect("local");
    let l = local.collect();
    let lv = |m: Metric, i: &str| {
        l.readings
            .iter()
            .find(|r| r.metric == m && &*r.instance == i)
            .map(|r| r.value)
            .expect("local value")
    };
    let rv = |m: Metric, i: &str| h.value(m, i).expect("remote value");
    assert_eq!(rv(Metric::MemTotal, ""), lv(Metric::MemTotal, ""));
    assert!((rv(Metric::MemUsedPct, "") - lv(Metric::MemUsedPct, "")).abs() < 5.0);
    assert!((rv(Metric::Load1, "") - lv(Metric::Load1, "")).abs() < 1.5);
    assert!((rv(Metric::DiskUsedPct, "/") - lv(Metric::DiskUsedPct, "/")).abs() < 1.0);
    assert_eq!(rv(Metric::DiskTotal, "/"), lv(Metric::DiskTotal, "/"));
    assert!(sshd.log_text().contains("Accepted publickey for root"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused_before_any_command() {
    if !can_run() {
        return;
    }
    let s = setup();
    let sshd = Sshd::start(&[public_key(&s.key)]);
    // known_hosts holds another key for this address
    let other = keygen(s.dir.path(), "other_host", "");
    let alg_b64: Vec<String> = public_key(&other)
        .split_whitespace()
        .take(2)
        .map(String::from)
        .collect();
    std::fs::write(
        &s.known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, alg_b64.join(" ")),
    )
    .expect("kh");
    let config = parse_config(&s.config("accept-new", &[&format!("root@127.0.0.1:{}", sshd.port)]));
    let name = config.hosts[0].name.to_string();
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "host_key_mismatch", |s| {
        status_is(s, &name, HostStatus::HostKeyMismatch)
    })
    .await;
    let err = host(&snap, &name).error.clone().expect("error");
    assert!(err.contains("SHA256:") && err.contains("CHANGED"), "{err}");
    // accept-new never replaces a changed key
    assert_eq!(
        std::fs::read_to_string(&s.known_hosts)
            .expect("kh")
            .lines()
            .count(),
        1
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = sshd.log_text();
    assert!(!log.contains("Accepted publickey"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_strict_refused_accept_new_recorded() {
    if !can_run() {
        return;
    }
    let s = setup();
    let sshd = Sshd::start(&[public_key(&s.key)]);
    let target = format!("root@127.0.0.1:{}", sshd.port);
    {
        let running = lookout::runtime::start(parse_config(&s.config("strict", &[&target])));
        let mut rx = running.snapshots.clone();
        let snap = wait_for(&mut rx, Duration::from_secs(10), "strict refusal", |s| {
            status_is(s, &target, HostStatus::HostKeyMismatch)
        })
        .await;
        let err = host(&snap, &target).error.clone().expect("error");
        assert!(
            err.contains("unknown host key") && err.contains("SHA256:"),
            "{err}"
        );
        assert!(!s.known_hosts.exists());
    }
    let running = lookout::runtime::start(parse_config(&s.config("accept-new", &[&target])));
    let mut rx = running.snapshots.clone();
    wait_for(&mut rx, Duration::from_secs(10), "up under accept-new", |s| {
        host(s, &target).rounds >= 1
    })
    .await;
    let kh = std::fs::read_to_string(&s.known_hosts).expect("recorded");
    assert_eq!(kh.trim(), sshd.known_hosts_line(), "{kh}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_and_failed_auth() {
    if !can_run() {
        return;
    }
    let s = setup();
    // a passphrase-protected key and a key the server does not know
    let locked = keygen(s.dir.path(), "locked", "secret phrase");
    let stranger = keygen(s.dir.path(), "stranger", "");
    let sshd = Sshd::start(&[public_key(&locked)]);
    s.trust(&[&sshd]);
    let closed_port = free_port();
    let text = config_text(
        s.dir.path(),
        &stranger,
        &s.known_hosts,
        "strict",
        "",
        &format!(
            "[[hosts]]\nnames = [\"root@127.0.0.1:{closed_port}\", \"root@127.0.0.1:{}\"]\n",
            sshd.port
        ),
    )
    .replace(
        &format!("identity_files = [\"{}\"]", stranger.display()),
        &format!(
            "identity_files = [\"{}\", \"{}\"]",
            stranger.display(),
            locked.display()
        ),
    );
    let config = parse_config(&text);
    let (refused, auth) = (config.hosts[0].name.to_string(), config.hosts[1].name.to_string());
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "both failures", |s| {
        status_is(s, &refused, HostStatus::Unreachable) && status_is(s, &auth, HostStatus::AuthFailed)
    })
    .await;
    let e = host(&snap, &refused).error.clone().expect("error");
    assert!(e.contains("connection refused") && e.contains("retry in"), "{e}");
    let e = host(&snap, &auth).error.clone().expect("error");
    assert!(e.contains("passphrase-protected") && e.contains("ssh-add"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sshd_is_reconnected_when_it_returns() {
    if !can_run() {
        return;
    }
    let s = setup();
    let mut sshd = Sshd::start(&[public_key(&s.key)]);
    s.trust(&[&sshd]);
    let target = format!("root@127.0.0.1:{}", sshd.port);
    let running = lookout::runtime::start(parse_config(&s.config("strict", &[&target])));
    let mut rx = running.snapshots.clone();
    wait_for(&mut rx, Duration::from_secs(10), "up", |s| {
        host(s, &target).rounds >= 2
    })
    .await;
    sshd.kill();
    let snap = wait_for(&mut rx, Duration::from_secs(5), "down", |s| {
        !status_is(s, &target, HostStatus::Up)
    })
    .await;
    let before = host(&snap, &target).rounds;
    sshd.launch();
    let t = Instant::now();
    wait_for(&mut rx, Duration::from_secs(15), "reconnected", |s| {
        status_is(s, &target, HostStatus::Up) && host(s, &target).rounds > before
    })
    .await;
    eprintln!("reconnected {:?} after the restart", t.elapsed());

    // a reconnect asked by the UI re-opens at once
    let snap = rx.borrow().clone();
    let before = host(&snap, &target).rounds;
    running.reconnect.send(target.as_str().into()).expect("reconnect");
    wait_for(&mut rx, Duration::from_secs(5), "rounds after reconnect", |s| {
        status_is(s, &target, HostStatus::Up) && host(s, &target).rounds > before + 1
    })
    .await;
    assert!(sshd.log_text().matches("Accepted publickey").count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_host_times_out_while_others_keep_updating() {
    if !can_run() {
        return;
    }
    let s = setup();
    let hung = Sshd::start(&[public_key(&s.key)]);
    let fine = Sshd::start(&[public_key(&s.key)]);
    s.trust(&[&hung, &fine]);
    s.alias(&[("hung", &hung), ("fine", &fine)]);
    let running = lookout::runtime::start(parse_config(&s.config("strict", &["hung", "fine"])));
    let mut rx = running.snapshots.clone();
    wait_for(&mut rx, Duration::from_secs(10), "both up", |s| {
        host(s, "hung").rounds >= 2 && host(s, "fine").rounds >= 2
    })
    .await;
    hung.stop();
    let stopped = Instant::now();
    let fine_before = host(&rx.borrow(), "fine").rounds;
    let snap = wait_for(&mut rx, Duration::from_secs(5), "timeout", |s| {
        status_is(s, "hung", HostStatus::Timeout)
    })
    .await;
    let took = stopped.elapsed();
    // poll timeout 1.5 s plus at most one interval (0.3 s) before the poll that hangs
    assert!(took < Duration::from_millis(2300), "{took:?}");
    assert!(
        host(&snap, "hung")
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no answer within")
    );
    let snap = wait_for(&mut rx, Duration::from_secs(3), "fine keeps going", |s| {
        host(s, "fine").rounds >= fine_before + 4
    })
    .await;
    assert_eq!(host(&snap, "fine").status, HostStatus::Up);
    hung.resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_or_foreign_output_is_an_error_not_a_crash() {
    if !can_run() {
        return;
    }
    let s = setup();
    // one host answers with endless output, one with a login banner instead of a sample
    let flood = Sshd::start_with(&[public_key(&s.key)], "ForceCommand yes lookout-flood");
    let chatty = Sshd::start_with(
        &[public_key(&s.key)],
        "ForceCommand read n rest; echo Welcome; echo \"@@end $n\"; sleep 60",
    );
    s.trust(&[&flood, &chatty]);
    s.alias(&[("flood", &flood), ("chatty", &chatty)]);
    let text = s
        .config("strict", &["flood", "chatty"])
        .replace("[ssh]\n", "[ssh]\nmax_output = 65536\n");
    let running = lookout::runtime::start(parse_config(&text));
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "both errors", |s| {
        status_is(s, "flood", HostStatus::Error) && status_is(s, "chatty", HostStatus::Error)
    })
    .await;
    let e = host(&snap, "flood").error.clone().expect("error");
    assert!(e.contains("more than 65536 bytes"), "{e}");
    let e = host(&snap, "chatty").error.clone().expect("error");
    assert!(e.contains("not a lookout sample"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_snapshot_includes_remote_hosts_with_status_and_error() {
    if !can_run() {
        return;
    }
    let s = setup();
    let sshd = Sshd::start(&[public_key(&s.key)]);
    s.trust(&[&sshd]);
    s.alias(&[("box", &sshd)]);
    let closed = free_port();
    let text = s.config("strict", &["box", &format!("root@127.0.0.1:{closed}")]);
    let snap = lookout::commands::collect_snapshot(parse_config(&text), 2).await;
    let json: serde_json::Value = serde_json::to_value(&*snap).expect("json");
    let hosts = json["hosts"].as_array().expect("hosts");
    let find = |name: &str| hosts.iter().find(|h| h["host"] == name).expect("host in json");
    assert_eq!(find("box")["status"], "up");
    assert!(find("box")["metrics"].as_array().expect("metrics").len() > 10);
    let down = find(&format!("root@127.0.0.1:{closed}"));
    assert_eq!(down["status"], "unreachable");
    assert!(
        down["error"]
            .as_str()
            .expect("error")
            .contains("connection refused")
    );
}
