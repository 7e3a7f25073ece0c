//! `ssh HOST` works, so `lookout HOST` works: the real binary against real sshds, with no
//! lookout config, only a HOME whose ~/.ssh holds the ssh config, keys and known_hosts.
//! A host reached with no config at all, a user certificate accepted by `TrustedUserCAKeys`
//! (and refused when expired), a host certificate trusted through `@cert-authority`, a
//! `@revoked` host key refused (both also with hashed host names), and a host reached only
//! by `ProxyCommand ssh -W %h:%p jumpbox` (inside network namespaces this test creates).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::{Agent, Sshd, can_run, hashed_name, keygen, public_key, run};

/// A fresh HOME with ~/.ssh (0700) and a key pair `id_test` in it.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        let dir = tempfile::tempdir().expect("home");
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir(&ssh).expect("mkdir");
        keygen(&ssh, "id_test", "");
        Home { dir }
    }
    fn ssh(&self) -> PathBuf {
        self.dir.path().join(".ssh")
    }
    fn key(&self) -> PathBuf {
        self.ssh().join("id_test")
    }
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.ssh().join(name), text).expect("write");
    }

    /// `lookout ARGS` with this HOME, no agent and no lookout config.
    fn lookout(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .args(args)
            .env("HOME", self.dir.path())
            .env("USER", "root")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("lookout")
    }

    /// One snapshot of `host`: (status, error).
    fn status(&self, host: &str) -> (String, String) {
        let out = self.lookout(&["snapshot", "--json", "--rounds", "1", host]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let h = v["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .find(|h| h["host"] == host)
            .unwrap_or_else(|| panic!("no {host} in {v}"))
            .clone();
        (
            h["status"].as_str().unwrap_or("").to_string(),
            h["error"].as_str().unwrap_or("").to_string(),
        )
    }
}

fn sign(ca: &Path, id: &str, extra: &[&str], key_pub: &Path) {
    let mut args = vec!["-q", "-s", ca.to_str().expect("utf8"), "-I", id];
    args.extend_from_slice(extra);
    args.push(key_pub.to_str().expect("utf8"));
    run("ssh-keygen", &args);
}

fn host_block(name: &str, sshd: &Sshd, extra: &str) -> String {
    format!(
        "Host {name}\n  HostName {}\n  Port {}\n  User root\n  IdentityFile ~/.ssh/id_test\n{extra}\n",
        sshd.addr, sshd.port
    )
}

#[test]
fn web_direct_with_no_config_is_up_and_check_shows_the_resolution() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let sshd = Sshd::start(&[public_key(&home.key())]);
    home.write("config", &host_block("web-direct", &sshd, ""));
    home.write("known_hosts", &(sshd.known_hosts_line() + "\n"));
    let out = home.lookout(&["check", "web-direct"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let want = format!(
        "web-direct -> root@127.0.0.1:{} (identity ~/.ssh/id_test)",
        sshd.port
    );
    assert!(text.contains(&want), "{text}");
    assert_eq!(home.status("web-direct").0, "up");
    assert!(sshd.log_text().contains("Accepted publickey for root"));
}

/// A user CA (its key in the returned directory) and an sshd with no authorized key that
/// trusts it: only a certificate the CA signed gets in. `home` knows the sshd's host key.
fn user_ca_sshd(home: &Home) -> (tempfile::TempDir, PathBuf, Sshd) {
    let ca_dir = tempfile::tempdir().expect("ca");
    let ca = keygen(ca_dir.path(), "user_ca", "");
    let sshd = Sshd::start_with(&[], &format!("TrustedUserCAKeys {}.pub", ca.display()));
    home.write("known_hosts", &(sshd.known_hosts_line() + "\n"));
    (ca_dir, ca, sshd)
}

#[test]
fn user_certificate_accepted_by_trusted_ca_and_refused_when_expired() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let (_ca_dir, ca, sshd) = user_ca_sshd(&home);
    home.write("config", &host_block("certified", &sshd, ""));
    let key_pub = home.ssh().join("id_test.pub");

    // Without a certificate the key alone is refused.
    let (status, error) = home.status("certified");
    assert_eq!(status, "auth_failed", "{error}");

    // A valid certificate beside the key (`id_test-cert.pub`, found as OpenSSH finds it).
    sign(&ca, "valid", &["-n", "root", "-V", "-5m:+1h"], &key_pub);
    let (status, error) = home.status("certified");
    assert_eq!(status, "up", "{error}");
    assert!(
        sshd.log_text().contains("Accepted publickey for root") && sshd.log_text().contains("ID valid"),
        "{}",
        sshd.log_text()
    );

    // An expired one, named by CertificateFile, is refused.
    std::fs::remove_file(home.ssh().join("id_test-cert.pub")).expect("rm");
    sign(
        &ca,
        "expired",
        &["-n", "root", "-V", "20200101:20200102"],
        &key_pub,
    );
    std::fs::rename(
        home.ssh().join("id_test-cert.pub"),
        home.ssh().join("expired-cert.pub"),
    )
    .expect("mv");
    home.write(
        "config",
        &host_block("certified", &sshd, "  CertificateFile ~/.ssh/expired-cert.pub"),
    );
    let (status, error) = home.status("certified");
    assert_eq!(status, "auth_failed", "{error}");
    assert!(error.contains("expired-cert.pub"), "{error}");
}

#[test]
fn user_certificate_held_only_by_the_agent() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let (_ca_dir, ca, sshd) = user_ca_sshd(&home);
    let agent_dir = tempfile::tempdir().expect("agent dir");
    let agent = Agent::start(agent_dir.path());
    let key = home.key();
    sign(
        &ca,
        "agentcert",
        &["-n", "root", "-V", "-5m:+1h"],
        &key.with_extension("pub"),
    );
    agent.add(&key, "", agent_dir.path());
    let listed = agent.list();
    assert!(listed.contains("ED25519-CERT"), "{listed}");
    // Nothing on disk for lookout to find: key, public half and certificate are gone.
    for f in ["id_test", "id_test.pub", "id_test-cert.pub"] {
        std::fs::remove_file(home.ssh().join(f)).expect("rm");
    }
    let block = format!(
        "Host agentcert\n  HostName {}\n  Port {}\n  User root\n",
        sshd.addr, sshd.port
    );

    // The agent named by IdentityAgent (no SSH_AUTH_SOCK in lookout's environment).
    home.write(
        "config",
        &format!("{block}  IdentityAgent {}\n", agent.socket.display()),
    );
    let (status, error) = home.status("agentcert");
    assert_eq!(status, "up", "{error}");
    let log = sshd.log_text();
    assert!(
        log.contains("Accepted publickey for root") && log.contains("ID agentcert"),
        "{log}"
    );

    // The agent of SSH_AUTH_SOCK, as `ssh` finds it.
    home.write("config", &block);
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["snapshot", "--json", "--rounds", "1", "agentcert"])
        .env("HOME", home.dir.path())
        .env("USER", "root")
        .env_remove("XDG_CONFIG_HOME")
        .env("SSH_AUTH_SOCK", &agent.socket)
        .output()
        .expect("lookout");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["hosts"][0]["status"], "up", "{v}");

    // Without the agent the same host is refused: the certificate was what got in.
    home.write("config", &format!("{block}  IdentityAgent none\n"));
    let (status, error) = home.status("agentcert");
    assert_eq!(status, "auth_failed", "{error}");
}

#[test]
fn host_certificate_through_cert_authority_and_revoked_key_refused() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let ca_dir = tempfile::tempdir().expect("ca");
    let ca = keygen(ca_dir.path(), "host_ca", "");
    let cert_path = ca_dir.path().join("host-cert.pub");
    let mut sshd = Sshd::start_with(
        &[public_key(&home.key())],
        &format!("HostCertificate {}", cert_path.display()),
    );
    // Sign the daemon's host key for its address, then restart it with the certificate.
    sign(
        &ca,
        "test host",
        &["-h", "-n", "127.0.0.1", "-V", "-5m:+1h"],
        &sshd.host_key.with_extension("pub"),
    );
    std::fs::rename(
        sshd.host_key.with_extension("").display().to_string() + "-cert.pub",
        &cert_path,
    )
    .expect("mv cert");
    sshd.kill();
    sshd.launch();
    let ca_line = format!(
        "@cert-authority [127.0.0.1]:* {}\n",
        public_key(&ca)
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    home.write("config", &host_block("certhost", &sshd, ""));

    // known_hosts holds only the CA: the host's certificate is enough.
    home.write("known_hosts", &ca_line);
    let (status, error) = home.status("certhost");
    assert_eq!(status, "up", "{error}");

    // The CA trusted only for other names: refused, and nothing was learnt.
    home.write("known_hosts", &ca_line.replace("[127.0.0.1]:*", "*.example.com"));
    let (status, error) = home.status("certhost");
    assert_eq!(status, "host_key_mismatch", "{error}");

    // The plain key on record but marked @revoked: refused with the reason.
    let key = public_key(&sshd.host_key);
    let key = key.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    home.write(
        "known_hosts",
        &format!("{}\n@revoked * {key}\n", sshd.known_hosts_line()),
    );
    // Without the certificate on offer (no CA line), the plain key is what is checked.
    let (status, error) = home.status("certhost");
    assert_eq!(status, "host_key_mismatch", "{error}");
    assert!(error.contains("@revoked"), "{error}");

    // Hashed names on marker lines (as `ssh-keygen -H` hashes `[127.0.0.1]:PORT`): a hashed
    // `@cert-authority` line vouches for the host certificate...
    let hashed = hashed_name(&format!("[127.0.0.1]:{}", sshd.port));
    let hashed_ca = ca_line.replace("[127.0.0.1]:*", &hashed);
    home.write("known_hosts", &hashed_ca);
    let (status, error) = home.status("certhost");
    assert_eq!(status, "up", "{error}");
    // ...a hashed name in a list is no name at all (OpenSSH hashes whole fields only)...
    home.write(
        "known_hosts",
        &ca_line.replace("[127.0.0.1]:*", &format!("other.example.com,{hashed}")),
    );
    let (status, error) = home.status("certhost");
    assert_eq!(status, "host_key_mismatch", "{error}");
    // ...and a hashed `@revoked` line refuses the certificate's key, and the plain key.
    home.write("known_hosts", &format!("{hashed_ca}@revoked {hashed} {key}\n"));
    let (status, error) = home.status("certhost");
    assert_eq!(status, "host_key_mismatch", "{error}");
    assert!(error.contains("@revoked"), "{error}");
    home.write(
        "known_hosts",
        &format!("{}\n@revoked {hashed} {key}\n", sshd.known_hosts_line()),
    );
    let (status, error) = home.status("certhost");
    assert_eq!(status, "host_key_mismatch", "{error}");
    assert!(error.contains("@revoked"), "{error}");
}

/// Three namespaces' worth of test network: the root namespace reaches the jumpbox
/// (10.238.0.2) only; the target (10.238.1.2) is reachable from the jumpbox alone.
struct Net {
    jump: String,
    target: String,
    root_veth: String,
}

const JUMP_ADDR: &str = "10.238.0.2"; // inside this test's own netns
const TARGET_ADDR: &str = "10.238.1.2"; // inside this test's own netns

fn ip(args: &[&str]) {
    run("ip", args);
}

impl Net {
    fn create() -> Net {
        let tag = std::process::id() % 100_000;
        let n = Net {
            jump: format!("lkpj{tag}"),
            target: format!("lkpt{tag}"),
            root_veth: format!("lkpr{tag}"),
        };
        // First, so nothing for the range can leave by the default route.
        let _ = Command::new("ip")
            .args(["route", "add", "unreachable", "10.238.0.0/16"])
            .output();
        ip(&["netns", "add", &n.jump]);
        ip(&["netns", "add", &n.target]);
        let (jb, jc, td) = (format!("lkpa{tag}"), format!("lkpb{tag}"), format!("lkpc{tag}"));
        ip(&["link", "add", &n.root_veth, "type", "veth", "peer", "name", &jb]);
        ip(&["link", "add", &jc, "type", "veth", "peer", "name", &td]);
        ip(&["link", "set", &jb, "netns", &n.jump]);
        ip(&["link", "set", &jc, "netns", &n.jump]);
        ip(&["link", "set", &td, "netns", &n.target]);
        ip(&["addr", "add", "10.238.0.1/24", "dev", &n.root_veth]); // inside this test's own netns
        ip(&["link", "set", &n.root_veth, "up"]);
        for (ns, dev, addr) in [
            (&n.jump, &jb, "10.238.0.2/24"),   // inside this test's own netns
            (&n.jump, &jc, "10.238.1.1/24"),   // inside this test's own netns
            (&n.target, &td, "10.238.1.2/24"), // inside this test's own netns
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        n
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.root_veth]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.jump]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.target]).output();
        let _ = Command::new("ip")
            .args(["route", "del", "unreachable", "10.238.0.0/16"])
            .output();
    }
}

#[test]
fn host_reached_only_through_proxy_command_ssh_w_jumpbox() {
    if !can_run() {
        return;
    }
    let home = Home::new();
    let net = Net::create();
    let authorized = [public_key(&home.key())];
    let jump = Sshd::start_at(JUMP_ADDR, 22, Some(&net.jump), &authorized);
    let target = Sshd::start_at(TARGET_ADDR, 22, Some(&net.target), &authorized);
    let ssh = home.ssh();
    home.write(
        "known_hosts",
        &format!("{}\n{}\n", jump.known_hosts_line(), target.known_hosts_line()),
    );
    // OpenSSH's own client reads ~ from the password database, not $HOME: absolute paths
    // for the `ssh -W` it runs.
    home.write(
        "config",
        &format!(
            "Host jumpbox\n  HostName {JUMP_ADDR}\n  User root\n  IdentityFile {k}\n  UserKnownHostsFile {kh}\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n\n\
             Host inner\n  HostName {TARGET_ADDR}\n  User root\n  IdentityFile ~/.ssh/id_test\n  \
             ProxyCommand ssh -F {cfg} -W %h:%p jumpbox\n",
            k = home.key().display(),
            kh = ssh.join("known_hosts").display(),
            cfg = ssh.join("config").display(),
        ),
    );
    // Directly, the target cannot be reached from here.
    let direct = std::net::TcpStream::connect_timeout(
        &format!("{TARGET_ADDR}:22").parse().expect("addr"),
        std::time::Duration::from_millis(500),
    );
    assert!(direct.is_err(), "the target must not be reachable directly");

    let check = home.lookout(&["check", "--json", "inner"]);
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).expect("json");
    let cmd = v["hosts"][0]["ssh"]["proxy_command"]
        .as_str()
        .expect("proxy command");
    assert!(cmd.ends_with(&format!("-W {TARGET_ADDR}:22 jumpbox")), "{cmd}");

    let (status, error) = home.status("inner");
    assert_eq!(status, "up", "{error}");
    assert!(target.log_text().contains("Accepted publickey for root"));
    assert!(jump.log_text().contains("Accepted publickey for root"));
}
