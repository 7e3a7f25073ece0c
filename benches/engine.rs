//! One engine round for 1,000 hosts x 60 series: ingest every host's sample (history,
//! rates), compute the maximal-risk lines and publish a snapshot. Target: < 2 ms.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lookout::clock::FakeClock;
use lookout::engine::Engine;
use lookout::model::{HostStatus, Interner, Metric, Reading, Sample, Source, Update};

const HOSTS: usize = 1000;

/// 60 series per host, shaped like a real poll: cpu, cores, load, memory, disks, interfaces.
/// Instance strings come from an interner, as collectors hand them over.
fn readings(names: &mut Interner, seed: usize, round: u64) -> Vec<Reading> {
    let v = |k: usize| ((seed * 31 + k * 7) % 100) as f64;
    let mut r = vec![
        Reading::host(Metric::CpuUsage, v(1)),
        Reading::host(Metric::CpuIowait, v(2) / 10.0),
        Reading::host(Metric::Load1, v(3) / 25.0),
        Reading::host(Metric::Load5, v(4) / 25.0),
        Reading::host(Metric::Load15, v(5) / 25.0),
        Reading::host(Metric::LoadPerCore, v(3) / 100.0),
        Reading::host(Metric::MemTotal, 8e9),
        Reading::host(Metric::MemUsed, v(6) * 8e7),
        Reading::host(Metric::MemAvailable, (100.0 - v(6)) * 8e7),
        Reading::host(Metric::MemUsedPct, v(6)),
        Reading::host(Metric::SwapUsedPct, v(7) / 4.0),
        Reading::host(Metric::HostUptime, 1e6),
        Reading::host(Metric::HostPollMs, 5.0),
    ];
    for core in ["0", "1", "2", "3"] {
        r.push(Reading::new(Metric::CpuCoreUsage, names.get(core), v(8)));
    }
    for mount in ["/", "/var", "/home", "/tmp"] {
        let mount = names.get(mount);
        r.push(Reading::new(Metric::DiskTotal, mount.clone(), 1e11));
        r.push(Reading::new(Metric::DiskUsed, mount.clone(), v(9) * 1e9));
        r.push(Reading::new(
            Metric::DiskFree,
            mount.clone(),
            (100.0 - v(9)) * 1e9,
        ));
        r.push(Reading::new(Metric::DiskUsedPct, mount, v(9)));
    }
    for iface in ["eth0", "eth1"] {
        let t = round as f64;
        for (m, f) in [
            (Metric::NetRxBytes, 1e6),
            (Metric::NetTxBytes, 5e5),
            (Metric::NetRxPackets, 1e3),
            (Metric::NetTxPackets, 8e2),
            (Metric::NetRxErrors, 0.0),
            (Metric::NetTxErrors, 0.0),
            (Metric::NetRxDrops, 1.0),
            (Metric::NetTxDrops, 0.0),
        ] {
            r.push(Reading::new(m, names.get(iface), t * f));
        }
    }
    for name in ["httpd", "sshd"] {
        for m in [
            Metric::ProcCount,
            Metric::ProcCpu,
            Metric::ProcMem,
            Metric::ProcRss,
            Metric::ProcVms,
            Metric::ProcShared,
        ] {
            r.push(Reading::new(m, names.get(name), v(10)));
        }
    }
    r.truncate(60);
    r
}

fn bench_round(c: &mut Criterion) {
    let names: Vec<String> = (0..HOSTS).map(|i| format!("\"host{i:04}\"")).collect();
    let toml = format!("[[hosts]]\nnames = [{}]\n", names.join(","));
    let config = Arc::new(lookout::config::parse(&toml, "bench.toml", None).expect("config"));
    let clock = Arc::new(FakeClock::at_epoch());
    let mut engine = Engine::new(config.clone(), clock.clone());
    let hosts: Vec<Arc<str>> = config.hosts.iter().map(|h| h.name.clone()).collect();
    for h in &hosts {
        engine.apply(Update::Status {
            host: h.clone(),
            status: HostStatus::Up,
            error: None,
        });
    }
    // Warm the history rings and counter baselines: steady state, not first contact.
    let mut round = 0u64;
    let mut names: Vec<Interner> = (0..HOSTS).map(|_| Interner::default()).collect();
    let mut make = |round: u64| -> Vec<Update> {
        hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                Update::Sample(Sample {
                    host: h.clone(),
                    source: Source::System,
                    readings: readings(&mut names[i], i, round),
                    processes: Vec::new(),
                })
            })
            .collect()
    };
    for _ in 0..3 {
        round += 1;
        for u in make(round) {
            engine.apply(u);
        }
        clock.advance(Duration::from_secs(2));
    }
    let series: usize = match make(0).first() {
        Some(Update::Sample(s)) => s.readings.len(),
        _ => 0,
    };
    assert_eq!(series, 60);
    c.bench_function("engine round: 1000 hosts x 60 series", |b| {
        b.iter_batched(
            || {
                round += 1;
                clock.advance(Duration::from_secs(2));
                make(round)
            },
            |updates| {
                for u in updates {
                    engine.apply(u);
                }
                engine.tick();
                engine.snapshot()
            },
            BatchSize::LargeInput,
        );
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(8));
    targets = bench_round
}
criterion_main!(benches);
