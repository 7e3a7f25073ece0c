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
            let Some((marker, first, rest)) = split_line(raw) else {
                continue;
            };
            let mut words = rest.split_whitespace();
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

/// A key line split as OpenSSH's hostkeys_foreach_file does: (marker, host field, rest),
/// or None for a comment, a blank line or an invalid one. As its check_markers, a marker
/// ends at the first space of the line (at the first tab only when the line has no space),
/// so `@cert-authority<TAB>host key` is an invalid line unless no space follows; only one
/// marker is allowed, and an unknown one spoils the line.
fn split_line(raw: &str) -> Option<(Marker, &str, &str)> {
    let blank = |c: char| c == ' ' || c == '\t';
    let mut cp = raw.trim_start_matches(blank);
    if cp.is_empty() || cp.starts_with('#') {
        return None;
    }
    let mut marker = Marker::None;
    while cp.starts_with('@') {
        if marker != Marker::None {
            return None;
        }
        let end = cp.find(' ').or_else(|| cp.find('\t'))?;
        marker = match &cp[..end] {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            _ => return None,
        };
        cp = cp[end..].trim_start_matches(blank);
    }
    let end = cp.find(blank)?;
    Some((marker, &cp[..end], &cp[end..]))
}

/// The host field of a line, matched as OpenSSH's `match_maybe_hashed` (hostfile.c) does,
/// with or without a `@cert-authority`/`@revoked` marker before it:
/// - a field that begins with `|` is one hashed name, `|1|salt|hash` (HMAC-SHA1 of the
///   lower-case name keyed by a 20-byte salt): the whole field must be exactly the hash of
///   `name`, so `|1|salt|hash,web1` matches nothing, not even web1;
/// - any other field is a comma-separated pattern list (`*`/`?` wildcards, `!` negation,
///   case-insensitive), where a `|1|...` element is only a literal pattern and matches no
///   host name: hashing applies to whole fields only, as `ssh-keygen -H` writes them.
fn patterns_match(name: &str, patterns: &str) -> bool {
    let name = name.to_lowercase();
    if patterns.starts_with('|') {
        return hashed_match(&name, patterns);
    }
    let mut hit = false;
    for p in patterns.split(',') {
        let (neg, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        // OpenSSH's match_pattern_list gives up (no match) on a pattern of 1023 bytes or more.
        if p.len() >= 1023 {
            return false;
        }
        if wildcard(&name, &p.to_lowercase()) {
            if neg {
                return false;
            }
            hit = true;
        }
    }
    hit
}

/// Whether the whole field `|1|salt|hash` is the hash of `name`: as OpenSSH's `host_hash`,
/// the salt must decode to 20 bytes, and the field must equal, byte for byte, the one
/// written from that salt (so trailing text or another encoding of the same bytes is no
/// match either).
fn hashed_match(name: &str, field: &str) -> bool {
    const SHA1_LEN: usize = 20;
    let Some(rest) = field.strip_prefix("|1|") else {
        return false;
    };
    let Some((salt, _)) = rest.split_once('|') else {
        return false;
    };
    if salt.is_empty() || salt.len() > 1024 {
        return false;
    }
    let b64 = &data_encoding::BASE64;
    let Ok(salt) = b64.decode(salt.as_bytes()) else {
        return false;
    };
    if salt.len() != SHA1_LEN {
        return false;
    }
    let Ok(mac) = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    let hash = mac.chain_update(name.as_bytes()).finalize().into_bytes();
    field == format!("|1|{}|{}", b64.encode(&salt), b64.encode(&hash))
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
        .find(|e| e.marker == Marker::Revoked && &e.key == key && patterns_match(name, &e.patterns))
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
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJ9Fd4wqMg0S6OJbl/edxmNKHxpExGK9FWSjUPAKiVVG";
    const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGzJ2y0ujOuUfDqzhbERs8NvsCTEXQB7B8kQ2O4nWxMl";

    /// `|1|salt|hash` for `name`, as `ssh-keygen -H` writes it (a fixed salt per seed).
    fn hash(name: &str, seed: u8) -> String {
        let salt = [seed; 20];
        let mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt).expect("hmac");
        let h = mac.chain_update(name.as_bytes()).finalize().into_bytes();
        let b64 = &data_encoding::BASE64;
        format!("|1|{}|{}", b64.encode(&salt), b64.encode(&h))
    }

    fn file_with(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let file = dir.path().join("known_hosts");
        std::fs::write(&file, text).expect("write");
        file
    }

    /// (line, marker) of every line whose host field matches `name`.
    fn matching(name: &str, file: &Path) -> Vec<(usize, Marker)> {
        entries(&[file.to_path_buf()])
            .into_iter()
            .filter(|e| patterns_match(name, &e.patterns))
            .map(|e| (e.line, e.marker))
            .collect()
    }

    #[test]
    fn hashed_names_on_marker_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let name = "[127.0.0.1]:2222";
        let file = file_with(
            &dir,
            &format!(
                "@cert-authority {} ssh-ed25519 {KEY}\n@revoked {} ssh-ed25519 {OTHER}\n{} ssh-ed25519 {OTHER}\n",
                hash(name, 1),
                hash(name, 2),
                hash(name, 3)
            ),
        );
        let files = [file];
        assert!(has_authority(name, &files));
        assert!(!has_authority("[127.0.0.1]:2223", &files));
        assert!(!has_authority("127.0.0.1", &files));
        let other = russh::keys::parse_public_key_base64(OTHER).expect("key");
        assert!(matches!(
            check_key(name, &other, &files),
            Verdict::Revoked { line: 2, .. }
        ));
        // Another name: neither the revocation nor the plain line is for it.
        assert_eq!(check_key("[127.0.0.1]:2223", &other, &files), Verdict::Unknown);
    }

    #[test]
    fn a_hashed_field_is_one_whole_name_and_never_a_list_member() {
        let dir = tempfile::tempdir().expect("temp dir");
        let h1 = hash("web1", 7);
        let file = file_with(
            &dir,
            &format!(
                "{h1},web2 ssh-ed25519 {KEY}\n\
                 web3,{h1} ssh-ed25519 {KEY}\n\
                 @cert-authority web4,{h1} ssh-ed25519 {KEY}\n\
                 @revoked {h1}x ssh-ed25519 {KEY}\n\
                 @revoked @cert-authority {h1} ssh-ed25519 {KEY}\n\
                 {h1} ssh-ed25519 {KEY}\n"
            ),
        );
        // Line 1 (hashed first: a hash compared with the whole field) matches nothing;
        // in lines 2 and 3 the hash is a literal pattern; line 4 has trailing text; line 5
        // has two markers; only line 6 is web1's.
        assert_eq!(matching("web1", &file), vec![(6, Marker::None)]);
        assert_eq!(matching("WEB1", &file), vec![(6, Marker::None)]);
        assert_eq!(matching("web2", &file), vec![]);
        assert_eq!(matching("web3", &file), vec![(2, Marker::None)]);
        assert_eq!(matching("web4", &file), vec![(3, Marker::CertAuthority)]);
    }

    #[test]
    fn a_salt_that_is_not_20_bytes_matches_nothing() {
        let b64 = &data_encoding::BASE64;
        let salt = [9u8; 16];
        let mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt).expect("hmac");
        let h = mac.chain_update(b"web1").finalize().into_bytes();
        let field = format!("|1|{}|{}", b64.encode(&salt), b64.encode(&h));
        assert!(!patterns_match("web1", &field));
        assert!(patterns_match("web1", &hash("web1", 9)));
        assert!(!patterns_match("web1", &hash("web1", 9).replace("|1|", "|2|")));
    }

    /// The same lines match as OpenSSH matches them: `ssh-keygen -F NAME -f FILE` (which
    /// runs hostfile.c's own matching and prints `# Host NAME found: line N [CA|REVOKED]`)
    /// against a corpus of plain, hashed, mixed, negated and marker lines.
    #[test]
    fn matching_agrees_with_ssh_keygen_f() {
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_err()
        {
            eprintln!("skipped: no ssh-keygen");
            return;
        }
        let names = [
            "web1",
            "web2",
            "db1",
            "[10.0.0.5]:2200",
            "10.0.0.5",
            "bastion.example.com",
        ];
        let mut text = String::new();
        for (i, n) in names.iter().enumerate() {
            let h = hash(n, i as u8 + 1);
            text.push_str(&format!("{h} ssh-ed25519 {KEY}\n"));
            text.push_str(&format!("@cert-authority {h} ssh-ed25519 {KEY}\n"));
            text.push_str(&format!("@revoked {h} ssh-ed25519 {OTHER}\n"));
            text.push_str(&format!("{h},web9 ssh-ed25519 {KEY}\n"));
            text.push_str(&format!("web8,{h} ssh-ed25519 {KEY}\n"));
            text.push_str(&format!("@cert-authority !{h},* ssh-ed25519 {KEY}\n"));
            text.push_str(&format!("@revoked {h}junk ssh-ed25519 {KEY}\n"));
        }
        text.push_str(&format!(
            "web*,!web2 ssh-ed25519 {KEY}\n@cert-authority *.example.com ssh-ed25519 {KEY}\n\
             @revoked [10.0.0.5]:* ssh-ed25519 {OTHER}\n@cert-authority\tdb? ssh-ed25519 {KEY}\n\
             @unknown web1 ssh-ed25519 {KEY}\n  WEB2,db1 ssh-ed25519 {KEY}\n\
             @revoked\tweb1\tssh-ed25519\t{OTHER}\n@revoked\t{}\tssh-ed25519 {OTHER}\n\
             \t@cert-authority [10.0.0.5]:2200,db1 ssh-ed25519 {KEY} comment\n@revoked @revoked web1 ssh-ed25519 {OTHER}\n",
            hash("web2", 99)
        ));
        let dir = tempfile::tempdir().expect("temp dir");
        let file = file_with(&dir, &text);
        for name in names.iter().chain(&["web8", "web9", "nowhere"]) {
            let out = std::process::Command::new("ssh-keygen")
                .args(["-F", name, "-f"])
                .arg(&file)
                .output()
                .expect("ssh-keygen");
            let openssh: Vec<(usize, Marker)> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("# Host {name} found: line ")))
                .map(|rest| {
                    let mut w = rest.split_whitespace();
                    let line = w.next().and_then(|n| n.parse().ok()).expect("line number");
                    let marker = match w.next() {
                        Some("CA") => Marker::CertAuthority,
                        Some("REVOKED") => Marker::Revoked,
                        _ => Marker::None,
                    };
                    (line, marker)
                })
                .collect();
            assert_eq!(matching(name, &file), openssh, "{name}");
        }
    }
}
