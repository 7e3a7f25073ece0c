//! Recording benchmarks on simulated time (docs/record.md has the figures and commands).
//!
//! `size [HOSTS] [MINUTES]`: the fleet simulator's hosts (the same `/proc` text the SSH
//! collector parses, through the same parser and engine) played for MINUTES of simulated
//! time at a 2 s interval, hosts spread over the interval as they are live; every snapshot
//! goes through the recorder's encoder. Prints bytes per stored value for the stored codec
//! and for the alternatives side by side on the same data: lossless values, plain f64
//! columns, and zstd levels; and the encoder's CPU time.
//!
//! `seek DIR [HOSTS] [HOURS]`: writes a synthetic recording (HOSTS hosts for HOURS of
//! simulated time, hourly segments, through the recorder's encoder and segment format) into
//! DIR unless it holds one already, then times `snapshot at` random moments, `[` and `]`
//! steps, and whole steps as the dashboard does them (key, seek, rebuild, draw).
//!
//! `stats DIR`: bytes per stored value of a real recording.
//!
//! Run with `cargo run --release --example record_bench -- size 1000 30`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use lookout::clock::{Clock, FakeClock};
use lookout::collectors::remote::{RemoteState, Watch};
use lookout::engine::Engine;
use lookout::fleet::sim::{HostSim, Profile};
use lookout::model::{HostStatus, Metric, Reading, Sample, Source, Update};
use lookout::record::Recording;
use lookout::record::chunk::{Encoder, ms};
use lookout::record::format::{self, BlockMeta, Kind};
use lookout::record::writer::ZSTD_LEVEL;

const INTERVAL: Duration = Duration::from_secs(2);
/// Snapshots per interval (the engine publishes at most every 250 ms).
const STEPS: u32 = 8;

fn config(hosts: usize) -> Arc<lookout::config::Config> {
    let names: Vec<String> = (0..hosts).map(|i| format!("\"h{i:04}\"")).collect();
    let text = format!(
        "[general]\ninterval = \"2s\"\n[[hosts]]\nnames = [{}]\n[[watch.processes]]\nhosts = [\"*\"]\nnames = [\"nginx\", \"python3\"]\n",
        names.join(", ")
    );
    Arc::new(lookout::config::parse(&text, "bench.toml", None).expect("valid config"))
}

/// A fleet of simulated hosts feeding an engine on a fake clock.
struct Fleet {
    engine: Engine,
    clock: Arc<FakeClock>,
    sims: Vec<(HostSim, RemoteState, Arc<str>)>,
    watch: Watch,
    text: String,
    request: u64,
}

impl Fleet {
    fn new(hosts: usize) -> Fleet {
        let config = config(hosts);
        let clock = Arc::new(FakeClock::at_epoch());
        let mut engine = Engine::new(config.clone(), clock.clone());
        let profile = Profile::default();
        let sims = config
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                (
                    HostSim::new(i as u64 + 1, &profile),
                    RemoteState::default(),
                    h.name.clone(),
                )
            })
            .collect();
        for h in &config.hosts {
            engine.apply(Update::Status {
                host: h.name.clone(),
                status: HostStatus::Up,
                error: None,
            });
        }
        Fleet {
            engine,
            clock,
            watch: Watch::of(&config.hosts[0]),
            sims,
            text: String::new(),
            request: 1,
        }
    }

    /// One engine step: an eighth of the interval, an eighth of the hosts sampled.
    fn step(&mut self, k: u32) -> Arc<lookout::snapshot::Snapshot> {
        self.clock.advance(INTERVAL / STEPS);
        let n = self.sims.len();
        let (a, b) = (
            n * k as usize / STEPS as usize,
            n * (k as usize + 1) / STEPS as usize,
        );
        for (sim, state, name) in &mut self.sims[a..b] {
            sim.advance_by(INTERVAL.as_secs_f64());
            self.text.clear();
            self.request += 1;
            sim.sample(&self.request.to_string(), 4242, true, &mut self.text);
            let Ok(parsed) = state.parse(&self.text, &self.watch) else {
                continue;
            };
            let (mut readings, processes) = state.complete(parsed, &self.watch);
            readings.push(Reading::host(
                Metric::HostPollMs,
                5.0 + (self.request % 7) as f64 * 0.731,
            ));
            self.engine.apply(Update::Sample(Sample {
                host: name.clone(),
                source: Source::System,
                readings,
                processes,
            }));
        }
        self.engine.tick();
        self.engine.snapshot()
    }
}

/// One way of storing: an encoder and what its blocks cost.
struct Variant {
    name: &'static str,
    enc: Encoder,
    level: i32,
    bytes: u64,
    raw: u64,
    samples: u64,
    cpu: Duration,
}

impl Variant {
    fn new(name: &'static str, lossless: bool, level: i32) -> Variant {
        let mut enc = Encoder::new();
        enc.lossless = lossless;
        Variant {
            name,
            enc,
            level,
            bytes: 0,
            raw: 0,
            samples: 0,
            cpu: Duration::ZERO,
        }
    }
    fn flush(&mut self, key: bool) {
        let t = Instant::now();
        if let Some((_, _, _, raw)) = self.enc.take_block() {
            let z = zstd::bulk::compress(&raw, self.level).expect("zstd");
            self.raw += raw.len() as u64;
            self.bytes += (z.len() + format::BLOCK_HEADER_LEN) as u64;
        }
        self.samples += std::mem::take(&mut self.enc.samples);
        if key {
            self.enc.start_key();
        }
        self.cpu += t.elapsed();
    }
}

fn size(hosts: usize, minutes: u64) {
    let mut fleet = Fleet::new(hosts);
    let mut variants = vec![
        Variant::new("scaled-integer deltas + zstd 9 (stored)", false, ZSTD_LEVEL),
        Variant::new("scaled-integer deltas + zstd 3", false, 3),
        Variant::new("scaled-integer deltas + zstd 1", false, 1),
        Variant::new("lossless (raw bits off-step) + zstd 9", true, ZSTD_LEVEL),
        Variant::new("stored codec, process detail left out", false, ZSTD_LEVEL),
    ];
    // The last variant sees each host's view without its process list (same Arc per view).
    let mut stripped: Vec<Option<(Arc<lookout::snapshot::HostView>, Arc<lookout::snapshot::HostView>)>> =
        vec![None; hosts];
    // Plain columns for comparison: each value as 8 bytes (f64) or its XOR with the series'
    // previous value (Gorilla's first step), through the same zstd.
    let mut plain: Vec<u8> = Vec::new();
    let mut xor: Vec<u8> = Vec::new();
    let mut prev: std::collections::HashMap<(Arc<str>, Metric, Arc<str>), u64> =
        std::collections::HashMap::new();
    let (mut plain_z, mut xor_z) = (0u64, 0u64);
    // Warm-up: rates and cpu % need two samples.
    for k in 0..STEPS {
        fleet.step(k);
    }
    let rounds = minutes * 60 / INTERVAL.as_secs();
    let mut sim_cpu = Duration::ZERO;
    let mut seen: Vec<Option<Arc<lookout::snapshot::HostView>>> = vec![None; hosts];
    for round in 0..rounds {
        for k in 0..STEPS {
            let t = Instant::now();
            let snap = fleet.step(k);
            sim_cpu += t.elapsed();
            let last = variants.len() - 1;
            for v in &mut variants[..last] {
                let t = Instant::now();
                v.enc.add_snapshot(&snap);
                v.cpu += t.elapsed();
            }
            let mut bare = lookout::snapshot::Snapshot::clone(&snap);
            for (i, h) in bare.hosts.iter_mut().enumerate() {
                match &stripped[i] {
                    Some((orig, s)) if Arc::ptr_eq(orig, h) => *h = s.clone(),
                    _ => {
                        let mut v = lookout::snapshot::HostView::clone(h);
                        v.processes = Arc::default();
                        let s = Arc::new(v);
                        stripped[i] = Some((h.clone(), s.clone()));
                        *h = s;
                    }
                }
            }
            variants[last].enc.add_snapshot(&bare);
            for (i, h) in snap.hosts.iter().enumerate() {
                if seen[i].as_ref().is_some_and(|s| Arc::ptr_eq(s, h)) {
                    continue;
                }
                seen[i] = Some(h.clone());
                for r in h.system.iter() {
                    let bits = r.value.to_bits();
                    plain.extend_from_slice(&bits.to_le_bytes());
                    let p = prev
                        .insert((h.name.clone(), r.metric, r.instance.clone()), bits)
                        .unwrap_or(0);
                    xor.extend_from_slice(&(bits ^ p).to_le_bytes());
                }
            }
        }
        // A block every 2 s, a key block every 60 s, as the recorder does.
        let key = (round + 1) % 30 == 0;
        for v in &mut variants {
            v.flush(key);
        }
        plain_z += zstd::bulk::compress(&plain, 3).expect("zstd").len() as u64;
        xor_z += zstd::bulk::compress(&xor, 3).expect("zstd").len() as u64;
        plain.clear();
        xor.clear();
        if key {
            prev.clear();
        }
    }
    let secs = (rounds * INTERVAL.as_secs()) as f64;
    println!("{hosts} simulated hosts, {minutes} min at a 2 s interval ({rounds} rounds)");
    let stored = variants[0].samples;
    println!(
        "values stored: {stored} ({:.1} per host and round: series values, and 5 per watched process)",
        stored as f64 / (rounds as f64 * hosts as f64)
    );
    println!(
        "{:<44} {:>12} {:>10} {:>11} {:>12}",
        "codec", "bytes", "B/value", "raw B/value", "encode CPU"
    );
    for v in &variants {
        println!(
            "{:<44} {:>12} {:>10.3} {:>11.3} {:>10.1}ms",
            v.name,
            v.bytes,
            v.bytes as f64 / v.samples as f64,
            v.raw as f64 / v.samples as f64,
            v.cpu.as_secs_f64() * 1000.0
        );
    }
    // The alternatives below hold the series values only: compare them with the line above.
    let series = variants[variants.len() - 1].samples;
    println!("series values only (no process detail): {series}");
    println!(
        "{:<44} {:>12} {:>10.3}",
        "f64 columns + zstd 3",
        plain_z,
        plain_z as f64 / series as f64
    );
    println!(
        "{:<44} {:>12} {:>10.3}",
        "XOR with previous (Gorilla step) + zstd 3",
        xor_z,
        xor_z as f64 / series as f64
    );
    let per_host_day = variants[0].bytes as f64 / secs / hosts as f64 * 86_400.0;
    println!(
        "a day: {:.1} MiB per host; 50 hosts {:.2} GiB, 1,000 hosts {:.1} GiB",
        per_host_day / 1048576.0,
        per_host_day * 50.0 / 1073741824.0,
        per_host_day * 1000.0 / 1073741824.0
    );
    println!(
        "encoder (stored codec, zstd included): {:.2}% of one core at this rate; simulating took {:.1}s",
        variants[0].cpu.as_secs_f64() / secs * 100.0,
        sim_cpu.as_secs_f64()
    );
}

/// Writes HOURS of HOSTS simulated hosts as hourly segments, like the recorder.
fn write_synthetic(dir: &std::path::Path, hosts: usize, hours: u64) {
    std::fs::create_dir_all(dir).expect("dir");
    let mut fleet = Fleet::new(hosts);
    for k in 0..STEPS {
        fleet.step(k);
    }
    let mut enc = Encoder::new();
    let rounds_per_hour = 3600 / INTERVAL.as_secs();
    let started = Instant::now();
    for hour in 0..hours {
        let start = ms(fleet.clock.now());
        let path = dir.join(format!("{}-{start}-1.lkr", lookout::record::file_stamp(start)));
        if path.exists() {
            // Written by an earlier, shorter run: the same hour again (the fleet is
            // deterministic), so only its state is stepped on.
            for _ in 0..rounds_per_hour {
                for k in 0..STEPS {
                    fleet.step(k);
                }
            }
            eprintln!("hour {}/{hours}: already there", hour + 1);
            continue;
        }
        let mut out = Vec::with_capacity(64 << 20);
        out.extend_from_slice(&format::segment_header(start, 1, 2000));
        let mut blocks: Vec<BlockMeta> = Vec::new();
        enc.start_key();
        for round in 0..rounds_per_hour {
            for k in 0..STEPS {
                let snap = fleet.step(k);
                enc.add_snapshot(&snap);
            }
            if let Some((flags, t0, t1, raw)) = enc.take_block() {
                let z = zstd::bulk::compress(&raw, ZSTD_LEVEL).expect("zstd");
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
            if (round + 1) % 30 == 0 {
                enc.start_key();
            }
        }
        let at = out.len() as u64;
        out.extend_from_slice(&format::segment_end(&blocks, at));
        std::fs::write(&path, &out).expect("write segment");
        eprintln!(
            "hour {}/{hours}: {} MiB ({:.0}s so far)",
            hour + 1,
            out.len() >> 20,
            started.elapsed().as_secs_f64()
        );
    }
}

fn seek(dir: &std::path::Path, hosts: usize, hours: u64) {
    // Missing hours are written (a shorter recording from an earlier run is extended).
    let recorded_hours = Recording::open(dir).ok().map(|r| {
        let (a, b) = r.span();
        b.duration_since(a).unwrap_or_default().as_secs_f64() / 3600.0
    });
    if recorded_hours.is_none_or(|h| h + 0.5 < hours as f64) {
        write_synthetic(dir, hosts, hours);
    }
    let t = Instant::now();
    let rec = Recording::open(dir).expect("recording");
    let open = t.elapsed();
    let (a, b) = rec.span();
    let span = b.duration_since(a).unwrap_or_default();
    println!(
        "recording: {} .. {} ({:.1} h), opened and indexed in {:.1} ms",
        ms(a),
        ms(b),
        span.as_secs_f64() / 3600.0,
        open.as_secs_f64() * 1e3
    );
    // What the dashboard does: the recording stays open between seeks (each one takes in
    // only what changed), and every moment comes with the overview's sparkline history.
    let mut rec = rec;
    let sparks = |at: SystemTime| lookout::ui::rewind::overview_history(at, INTERVAL);
    let mut times = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..50 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = a + Duration::from_millis(x % span.as_millis() as u64);
        let t = Instant::now();
        rec.refresh().expect("recording");
        let snap = rec.snapshot_at(at, Some(sparks(at))).expect("moment");
        times.push(t.elapsed());
        assert_eq!(snap.hosts.len(), hosts);
    }
    let p = pct;
    println!(
        "snapshot at a random moment (sparkline history): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        p(&mut times, 0.5),
        p(&mut times, 0.9),
        p(&mut times, 1.0)
    );
    let mut steps = Vec::new();
    let mut at = a + span / 2;
    for _ in 0..30 {
        at -= INTERVAL;
        let t = Instant::now();
        rec.refresh().expect("recording");
        let _ = rec.snapshot_at(at, Some(sparks(at))).expect("moment");
        steps.push(t.elapsed());
    }
    println!(
        "`[` step (sparkline history): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        p(&mut steps, 0.5),
        p(&mut steps, 0.9),
        p(&mut steps, 1.0)
    );
    // And forward again, `]`.
    let back_at = at;
    let mut fwd = Vec::new();
    for _ in 0..30 {
        at += INTERVAL;
        let t = Instant::now();
        rec.refresh().expect("recording");
        let _ = rec.snapshot_at(at, Some(sparks(at))).expect("moment");
        fwd.push(t.elapsed());
    }
    println!(
        "`]` step (sparkline history): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        p(&mut fwd, 0.5),
        p(&mut fwd, 0.9),
        p(&mut fwd, 1.0)
    );
    at = back_at;
    dashboard_steps(dir, hosts, a + span / 3, b);
    // What the dashboard asked for before (same build): the directory opened again and 40
    // samples of every charted series.
    let mut old = Vec::new();
    for _ in 0..20 {
        at -= INTERVAL * 13;
        let t = Instant::now();
        let rec = Recording::open(dir).expect("recording");
        let spec = lookout::record::chunk::HistorySpec {
            from: ms(at) - 40 * INTERVAL.as_millis() as i64,
            cap: 40,
            ..Default::default()
        };
        let _ = rec.snapshot_at(at, Some(spec)).expect("moment");
        old.push(t.elapsed());
    }
    println!(
        "the earlier request (open again, 40 samples of every charted series): median {:.1} ms, max {:.1} ms",
        p(&mut old, 0.5),
        p(&mut old, 1.0)
    );
    let mut cold = Vec::new();
    for _ in 0..10 {
        at -= INTERVAL * 97;
        let t = Instant::now();
        let rec = Recording::open(dir).expect("recording");
        let _ = rec.snapshot_at(at, Some(sparks(at))).expect("moment");
        cold.push(t.elapsed());
    }
    println!(
        "first seek (open and index the directory, then the moment): median {:.1} ms, max {:.1} ms",
        p(&mut cold, 0.5),
        p(&mut cold, 1.0)
    );
}

/// The `q` quantile of `times`, in ms.
fn pct(times: &mut [Duration], q: f64) -> f64 {
    times.sort();
    times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3
}

/// The whole of a step as the dashboard does it: the key, the seek (its recording kept
/// open between steps), the rebuild of the app's state and the drawing of a 160x45 frame.
/// 60 `[` from `from`, then 30 `]`.
fn dashboard_steps(dir: &std::path::Path, hosts: usize, from: SystemTime, end: SystemTime) {
    let p = pct;
    use lookout::ui::app::{App, Effect};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let names: Vec<String> = (0..hosts).map(|i| format!("\"h{i:04}\"")).collect();
    let text = format!(
        "[general]\ninterval = \"2s\"\n[record]\ndir = {:?}\n[[hosts]]\nnames = [{}]\n",
        dir.display().to_string(),
        names.join(", ")
    );
    let config = lookout::config::parse(&text, "bench.toml", None).expect("valid config");
    let live = Recording::open(dir)
        .and_then(|r| r.snapshot_at(end, None))
        .expect("the recording's end");
    let mut app = App::new(
        &config,
        lookout::ui::theme::Theme::load("default", false).expect("theme"),
        lookout::ui::keymap::Keymap::default(),
        Arc::new(live),
        end,
    );
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(160, 45)).expect("terminal");
    lookout::ui::rewind::seek(&mut app, from);
    assert_eq!(app.rewind.at, Some(from), "{:?}", app.message);
    term.draw(|f| lookout::ui::draw::draw(f, &mut app)).expect("draw");
    let mut step = |key: char| {
        let t = Instant::now();
        app.on_key(&KeyEvent::new(KeyCode::Char(key), KeyModifiers::NONE));
        for e in app.take_effects() {
            if let Effect::Seek(at) = e {
                lookout::ui::rewind::seek(&mut app, at);
            }
        }
        app.now = lookout::ui::rewind::frame_now(&app, SystemTime::now());
        term.draw(|f| lookout::ui::draw::draw(f, &mut app)).expect("draw");
        t.elapsed()
    };
    let mut back: Vec<Duration> = (0..60).map(|_| step('[')).collect();
    let mut fwd: Vec<Duration> = (0..30).map(|_| step(']')).collect();
    println!(
        "dashboard `[` x60 (key, seek, rebuild, draw 160x45): median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        p(&mut back, 0.5),
        p(&mut back, 0.9),
        p(&mut back, 1.0)
    );
    println!(
        "dashboard `]` x30: median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        p(&mut fwd, 0.5),
        p(&mut fwd, 0.9),
        p(&mut fwd, 1.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("size") => size(num(1, 1000) as usize, num(2, 30)),
        Some("stats") => {
            let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_default());
            let rec = Recording::open(&dir).expect("recording");
            let (a, b) = rec.span();
            let (bytes, values, bad) = rec.stats();
            let secs = b.duration_since(a).unwrap_or_default().as_secs_f64();
            println!(
                "{}: {bytes} bytes, {values} values over {secs:.0} s: {:.3} bytes per value ({bad} unreadable blocks)",
                dir.display(),
                bytes as f64 / values.max(1) as f64
            );
        }
        Some("seek") => {
            let dir =
                std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/tmp/lookout-seek".into()));
            seek(&dir, num(2, 1000) as usize, num(3, 24));
        }
        _ => eprintln!("usage: record_bench size [HOSTS] [MINUTES] | seek DIR [HOSTS] [HOURS] | stats DIR"),
    }
}
