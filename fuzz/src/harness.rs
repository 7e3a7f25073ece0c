//! The bodies of lookout's fuzz targets: one function per parser fed from outside, taking
//! arbitrary bytes and a scratch directory (for the parsers that read files). Each must
//! never panic, hang or grow without bound, whatever the bytes; where a parser promises
//! more (strings from a host are sanitized, a check's message is one bounded line), the
//! harness asserts it, so a broken promise is a crash too.
//!
//! This file is compiled twice: into the fuzz crate (fuzz/src/lib.rs: the AFL++ targets and
//! their replay mode) and into lookout's own tests/fuzz_corpus.rs, which replays every
//! corpus through [`TARGETS`] in CI. So it may use only lookout and crates lookout depends
//! on (tempfile as a dev-dependency).
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

/// A fuzz target: the input, and a directory it may fill (emptied by the target first).
pub type Harness = fn(&[u8], &Path);

/// Every target by name (the name of its binary and of its corpus directory).
pub const TARGETS: &[(&str, Harness)] = &[
    ("remote_sample", remote_sample),
    ("ssh_config", ssh_config),
    ("known_hosts", known_hosts),
    ("config_toml", config_toml),
    ("prometheus_response", prometheus_response),
    ("check_output", check_output),
    ("record_segment", record_segment),
    ("serve_frames", serve_frames),
];

fn assert_clean(what: &str, s: &str) {
    assert!(
        !s.chars().any(char::is_control),
        "{what} holds a control character: {s:?}"
    );
}

/// Empties `dir` (creating it), for targets that write their input to files.
fn fresh(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch directory");
}

/// Splits a multi-file input: the first part is the main file, then each line
/// `#--- NAME` starts a file NAME (a plain name: letters, digits, `.`, `_`, `-`, at most
/// three `/`, to reach subdirectories). Returns (name, bytes) pairs; the main one has no name.
fn files(data: &[u8]) -> Vec<(Option<String>, &[u8])> {
    const MARK: &[u8] = b"\n#--- ";
    let mut out = Vec::new();
    let mut rest = data;
    let mut name: Option<String> = None;
    loop {
        let at = rest.windows(MARK.len()).position(|w| w == MARK);
        let (body, next) = match at {
            Some(i) => (&rest[..=i], Some(&rest[i + MARK.len()..])),
            None => (rest, None),
        };
        out.push((name.take(), body));
        let Some(next) = next else { break };
        let end = next.iter().position(|&b| b == b'\n').unwrap_or(next.len());
        let n = String::from_utf8_lossy(&next[..end]).trim().to_string();
        let ok = !n.is_empty()
            && n.len() <= 40
            && n.matches('/').count() <= 3
            && !n.starts_with(['/', '.'])
            && !n.contains("/.")
            && n.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        name = Some(if ok { n } else { format!("f{}", out.len()) });
        rest = &next[(end + 1).min(next.len())..];
        if out.len() >= 8 {
            // Later parts go to the last file.
            out.push((name.take(), rest));
            break;
        }
    }
    out
}

/// Whether an ssh_config input's `Include` lines might name a file outside the scratch
/// directory (an absolute path, `..`, or an escape or class that could spell them):
/// such inputs are skipped, so a fuzzer never makes lookout glob `/**` or read /dev/zero.
/// What an include inside the scratch directory does is fuzzed.
fn ssh_include_escapes(data: &[u8]) -> bool {
    String::from_utf8_lossy(data).lines().any(|line| {
        let l = line.trim_start().to_ascii_lowercase();
        let Some(rest) = l.strip_prefix("include") else {
            return false;
        };
        // `~` is the scratch directory here (Local::home)
        rest.contains(['\\', '[', '{'])
            || rest.contains("..")
            || rest
                .split(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == '\'')
                .any(|arg| arg.starts_with('/'))
    })
}

/// The same for a config file: its top-level `include` values as lookout reads them. A file
/// that is not TOML includes nothing.
fn toml_include_escapes(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    let Some(toml::Value::Array(list)) = table.get("include") else {
        return false;
    };
    list.iter().any(|v| {
        v.as_str().is_some_and(|p| {
            let p = p.trim();
            p.starts_with('/') || p.contains(['~', '\\', '[', '{']) || p.contains("..")
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The remote sample (src/collectors/remote.rs), format 1 and 2.

/// The input is one or more samples (each up to an `@@end` line), read in turn by the
/// state of one host as the SSH collector reads them (request, parse, complete), with
/// processes watched and without; each also goes through the pure parser.
pub fn remote_sample(data: &[u8], _scratch: &Path) {
    use lookout::collectors::remote::{self, RemoteState, Watch};
    let text = String::from_utf8_lossy(data);
    let watched = Watch {
        processes: ["sshd", "sleep", "sh", "lookout", "*"]
            .into_iter()
            .map(Arc::from)
            .collect(),
        mounts: Vec::new(),
        interfaces: Vec::new(),
    };
    let filtered = Watch {
        processes: Vec::new(),
        mounts: vec!["/".into(), "/boot".into()],
        interfaces: vec!["eth0".into(), "lo".into()],
    };
    let mut samples = Vec::new();
    let mut start = 0;
    for (i, line) in text.split_inclusive('\n').scan(0usize, |pos, l| {
        let at = *pos;
        *pos += l.len();
        Some((at, l))
    }) {
        if line.starts_with(remote::END_MARKER) {
            samples.push(&text[start..i + line.len()]);
            start = i + line.len();
        }
    }
    if start < text.len() {
        samples.push(&text[start..]);
    }
    for watch in [&watched, &filtered] {
        let mut state = RemoteState::default();
        for (id, sample) in samples.iter().take(16).enumerate() {
            let line = state.request(id as u64, watch);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            let _ = remote::parse(sample, watch);
            let Ok(parsed) = state.parse(sample, watch) else {
                continue;
            };
            let (readings, processes) = state.complete(parsed, watch);
            for r in &readings {
                assert_clean("an instance", &r.instance);
            }
            for p in &processes {
                assert_clean("a process name", &p.name);
                assert_clean("a command line", &p.cmdline);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ssh_config (src/collectors/ssh/sshconfig.rs, target.rs).

/// The input is ~/.ssh/config, then files under ~/.ssh that it may `Include` (see
/// [`files`]); every concrete host and a few others are resolved as lookout resolves them.
pub fn ssh_config(data: &[u8], scratch: &Path) {
    use lookout::collectors::ssh::sshconfig::{Local, SshConfig};
    use lookout::collectors::ssh::target::Resolver;
    if ssh_include_escapes(data) {
        return;
    }
    fresh(scratch);
    let ssh_dir = scratch.join(".ssh");
    let main = ssh_dir.join("config");
    for (name, body) in files(data) {
        let path = name.map_or_else(|| main.clone(), |n| ssh_dir.join(n));
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&path, body);
    }
    let local = Local {
        user: "me".into(),
        home: scratch.to_path_buf(),
        uid: 1000,
        hostname: "jump.example.com".into(),
    };
    let Ok(config) = SshConfig::load(&main, &local) else {
        return;
    };
    let mut hosts = config.concrete_hosts();
    hosts.truncate(6);
    hosts.extend(["web1", "[::1]:2222", "u@h:22"].map(String::from));
    let resolver = Resolver::load_with(&main, local.clone()).ok();
    for h in &hosts {
        for (user, port) in [(None, None), (Some("cli"), Some(2222))] {
            let r = config.resolve(h, user, port, &local);
            let _ = r.jumps();
            for s in r.identity_files.iter().chain(&r.certificate_files) {
                let _ = r.expand(s, &local);
            }
            if let Some(c) = &r.proxy_command {
                let _ = r.expand(c, &local);
            }
        }
        if let Some(resolver) = &resolver {
            let e = resolver.endpoint(h);
            let _ = e.host_port();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// known_hosts (src/collectors/ssh/known_hosts.rs).

const HOST_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJ9Fd4wqMg0S6OJbl/edxmNKHxpExGK9FWSjUPAKiVVG";
/// HOST_KEY certified by CA_KEY as host `localhost,127.0.0.1`, valid 2020 to 2099.
const HOST_CERT: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIJu3y8yTm9MwRTnqsyn+znTsbZK2hIMqA2gw1580rHzwAAAAIJ9Fd4wqMg0S6OJbl/edxmNKHxpExGK9FWSjUPAKiVVGAAAAAAAAAAAAAAACAAAACGZ1enpob3N0AAAAGgAAAAlsb2NhbGhvc3QAAAAJMTI3LjAuMC4xAAAAAF4L4QAAAAAA9IUFgAAAAAAAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgIzUGi4/4wECQszIO6ZGL6II1ljKbnh7SwoWRR7VeeagAAABTAAAAC3NzaC1lZDI1NTE5AAAAQHBMiDUwVBuSo4n5tJuURcqILtI9JOMSmB68oXe6z/Zt2yxXW9zpLwMFaAYix5VvLAnz1PJvnCOQum6StgLuZQI=";

fn host_key() -> &'static (russh::keys::PublicKey, russh::keys::Certificate) {
    static KEYS: OnceLock<(russh::keys::PublicKey, russh::keys::Certificate)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            russh::keys::parse_public_key_base64(HOST_KEY).expect("host key"),
            russh::keys::Certificate::from_openssh(HOST_CERT).expect("host certificate"),
        )
    })
}

/// The input is a known_hosts file; a fixed host key and a certificate for it are checked
/// against it for fixed names and the names its lines start with, then the key is learnt
/// (accept-new) for a fresh name, after which it must be trusted or revoked.
pub fn known_hosts(data: &[u8], scratch: &Path) {
    use lookout::collectors::ssh::known_hosts::{self, Verdict};
    fresh(scratch);
    let file = scratch.join("known_hosts");
    let _ = std::fs::write(&file, data);
    let files = [file.clone(), scratch.join("missing")];
    let (key, cert) = host_key();
    let mut names: Vec<String> = ["localhost", "[127.0.0.1]:2222", "WEB1.example.com"]
        .map(String::from)
        .to_vec();
    for line in String::from_utf8_lossy(data).lines().take(4) {
        let mut words = line.split_whitespace();
        let first = match words.next() {
            Some(w) if w.starts_with('@') => words.next(),
            w => w,
        };
        if let Some(w) = first {
            names.extend(
                w.split(',')
                    .take(1)
                    .map(|p| p.trim_start_matches('!').replace(['*', '?'], "x")),
            );
        }
    }
    for name in &names {
        let _ = known_hosts::check_key(name, key, &files);
        if known_hosts::has_authority(name, &files) {
            let principal = name.trim_start_matches('[').split(']').next().unwrap_or(name);
            let _ = known_hosts::check_certificate(name, principal, cert, &files);
        }
    }
    let fresh_name = "fresh-host.fuzz.invalid";
    if known_hosts::learn(fresh_name, key, &file).is_ok() {
        let v = known_hosts::check_key(fresh_name, key, &files);
        assert!(
            matches!(v, Verdict::Trusted | Verdict::Revoked { .. }),
            "a key just learnt is {v:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The config TOML (src/config.rs, config/include.rs, config/tolerant.rs).

/// The input is config.toml, then files it may `include` (see [`files`]), in the scratch
/// directory; the config is parsed and validated, and every error message is formatted.
pub fn config_toml(data: &[u8], scratch: &Path) {
    let parts = files(data);
    if parts
        .iter()
        .any(|(_, body)| toml_include_escapes(&String::from_utf8_lossy(body)))
    {
        return;
    }
    fresh(scratch);
    let main = scratch.join("config.toml");
    let mut text = String::new();
    for (name, body) in parts {
        match name {
            None => text = String::from_utf8_lossy(body).into_owned(),
            Some(n) => {
                let path = scratch.join(n);
                if let Some(parent) = path.parent() {
                    let _ = std::fs::create_dir_all(parent);
                }
                let _ = std::fs::write(&path, body);
            }
        }
    }
    let _ = std::fs::write(&main, &text);
    match lookout::config::parse(&text, "config.toml", Some(main)) {
        Ok(config) => {
            for h in config.hosts.iter().take(8) {
                let _ = lookout::collectors::checks::fingerprint(&config, &h.name);
            }
        }
        Err(errors) => {
            for e in &errors.0 {
                let line = e.to_string();
                assert!(!line.is_empty());
            }
            let _ = errors.to_string();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus query responses (src/collectors/prometheus.rs).

/// The envelope of a Prometheus API answer, as prometheus-http-query reads it (its own type
/// is private to it): `status` says whether `data` or the error fields follow.
#[derive(serde::Deserialize)]
#[serde(tag = "status")]
enum ApiResponse {
    #[serde(alias = "success")]
    Success {
        data: prometheus_http_query::response::PromqlResult,
    },
    #[serde(alias = "error")]
    Error(prometheus_http_query::error::PrometheusError),
}

fn prometheus_source() -> &'static lookout::collectors::prometheus::PrometheusSource {
    static SOURCE: OnceLock<lookout::collectors::prometheus::PrometheusSource> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let text = "[[prometheus]]\nurl = \"http://127.0.0.1:9\"\ngroup_label = \"job\"\n";
        let config = lookout::config::parse(text, "prometheus.toml", None).expect("config");
        config.prometheus.into_iter().next().expect("a source")
    })
}

/// The input is one JSON answer per line, each the answer to the next built-in query of a
/// source; the round they make is folded into hosts and published as the collector does.
pub fn prometheus_response(data: &[u8], _scratch: &Path) {
    use lookout::collectors::prometheus::{Collector, RoundBuilder, series_of};
    let source = prometheus_source();
    let mut b = RoundBuilder::default();
    let mut names = Default::default();
    let mut interner = lookout::model::Interner::default();
    let mut asked = 0;
    for (i, body) in data.split(|&c| c == b'\n').take(64).enumerate() {
        let q = &source.queries[i % source.queries.len()];
        asked += 1;
        match serde_json::from_slice::<ApiResponse>(body) {
            Ok(ApiResponse::Success { data }) => match series_of(data.into_inner().0) {
                Ok(series) => b.add(source, q, series, &mut names, &mut interner),
                Err(e) => b.fail(q, e, false),
            },
            Ok(ApiResponse::Error(e)) => b.fail(q, e.to_string(), false),
            Err(e) => b.fail(q, e.to_string(), i % 3 == 0),
        }
    }
    let round = b.finish(asked);
    for h in &round.hosts {
        assert_clean("a host name", &h.name);
        for r in &h.readings {
            assert_clean("an instance", &r.instance);
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let Ok(mut collector) = Collector::new(Arc::new(source.clone()), tx) else {
        return;
    };
    futures::executor::block_on(async {
        let publish = async move {
            collector.publish(round, Duration::from_millis(3)).await;
        };
        let drain = async { while rx.recv().await.is_some() {} };
        futures::join!(publish, drain);
    });
}

// ---------------------------------------------------------------------------------------------
// Check outputs (src/collectors/checks/parse.rs).

/// Byte 0 picks the format, byte 1 how the run ended (an exit code, or killed, timed out,
/// too much output, failed); the rest is stdout, then stderr after a line `--stderr--`.
pub fn check_output(data: &[u8], _scratch: &Path) {
    use lookout::collectors::checks::Format;
    use lookout::collectors::checks::parse::{self, Exit, Outcome};
    let (format, exit, rest) = match data {
        [f, e, rest @ ..] => (*f, *e, rest),
        _ => (0, 0, data),
    };
    let format = [Format::Number, Format::Nagios, Format::Prometheus][usize::from(format % 3)];
    let exit = match exit {
        251 => Exit::Signal("SIGSEGV".into()),
        252 => Exit::TimedOut(Duration::from_millis(1500)),
        253 => Exit::TooMuchOutput(1 << 20),
        254 => Exit::Failed("connection lost".into()),
        c => Exit::Code(u32::from(c)),
    };
    const SEP: &[u8] = b"\n--stderr--\n";
    let (stdout, stderr) = match rest.windows(SEP.len()).position(|w| w == SEP) {
        Some(i) => (&rest[..i], &rest[i + SEP.len()..]),
        None => (rest, &[][..]),
    };
    let outcome = Outcome {
        exit,
        stdout: stdout.to_vec(),
        stderr: stderr.to_vec(),
    };
    let v = parse::judge(format, &outcome);
    assert!(v.status <= 3, "status {}", v.status);
    assert_clean("a check message", &v.message);
    assert!(
        v.message.chars().count() <= parse::MAX_MESSAGE + 1,
        "message of {} characters",
        v.message.chars().count()
    );
    assert!(v.values.len() <= parse::MAX_VALUES, "{} values", v.values.len());
    for (instance, _) in &v.values {
        assert_clean("a value's instance", instance);
    }
    let text = String::from_utf8_lossy(stdout);
    let _ = parse::first_number(&text);
    let _ = parse::nagios(&text);
    let _ = parse::perfdata(&text);
    let _ = parse::prometheus(&text);
    assert_clean("a first line", &parse::first_line(&text));
}

// ---------------------------------------------------------------------------------------------
// Recording segments (src/record/).

/// Sets the CRC of every block header found in a segment, so that mutated payloads get past
/// the checksum to the decoders.
fn fix_crcs(seg: &mut [u8]) {
    use lookout::record::format::{BLOCK_HEADER_LEN, BLOCK_MAGIC, HEADER_LEN};
    let mut at = HEADER_LEN as usize;
    while at + BLOCK_HEADER_LEN <= seg.len() {
        if &seg[at..at + 4] != BLOCK_MAGIC {
            at += 1;
            continue;
        }
        let len = u32::from_le_bytes([seg[at + 24], seg[at + 25], seg[at + 26], seg[at + 27]]) as usize;
        let end = at + BLOCK_HEADER_LEN + len;
        if end > seg.len() {
            at += 1;
            continue;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&seg[at..at + 28]);
        crc.update(&seg[at + BLOCK_HEADER_LEN..end]);
        seg[at + 28..at + 32].copy_from_slice(&crc.finalize().to_le_bytes());
        at = end;
    }
}

/// An input starting with the segment magic is a segment file: it is written as is and
/// with its block checksums fixed, into one recording directory, which is then read the
/// ways lookout reads it (span, snapshots at several moments with and without history,
/// events, stats). Any other input is decompressed block payloads separated by `LKCH`,
/// each starting with a byte whose bit 0 says key block, fed to the decoder in turn.
pub fn record_segment(data: &[u8], scratch: &Path) {
    use lookout::record::Recording;
    use lookout::record::chunk::{Decoder, HistorySpec, decode_events, from_ms, ms};
    use lookout::record::format::SEGMENT_MAGIC;
    if !data.starts_with(SEGMENT_MAGIC) {
        let mut d = Decoder::with_history(Some(HistorySpec {
            from: 0,
            cap: 8,
            only: None,
            metrics: None,
        }));
        for chunk in data.split_inclusive_marker(b"LKCH").into_iter().take(32) {
            let Some((&flags, payload)) = chunk.split_first() else {
                continue;
            };
            let until = if flags & 2 != 0 { i64::MAX } else { 1 << 40 };
            let _ = d.apply(flags & 1 != 0, payload, until, flags & 4 == 0);
        }
        let snap = d.snapshot(from_ms(1 << 40), Duration::from_secs(2));
        let _ = serde_json::to_vec(&snap);
        let _ = decode_events(data);
        return;
    }
    fresh(scratch);
    let _ = std::fs::write(scratch.join("20261201-000000-a.lkr"), data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    let _ = std::fs::write(scratch.join("20261201-000001-b.lkr"), &fixed);
    let Ok(rec) = Recording::open(scratch) else {
        return;
    };
    let (a, b) = rec.span();
    let (a, b) = (ms(a), ms(b));
    let _ = rec.interval();
    let mid = a / 2 + b / 2;
    for t in [a, mid, b, b.saturating_add(1500)] {
        let at = from_ms(t);
        if rec.check_time(at).is_err() {
            continue;
        }
        let history = Some(HistorySpec {
            from: a,
            cap: 16,
            only: None,
            metrics: Some(vec![lookout::model::Metric::CpuUsage]),
        });
        for h in [None, history] {
            if let Ok(snap) = rec.snapshot_at(at, h) {
                let _ = serde_json::to_vec(&snap);
            }
        }
    }
    let _ = rec.events(from_ms(a), from_ms(b));
    let _ = rec.stats();
    let _ = rec.take_problems();
    let _ = SystemTime::now();
}

/// `split` that keeps going after the last marker (a small helper for [`record_segment`]).
trait SplitMarker {
    fn split_inclusive_marker<'a>(&'a self, marker: &'a [u8]) -> Vec<&'a [u8]>;
}

impl SplitMarker for [u8] {
    fn split_inclusive_marker<'a>(&'a self, marker: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self;
        while let Some(i) = rest.windows(marker.len()).position(|w| w == marker) {
            out.push(&rest[..i]);
            rest = &rest[i + marker.len()..];
        }
        out.push(rest);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The serve protocol (src/serve/protocol.rs, delta.rs).

/// The input is a handshake line, then frames: read as a viewer reads a server (each
/// message applied to a replica of the server's state, as `lookout attach` does) and as
/// the server reads a viewer (commands turned into the engine's).
pub fn serve_frames(data: &[u8], _scratch: &Path) {
    use lookout::serve::delta::Replica;
    use lookout::serve::protocol::{
        CLIENT_FRAME_LIMIT, ClientMsg, SERVER_FRAME_LIMIT, ServerMsg, read_frame, read_hello,
    };
    futures::executor::block_on(async {
        let mut input = data;
        let _ = read_hello(&mut input).await;
        let frames = input;
        let mut buf = Vec::new();
        let mut replica = Replica::new(4);
        let mut r = frames;
        for _ in 0..64 {
            match read_frame::<ServerMsg>(&mut r, SERVER_FRAME_LIMIT, &mut buf).await {
                Ok(ServerMsg::Full(state)) => {
                    let snap = replica.apply_full(state);
                    let _ = serde_json::to_vec(&*snap);
                }
                Ok(ServerMsg::Delta(delta)) => {
                    if let Ok(snap) = replica.apply_delta(delta) {
                        let _ = serde_json::to_vec(&*snap);
                    }
                }
                Ok(ServerMsg::Metrics(list)) => {
                    // Registering is global and permanent (bounded by the protocol's limit);
                    // only names the harness made for itself are registered.
                    for m in list.into_iter().take(4) {
                        if m.name.starts_with("check.fuzz_") && m.name.len() < 24 {
                            let _ = m.register();
                        }
                    }
                }
                Ok(ServerMsg::Processes { id, host, procs }) => {
                    replica.set_detail(id, Some(host.clone()));
                    if let Ok(Some(snap)) = replica.apply_processes(id, &host, procs) {
                        let _ = serde_json::to_vec(&*snap);
                    }
                }
                Ok(ServerMsg::Event(_) | ServerMsg::Reply { .. } | ServerMsg::Notice(_)) => {}
                Err(_) => break,
            }
        }
        let mut r = frames;
        for _ in 0..64 {
            match read_frame::<ClientMsg>(&mut r, CLIENT_FRAME_LIMIT, &mut buf).await {
                Ok(ClientMsg::Command(c)) => {
                    let _ = c.into_command("viewer");
                }
                Ok(ClientMsg::Reload | ClientMsg::Detail { .. }) => {}
                Err(_) => break,
            }
        }
    });
}
