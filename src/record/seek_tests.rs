//! The seek cache against cold seeks: a recording kept open and stepped through (`[`, `]`,
//! jumps) answers every moment exactly as a recording opened afresh for that moment does,
//! host states and history alike, across key blocks, segment boundaries (overlapping ones
//! merged), a segment left unclosed, and damaged blocks.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Recording;
use super::chunk::{Encoder, HistorySpec, ms};
use super::format::{self, BlockMeta, Kind};
use crate::clock::{Clock, FakeClock};
use crate::engine::Engine;
use crate::model::{HostStatus, Metric, ProcessDetail, Reading, Sample, Source, Update};
use crate::snapshot::Snapshot;

const HOSTS: usize = 6;
/// Blocks (one a second) per key run and per segment: segments do not start at a key
/// block of the previous one's rhythm.
const KEY_EVERY: u32 = 10;
const SEGMENT_BLOCKS: u32 = 47;
const SEGMENTS: u32 = 4;

fn config() -> Arc<crate::config::Config> {
    let names: Vec<String> = (0..HOSTS).map(|i| format!("\"h{i}\"")).collect();
    let text = format!(
        "[general]\ninterval = \"1s\"\n[[hosts]]\nnames = [{}]\n[[trigger]]\nname = \"busy\"\nmetric = \"cpu.usage_pct\"\nscope = \"each\"\nabove = 70\nfor = \"2s\"\n",
        names.join(", ")
    );
    Arc::new(crate::config::parse(&text, "t.toml", None).expect("valid config"))
}

/// Writes SEGMENTS segments of one block a second (two snapshots each, half the hosts
/// sampled in each), the last one left without index and trailer (as after a crash).
fn write_recording(dir: &Path) {
    let config = config();
    let clock = Arc::new(FakeClock::at_epoch());
    let mut engine = Engine::new(config.clone(), clock.clone());
    for h in &config.hosts {
        engine.apply(Update::Status {
            host: h.name.clone(),
            status: HostStatus::Up,
            error: None,
        });
    }
    let mut enc = Encoder::new();
    let mut round: u32 = 0;
    for seg in 0..SEGMENTS {
        let start = ms(clock.now()) + 500;
        let path = dir.join(format!("{}-{start}-{}.lkr", super::file_stamp(start), seg + 1));
        let mut out = format::segment_header(start, seg + 1, 1000).to_vec();
        let mut blocks: Vec<BlockMeta> = Vec::new();
        enc.start_key();
        for b in 0..SEGMENT_BLOCKS {
            for half in 0..2 {
                clock.advance(Duration::from_millis(500));
                for (i, h) in config.hosts.iter().enumerate().filter(|(i, _)| i % 2 == half) {
                    let x = f64::from(round) + i as f64 * 13.0;
                    if i == 3 && (20..26).contains(&round) {
                        // A host that times out for a while.
                        engine.apply(Update::Status {
                            host: h.name.clone(),
                            status: HostStatus::Timeout,
                            error: Some("no answer in 5s".into()),
                        });
                        continue;
                    }
                    if i == 3 && round == 26 {
                        engine.apply(Update::Status {
                            host: h.name.clone(),
                            status: HostStatus::Up,
                            error: None,
                        });
                    }
                    let processes = if i == 1 && round % 9 < 5 {
                        vec![ProcessDetail {
                            watch: Arc::from("web"),
                            pid: 100 + round / 9,
                            name: Arc::from("nginx"),
                            cpu_pct: x % 7.0,
                            mem_pct: 1.5,
                            rss_bytes: 1 << 20,
                            vms_bytes: 4 << 20,
                            shared_bytes: 1 << 18,
                            cpu_affinity: vec![0],
                            cmdline: Arc::from("nginx -g daemon off;"),
                        }]
                    } else {
                        Vec::new()
                    };
                    engine.apply(Update::Sample(Sample {
                        host: h.name.clone(),
                        source: Source::System,
                        readings: vec![
                            Reading::host(Metric::CpuUsage, (x * 7.0) % 100.0),
                            Reading::host(Metric::Load1, x / 100.0),
                            Reading::new(Metric::DiskUsedPct, "/", 40.0 + (x % 3.0)),
                        ],
                        processes,
                    }));
                }
                engine.tick();
                enc.add_snapshot(&engine.snapshot());
            }
            round += 1;
            if let Some((flags, t0, t1, raw)) = enc.take_block() {
                let z = zstd::bulk::compress(&raw, 3).expect("zstd");
                blocks.push(BlockMeta {
                    offset: out.len() as u64,
                    kind: Kind::Data,
                    flags,
                    t_first: t0,
                    t_last: t1,
                    len: z.len() as u32,
                });
                out.extend_from_slice(&format::block(Kind::Data, flags, t0, t1, &z));
            }
            if (b + 1) % KEY_EVERY == 0 {
                enc.start_key();
            }
        }
        if seg + 1 < SEGMENTS {
            let at = out.len() as u64;
            out.extend_from_slice(&format::segment_end(&blocks, at));
        }
        std::fs::write(&path, &out).expect("write segment");
    }
}

/// What a moment shows: the snapshot's JSON and every host's history of two series.
fn seen(s: &Snapshot) -> (serde_json::Value, Vec<Vec<f32>>) {
    let hist = s
        .hosts
        .iter()
        .flat_map(|h| {
            [
                h.history(Metric::CpuUsage, "", 100),
                h.history(Metric::Load1, "", 100),
            ]
        })
        .collect();
    (serde_json::to_value(s).expect("json"), hist)
}

/// The requests the dashboard makes: the overview's, the host detail's, and none.
fn specs(t: SystemTime) -> Vec<Option<HistorySpec>> {
    vec![
        Some(crate::ui::rewind::overview_history(t, Duration::from_secs(1))),
        Some(HistorySpec {
            from: ms(t) - 9_000,
            cap: 20,
            only: Some(vec![Arc::from("h1")]),
            metrics: None,
        }),
        None,
    ]
}

/// Steps a kept-open recording through the whole span (back, forward, jumps) and checks
/// each moment against a cold seek. Returns how many moments were compared. With `damaged`
/// most seeks of a damaged segment are cold ones.
fn walk_and_compare(dir: &Path, damaged: bool) -> usize {
    let mut warm = Recording::open(dir).expect("recording");
    let (a, b) = warm.span();
    let mut moments = Vec::new();
    // `[` from the end to the start, `]` back up a while, a jump, `[` again.
    let mut t = b;
    while t > a + Duration::from_millis(250) {
        moments.push(t);
        t -= Duration::from_millis(1000);
    }
    for _ in 0..25 {
        t += Duration::from_millis(1000);
        moments.push(t);
    }
    let mid = a + (b.duration_since(a).unwrap_or_default()) / 2;
    for k in 0..12 {
        moments.push(mid - Duration::from_millis(1000 * k + 250));
    }
    let mut compared = 0;
    // Each kind of request alone (as the dashboard steps), then all three in turn so their
    // chains mix.
    for pass in [Some(0), Some(1), Some(2), None] {
        let warm_before = warm.warm_starts();
        for (n, &t) in moments.iter().enumerate() {
            let spec = specs(t).swap_remove(pass.unwrap_or(n % 3));
            warm.refresh().expect("refresh");
            let got = warm.snapshot_at(t, spec.clone());
            let cold = Recording::open(dir).expect("recording").snapshot_at(t, spec);
            match (got, cold) {
                (Ok(got), Ok(cold)) => {
                    assert_eq!(seen(&got), seen(&cold), "at {} ({pass:?}, {n})", ms(t));
                    compared += 1;
                }
                (Err(g), Err(c)) => assert_eq!(g.to_string(), c.to_string()),
                (g, c) => panic!("at {}: {:?} against {:?}", ms(t), g.err(), c.err()),
            }
        }
        // Most steps started from a state the cache kept, not from the key block (not
        // possible while the history reaches back before the segment, nor at the first
        // step after the key block the history starts at or the moment is in changed).
        let warm_starts = warm.warm_starts() - warm_before;
        let enough = if damaged {
            warm_starts > 0
        } else {
            warm_starts * 5 > moments.len() as u64 * 2
        };
        assert!(
            pass.is_none() || enough,
            "{warm_starts} warm starts in {} moments ({pass:?})",
            moments.len()
        );
    }
    compared
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    super::reader::list_segments(dir)
        .expect("list")
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn steps_from_the_cache_equal_cold_seeks() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_recording(dir.path());
    assert_eq!(segments(dir.path()).len(), SEGMENTS as usize);
    let n = walk_and_compare(dir.path(), false);
    assert!(n > 700, "{n} moments");
    // The moments shown are the recorded ones (the cache answers with data, not defaults).
    let rec = Recording::open(dir.path()).expect("recording");
    let (_, b) = rec.span();
    let s = rec.snapshot_at(b, None).expect("end");
    assert_eq!(s.hosts.len(), HOSTS);
    assert!(s.hosts.iter().all(|h| h.status == HostStatus::Up));
}

/// Flips a byte in the payload of the `nth` data block of a segment.
fn damage(path: &Path, nth: usize) {
    let index = format::index_segment(path).expect("index");
    let b = index
        .blocks
        .iter()
        .filter(|b| b.kind == Kind::Data)
        .nth(nth)
        .copied()
        .expect("a block");
    let mut bytes = std::fs::read(path).expect("read");
    let at = b.offset as usize + format::BLOCK_HEADER_LEN + b.len as usize / 2;
    bytes[at] ^= 0x41;
    std::fs::write(path, &bytes).expect("write");
}

#[test]
fn steps_over_damaged_blocks_equal_cold_seeks() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_recording(dir.path());
    let segs = segments(dir.path());
    // A key block of the second segment, a plain block of the third, and one of the
    // unclosed last one.
    damage(&segs[1], KEY_EVERY as usize);
    damage(&segs[2], 7);
    damage(&segs[3], 3);
    let n = walk_and_compare(dir.path(), true);
    assert!(n > 700, "{n} moments");
}

#[test]
fn a_segment_damaged_while_open_is_read_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_recording(dir.path());
    // The middle of the third segment (closed), and steps back from there.
    let seg = segments(dir.path()).swap_remove(2);
    let index = format::index_segment(&seg).expect("index");
    let (t0, t1) = (
        index.blocks[0].t_first,
        index.blocks[index.blocks.len() - 1].t_last,
    );
    let mid = super::chunk::from_ms(t0 + (t1 - t0) / 2);
    let mut rec = Recording::open(dir.path()).expect("recording");
    let before: Vec<_> = (0..8)
        .map(|k| {
            let t = mid - Duration::from_secs(k);
            let spec = crate::ui::rewind::overview_history(t, Duration::from_secs(1));
            seen(&rec.snapshot_at(t, Some(spec)).expect("moment"))
        })
        .collect();
    // Every block of that segment is damaged: what the cache holds from it must not
    // answer any more.
    let blocks = format::index_segment(&seg)
        .expect("index")
        .blocks
        .iter()
        .filter(|b| b.kind == Kind::Data)
        .count();
    for nth in 0..blocks {
        damage(&seg, nth);
    }
    rec.refresh().expect("refresh");
    for k in 0..8 {
        let t = mid - Duration::from_secs(k);
        let spec = crate::ui::rewind::overview_history(t, Duration::from_secs(1));
        let got = rec.snapshot_at(t, Some(spec.clone())).map(|s| seen(&s));
        let cold = Recording::open(dir.path())
            .expect("recording")
            .snapshot_at(t, Some(spec))
            .map(|s| seen(&s));
        assert_eq!(got.as_ref().ok(), cold.as_ref().ok(), "at {}", ms(t));
        assert_ne!(got.ok().as_ref(), Some(&before[k as usize]), "the damage shows");
    }
}
