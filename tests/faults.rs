//! Faults of docs/faults.md that no other test file shows: a Prometheus source that accepts
//! connections and never answers, one that answers garbage, a host whose sampler is killed
//! in the middle of a sample, and escape sequences in every string a remote host controls.

mod common;
// Only the namespace helpers are used here (the NFQUEUE holder is the ping tests').
#[allow(dead_code)]
mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::sshd::*;
use lookout::model::{HostStatus, Metric};

/// A loopback HTTP "Prometheus": every connection is handed to `serve` on its own thread.
/// Dropping it stops accepting and closes every connection it holds.
struct FakeProm {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeProm {
    fn start(serve: fn(TcpStream)) -> FakeProm {
        Self::start_at(0, serve)
    }

    fn start_at(port: u16, serve: fn(TcpStream)) -> FakeProm {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).expect("blocking");
                        let c = s.try_clone().expect("clone");
                        held.push(s);
                        std::thread::spawn(move || serve(c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for s in held {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        });
        FakeProm {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeProm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts and never answers (a hung Prometheus): reads the request and waits until closed.
fn never_answer(mut s: TcpStream) {
    let mut buf = [0u8; 4096];
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
}

/// Reads one request (its head and a `Content-Length` body) and answers `body` with `status`.
fn answer(mut s: TcpStream, status: &str, body: &str) {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match s.read(&mut buf) {
            Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&req[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while req.len() < head_end + length {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn garbage(s: TcpStream) {
    answer(s, "200 OK", "<html>\x1b[2Jnot Prometheus\x07</html>");
}

fn local_and_prometheus(url: &str, extra: &str) -> Arc<lookout::config::Config> {
    parse_config(&format!(
        "[general]\ninterval = \"300ms\"\n[[hosts]]\nnames = [\"here\"]\nvia = \"local\"\n\
         [[prometheus]]\nurl = \"{url}\"\nname = \"prom\"\ninterval = \"500ms\"\n{extra}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_prometheus_times_out_within_its_timeout_and_nothing_waits_for_it() {
    let prom = FakeProm::start(never_answer);
    let config = local_and_prometheus(&prom.url(), "timeout = \"1s\"\n");
    let started = Instant::now();
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let snap = wait_for(
        &mut rx,
        Duration::from_secs(8),
        "the source row says timeout",
        |s| s.host("prom").is_some_and(|h| h.status == HostStatus::Timeout),
    )
    .await;
    let took = started.elapsed();
    // One round is bounded by the timeout (1 s), not by the number of queries times it.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let err = snap
        .host("prom")
        .and_then(|h| h.error.clone())
        .unwrap_or_default();
    assert!(
        err.contains(&prom.url()) && err.contains("no answer within 1s"),
        "{err}"
    );
    // The local host kept updating all along, and keeps updating.
    let here = snap.host("here").expect("here").rounds;
    assert!(here >= 3, "local host rounds while Prometheus hung: {here}");
    wait_for(&mut rx, Duration::from_secs(3), "local host keeps going", |s| {
        s.host("here")
            .is_some_and(|h| h.rounds >= here + 4 && h.status == HostStatus::Up)
    })
    .await;
    // Still timing out round after round (nothing piled up behind the hung one).
    let t = Instant::now();
    let polls = snap.host("prom").map(|h| h.rounds).unwrap_or(0);
    wait_for(&mut rx, Duration::from_secs(4), "more timed-out rounds", |s| {
        s.host("prom")
            .is_some_and(|h| h.rounds >= polls + 2 && h.status == HostStatus::Timeout)
    })
    .await;
    assert!(t.elapsed() < Duration::from_secs(4));
    running.engine.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_or_answering_garbage_is_the_source_rows_status() {
    // Nothing listens: unreachable, with the URL.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let running = lookout::runtime::start(local_and_prometheus(&closed, "timeout = \"1s\"\n"));
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(5), "refused", |s| {
        s.host("prom")
            .is_some_and(|h| h.status == HostStatus::Unreachable)
    })
    .await;
    let err = snap
        .host("prom")
        .and_then(|h| h.error.clone())
        .unwrap_or_default();
    assert!(err.contains(&closed), "{err}");
    assert_eq!(snap.host("here").map(|h| h.status), Some(HostStatus::Up));
    running.engine.abort();

    // An HTTP server that is not Prometheus: an error naming a query, without its escapes.
    let prom = FakeProm::start(garbage);
    let running = lookout::runtime::start(local_and_prometheus(&prom.url(), "timeout = \"1s\"\n"));
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(5), "bad data", |s| {
        s.host("prom")
            .is_some_and(|h| h.status != HostStatus::Connecting && h.error.is_some())
    })
    .await;
    let h = snap.host("prom").expect("prom");
    let err = h.error.clone().unwrap_or_default();
    assert_eq!(h.status, HostStatus::Error, "{err}");
    assert!(err.starts_with("query ") && err.contains("more failing"), "{err}");
    assert!(!err.chars().any(char::is_control), "{err:?}");
    assert_eq!(snap.host("here").map(|h| h.status), Some(HostStatus::Up));
    running.engine.abort();
}

/// The next action event of the Alertmanager notifier.
async fn delivery(
    events: &mut tokio::sync::broadcast::Receiver<lookout::event::Event>,
) -> lookout::triggers::action::ActionEvent {
    loop {
        match events.recv().await {
            Ok(e) => {
                if let lookout::event::EventKind::Action(a) = e.kind
                    && a.trigger == "alertmanager"
                {
                    return a;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

fn accept_alerts(s: TcpStream) {
    answer(s, "200 OK", "{}");
}

/// Alertmanager refusing, then hung, then back: each first failure of a run of failures is
/// an action event (`failed`, with the reason), deliveries are retried with a backoff, the
/// recovery is an `ok` event, and nothing else waits for it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_down_or_hung_is_reported_and_retried_until_it_is_back() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = parse_config(&format!(
        "[general]\ninterval = \"300ms\"\n[alertmanager]\ntimeout = \"1s\"\n\
         [[hosts]]\nnames = [\"here\"]\nvia = \"local\"\n\
         [[trigger]]\nname = \"always\"\nmetric = \"mem.used_pct\"\nscope = \"each\"\nabove = 0\nfor = \"0s\"\n\
         alertmanager = [\"{url}\"]\n"
    ));
    let mut running = lookout::runtime::start(config);
    let mut events = running.subscribe_from_start();
    let mut rx = running.snapshots.clone();
    // Down: nothing listens.
    let a = tokio::time::timeout(Duration::from_secs(5), delivery(&mut events))
        .await
        .expect("a failed delivery");
    assert_eq!(a.result, lookout::triggers::action::ActionResult::Failed, "{a:?}");
    let err = a.error.clone().unwrap_or_default();
    assert!(a.argv.contains(&url) && !err.is_empty(), "{a:?}");
    let rounds = rx.borrow().host("here").map(|h| h.rounds).unwrap_or(0);
    wait_for(
        &mut rx,
        Duration::from_secs(3),
        "the local host keeps going",
        |s| s.host("here").is_some_and(|h| h.rounds >= rounds + 3),
    )
    .await;
    // Hung, then back: the retries reach it once it answers, and the recovery is reported.
    let hung = FakeProm::start_at(port, never_answer);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    drop(hung);
    let back = Instant::now();
    let _am = FakeProm::start_at(port, accept_alerts);
    let a = tokio::time::timeout(Duration::from_secs(9), delivery(&mut events))
        .await
        .expect("a delivery after the recovery");
    assert_eq!(a.result, lookout::triggers::action::ActionResult::Ok, "{a:?}");
    eprintln!("delivered {:?} after Alertmanager came back", back.elapsed());
    assert_eq!(rx.borrow().host("here").map(|h| h.status), Some(HostStatus::Up));
    running.engine.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampler_killed_mid_sample_is_an_error_and_the_host_comes_back() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let key = keygen(dir.path(), "id", "");
    let known_hosts = dir.path().join("known_hosts");
    let flag = dir.path().join("kill-next");
    // The real sampler, its output passed on line by line; while the flag file exists the
    // filter kills the whole session (sampler, filter, shell: one process group, as the OOM
    // killer or a crash would) right after the first half of a sample went out.
    let force = format!(
        "ForceCommand sh -c \"$SSH_ORIGINAL_COMMAND\" | while IFS= read -r l; do \
         printf \"%s\\n\" \"$l\"; case $l in *meminfo*) if [ -e {f} ]; then rm -f {f}; \
         kill -9 0; fi;; esac; done",
        f = flag.display()
    );
    let sshd = Sshd::start_with(&[public_key(&key)], &force);
    trust(&known_hosts, &[&sshd]);
    ssh_alias(dir.path(), &[("box", &sshd)]);
    let config = parse_config(&config_text(
        dir.path(),
        &key,
        &known_hosts,
        "strict",
        "",
        "[[hosts]]\nnames = [\"box\"]\n",
    ));
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(10), "up", |s| {
        host(s, "box").rounds >= 2
    })
    .await;
    let before = host(&snap, "box").rounds;
    for attempt in 0..2 {
        std::fs::write(&flag, "").expect("flag");
        let killed = Instant::now();
        let snap = wait_for(&mut rx, Duration::from_secs(5), "killed mid-sample", |s| {
            !status_is(s, "box", HostStatus::Up)
        })
        .await;
        assert!(!flag.exists(), "the filter did not run");
        let h = host(&snap, "box");
        let err = h.error.clone().unwrap_or_default();
        assert_eq!(h.status, HostStatus::Unreachable, "{err}");
        assert!(
            err.contains("the remote command was killed by signal KILL") && err.contains("retry in"),
            "{attempt}: {err}"
        );
        // The half sample was not taken for a whole one: no rounds were added by it, and a
        // host that is not up shows no values.
        assert!(h.value(Metric::CpuUsage, "").is_none());
        // Back within the first backoff step (1 s +20%) plus a connection and a round.
        let back = wait_for(&mut rx, Duration::from_secs(5), "back up", |s| {
            status_is(s, "box", HostStatus::Up) && host(s, "box").rounds > before
        })
        .await;
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "{:?}",
            killed.elapsed()
        );
        assert!(host(&back, "box").error.is_none());
    }
    // Counted sessions: the first, and one per kill.
    assert_eq!(sshd.log_text().matches("Accepted publickey").count(), 3);
    running.engine.abort();
}

/// A host whose address has no route (an `unreachable` route covers it) and a host that
/// drops every packet (powered off, or a firewall that answers nothing): `unreachable` at
/// once with the kernel's reason, and `timeout` after the connect timeout, each retried with
/// backoff, while a host that answers keeps updating.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_route_and_a_silent_host_fail_fast_and_others_go_on() {
    if !can_run() {
        return;
    }
    let net = support::netns::TestNet::with_veth();
    // Inside the namespace, every packet that arrives is dropped without an answer.
    net.exec(&["nft", "add", "table", "inet", "silent"]);
    net.exec(&[
        "nft",
        "add",
        "chain",
        "inet",
        "silent",
        "in",
        "{ type filter hook input priority 0; policy drop; }",
    ]);
    let dir = tempfile::tempdir().expect("tmp");
    let key = keygen(dir.path(), "id", "");
    let known_hosts = dir.path().join("known_hosts");
    let fine = Sshd::start(&[public_key(&key)]);
    trust(&known_hosts, &[&fine]);
    ssh_alias(dir.path(), &[("fine", &fine)]);
    let (unrouted, silent) = (
        format!("root@{}", net.unrouted()),
        format!("root@{}", net.inside()),
    );
    let text = config_text(
        dir.path(),
        &key,
        &known_hosts,
        "strict",
        "",
        &format!("[[hosts]]\nnames = [\"fine\", \"{unrouted}\", \"{silent}\"]\n"),
    )
    .replace("connect_timeout = \"3s\"", "connect_timeout = \"1s\"");
    let config = parse_config(&text);
    let started = Instant::now();
    let running = lookout::runtime::start(config);
    let mut rx = running.snapshots.clone();
    let snap = wait_for(&mut rx, Duration::from_secs(5), "both failures", |s| {
        status_is(s, &unrouted, HostStatus::Unreachable) && status_is(s, &silent, HostStatus::Timeout)
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let e = host(&snap, &unrouted).error.clone().unwrap_or_default();
    assert!(e.contains("No route to host") && e.contains("retry in"), "{e}");
    let e = host(&snap, &silent).error.clone().unwrap_or_default();
    assert!(
        e.contains(&format!("no answer from {} within 1s", net.inside())) && e.contains("retry in"),
        "{e}"
    );
    let before = host(&snap, "fine").rounds;
    wait_for(&mut rx, Duration::from_secs(3), "fine keeps going", |s| {
        status_is(s, "fine", HostStatus::Up) && host(s, "fine").rounds >= before + 3
    })
    .await;
    running.engine.abort();
    drop(net);
}

/// Every string of `v` (keys and values, nested).
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                strings(x, out);
            }
        }
        _ => {}
    }
}

fn no_control(what: &str, texts: &[String]) {
    for t in texts {
        assert!(!t.chars().any(char::is_control), "{what}: {t:?}");
    }
}

fn json_strings<T: serde::Serialize>(v: &T) -> Vec<String> {
    let json = serde_json::to_value(v).expect("json");
    let mut out = Vec::new();
    strings(&json, &mut out);
    out
}

/// ESC, CSI (7-bit and the C1 form), OSC ended by BEL and by ST, DCS, a backspace and a DEL:
/// what a hostile host would put into a string lookout shows. (No whitespace: fields of
/// /proc files and `df` are split at it, carriage returns and newlines go where they can;
/// no colon, which ends an interface name in /proc/net/dev and is not allowed in one.)
const NASTY: &str = "\x1b[2J\x1b]0;pwned\x07\u{9b}31m\x1b]8;;x\x1b\\\x1bP1$r\x1b\\\x08\x7f";

/// A format-1 sample whose every string a host controls (interface, mount point, process
/// name and command line) holds [`NASTY`]; `@ID@` is the request id.
fn hostile_sample() -> String {
    let n = NASTY;
    format!(
        "@@lookout 1 99999 100 4096 @ID@\n\
         ==> /proc/stat <==\ncpu  100 0 100 1000 0 0 0 0 0 0\ncpu0 100 0 100 1000 0 0 0 0 0 0\n\
         ==> /proc/meminfo <==\nMemTotal: 1000000 kB\nMemFree: 500000 kB\nMemAvailable: 600000 kB\n\
         SwapTotal: 0 kB\nSwapFree: 0 kB\n\
         ==> /proc/loadavg <==\n0.50 0.40 0.30 1/100 1234\n\
         ==> /proc/uptime <==\n1000.00 900.00\n\
         ==> /proc/net/dev <==\n\
         Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n  \
         e{n}th0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n\
         ==> /proc/mounts <==\n/dev/vdz1 /mnt/{n}x ext4 rw,relatime 0 0\n\
         @@df\nFilesystem     1024-blocks    Used Available Capacity Mounted on\n\
         /dev/vdz1            1000     900       100      90% /mnt/{n}x\n\
         @@procs\n\
         ==> /proc/4242/stat <==\n4242 (evil{n}d) S 1 4242 4242 0 -1 4194560 100 0 0 0 10 5 0 0 20 0 1 0 100 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n\
         ==> /proc/4242/statm <==\n250 100 50 1 0 80 0\n\
         ==> /proc/4242/cmdline <==\nevild\0--title={n}\r\n\0{n}\n\
         @@end @ID@\n"
    )
}

/// The hostile strings must not survive into what lookout shows, exports or hands actions.
/// Every string a remote party controls is fed through the real path: a host's sample over
/// a real sshd (interface, mount, process name and command line), its login banner and
/// foreign output (an error message), checks run on it and locally (messages, perfdata and
/// Prometheus-text labels), and a Prometheus source answering label values with escapes
/// (host names, groups, mounts, interfaces, cores). Then the JSON snapshot, the events (JSON
/// and the headless text), every cell the dashboard draws (overview and each host's
/// detail), and the LOOKOUT_* variables and argv of the actions triggers ran must hold none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_every_remote_string_reach_no_output() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path();
    let key = keygen(d, "id", "");
    let known_hosts = d.join("known_hosts");
    // The sampler gets the hostile sample for each request; checks run for real.
    assert!(!lookout::collectors::remote::command(true).contains("lookout-check"));
    // The sample itself is valid: the parser reads every hostile string from it.
    let watch = lookout::collectors::remote::Watch {
        processes: vec![Arc::from("evild")],
        ..Default::default()
    };
    let parsed =
        lookout::collectors::remote::parse(&hostile_sample().replace("@ID@", "1"), &watch).expect("parses");
    assert!(
        parsed
            .readings
            .iter()
            .any(|r| r.metric == Metric::DiskUsedPct && r.instance.starts_with("/mnt/"))
    );
    assert!(
        parsed
            .readings
            .iter()
            .any(|r| r.metric == Metric::NetRxBytes && r.instance.ends_with("th0"))
    );
    std::fs::write(d.join("sample.txt"), hostile_sample()).expect("sample");
    std::fs::write(
        d.join("force.sh"),
        format!(
            "case \"$SSH_ORIGINAL_COMMAND\" in\n*lookout-check*) exec sh -c \"$SSH_ORIGINAL_COMMAND\";;\n\
             *) while read -r n rest; do sed \"s/@ID@/$n/\" {s}; done;;\nesac\n",
            s = d.join("sample.txt").display()
        ),
    )
    .expect("force.sh");
    std::fs::write(d.join("banner.txt"), format!("Welcome{NASTY}\n")).expect("banner");
    let hostile = Sshd::start_with(
        &[public_key(&key)],
        &format!(
            "ForceCommand sh {}\nBanner {}",
            d.join("force.sh").display(),
            d.join("banner.txt").display()
        ),
    );
    // A host that answers its own text instead of a sample: the error quotes it.
    let chatty = Sshd::start_with(
        &[public_key(&key)],
        "ForceCommand while read n rest; do printf 'Last login: \\033]0;pwned\\007\\033[2J\\233m\\r\\n'; echo \"@@end $n\"; done",
    );
    trust(&known_hosts, &[&hostile, &chatty]);
    ssh_alias(d, &[("hostile", &hostile), ("chatty", &chatty)]);
    let prom = FakeProm::start(hostile_prometheus);
    let acts = d.join("actions");
    std::fs::create_dir(&acts).expect("actions dir");
    let run = format!(
        "run = [\"sh\", \"-c\", \"f=\\\"$1\\\"/$$; env -0 > \\\"$f\\\".env; shift; printf '%s\\\\0' \\\"$@\\\" > \\\"$f\\\".argv\", \
         \"sh\", \"{}\", \"{{trigger}}\", \"{{host}}\", \"{{instance}}\", \"{{metric}}\", \"{{value}}\", \"{{message}}\"]\n",
        acts.display()
    );
    let checks = r#"
[[check]]
name = "esc_nagios"
hosts = ["hostile", "here"]
command = "printf 'OK \\033[2J\\033]0;x\\007 fine|a\\033[31m=1;2;3\\n'"
format = "nagios"
interval = "1s"
timeout = "5s"
[[check]]
name = "esc_number"
hosts = ["hostile", "here"]
command = "printf '7 jobs \\033]0;x\\007\\302\\233m\\n'"
interval = "1s"
timeout = "5s"
[[check]]
name = "esc_prom"
hosts = ["hostile", "here"]
command = "printf 'q{l=\"a\\033[31mb\\007\"} 3\\nq{l=\"\\033]0;t\\007\"} 4\\n'"
format = "prometheus"
interval = "1s"
timeout = "5s"
"#;
    let triggers = format!(
        "[[trigger]]\nname = \"full\"\nmetric = \"disk.used_pct\"\nscope = \"each\"\nabove = 50\nfor = \"0s\"\n{run}\
         [[trigger]]\nname = \"traffic\"\nmetric = \"net.rx_bytes\"\nscope = \"each\"\nabove = 0\nfor = \"0s\"\n{run}\
         [[trigger]]\nname = \"unknown\"\nmetric = \"check.esc_nagios.status\"\nscope = \"each\"\nabove = 2\nfor = \"0s\"\n{run}\
         [[trigger]]\nname = \"labels\"\nmetric = \"check.esc_prom\"\nscope = \"each\"\nabove = 0\nfor = \"0s\"\n{run}"
    );
    let text = config_text(
        d,
        &key,
        &known_hosts,
        "strict",
        "",
        &format!(
            "[[hosts]]\nnames = [\"hostile\", \"chatty\"]\n[[hosts]]\nnames = [\"here\"]\nvia = \"local\"\n\
             [[watch.processes]]\nhosts = [\"hostile\"]\nnames = [\"evild\"]\n\
             [[prometheus]]\nurl = \"{}\"\nname = \"prom\"\ninterval = \"500ms\"\ngroup_label = \"team\"\ntimeout = \"2s\"\n\
             {checks}{triggers}",
            prom.url()
        ),
    );
    let config = parse_config(&text);
    let mut running = lookout::runtime::start(config.clone());
    let mut events = running.subscribe_from_start();
    let mut rx = running.snapshots.clone();
    let snap = wait_for(
        &mut rx,
        Duration::from_secs(12),
        "every hostile string arrived",
        |s| {
            let Some(h) = s.host("hostile") else { return false };
            let prom_host = s
                .hosts
                .iter()
                .any(|h| h.name.starts_with("pr") && &*h.name != "prom");
            h.status == HostStatus::Up
                && !h.processes.is_empty()
                && h.checks.len() == 3
                && s.host("here").is_some_and(|h| h.checks.len() == 3)
                && s.host("chatty").is_some_and(|h| h.status == HostStatus::Error)
                && prom_host
        },
    )
    .await;

    // The strings arrived (so the test shows something), with their escapes gone.
    let h = snap.host("hostile").expect("hostile");
    let p = &h.processes[0];
    assert!(
        p.name.starts_with("evil") && p.cmdline.starts_with("evild --title="),
        "{p:?}"
    );
    let mounts: Vec<&str> = h.values(Metric::DiskUsedPct).map(|r| &*r.instance).collect();
    assert!(mounts.iter().any(|m| m.starts_with("/mnt/")), "{mounts:?}");
    let ifaces: Vec<&str> = h.values(Metric::NetRxBytes).map(|r| &*r.instance).collect();
    assert!(
        ifaces.iter().any(|i| i.starts_with('e') && i.ends_with("th0")),
        "{ifaces:?}"
    );
    let err = snap
        .host("chatty")
        .and_then(|h| h.error.clone())
        .unwrap_or_default();
    assert!(
        err.contains("not a lookout sample") && err.contains("Last login:"),
        "{err}"
    );
    let nagios = h.check("esc_nagios").expect("nagios check");
    assert_eq!(nagios.status, 3, "{nagios:?}");
    assert!(
        nagios.message.starts_with("the output holds control characters"),
        "{nagios:?}"
    );

    // JSON snapshot: every key and value.
    let all = json_strings(&*snap);
    no_control("JSON snapshot", &all);
    assert!(
        all.iter().any(|s| s.starts_with("/mnt/")) && all.iter().any(|s| s.starts_with("evild --title="))
    );

    // The dashboard: the overview and every host's detail view, cell by cell.
    let mut app = lookout::ui::app::App::new(
        &config,
        lookout::ui::theme::Theme::load("default", false).expect("theme"),
        lookout::ui::keymap::Keymap::default(),
        snap.clone(),
        std::time::SystemTime::now(),
    );
    let mut screens = Vec::new();
    let mut draw = |app: &mut lookout::ui::app::App| {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(200, 60)).expect("terminal");
        t.draw(|f| lookout::ui::draw::draw(f, app)).expect("draw");
        let buf = t.backend().buffer().clone();
        let text: String = buf.content().iter().map(|c| c.symbol()).collect();
        screens.push(text);
    };
    draw(&mut app);
    for name in snap.hosts.iter().map(|h| h.name.to_string()).collect::<Vec<_>>() {
        app.jump_to(&name);
        app.on_key(&crossterm::event::KeyEvent::from(
            crossterm::event::KeyCode::Enter,
        ));
        draw(&mut app);
        app.on_key(&crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Esc));
    }
    no_control("the screen", &screens);
    assert!(
        screens.iter().any(|s| s.contains("/mnt/")),
        "a detail view shows the mount"
    );

    // Actions: wait for the four triggers to have run on the hostile strings.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let seen = std::fs::read_dir(&acts)
            .expect("actions")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "argv"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect::<Vec<_>>();
        let ran = |t: &str| seen.iter().any(|a| a.starts_with(&format!("{t}\0")));
        if ["full", "traffic", "unknown", "labels"].iter().all(|t| ran(t)) {
            break;
        }
        assert!(Instant::now() < deadline, "actions that ran: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give the last actions' files time to be complete, then read every one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut vars = Vec::new();
    let mut argv = Vec::new();
    for e in std::fs::read_dir(&acts).expect("actions").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let parts = text.split('\0').map(String::from);
        if e.path().extension().is_some_and(|x| x == "env") {
            vars.extend(parts.filter(|v| v.starts_with("LOOKOUT_")));
        } else {
            argv.extend(parts);
        }
    }
    no_control("LOOKOUT_* variables", &vars);
    no_control("action argv", &argv);
    assert!(
        vars.iter().any(|v| v.starts_with("LOOKOUT_INSTANCE=/mnt/")),
        "{vars:?}"
    );
    assert!(vars.iter().any(|v| v.starts_with("LOOKOUT_HOST=pr")), "{vars:?}");
    assert!(
        vars.iter()
            .any(|v| v.starts_with("LOOKOUT_MESSAGE=the output holds control characters")),
        "{vars:?}"
    );

    // Events, as JSON and as the headless runner prints them.
    let mut texts = Vec::new();
    while let Ok(e) = events.try_recv() {
        texts.extend(json_strings(&e));
        texts.push(e.summary());
    }
    assert!(texts.len() > 10, "{texts:?}");
    no_control("events", &texts);
    running.engine.abort();
}

/// A Prometheus whose every answer is one series with escapes in every label value.
fn hostile_prometheus(s: TcpStream) {
    let e = "\\u001b[2J\\u001b]0;pwned\\u0007\\u009b31m\\r\\n";
    let body = format!(
        "{{\"status\":\"success\",\"data\":{{\"resultType\":\"vector\",\"result\":[{{\"metric\":{{\
         \"instance\":\"pr{e}host\",\"team\":\"w{e}eb\",\"device\":\"e{e}th0\",\"mountpoint\":\"/mnt/{e}p\",\
         \"cpu\":\"0{e}\",\"groupname\":\"g{e}\"}},\"value\":[1700000000.0,\"90\"]}}]}}}}"
    );
    answer(s, "200 OK", &body);
}
