//! Recording end to end with the real binary: a run with a known story read back with
//! `snapshot --at` and `events`; a recorder killed with SIGKILL; a full disk (a small tmpfs)
//! and a read-only directory, where recording stops and nothing else does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.env_remove("XDG_STATE_HOME");
    c
}

fn rfc(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Kills and reaps a child when dropped (also when a test fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn config(dir: &Path, rec: &Path, name: &str) -> PathBuf {
    config_every(dir, rec, name, "500ms")
}

fn config_every(dir: &Path, rec: &Path, name: &str, interval: &str) -> PathBuf {
    let text = format!(
        r#"
[general]
interval = "{interval}"
[[hosts]]
names = ["me"]
via = "local"
[[watch.processes]]
hosts = ["*"]
names = ["{name}"]
[record]
dir = "{}"
[[trigger]]
name = "story process down"
metric = "proc.count"
scope = "each"
instance = "{name}"
below = 1
for = "1s"
"#,
        rec.display()
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

fn snapshot_at(rec: &Path, at: SystemTime) -> serde_json::Value {
    let out = lookout()
        .args(["snapshot", "--json", "--at", &rfc(at), "--record-dir"])
        .arg(rec)
        .output()
        .expect("run lookout");
    assert!(
        out.status.success(),
        "snapshot --at {}: {}",
        rfc(at),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("snapshot JSON")
}

fn proc_count(snap: &serde_json::Value, name: &str) -> Option<f64> {
    snap["hosts"][0]["metrics"]
        .as_array()?
        .iter()
        .find(|m| m["metric"] == "proc.count" && m["instance"] == name)
        .and_then(|m| m["value"].as_f64())
}

fn trigger_state(snap: &serde_json::Value) -> String {
    snap["triggers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "story process down"))
        .and_then(|t| t["state"].as_str())
        .unwrap_or("ok")
        .to_string()
}

/// A copy of `sleep` under a name nothing else on the machine has.
fn story_process(dir: &Path) -> (PathBuf, String) {
    let name = format!("lks{}", std::process::id() % 100_000);
    let bin = dir.join(&name);
    std::fs::copy("/bin/sleep", &bin).expect("copy sleep");
    (bin, name)
}

#[test]
fn a_known_story_reads_back_before_during_and_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let (bin, name) = story_process(dir.path());
    let cfg = config(dir.path(), &rec, &name);
    let t0 = SystemTime::now();
    let run = Reaped(
        lookout()
            .args(["run", "--headless", "--duration", "11s", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lookout"),
    );
    std::thread::sleep(Duration::from_secs(4));
    let started = SystemTime::now();
    let worker = Reaped(
        Command::new(&bin)
            .arg("60")
            .spawn()
            .expect("start the watched process"),
    );
    let pid = worker.0.id();
    std::thread::sleep(Duration::from_secs(3));
    let killed = SystemTime::now();
    drop(worker);
    let mut run = run;
    let status = run.0.wait().expect("lookout ends at --duration");
    assert!(status.success());

    let before = snapshot_at(&rec, started - Duration::from_millis(800));
    assert_eq!(proc_count(&before, &name), Some(0.0), "{before}");
    assert_eq!(trigger_state(&before), "firing");

    let during = snapshot_at(&rec, started + Duration::from_secs(2));
    assert_eq!(proc_count(&during, &name), Some(1.0), "{during}");
    let pids: Vec<u64> = during["hosts"][0]["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    assert_eq!(pids, [u64::from(pid)]);
    assert_ne!(trigger_state(&during), "firing");

    let after = snapshot_at(&rec, killed + Duration::from_secs(3));
    assert_eq!(proc_count(&after, &name), Some(0.0), "{after}");
    assert_eq!(trigger_state(&after), "firing");

    // The events: every transition in order, with times in the story's windows.
    let out = lookout()
        .args(["events", "--json", "--since", &rfc(t0), "--record-dir"])
        .arg(&rec)
        .output()
        .expect("run lookout");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let transitions: Vec<(String, SystemTime)> = lines
        .iter()
        .filter(|e| e["event"] == "trigger" && e["trigger"] == "story process down")
        .map(|e| {
            let at = humantime::parse_rfc3339(e["at"].as_str().unwrap_or("")).expect("time");
            (
                format!(
                    "{}->{}",
                    e["previous"].as_str().unwrap_or(""),
                    e["state"].as_str().unwrap_or("")
                ),
                at,
            )
        })
        .collect();
    let names: Vec<&str> = transitions.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(
        names[..5],
        [
            "ok->pending",
            "pending->firing",
            "firing->resolved",
            "resolved->pending",
            "pending->firing"
        ],
        "{names:?}"
    );
    assert!(transitions.windows(2).all(|w| w[0].1 <= w[1].1), "in time order");
    assert!(transitions[1].1 < started && transitions[2].1 > started);
    assert!(transitions[3].1 > killed);

    // Text form, and a time outside the recording.
    let out = lookout()
        .args(["events", "--since", &rfc(t0), "--record-dir"])
        .arg(&rec)
        .output()
        .expect("run lookout");
    assert!(String::from_utf8_lossy(&out.stdout).contains("pending -> firing"));
    let out = lookout()
        .args([
            "snapshot",
            "--json",
            "--at",
            &rfc(t0 - Duration::from_secs(3600)),
            "--record-dir",
        ])
        .arg(&rec)
        .output()
        .expect("run lookout");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outside the recorded span"), "{err}");
}

#[test]
fn a_recorder_killed_with_sigkill_loses_only_the_last_seconds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("rec");
    let (_, name) = story_process(dir.path());
    let cfg = config(dir.path(), &rec, &name);
    let mut run = Reaped(
        lookout()
            .args(["run", "--headless", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lookout"),
    );
    std::thread::sleep(Duration::from_secs(7));
    let killed = SystemTime::now();
    run.0.kill().expect("SIGKILL");
    let _ = run.0.wait();
    let snap = snapshot_at(&rec, killed - Duration::from_secs(3));
    assert_eq!(snap["hosts"][0]["status"], "up", "{snap}");
    assert_eq!(snap["hosts"][0]["stale"], false, "{snap}");
    // The segment was never closed: no index trailer, read from its block headers.
    let seg = std::fs::read_dir(&rec)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "lkr"))
        .expect("a segment");
    let bytes = std::fs::read(&seg).expect("read");
    assert!(!bytes.ends_with(b"LKIDXEND"));
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, options: &str) -> Option<Mount> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn headless(cfg: &Path, duration: &str) -> Output {
    lookout()
        .args(["run", "--headless", "--duration", duration, "--config"])
        .arg(cfg)
        .output()
        .expect("run lookout")
}

#[test]
fn a_full_disk_stops_recording_and_nothing_else() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mount) = Mount::tmpfs(&dir.path().join("small"), "size=256k") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let (_, name) = story_process(dir.path());
    // Polled ten times a second, so that a minute's writes need new pages of the tmpfs.
    let cfg = config_every(dir.path(), &mount.0.join("rec"), &name, "100ms");
    // Fill the disk but one page: the segment's header and first blocks fit, and after
    // some seconds a block needs the page that is not there.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mount.0.join("filler")).expect("filler");
        let page = vec![0u8; 4096];
        while f.write_all(&page).is_ok() {}
        f.set_len(f.metadata().map_or(0, |m| m.len()).saturating_sub(4096))
            .expect("free a page");
    }
    let t0 = SystemTime::now();
    let run = lookout()
        .args(["run", "--headless", "--duration", "25s", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lookout");
    let out = run.wait_with_output().expect("lookout ends at --duration");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("recording stopped"), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    // What was written before the disk filled reads back (no half block left behind).
    let snap = snapshot_at(&mount.0.join("rec"), t0 + Duration::from_secs(3));
    assert_eq!(snap["hosts"][0]["status"], "up");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or("");
    assert!(
        last.contains("duration reached"),
        "the run went on to its end: {last}"
    );
    assert!(stdout.contains("story process down"), "triggers kept working");
}

#[test]
fn a_read_only_directory_stops_recording_and_nothing_else() {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mount) = Mount::tmpfs(&dir.path().join("ro"), "ro,size=64k") else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    };
    let (_, name) = story_process(dir.path());
    let cfg = config(dir.path(), &mount.0.join("rec"), &name);
    let out = headless(&cfg, "4s");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("recording stopped: cannot record into"),
        "{stderr}"
    );
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().last().unwrap_or("").contains("duration reached"));
    // --no-record: not even an attempt.
    let mut c = lookout();
    let out = c
        .args(["--no-record", "run", "--headless", "--duration", "2s", "--config"])
        .arg(&cfg)
        .output()
        .expect("run lookout");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("recording"));
}
