//! `lookout serve` and its viewers, end to end: the real binary serving on a real Unix
//! socket; viewers that are the real `attach` in tmux, the real `snapshot --socket`, or raw
//! protocol clients that misbehave on purpose.

mod common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::sshd::{Sshd, config_text, keygen, public_key};
use lookout::serve::client;
use lookout::serve::protocol::{self, ClientMsg, Hello, SERVER_FRAME_LIMIT, ServerMsg, WireCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_lookout");

/// A local host whose `host.up below 2` trigger fires at once: something to acknowledge.
const LOCAL: &str = r#"
[general]
interval = "300ms"

[[hosts]]
names = ["local"]
via = "local"

[[trigger]]
name = "always"
metric = "host.up"
scope = "each"
below = 2
for = "0s"
severity = "warning"
"#;

/// A `lookout serve` child; stopped with SIGTERM (then SIGKILL) when dropped.
struct Server {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
    config: PathBuf,
    extra: Vec<String>,
}

impl Server {
    fn start(dir: &Path, config_text: &str, extra: &[&str]) -> Server {
        let config = dir.join("config.toml");
        std::fs::write(&config, config_text).expect("config");
        let mut s = Server {
            child: None,
            socket: dir.join("lookout.sock"),
            log: dir.join("serve.log"),
            config,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let before = self.log_text().matches("serving ").count();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--socket")
            .arg(&self.socket)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("lookout serve starts");
        self.child = Some(child);
        let start = Instant::now();
        while self.log_text().matches("serving ").count() == before {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "server did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: the socket file stays behind, as after a crash.
    fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    fn snapshot_json(&self) -> serde_json::Value {
        let out = lookout(&["snapshot", "--json", "--socket", &self.socket.to_string_lossy()]);
        assert!(
            out.status.success(),
            "snapshot --socket: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("snapshot JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lookout(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("lookout runs")
}

/// A directory others may enter, so that only the socket's own mode keeps them out.
fn open_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn as_nobody(group: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            "--reuid=nobody",
            &format!("--regid={group}"),
            "--clear-groups",
            BIN,
        ])
        .args(args)
        .output()
        .expect("setpriv runs")
}

#[test]
fn only_the_owner_may_attach() {
    let dir = open_dir();
    let server = Server::start(dir.path(), LOCAL, &[]);
    let meta = std::fs::metadata(&server.socket).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o600);
    let sock = server.socket.to_string_lossy().to_string();
    let out = as_nobody("nogroup", &["snapshot", "--json", "--socket", &sock]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "nobody got in: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("Permission denied"), "{err}");
    assert!(out.stdout.is_empty());
    // The owner is served.
    let snap = server.snapshot_json();
    assert_eq!(snap["hosts"][0]["host"], "local");
}

#[test]
fn a_group_may_attach_when_named() {
    let dir = open_dir();
    let server = Server::start(dir.path(), LOCAL, &["--group", "nogroup"]);
    let meta = std::fs::metadata(&server.socket).expect("socket");
    assert_eq!(meta.mode() & 0o777, 0o660);
    let nogroup = lookout::serve::socket::Group::lookup("nogroup").expect("nogroup exists");
    assert_eq!(meta.gid(), nogroup.gid);
    let sock = server.socket.to_string_lossy().to_string();
    let out = as_nobody("nogroup", &["snapshot", "--json", "--socket", &sock]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(snap["hosts"][0]["host"], "local");
    assert!(server.log_text().contains("nobody attached") || server.log_text().contains("serving"));
}

#[test]
fn stale_socket_replaced_live_one_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), LOCAL, &[]);
    let sock = server.socket.to_string_lossy().to_string();
    let out = lookout(&["serve", "--socket", &sock]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already running on"), "{err}");
    server.crash();
    assert!(server.socket.exists(), "a crash leaves the socket behind");
    server.launch();
    assert!(
        server.log_text().contains("replacing the stale socket"),
        "{}",
        server.log_text()
    );
    assert_eq!(server.snapshot_json()["hosts"][0]["host"], "local");
    // SIGTERM: a clean stop that removes the socket.
    let status = server.stop().expect("stopped");
    assert!(status.success(), "{status:?}");
    assert!(!Path::new(&sock).exists());
    assert!(server.log_text().contains("stopping (SIGTERM)"));
}

#[test]
fn reload_over_the_socket_applies_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), LOCAL, &[]);
    let out = lookout(&["reload", "--socket", &server.socket.to_string_lossy()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("config reloaded: nothing changed"), "{text}");
}

type Reader = BufReader<tokio::net::unix::OwnedReadHalf>;
type Writer = tokio::net::unix::OwnedWriteHalf;

async fn raw(path: &Path, hello: &str) -> (Reader, Writer, Hello) {
    let stream = tokio::net::UnixStream::connect(path).await.expect("connects");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    w.write_all(hello.as_bytes()).await.expect("hello");
    let answer = protocol::read_hello(&mut r).await.expect("answer");
    (r, w, answer)
}

async fn hello(path: &Path, want: &str) -> (Reader, Writer) {
    let (r, w, answer) = raw(
        path,
        &format!(
            "{{\"lookout_protocol\":{},\"want\":\"{want}\"}}\n",
            protocol::VERSION
        ),
    )
    .await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.user.as_deref(), Some("root"));
    (r, w)
}

async fn next(r: &mut Reader) -> ServerMsg<'static> {
    let mut buf = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        protocol::read_frame(r, SERVER_FRAME_LIMIT, &mut buf),
    )
    .await
    .expect("a frame within 5 s")
    .expect("a good frame")
}

/// Reads until a reply, skipping state and events.
async fn reply(r: &mut Reader) -> (bool, String) {
    loop {
        if let ServerMsg::Reply { ok, text } = next(r).await {
            return (ok, text);
        }
    }
}

/// Reads a viewer's frames for `d`: how many state frames came.
async fn states_within(r: &mut Reader, d: Duration) -> usize {
    let end = tokio::time::Instant::now() + d;
    let mut n = 0;
    let mut buf = Vec::new();
    while let Ok(m) = tokio::time::timeout_at(
        end,
        protocol::read_frame::<ServerMsg>(r, SERVER_FRAME_LIMIT, &mut buf),
    )
    .await
    {
        if matches!(m.expect("good frame"), ServerMsg::Full(_) | ServerMsg::Delta(_)) {
            n += 1;
        }
    }
    n
}

#[tokio::test]
async fn bad_input_hurts_nobody_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), LOCAL, &[]);
    let path = server.socket.clone();
    let (mut good, _good_w) = hello(&path, "view").await;
    assert!(
        matches!(next(&mut good).await, ServerMsg::Full(_)),
        "a full state first"
    );

    // A viewer that never reads, kept open through everything below.
    let (_stalled_r, _stalled_w) = hello(&path, "view").await;

    // Not lookout at all.
    let (_r, _w, answer) = raw(&path, "GET / HTTP/1.1\r\n").await;
    assert!(
        answer
            .error
            .as_deref()
            .is_some_and(|e| e.contains("not a lookout handshake")),
        "{answer:?}"
    );

    // Another version.
    let (_r, _w, answer) = raw(&path, "{\"lookout_protocol\":99,\"want\":\"view\"}\n").await;
    let e = answer.error.unwrap_or_default();
    assert!(
        e.contains(&format!("protocol {}", protocol::VERSION))
            && e.contains("protocol 99")
            && e.contains("same lookout version"),
        "{e}"
    );

    // An oversized frame: refused before anything is allocated, then closed.
    let (mut r, mut w) = hello(&path, "control").await;
    w.write_all(&[0xff, 0xff, 0xff, 0xff]).await.expect("write");
    let (ok, text) = reply(&mut r).await;
    assert!(!ok && text.contains("over the limit"), "{text}");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut rest)).await;

    // Garbage in a frame.
    let (mut r, mut w) = hello(&path, "control").await;
    w.write_all(&[0, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc])
        .await
        .expect("write");
    let (ok, text) = reply(&mut r).await;
    assert!(!ok && text.contains("bad frame"), "{text}");

    // A truncated frame and a vanished peer.
    let (_r, mut w) = hello(&path, "view").await;
    w.write_all(&[0, 0, 0, 100, 1, 2, 3]).await.expect("write");
    drop(w);

    // A flood of commands: most are dropped, and said so.
    let (mut r, mut w) = hello(&path, "control").await;
    let cmd = protocol::encode(&ClientMsg::Command(WireCommand::Acknowledge {
        trigger: "always".into(),
        host: "local".into(),
        instance: String::new(),
    }))
    .expect("encode");
    let mut burst = Vec::new();
    for _ in 0..5000 {
        burst.extend_from_slice(&cmd);
    }
    w.write_all(&burst).await.expect("flood");
    let (ok, text) = reply(&mut r).await;
    assert!(!ok && text.contains("too many commands"), "{text}");

    // The good viewer kept getting its deltas all along, and fresh ones still come.
    let n = states_within(&mut good, Duration::from_secs(2)).await;
    assert!(n >= 2, "only {n} state frames in 2 s");
    assert!(server.alive(), "{}", server.log_text());
    assert_eq!(server.snapshot_json()["hosts"][0]["host"], "local");
    let log = server.log_text();
    assert!(log.contains("too many commands"), "{log}");
    assert!(log.contains("over the limit"), "{log}");
}

#[tokio::test]
async fn viewers_say_the_server_is_gone_and_reattach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(dir.path(), LOCAL, &[]);
    let config = common::sshd::parse_config(LOCAL);
    let mut feeds = client::attach_feeds(&config, client::Target::Socket(server.socket.clone()));
    let mut link = feeds.link.take().expect("a link");
    let first = common::sshd::wait_for(
        &mut feeds.snapshots,
        Duration::from_secs(10),
        "the first state",
        |s| s.host("local").is_some(),
    )
    .await;
    assert!(link.borrow().is_none());
    server.crash();
    let lost = wait_link(&mut link, |l| l.is_some_and(|t| t.contains("lost the server"))).await;
    assert!(lost.contains("reconnecting in"), "{lost}");
    server.launch();
    wait_link(&mut link, |l| l.is_none()).await;
    let again = common::sshd::wait_for(
        &mut feeds.snapshots,
        Duration::from_secs(10),
        "a state of the new server",
        |s| s.seq != first.seq || s.taken_at != first.taken_at,
    )
    .await;
    assert!(again.host("local").is_some());
}

async fn wait_link(
    link: &mut tokio::sync::watch::Receiver<Option<String>>,
    ok: impl Fn(Option<&str>) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = link.borrow_and_update().clone();
        if ok(now.as_deref()) {
            return now.unwrap_or_default();
        }
        tokio::time::timeout_at(deadline, link.changed())
            .await
            .unwrap_or_else(|_| panic!("the link said {now:?}"))
            .expect("link open");
    }
}

#[tokio::test]
async fn events_stream_and_snapshot_agree_with_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), LOCAL, &[]);
    let target = client::Target::Socket(server.socket.clone());
    // Acknowledge through a viewer; the event and the snapshot both name who did it.
    let (_r, mut w) = hello(&server.socket, "view").await;
    let mut events = tokio::process::Command::new(BIN)
        .args(["run", "--headless", "--socket", &server.socket.to_string_lossy()])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run --headless --socket");
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    // Wait for the trigger to fire before acknowledging it.
    let fired = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let snap = client::fetch_snapshot(&target).await.expect("snapshot");
            if snap
                .triggers
                .iter()
                .any(|t| t.state == lookout::triggers::TriggerState::Firing)
            {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), fired)
        .await
        .expect("fires");
    let cmd = ClientMsg::Command(WireCommand::Acknowledge {
        trigger: "always".into(),
        host: "local".into(),
        instance: String::new(),
    });
    w.write_all(&protocol::encode(&cmd).expect("encode"))
        .await
        .expect("send");
    let line = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let l = lines.next_line().await.expect("read").expect("a line");
            if l.contains("acknowledged") {
                return l;
            }
        }
    })
    .await
    .expect("the acknowledgement event");
    let e: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
    assert_eq!(e["event"], "trigger");
    assert_eq!(e["state"], "acknowledged");
    assert_eq!(e["by"], "root");
    let snap = server.snapshot_json();
    let t = &snap["triggers"][0];
    assert_eq!(t["state"], "acknowledged", "{snap}");
    assert_eq!(t["by"], "root");
    // The snapshot command and a replica fed by deltas describe the same state.
    let replica = client::fetch_snapshot(&target).await.expect("snapshot");
    let via_replica = serde_json::to_value(&*replica).expect("json");
    assert_eq!(via_replica["hosts"][0]["host"], snap["hosts"][0]["host"]);
    assert_eq!(via_replica["triggers"][0]["by"], "root");
    let _ = events.kill().await;
}

use tokio::io::AsyncBufReadExt as _;

/// tmux on its own socket, one window per viewer.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn new(dir: &Path) -> Tmux {
        Tmux {
            socket: dir.join("tmux.sock"),
        }
    }
    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux is installed")
    }
    fn open(&self, name: &str, cmd: &str) {
        let sh = format!("{cmd}; echo EXITED; sleep 600");
        let out = self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            "160",
            "-y",
            "45",
            "sh",
            "-c",
            &sh,
        ]);
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn screen(&self, name: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", name]).stdout).into_owned()
    }
    fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }
    fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let s = self.screen(name);
            if ok(&s) {
                return (s, start.elapsed());
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what} in {name}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

/// Keys, known_hosts and an ssh config naming `aliases` as the sshd.
struct Bed {
    dir: tempfile::TempDir,
    sshd: Sshd,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Bed {
    fn start(aliases: &[&str]) -> Bed {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = keygen(dir.path(), "id_ed25519", "");
        let sshd = Sshd::start(&[public_key(&key)]);
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(&known_hosts, sshd.known_hosts_line() + "\n").expect("known_hosts");
        let mut ssh_config = std::fs::File::create(dir.path().join("ssh_config")).expect("ssh_config");
        for a in aliases {
            writeln!(
                ssh_config,
                "Host {a}\n  HostName {}\n  Port {}\n  User root\n",
                sshd.addr, sshd.port
            )
            .expect("write");
        }
        Bed {
            dir,
            sshd,
            key,
            known_hosts,
        }
    }
    fn config(&self, hosts: &str) -> String {
        config_text(self.dir.path(), &self.key, &self.known_hosts, "strict", "", hosts)
    }
}

#[test]
fn two_viewers_one_collector() {
    if !common::sshd::can_run() {
        return;
    }
    let bed = Bed::start(&["alpha", "beta"]);
    let text = bed.config(
        "[[hosts]]\nnames = [\"alpha\", \"beta\"]\n\n[[trigger]]\nname = \"always\"\nmetric = \"host.up\"\nscope = \"each\"\nbelow = 2\nfor = \"0s\"\n",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &text, &[]);
    let tmux = Tmux::new(dir.path());
    let attach = format!(
        "{BIN} attach --config {} --socket {}",
        server.config.display(),
        server.socket.display()
    );
    tmux.open("one", &attach);
    tmux.open("two", &attach);
    for v in ["one", "two"] {
        tmux.wait_for(v, "both hosts up and firing", Duration::from_secs(20), |s| {
            s.contains("alpha") && s.contains("beta") && s.contains("2 hosts: 2 up") && s.contains("2 firing")
        });
    }
    // `a` in one acknowledges the selected host's trigger; the other sees it with the name.
    tmux.keys("one", &["a"]);
    let (s, took) = tmux.wait_for("two", "the acknowledgement", Duration::from_secs(5), |s| {
        s.contains("by root")
    });
    eprintln!("seen in the other viewer after {took:?}:\n{s}");
    assert!(took <= Duration::from_secs(1), "seen after {took:?}:\n{s}");
    assert!(s.contains("1 firing"), "{s}");
    let snap = server.snapshot_json();
    let acked: Vec<&serde_json::Value> = snap["triggers"]
        .as_array()
        .expect("triggers")
        .iter()
        .filter(|t| t["state"] == "acknowledged")
        .collect();
    assert_eq!(acked.len(), 1, "{snap}");
    assert_eq!(acked[0]["by"], "root");
    assert!(s.contains(acked[0]["host"].as_str().expect("host")));
    assert!(server.log_text().contains("by root"), "{}", server.log_text());
    // Two viewers, one SSH connection per host.
    assert_eq!(
        bed.sshd.log_text().matches("Accepted publickey").count(),
        2,
        "{}",
        bed.sshd.log_text()
    );
}

#[test]
fn attach_host_over_ssh() {
    if !common::sshd::can_run() {
        return;
    }
    let bed = Bed::start(&["jumpbox"]);
    // The server on "the other side" watches its local host.
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), LOCAL, &[]);
    let viewer_config = dir.path().join("viewer.toml");
    std::fs::write(&viewer_config, bed.config("")).expect("viewer config");
    let tmux = Tmux::new(dir.path());
    tmux.open(
        "v",
        &format!(
            "{BIN} attach jumpbox --config {} --socket {} --remote-lookout {BIN}",
            viewer_config.display(),
            server.socket.display()
        ),
    );
    let (s, took) = tmux.wait_for("v", "the remote server's host", Duration::from_secs(20), |s| {
        s.contains("local") && s.contains("1 host: 1 up")
    });
    eprintln!("attached over SSH after {took:?}:\n{s}");
    assert!(
        server.log_text().contains("root attached (View)"),
        "{}",
        server.log_text()
    );
    assert_eq!(bed.sshd.log_text().matches("Accepted publickey").count(), 1);
}

/// The local host with two checks: `answer` always says 42; `counter` (nagios) counts its
/// runs in a file, so every run has a new value and message.
fn with_checks(dir: &Path) -> String {
    let counter = dir.join("runs");
    format!(
        "{LOCAL}\n[[check]]\nname = \"answer\"\ncommand = \"echo 42\"\ninterval = \"500ms\"\n\n\
         [[check]]\nname = \"counter\"\nformat = \"nagios\"\ninterval = \"500ms\"\n\
         command = 'n=$(cat {c} 2>/dev/null || echo 40); echo $((n+1)) > {c}; echo \"COUNT OK - $n runs|runs=$n\"'\n",
        c = counter.display()
    )
}

fn counter_of(check: &serde_json::Value) -> f64 {
    check["values"][0]["value"].as_f64().expect("a value")
}

#[tokio::test]
async fn check_reports_reach_snapshot_and_viewers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &with_checks(dir.path()), &[]);
    // `snapshot --socket` carries the checks list, as the local snapshot does.
    let start = Instant::now();
    let snap = loop {
        let snap = server.snapshot_json();
        if snap["hosts"][0]["checks"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
        {
            break snap;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no checks: {snap}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let checks = &snap["hosts"][0]["checks"];
    assert_eq!(checks[0]["name"], "answer", "{checks}");
    assert_eq!(checks[0]["status"], 0);
    assert_eq!(checks[0]["message"], "42");
    assert_eq!(
        checks[0]["values"],
        serde_json::json!([{"instance": "", "value": 42.0}])
    );
    assert!(
        checks[0]["duration_ms"].as_f64().is_some_and(|d| d > 0.0),
        "{checks}"
    );
    assert_eq!(checks[1]["name"], "counter");
    assert_eq!(checks[1]["status"], 0);
    assert_eq!(checks[1]["values"][0]["instance"], "runs");
    let first = counter_of(&checks[1]);
    assert_eq!(checks[1]["message"], format!("COUNT OK - {first} runs"));
    let metrics = snap["hosts"][0]["metrics"].as_array().expect("metrics");
    assert!(
        metrics
            .iter()
            .any(|m| m["metric"] == "check.answer" && m["value"] == 42.0),
        "{metrics:?}"
    );

    // A viewer fed by deltas sees every new run of `counter`: its value and its message.
    let config = common::sshd::parse_config("");
    let mut feeds = client::attach_feeds(&config, client::Target::Socket(server.socket.clone()));
    let seen = common::sshd::wait_for(
        &mut feeds.snapshots,
        Duration::from_secs(10),
        "three more runs of the counter",
        |s| {
            s.host("local")
                .and_then(|h| h.check("counter"))
                .is_some_and(|c| c.readings.get(1).is_some_and(|r| r.value >= first + 3.0))
        },
    )
    .await;
    let h = seen.host("local").expect("local");
    let c = h.check("counter").expect("counter");
    let n = c.readings[1].value;
    assert_eq!(&*c.message, format!("COUNT OK - {n} runs"));
    assert_eq!(c.status, 0);
    let answer = h.check("answer").expect("answer");
    assert_eq!((answer.status, &*answer.message), (0, "42"));
    assert_eq!(h.worst_check(), Some(0));
    // The replica's JSON has the same checks as the server's (but for the counter's run).
    let json = serde_json::to_value(&*seen).expect("json");
    assert_eq!(json["hosts"][0]["checks"][0]["values"], checks[0]["values"]);
    assert_eq!(json["hosts"][0]["checks"][1]["name"], "counter");

    // The real dashboard, attached with a config that has no checks of its own.
    let viewer = dir.path().join("viewer.toml");
    std::fs::write(&viewer, "").expect("viewer config");
    let tmux = Tmux::new(dir.path());
    tmux.open(
        "v",
        &format!(
            "{BIN} attach --config {} --socket {}",
            viewer.display(),
            server.socket.display()
        ),
    );
    let (s, _) = tmux.wait_for("v", "the chk column", Duration::from_secs(20), |s| {
        s.contains("local") && s.contains(" chk ")
    });
    let lines: Vec<&str> = s.lines().collect();
    let at = lines.iter().position(|l| l.contains(" chk ")).expect("header");
    let header = lines[at];
    let col = header[..header.find(" chk ").expect("chk")].chars().count() + 1;
    let row = lines[at + 1];
    assert!(row.contains("local"), "{s}");
    assert_eq!(row.chars().skip(col).take(3).collect::<String>(), "ok ", "{s}");
    tmux.keys("v", &["Enter"]);
    let (s, _) = tmux.wait_for("v", "the checks panel", Duration::from_secs(10), |s| {
        s.contains("Checks (2)") && s.contains("COUNT OK - ")
    });
    let answer = s.lines().find(|l| l.contains("answer")).expect("answer row");
    assert!(answer.contains("OK") && answer.contains("42"), "{s}");
    // And the counter's row moves on with every run.
    let runs = |s: &str| -> Option<f64> {
        let at = s.find("COUNT OK - ")? + "COUNT OK - ".len();
        s[at..].split_whitespace().next()?.parse().ok()
    };
    let before = runs(&s).expect("a count");
    tmux.wait_for("v", "a later run of the counter", Duration::from_secs(10), |s| {
        runs(s).is_some_and(|n| n > before)
    });
}

/// The local host watching the server's own process.
const WATCHING: &str = "\n[[watch.processes]]\nhosts = [\"*\"]\nnames = [\"lookout\"]\n";

#[tokio::test]
async fn a_viewer_gets_the_processes_of_its_detail_host_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &format!("{LOCAL}{WATCHING}"), &[]);
    // `snapshot --socket` has every host's processes, as the local snapshot does.
    let start = Instant::now();
    let snap = loop {
        let snap = server.snapshot_json();
        if snap["hosts"][0]["processes"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            break snap;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no processes: {snap}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        snap["hosts"][0]["processes"].to_string().contains("lookout"),
        "{snap}"
    );

    // A raw viewer: no processes in its state until it opens the host's detail view.
    let (mut r, mut w) = hello(&server.socket, "view").await;
    let ServerMsg::Full(state) = next(&mut r).await else {
        panic!("a full state first")
    };
    assert!(state.hosts[0].processes.is_none());
    let ask = ClientMsg::Detail {
        id: 7,
        host: Some("local".into()),
    };
    w.write_all(&protocol::encode(&ask).expect("encode"))
        .await
        .expect("send");
    let mut states = 0;
    let list = loop {
        match next(&mut r).await {
            ServerMsg::Processes { id, host, procs } => {
                assert_eq!((id, host.as_ref()), (7, "local"));
                match procs {
                    protocol::Procs::All(list) => break list.into_owned(),
                    other => panic!("whole first: {other:?}"),
                }
            }
            ServerMsg::Delta(_) => {
                states += 1;
                assert!(states < 20, "no processes after {states} deltas");
            }
            _ => {}
        }
    };
    assert!(list.iter().any(|p| &*p.name == "lookout"), "{list:?}");

    // The dashboard's link: the same, through its detail channel.
    let config = common::sshd::parse_config("");
    let mut feeds = client::attach_feeds(&config, client::Target::Socket(server.socket.clone()));
    let first = common::sshd::wait_for(&mut feeds.snapshots, Duration::from_secs(10), "the state", |s| {
        s.host("local").is_some()
    })
    .await;
    assert!(first.host("local").is_some_and(|h| h.processes.is_empty()));
    let detail = feeds.detail.take().expect("a detail channel");
    detail.send_replace(Some("local".into()));
    let seen = common::sshd::wait_for(
        &mut feeds.snapshots,
        Duration::from_secs(10),
        "the detail host's processes",
        |s| s.host("local").is_some_and(|h| !h.processes.is_empty()),
    )
    .await;
    let p = &seen.host("local").expect("local").processes;
    assert!(
        p.iter().any(|p| &*p.name == "lookout" && p.rss_bytes > 0),
        "{p:?}"
    );
    // Closed again: the host keeps none (the server no longer sends them).
    detail.send_replace(None);
    common::sshd::wait_for(
        &mut feeds.snapshots,
        Duration::from_secs(10),
        "no processes after the detail view closed",
        |s| s.host("local").is_some_and(|h| h.processes.is_empty()),
    )
    .await;

    // The real dashboard shows them in the host's detail view.
    let viewer = dir.path().join("viewer.toml");
    std::fs::write(&viewer, "").expect("viewer config");
    let tmux = Tmux::new(dir.path());
    tmux.open(
        "v",
        &format!(
            "{BIN} attach --config {} --socket {}",
            viewer.display(),
            server.socket.display()
        ),
    );
    tmux.wait_for("v", "the host", Duration::from_secs(20), |s| {
        s.contains("local") && s.contains("1 host: 1 up")
    });
    tmux.keys("v", &["Enter"]);
    let (s, _) = tmux.wait_for("v", "the watched processes", Duration::from_secs(10), |s| {
        s.contains("Watched processes (") && !s.contains("Watched processes (0)")
    });
    assert!(s.contains("lookout"), "{s}");
}

#[tokio::test]
async fn an_older_viewer_or_server_is_told_the_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), LOCAL, &[]);
    // A protocol-2 viewer (the version before process lists moved to the detail request).
    let (_r, _w, answer) = raw(
        &server.socket,
        "{\"lookout_protocol\":2,\"program\":\"lookout 0.1.0\",\"want\":\"view\"}\n",
    )
    .await;
    let e = answer.error.unwrap_or_default();
    assert!(
        e.contains("this server speaks lookout protocol 3")
            && e.contains("the viewer (lookout 0.1.0) protocol 2")
            && e.contains("same lookout version"),
        "{e}"
    );
    assert!(server.log_text().contains("refused: protocol 2"));

    // A protocol-2 server: the viewer says so instead of misreading its frames.
    let path = dir.path().join("old.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let old = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let _ = protocol::read_hello(&mut r).await;
        w.write_all(b"{\"lookout_protocol\":2,\"program\":\"lookout 0.1.0\",\"user\":\"root\"}\n")
            .await
            .expect("answer");
    });
    let Err(e) = client::connect(&client::Target::Socket(path), protocol::Want::View).await else {
        panic!("connected to an older server")
    };
    assert!(
        e.contains("the server (lookout 0.1.0) speaks lookout protocol 2")
            && e.contains("protocol 3")
            && e.contains("same lookout version"),
        "{e}"
    );
    old.await.expect("the old server");
}
