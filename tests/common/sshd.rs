//! Test harness: real OpenSSH sshd instances (own config, host key, key-only auth) on
//! loopback or inside network namespaces, keys, known_hosts, and lookout configs pointing at
//! them. Everything started here is stopped by Drop guards, also when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lookout::config::Config;
use lookout::model::HostStatus;
use lookout::snapshot::{HostView, Snapshot};

/// Whether the tests can run (root is needed for sshd and namespaces). Prints why not.
pub fn can_run() -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
    {
        if !Path::new("/usr/sbin/sshd").exists() {
            panic!("openssh-server is not installed: apt-get install -y openssh-server");
        }
        std::fs::create_dir_all("/run/sshd").expect("/run/sshd");
        true
    } else {
        eprintln!("skipped: these tests start sshd and need root");
        false
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// An ed25519 key pair in `dir`, optionally passphrase-protected.
pub fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            name,
            "-f",
            path.to_str().expect("utf8"),
        ],
    );
    path
}

pub fn public_key(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .expect("pub key")
        .trim()
        .to_string()
}

/// All descendants of a process (by /proc ppid links).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let Some((_, rest)) = stat.rsplit_once(") ") else {
                continue;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            parents.push((p, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parents {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).output();
}

/// One running sshd. Dropping it kills it and every session it started.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub port: u16,
    pub netns: Option<String>,
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub log: PathBuf,
    extra: String,
    pid: Option<u32>,
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 at a free port, accepting `authorized` keys.
    pub fn start(authorized: &[String]) -> Sshd {
        Self::start_at("127.0.0.1", free_port(), None, authorized)
    }

    /// Starts sshd on 127.0.0.1 with extra sshd_config lines (e.g. a ForceCommand).
    pub fn start_with(authorized: &[String], extra: &str) -> Sshd {
        Self::start_full("127.0.0.1", free_port(), None, authorized, extra)
    }

    pub fn start_at(addr: &str, port: u16, netns: Option<&str>, authorized: &[String]) -> Sshd {
        Self::start_full(addr, port, netns, authorized, "")
    }

    fn start_full(addr: &str, port: u16, netns: Option<&str>, authorized: &[String], extra: &str) -> Sshd {
        let dir = tempfile::tempdir().expect("tempdir");
        let host_key = keygen(dir.path(), "host_ed25519", "");
        let authorized_keys = dir.path().join("authorized_keys");
        std::fs::write(&authorized_keys, authorized.join("\n") + "\n").expect("authorized_keys");
        let mut sshd = Sshd {
            log: dir.path().join("sshd.log"),
            addr: addr.to_string(),
            port,
            netns: netns.map(String::from),
            host_key,
            authorized_keys,
            dir,
            extra: extra.to_string(),
            pid: None,
        };
        sshd.launch();
        sshd
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    /// (Re)starts the daemon with the same port, keys and log.
    pub fn launch(&mut self) {
        let d = self.dir.path().display();
        let conf = format!(
            "Port {port}\nListenAddress {addr}\nHostKey {hk}\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {ak}\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
             PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nMaxStartups 100:30:200\n\
             MaxSessions 100\n{setenv}LogLevel VERBOSE\nAllowTcpForwarding yes\n{extra}\n",
            port = self.port,
            addr = self.addr,
            hk = self.host_key.display(),
            ak = self.authorized_keys.display(),
            extra = self.extra,
            // sshd takes the first SetEnv line only: extra lines with one replace this one
            setenv = if self.extra.contains("SetEnv") {
                ""
            } else {
                "SetEnv SHLVL=5\n"
            },
        );
        std::fs::write(self.config_path(), conf).expect("sshd_config");
        let pidfile = self.dir.path().join("sshd.pid");
        let _ = std::fs::remove_file(&pidfile);
        let conf = self.config_path();
        let log = self.log.clone();
        let mut args: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            args.extend(["netns".into(), "exec".into(), ns.clone()]);
        }
        args.extend([
            "/usr/sbin/sshd".into(),
            "-f".into(),
            conf.display().to_string(),
            "-E".into(),
            log.display().to_string(),
        ]);
        let (cmd, rest) = if self.netns.is_some() {
            ("ip", &args[..])
        } else {
            ("/usr/sbin/sshd", &args[1..])
        };
        let refs: Vec<&str> = rest.iter().map(String::as_str).collect();
        run(cmd, &refs);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse().ok())
            {
                self.pid = Some(pid);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sshd did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The listener and its sessions.
    pub fn processes(&self) -> Vec<u32> {
        match self.pid {
            Some(p) => {
                let mut all = vec![p];
                all.extend(descendants(p));
                all
            }
            None => Vec::new(),
        }
    }

    /// Kills the daemon and every session (as a crash or reboot would).
    pub fn kill(&mut self) {
        for p in self.processes() {
            signal(p, "-CONT");
            signal(p, "-KILL");
        }
        self.pid = None;
    }

    /// Freezes the daemon and its sessions: the host hangs.
    pub fn stop(&self) {
        for p in self.processes() {
            signal(p, "-STOP");
        }
    }

    pub fn resume(&self) {
        for p in self.processes() {
            signal(p, "-CONT");
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The known_hosts line for this daemon's key.
    pub fn known_hosts_line(&self) -> String {
        let key = public_key(&self.host_key);
        let mut parts = key.split_whitespace();
        let (alg, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let who = if self.port == 22 {
            self.addr.clone()
        } else {
            format!("[{}]:{}", self.addr, self.port)
        };
        format!("{who} {alg} {b64}")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A lookout config text for ssh hosts (given as `[[hosts]]` tables) with the test paths.
pub fn config_text(
    dir: &Path,
    identity: &Path,
    known_hosts: &Path,
    policy: &str,
    extra_ssh: &str,
    hosts: &str,
) -> String {
    format!(
        "[general]\ninterval = \"300ms\"\n\n[ssh]\nconfig_file = \"{cf}\"\nknown_hosts = \"{kh}\"\n\
         host_key_policy = \"{policy}\"\nidentity_files = [\"{id}\"]\nconnect_timeout = \"3s\"\n\
         poll_timeout = \"1500ms\"\n{extra_ssh}\n{hosts}",
        cf = dir.join("ssh_config").display(),
        kh = known_hosts.display(),
        id = identity.display(),
    )
}

pub fn parse_config(text: &str) -> Arc<Config> {
    Arc::new(lookout::config::parse(text, "test.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}")))
}

/// Waits until `pred` holds for a snapshot, or panics with the last one after `timeout`.
pub async fn wait_for(
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
            panic!("timed out waiting for {what}: {}", describe(&snap));
        }
    }
}

pub fn host<'a>(snap: &'a Snapshot, name: &str) -> &'a HostView {
    snap.hosts
        .iter()
        .find(|h| &*h.name == name)
        .unwrap_or_else(|| panic!("no host {name}"))
}

pub fn status_is(snap: &Snapshot, name: &str, status: HostStatus) -> bool {
    host(snap, name).status == status
}

pub fn describe(snap: &Snapshot) -> String {
    snap.hosts
        .iter()
        .map(|h| format!("{}: {} {:?} rounds={}", h.name, h.status, h.error, h.rounds))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `name` hashed as `ssh-keygen -H` writes it in known_hosts (`|1|salt|hash`), made by
/// OpenSSH itself, not by lookout's code.
pub fn hashed_name(name: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("known_hosts");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ9Fd4wqMg0S6OJbl/edxmNKHxpExGK9FWSjUPAKiVVG";
    std::fs::write(&file, format!("{name} {key}\n")).expect("known_hosts");
    run("ssh-keygen", &["-q", "-H", "-f", file.to_str().expect("utf8")]);
    let text = std::fs::read_to_string(&file).expect("hashed");
    let field = text.split_whitespace().next().unwrap_or("").to_string();
    assert!(field.starts_with("|1|"), "{text}");
    field
}

/// Writes `known_hosts` trusting exactly these sshds' host keys.
pub fn trust(known_hosts: &Path, sshds: &[&Sshd]) {
    let lines: Vec<String> = sshds.iter().map(|s| s.known_hosts_line()).collect();
    std::fs::write(known_hosts, lines.join("\n") + "\n").expect("known_hosts");
}

/// Writes `dir/ssh_config` with one `Host alias` (address, port, `User root`) per sshd.
pub fn ssh_alias(dir: &Path, entries: &[(&str, &Sshd)]) {
    let text: String = entries
        .iter()
        .map(|(a, s)| {
            format!(
                "Host {a}\n  HostName {}\n  Port {}\n  User root\n\n",
                s.addr, s.port
            )
        })
        .collect();
    std::fs::write(dir.join("ssh_config"), text).expect("ssh_config");
}

/// A running ssh-agent, killed on drop.
pub struct Agent {
    pid: u32,
    pub socket: std::path::PathBuf,
}

impl Agent {
    pub fn start(dir: &std::path::Path) -> Agent {
        let socket = dir.join("agent.sock");
        let out = run("ssh-agent", &["-s", "-a", socket.to_str().expect("utf8")]);
        let pid = out
            .split(';')
            .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID="))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no agent pid in {out}"));
        Agent { pid, socket }
    }

    /// Adds a key (with the `-cert.pub` beside it, which ssh-add loads too), answering a
    /// passphrase prompt through SSH_ASKPASS.
    pub fn add(&self, key: &std::path::Path, passphrase: &str, dir: &std::path::Path) {
        let askpass = dir.join("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).expect("askpass");
        run("chmod", &["700", askpass.to_str().expect("utf8")]);
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("ssh-add");
        assert!(
            out.status.success(),
            "ssh-add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ssh-add -l`: one line per identity the agent holds (certificates end in `-CERT)`).
    pub fn list(&self) -> String {
        let out = Command::new("ssh-add")
            .arg("-l")
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("ssh-add -l");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).output();
    }
}
