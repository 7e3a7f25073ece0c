//! Host key trust as OpenSSH decides it from known_hosts files: plain and hashed host
//! patterns (with wildcards and negation), `@cert-authority` lines that trust every host
//! certificate a CA signed for matching names, and `@revoked` keys that are never accepted.
//!
//! russh's own known_hosts reader skips marker lines, so lookout reads the files itself.

use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use russh::keys::{Certificate, HashAlg, PublicKey, ssh_key};

use super::sshconfig::wildcard;

/// One key line of a known_hosts file.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    marker: Marker,
    patterns: String,
    key: ssh_key::public::KeyData,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    CertAuthority,
    Revoked,
}

/// The answer for one offered host key or certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// No line names this host: the policy decides (strict refuses, accept-new records).
    Unknown,
    /// A line names the host with another key.
    Changed {
        file: PathBuf,
        line: usize,
    },
    Revoked {
        file: PathBuf,
        line: usize,
    },
    /// A certificate that no `@cert-authority` line vouches for, or one that is invalid.
    BadCertificate(String),
}

/// The names a host's key is filed under: `host` for port 22, else `[host]:port`.
pub fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// All key lines of `files` (missing files are empty; malformed lines are skipped, as
/// OpenSSH skips them). A byte that is not UTF-8 spoils only its line, as in OpenSSH, not
/// the whole file (which made every host of it unknown, and accept-new learn them again).
fn entries(files: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for file in files {
        let Ok(bytes) = std::fs::read(file) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let Some(mut first) = words.next() else { continue };
            let marker = match first {
                "@cert-authority" => Marker::CertAuthority,
                "@revoked" => Marker::Revoked,
                m if m.starts_with('@') => continue,
                _ => Marker::None,
            };
            if marker != Marker::None {
                let Some(p) = words.next() else { continue };
                first = p;
            }
            let (Some(_kind), Some(b64)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(key) = russh::keys::parse_public_key_base64(b64) else {
                continue;
            };
            out.push(Entry {
                file: file.clone(),
                line: i + 1,
                marker,
                patterns: first.to_string(),
                key: key.key_data().clone(),
            });
        }
    }
    out
}

/// OpenSSH's host pattern list: comma-separated, `*`/`?` wildcards, `!` negation, hashed
/// `|1|salt|hash` entries; host names compare case-insensitively.
fn patterns_match(name: &str, patterns: &str) -> bool {
    let name = name.to_lowercase();
    let mut hit = false;
    for p in patterns.split(',') {
        if let Some(hashed) = p.strip_prefix("|1|") {
            if hashed_match(&name, hashed) {
                hit = true;
            }
            continue;
        }
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        if wildcard(&name, &p.to_lowercase()) {
            if neg {
                return false;
            }
            hit = true;
        }
    }
    hit
}

fn hashed_match(name: &str, salt_hash: &str) -> bool {
    let Some((salt, hash)) = salt_hash.split_once('|') else {
        return false;
    };
    let b64 = &data_encoding::BASE64;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt.as_bytes()), b64.decode(hash.as_bytes())) else {
        return false;
    };
    let Ok(mac) = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes()).verify_slice(&hash).is_ok()
}

/// Whether `key` is trusted for `name` by a plain (non-marker) line.
pub fn check_key(name: &str, key: &PublicKey, files: &[PathBuf]) -> Verdict {
    let all = entries(files);
    if let Some(r) = revoked(&all, name, key.key_data()) {
        return r;
    }
    let mut other: Option<&Entry> = None;
    for e in all.iter().filter(|e| e.marker == Marker::None) {
        if !patterns_match(name, &e.patterns) {
            continue;
        }
        if &e.key == key.key_data() {
            return Verdict::Trusted;
        }
        other.get_or_insert(e);
    }
    match other {
        Some(e) => Verdict::Changed {
            file: e.file.clone(),
            line: e.line,
        },
        None => Verdict::Unknown,
    }
}

fn revoked(all: &[Entry], name: &str, key: &ssh_key::public::KeyData) -> Option<Verdict> {
    all.iter()
        .find(|e| {
            e.marker == Marker::Revoked
                && &e.key == key
                && (e.patterns == "*" || patterns_match(name, &e.patterns))
        })
        .map(|e| Verdict::Revoked {
            file: e.file.clone(),
            line: e.line,
        })
}

/// Whether any `@cert-authority` line could vouch for `name` (then lookout asks the server
/// for its certificate, as OpenSSH does).
pub fn has_authority(name: &str, files: &[PathBuf]) -> bool {
    entries(files)
        .iter()
        .any(|e| e.marker == Marker::CertAuthority && patterns_match(name, &e.patterns))
}

/// Whether a host certificate is trusted for `name` (whose bare host is `principal`):
/// signed by a CA of an `@cert-authority` line matching the name, a host certificate,
/// valid now, naming the host among its principals, neither it nor its CA revoked.
pub fn check_certificate(name: &str, principal: &str, cert: &Certificate, files: &[PathBuf]) -> Verdict {
    let all = entries(files);
    if let Some(r) = revoked(&all, name, cert.public_key()) {
        return r;
    }
    if let Some(r) = revoked(&all, name, cert.signature_key()) {
        return r;
    }
    let cas: Vec<ssh_key::Fingerprint> = all
        .iter()
        .filter(|e| e.marker == Marker::CertAuthority && patterns_match(name, &e.patterns))
        .map(|e| e.key.fingerprint(HashAlg::Sha256))
        .collect();
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    if !cas.contains(&ca) {
        return Verdict::BadCertificate(format!(
            "host certificate signed by {ca}, which no @cert-authority line for {name} names"
        ));
    }
    if cert.cert_type() != ssh_key::certificate::CertType::Host {
        return Verdict::BadCertificate("the server offered a user certificate as its host key".into());
    }
    if cert.validate(&cas).is_err() {
        return Verdict::BadCertificate(format!(
            "host certificate `{}` is expired, not yet valid or badly signed",
            cert.key_id()
        ));
    }
    let principals = cert.valid_principals();
    if !principals.is_empty() && !principals.iter().any(|p| p.eq_ignore_ascii_case(principal)) {
        return Verdict::BadCertificate(format!(
            "host certificate `{}` is for {}, not {principal}",
            cert.key_id(),
            principals.join(", ")
        ));
    }
    Verdict::Trusted
}

/// Records a new key for `name` in `file` (accept-new), creating the file if needed.
pub fn learn(name: &str, key: &PublicKey, file: &Path) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let needs_newline = std::fs::read(file)
        .ok()
        .is_some_and(|b| !b.is_empty() && !b.ends_with(b"\n"));
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    let text = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let text = text.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    if needs_newline {
        writeln!(f)?;
    }
    writeln!(f, "{name} {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_negation() {
        assert!(patterns_match("web1", "web*,db1"));
        assert!(patterns_match("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!patterns_match("web1", "web*,!web1"));
        assert!(patterns_match("WEB1.example.com", "*.example.com"));
        assert!(!patterns_match("x", "y"));
        assert!(!hashed_match("localhost", "bad|bad"));
    }

    #[test]
    fn a_line_that_is_not_utf8_spoils_only_itself() {
        // fuzz/corpus/known_hosts/not-utf8-comment
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIJ9Fd4wqMg0S6OJbl/edxmNKHxpExGK9FWSjUPAKiVVG";
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("known_hosts");
        let mut text = b"# caf\xe9 (Latin-1)\n".to_vec();
        text.extend_from_slice(format!("localhost ssh-ed25519 {key}\n").as_bytes());
        std::fs::write(&file, &text).expect("write");
        let key = russh::keys::parse_public_key_base64(key).expect("key");
        assert_eq!(check_key("localhost", &key, &[file]), Verdict::Trusted);
    }
}
