//! The recorder and the reader together: an engine on a fake clock publishes a scripted
//! story, the real recorder writes it, and every recorded moment must read back as the
//! snapshot the engine published then (same JSON). Then the files are damaged.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use super::chunk::ms;
use super::{RecordSettings, Recorder, Recording};
use crate::clock::{Clock, FakeClock};
use crate::engine::Engine;
use crate::model::{HostStatus, Metric, ProcessDetail, Reading, Sample, Source, Update};
use crate::snapshot::Snapshot;

const CONFIG: &str = r#"
[general]
interval = "1s"
[[hosts]]
names = ["alpha", "beta"]
[[trigger]]
name = "cpu high"
metric = "cpu.usage_pct"
scope = "each"
above = 50
for = "2s"
"#;

fn settings(dir: &std::path::Path) -> RecordSettings {
    RecordSettings {
        dir: dir.to_path_buf(),
        flush: Duration::from_millis(40),
        key_every: Duration::from_millis(150),
        ..RecordSettings::default()
    }
}

fn sample(host: &str, readings: Vec<Reading>, processes: Vec<ProcessDetail>) -> Update {
    Update::Sample(Sample {
        host: Arc::from(host),
        source: Source::System,
        readings,
        processes,
    })
}

fn status(host: &str, status: HostStatus, error: Option<&str>) -> Update {
    Update::Status {
        host: Arc::from(host),
        status,
        error: error.map(String::from),
    }
}

/// Plays the story and returns each published snapshot (one a second).
async fn record_story(dir: &std::path::Path, steps: u32) -> Vec<Arc<Snapshot>> {
    let config = Arc::new(crate::config::parse(CONFIG, "t.toml", None).expect("valid config"));
    let clock = Arc::new(FakeClock::at_epoch());
    let mut engine = Engine::new(config, clock.clone());
    let (snap_tx, snap_rx) = watch::channel(engine.snapshot());
    let (ev_tx, ev_rx) = broadcast::channel(1024);
    let rec = Recorder::spawn(settings(dir), Duration::from_secs(1), snap_rx, ev_rx);
    let mut published = Vec::new();
    // A check metric, registered at run time: recorded by name like the catalogue's.
    let jobs = Metric::register(crate::model::NewMetric {
        name: "check.story_jobs".into(),
        unit: crate::model::Unit::Custom("jobs"),
        instance: "",
        risk: crate::model::Risk::Higher,
        description: "jobs queued".into(),
    })
    .expect("registered");
    engine.apply(status("alpha", HostStatus::Up, None));
    engine.apply(status("beta", HostStatus::Up, None));
    for i in 0..steps {
        clock.advance(Duration::from_secs(1));
        let cpu = f64::from((i * 7) % 100);
        let procs = if (5..15).contains(&i) {
            vec![ProcessDetail {
                watch: Arc::from("httpd"),
                // One process that lives on (its numbers change), then a new one.
                pid: if i < 10 { 100 } else { 200 },
                name: Arc::from("httpd"),
                cpu_pct: 1.5 + f64::from(i) * 0.25,
                mem_pct: 0.25,
                rss_bytes: (1 << 20) + u64::from(i) * 4096,
                vms_bytes: 4 << 20,
                shared_bytes: 1 << 19,
                cpu_affinity: vec![0, 1],
                cmdline: Arc::from("httpd -D"),
            }]
        } else {
            Vec::new()
        };
        engine.apply(sample(
            "alpha",
            vec![
                Reading::host(Metric::CpuUsage, cpu),
                Reading::host(Metric::Load1, f64::from(i) / 100.0),
                Reading::new(Metric::DiskUsedPct, "/", 55.25),
                Reading::new(Metric::ProcCount, "httpd", procs.len() as f64),
                Reading::host(Metric::MemTotal, 8e9),
                Reading::host(jobs, f64::from(i) * 1.5),
            ],
            procs,
        ));
        match i {
            10 => engine.apply(status("beta", HostStatus::Timeout, Some("no answer in 5s"))),
            20 => engine.apply(status("beta", HostStatus::Up, None)),
            _ if i % 3 == 0 && !(10..20).contains(&i) => engine.apply(sample(
                "beta",
                vec![
                    Reading::host(Metric::CpuUsage, 12.5),
                    Reading::new(Metric::DiskUsedPct, "/var", f64::from(i)),
                ],
                Vec::new(),
            )),
            _ => {}
        }
        engine.tick();
        for e in engine.drain_events() {
            let _ = ev_tx.send(e);
        }
        let snap = engine.snapshot();
        let _ = snap_tx.send(snap.clone());
        published.push(snap);
        // Let the recorder see every snapshot (the watch keeps only the newest).
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    tokio::task::spawn_blocking(move || rec.stop())
        .await
        .expect("stop");
    assert!(clock.now() > SystemTime::UNIX_EPOCH);
    published
}

fn json(s: &Snapshot) -> serde_json::Value {
    serde_json::to_value(s).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_moment_reads_back_as_published() {
    let dir = tempfile::tempdir().expect("temp dir");
    let published = record_story(dir.path(), 30).await;
    let mut rec = Recording::open(dir.path()).expect("recording");
    assert!(rec.take_problems().is_empty());
    // Refreshing an unchanged directory keeps what it knew.
    rec.refresh().expect("refresh");
    let (a, b) = rec.span();
    assert_eq!(a, published[0].taken_at);
    assert_eq!(b, published[29].taken_at);
    for snap in &published {
        let got = rec.snapshot_at(snap.taken_at, None).expect("moment");
        assert_eq!(json(&got), json(snap), "at {}", ms(snap.taken_at));
        // With the overview's sparkline history (rows before the state's key block read
        // for history only) the moment is the same.
        let spec = crate::ui::rewind::overview_history(snap.taken_at, Duration::from_secs(2));
        let with = rec.snapshot_at(snap.taken_at, Some(spec)).expect("moment");
        assert_eq!(json(&with), json(snap), "at {} with history", ms(snap.taken_at));
        // Half a second later nothing new had happened.
        let later = rec
            .snapshot_at(snap.taken_at + Duration::from_millis(500), None)
            .expect("moment");
        let hosts = |v: serde_json::Value| {
            let mut h = v["hosts"].clone();
            for x in h.as_array_mut().into_iter().flatten() {
                // Staleness moves with the clock.
                x["stale"] = serde_json::Value::Null;
            }
            h
        };
        assert_eq!(hosts(json(&later)), hosts(json(snap)));
    }
    // The story: beta timed out at step 10, the trigger fired on alpha.
    let s = rec.snapshot_at(published[12].taken_at, None).expect("moment");
    let beta = s.host("beta").expect("beta");
    assert_eq!(beta.status, HostStatus::Timeout);
    assert_eq!(beta.error.as_deref(), Some("no answer in 5s"));
    assert_eq!(s.host("alpha").map(|h| h.processes.len()), Some(1));
    // Events: in time order, the trigger's transitions among them.
    let events = rec.events(a, b);
    let times: Vec<SystemTime> = events.iter().map(|e| e.0).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    let states: Vec<String> = events
        .iter()
        .filter_map(|(_, l)| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "trigger")
        .map(|v| {
            format!(
                "{}->{}",
                v["previous"].as_str().unwrap_or(""),
                v["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        states.starts_with(&["ok->pending".to_string(), "pending->firing".to_string()]),
        "{states:?}"
    );
    // Outside the span: a clear error naming it.
    let err = rec
        .snapshot_at(a - Duration::from_secs(60), None)
        .expect_err("before the recording");
    assert!(err.to_string().contains("outside the recorded span"), "{err}");
    // History ending at the moment.
    let spec = super::chunk::HistorySpec {
        from: ms(published[20].taken_at) - 5_000,
        cap: 10,
        only: Some(vec![Arc::from("alpha")]),
        metrics: None,
    };
    let s = rec
        .snapshot_at(published[20].taken_at, Some(spec))
        .expect("moment");
    let hist = s.host("alpha").expect("alpha").history(Metric::CpuUsage, "", 100);
    let want: Vec<f32> = (15..=20).map(|i| ((i * 7) % 100) as f32).collect();
    assert_eq!(hist, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_skipped_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let published = record_story(dir.path(), 30).await;
    let (path, meta) = super::reader::list_segments(dir.path())
        .expect("list")
        .into_iter()
        .next()
        .expect("a segment");
    let good = std::fs::read(&path).expect("read");

    // Flipped bytes in the middle: the block is skipped, earlier moments still read.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 8] {
        *b ^= 0x5a;
    }
    std::fs::write(&path, &bad).expect("write");
    let rec = Recording::open(dir.path()).expect("recording");
    let first = rec
        .snapshot_at(published[1].taken_at, None)
        .expect("early moment");
    assert_eq!(json(&first), json(&published[1]));
    for s in &published {
        // Never a panic; an answer or a clear error.
        let _ = rec.snapshot_at(s.taken_at, None);
    }
    // The flipped bytes may fall in an events block (the layout depends on the recorder's
    // timing): reading the events reports that one.
    let (a, b) = rec.span();
    let _ = rec.events(a, b);
    let problems = rec.take_problems();
    // which message depends on what the flipped bytes hit: a block's data (checksum), its
    // header, or its length (then the block seems to run past the end of the file)
    assert!(
        problems
            .iter()
            .any(|p| p.contains("checksum") || p.contains("bad block header") || p.contains("is cut off")),
        "{problems:?}"
    );
    let mut unique = problems.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        problems.len(),
        "each damage is reported once: {problems:?}"
    );

    // Cut in the middle: what is before the cut reads back; the end is gone.
    // A cut that falls exactly between two blocks leaves whole blocks only, so of three
    // neighbouring positions (a block header is longer than that) the first that is not
    // between two blocks is taken.
    let mut cut_reported = None;
    let mut seen = Vec::new();
    for cut in (0..3).map(|d| good.len() * 6 / 10 + d) {
        std::fs::write(&path, &good[..cut]).expect("write");
        let rec = Recording::open(dir.path()).expect("recording");
        let problems = rec.take_problems();
        // Cut inside a block, or inside the next block's header (too short to be one).
        if problems
            .iter()
            .any(|p| p.contains("cut off") || p.contains("stray bytes at the end"))
        {
            cut_reported = Some(rec);
            break;
        }
        seen.push((cut, good.len(), problems));
    }
    let rec = cut_reported.unwrap_or_else(|| panic!("the cut is reported: {seen:?}"));
    let (_, end) = rec.span();
    assert!(end < published[29].taken_at);
    let early = rec
        .snapshot_at(published[2].taken_at, None)
        .expect("early moment");
    assert_eq!(json(&early), json(&published[2]));

    // Not a segment at all, and an empty file: skipped.
    std::fs::write(dir.path().join("junk.lkr"), b"hello").expect("write");
    std::fs::write(dir.path().join("empty.lkr"), b"").expect("write");
    let rec = Recording::open(dir.path()).expect("recording");
    assert_eq!(
        rec.take_problems()
            .iter()
            .filter(|p| p.contains("skipped"))
            .count(),
        2
    );
    assert!(meta.len() > 0);
}

#[test]
fn retention_and_max_size_delete_the_oldest_closed_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = SystemTime::now();
    let make = |name: &str, age_h: u64, len: usize| {
        let p = dir.path().join(name);
        std::fs::write(&p, vec![0u8; len]).expect("write");
        let f = std::fs::File::options().write(true).open(&p).expect("open");
        f.set_modified(now - Duration::from_secs(age_h * 3600))
            .expect("mtime");
        p
    };
    let old = make("20260101T000000Z-1-1.lkr", 200, 1000);
    let old_live = make("20260101T010000Z-1-2.lkr", 200, 1000);
    let a = make("20260105T000000Z-1-3.lkr", 10, 600_000);
    let b = make("20260106T000000Z-1-4.lkr", 5, 600_000);
    let c = make("20260107T000000Z-1-5.lkr", 1, 600_000);
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"kept").expect("write");
    // Another process is still writing this one.
    let holder = std::fs::File::open(&old_live).expect("open");
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).expect("lock");
    let settings = RecordSettings {
        dir: dir.path().to_path_buf(),
        retention: Duration::from_secs(7 * 86_400),
        max_size: 1_300_000,
        ..RecordSettings::default()
    };
    super::writer::enforce_limits(&settings, None, now);
    assert!(!old.exists(), "older than the retention");
    assert!(old_live.exists(), "locked: in use");
    assert!(!a.exists(), "oldest past max_size");
    assert!(b.exists() && c.exists() && other.exists());
}
