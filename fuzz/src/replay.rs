//! The plain (not instrumented) mode of a fuzz target: runs the harness on files, the way
//! AFL++ would, and says which input panicked or ran long.
//!
//! `TARGET [PATH...]`: each PATH is a file or a directory (its files, and those of its
//! `queue`, `crashes` and `hangs` subdirectories: an afl-fuzz output directory works as is);
//! without PATH, `fuzz/corpus/TARGET`. Exits 1 when an input panicked or took more than
//! [`SLOW`], 2 when there was nothing to replay. The last line is a summary with the
//! slowest input and the peak RSS of the process (VmHWM).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An input taking longer than this counts as a hang (afl-fuzz runs with `-t 1000`).
pub const SLOW: Duration = Duration::from_secs(1);

/// Where a target being fuzzed keeps the files its harness writes: `$LOOKOUT_FUZZ_SCRATCH`
/// (scripts/fuzz.sh sets it inside the output directory), else a directory in the temp dir.
/// One fuzzer runs one target at a time, so the path is fixed (AFL++ forks a new process
/// every so many runs; a per-process directory would be left behind by each).
pub fn fuzz_scratch(target: &str) -> PathBuf {
    let dir = std::env::var_os("LOOKOUT_FUZZ_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join(format!("lookout-fuzz-{target}")));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create the scratch directory {}: {e}", dir.display());
        std::process::exit(2);
    }
    dir
}

fn inputs(path: &Path, out: &mut Vec<PathBuf>) {
    // An afl-fuzz instance directory: only its inputs, not its state files.
    if path.join("fuzzer_stats").is_file() {
        for sub in ["queue", "crashes", "hangs"] {
            let d = path.join(sub);
            if d.is_dir() {
                inputs(&d, out);
            }
        }
        return;
    }
    if path.is_file() {
        out.push(path.to_path_buf());
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        eprintln!("cannot read {}", path.display());
        return;
    };
    let mut found: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    found.sort();
    for p in found {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if p.is_file() && name != "README.txt" && !name.starts_with('.') {
            out.push(p);
        } else if p.is_dir() && matches!(name.as_str(), "queue" | "crashes" | "hangs" | "default") {
            inputs(&p, out);
        }
    }
}

/// Peak resident set of this process in KiB (VmHWM of /proc/self/status).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Replays the inputs named on the command line through `harness`; returns the exit code.
pub fn main(target: &str, harness: fn(&[u8], &Path)) -> i32 {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let roots = if args.is_empty() {
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)]
    } else {
        args
    };
    let mut files = Vec::new();
    for r in &roots {
        inputs(r, &mut files);
    }
    if files.is_empty() {
        eprintln!("{target}: nothing to replay in {roots:?}");
        return 2;
    }
    let scratch = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            return 2;
        }
    };
    let (mut panics, mut slow) = (0usize, 0usize);
    let mut slowest = (Duration::ZERO, PathBuf::new());
    for f in &files {
        let data = match std::fs::read(f) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", f.display());
                continue;
            }
        };
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| harness(&data, scratch.path())));
        let took = started.elapsed();
        if result.is_err() {
            panics += 1;
            eprintln!("PANIC {}", f.display());
        }
        if took > SLOW {
            slow += 1;
            eprintln!("SLOW {} ({} ms)", f.display(), took.as_millis());
        }
        if took > slowest.0 {
            slowest = (took, f.clone());
        }
    }
    println!(
        "replay {target}: {} inputs, {panics} panics, {slow} over {} ms, slowest {:.1} ms ({}), peak RSS {} MiB",
        files.len(),
        SLOW.as_millis(),
        slowest.0.as_secs_f64() * 1000.0,
        slowest.1.display(),
        peak_rss_kib().map_or_else(|| "?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0)),
    );
    i32::from(panics + slow > 0)
}
