//! Replays every fuzz corpus (fuzz/corpus/TARGET/*: the seeds, the inputs AFL++ found that
//! reach new code, and the inputs of fixed crashes) through the fuzz targets' own harness
//! (fuzz/src/harness.rs, compiled in here as it is), so CI checks each without building
//! AFL++. Each input must not panic (the harness asserts what the parsers promise, too)
//! and must take less than a second here (a debug build; afl-fuzz's hang limit is 1 s on
//! an optimized one). docs/fuzzing.md runs the targets for real.

#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

fn replay(target: &str) {
    let (_, run) = harness::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .expect("a target of the harness");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut failed = Vec::new();
    for f in &files {
        let data = std::fs::read(f).expect("read a corpus file");
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| run(&data, scratch.path())));
        let took = started.elapsed();
        if result.is_err() {
            failed.push(format!("{} panicked", f.display()));
        } else if took > Duration::from_secs(1) {
            failed.push(format!("{} took {} ms", f.display(), took.as_millis()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn remote_sample() {
    replay("remote_sample");
}

#[test]
fn ssh_config() {
    replay("ssh_config");
}

#[test]
fn known_hosts() {
    replay("known_hosts");
}

#[test]
fn config_toml() {
    replay("config_toml");
}

#[test]
fn prometheus_response() {
    replay("prometheus_response");
}

#[test]
fn check_output() {
    replay("check_output");
}

#[test]
fn record_segment() {
    replay("record_segment");
}

#[test]
fn serve_frames() {
    replay("serve_frames");
}
