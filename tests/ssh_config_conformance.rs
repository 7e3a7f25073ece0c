//! Conformance with OpenSSH: for every host of every ssh_config in
//! tests/fixtures/ssh_config/, `lookout check --json` must agree with the real
//! `ssh -G -F FILE HOST` on user, hostname, port, identity files, certificate files, proxy
//! jump and proxy command. Each fixture directory becomes ~/.ssh of a fresh HOME (relative
//! `Include`s are relative to ~/.ssh, as OpenSSH has them); `hosts` lists the names asked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What OpenSSH prints when no IdentityFile applies.
const OPENSSH_DEFAULT_IDS: &[&str] = &[
    "~/.ssh/id_rsa",
    "~/.ssh/id_ecdsa",
    "~/.ssh/id_ecdsa_sk",
    "~/.ssh/id_ed25519",
    "~/.ssh/id_ed25519_sk",
    "~/.ssh/id_xmss",
    "~/.ssh/id_dsa",
];

#[derive(Debug, PartialEq)]
struct View {
    user: String,
    hostname: String,
    port: u16,
    identity_files: Vec<String>,
    certificate_files: Vec<String>,
    proxy_jump: Vec<String>,
    proxy_command: Option<String>,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

/// `ssh -G` prints paths and commands with `~` and tokens as written; this is how they
/// read once expanded (the tokens lookout documents, computed here independently).
fn expand(s: &str, home: &str, host: &str, user: &str, port: u16, original: &str) -> String {
    let s = match s.strip_prefix("~/") {
        Some(rest) => format!("{home}/{rest}"),
        None => s.to_string(),
    };
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(host),
            Some('r') => out.push_str(user),
            Some('p') => out.push_str(&port.to_string()),
            Some('n') => out.push_str(original),
            Some('u') => out.push_str("root"),
            Some('d') => out.push_str(home),
            Some(o) => panic!("token %{o} not covered by the test"),
            None => out.push('%'),
        }
    }
    out
}

fn openssh(config: &Path, home: &Path, host: &str) -> View {
    let out = Command::new("ssh")
        .args(["-G", "-F"])
        .arg(config)
        .arg(host)
        .env("HOME", home)
        .env("USER", "root")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh -G (apt-get install openssh-client)");
    assert!(
        out.status.success(),
        "ssh -G {host}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut one: BTreeMap<String, String> = BTreeMap::new();
    let mut ids = Vec::new();
    let mut certs = Vec::new();
    for line in text.lines() {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "identityfile" => ids.push(v.to_string()),
            "certificatefile" => certs.push(v.to_string()),
            _ => {
                one.insert(k.to_string(), v.to_string());
            }
        }
    }
    let home_s = home.display().to_string();
    let user = one["user"].clone();
    let hostname = one["hostname"].clone();
    let port: u16 = one["port"].parse().expect("port");
    let original = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let x = |s: &str| expand(s, &home_s, &hostname, &user, port, original);
    let identity_files = if ids == OPENSSH_DEFAULT_IDS {
        // No IdentityFile applies: lookout tries its own default keys.
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|f| format!("{home_s}/.ssh/{f}"))
            .collect()
    } else {
        ids.iter().map(|s| x(s)).collect()
    };
    View {
        identity_files,
        certificate_files: certs.iter().map(|s| x(s)).collect(),
        proxy_jump: one
            .get("proxyjump")
            .map(|j| j.split(',').map(String::from).collect())
            .unwrap_or_default(),
        proxy_command: one.get("proxycommand").map(|c| x(c)),
        user,
        hostname,
        port,
    }
}

fn lookout(config: &Path, home: &Path, hosts: &[String]) -> BTreeMap<String, View> {
    let toml = home.join("lookout.toml");
    std::fs::write(&toml, format!("[ssh]\nconfig_file = \"{}\"\n", config.display())).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_lookout"))
        .args(["check", "--json", "--config"])
        .arg(&toml)
        .args(hosts)
        .env("HOME", home)
        .env("USER", "root")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .expect("lookout");
    assert!(
        out.status.success(),
        "lookout check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };
    let mut views = BTreeMap::new();
    for h in json["hosts"].as_array().expect("hosts") {
        let s = &h["ssh"];
        if s.is_null() {
            continue;
        }
        views.insert(
            h["host"].as_str().expect("host").to_string(),
            View {
                user: s["user"].as_str().expect("user").to_string(),
                hostname: s["hostname"].as_str().expect("hostname").to_string(),
                port: u16::try_from(s["port"].as_u64().expect("port")).expect("u16"),
                identity_files: strings(&s["identity_files"]),
                certificate_files: strings(&s["certificate_files"]),
                proxy_jump: strings(&s["proxy_jump"]),
                proxy_command: s["proxy_command"].as_str().map(String::from),
            },
        );
    }
    views
}

#[test]
fn lookout_resolves_every_corpus_host_as_openssh_does() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ssh_config");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 5, "{fixtures:?}");
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for fixture in fixtures {
        let home = tempfile::tempdir().expect("home");
        let ssh_dir = home.path().join(".ssh");
        copy_dir(&fixture, &ssh_dir);
        let config = ssh_dir.join("config");
        let hosts: Vec<String> = std::fs::read_to_string(fixture.join("hosts"))
            .expect("hosts file")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let ours = lookout(&config, home.path(), &hosts);
        for host in &hosts {
            let theirs = openssh(&config, home.path(), host);
            let name = fixture.file_name().and_then(|n| n.to_str()).unwrap_or("?");
            match ours.get(host) {
                Some(v) if *v == theirs => {}
                Some(v) => mismatches.push(format!("{name}/{host}:\n  ssh -G: {theirs:?}\n  lookout: {v:?}")),
                None => mismatches.push(format!("{name}/{host}: missing from lookout check --json")),
            }
            compared += 1;
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(compared >= 30, "{compared}");
}
