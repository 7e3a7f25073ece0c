//! One trigger tick: 200 rules (each, max-risk, aggregate; some with host selectors and
//! instance patterns) over 1,000 hosts x 60 series, in a steady state where about 2% of
//! the series breach (so lines are pending and firing). Target: < 5 ms per tick.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use lookout::config::Via;
use lookout::model::{HostName, HostStatus, Metric, Reading};
use lookout::snapshot::HostView;
use lookout::triggers::TriggerSet;
use lookout::triggers::rule::{Aggregate, Condition, Rule, Scope, Severity};

const HOSTS: usize = 1000;

/// A cheap deterministic pseudo-random value in [0, 1).
fn noise(a: usize, b: usize) -> f64 {
    let mut x =
        (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (b as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    (x % 10_000) as f64 / 10_000.0
}

fn host(i: usize, now: SystemTime) -> Arc<HostView> {
    let mut m = Vec::with_capacity(60);
    let pct = |k: usize| 100.0 * noise(i, k);
    m.push(Reading::host(
        Metric::HostUp,
        if noise(i, 999) < 0.01 { 0.0 } else { 1.0 },
    ));
    m.push(Reading::host(Metric::CpuUsage, pct(1)));
    for c in 0..8 {
        m.push(Reading::new(Metric::CpuCoreUsage, c.to_string(), pct(10 + c)));
    }
    m.push(Reading::host(Metric::CpuIowait, pct(2) / 10.0));
    for (k, metric) in [Metric::Load1, Metric::Load5, Metric::Load15, Metric::LoadPerCore]
        .into_iter()
        .enumerate()
    {
        m.push(Reading::host(metric, 3.0 * noise(i, 20 + k)));
    }
    m.push(Reading::host(Metric::MemTotal, 64e9));
    m.push(Reading::host(Metric::MemUsed, 64e9 * noise(i, 30)));
    m.push(Reading::host(Metric::MemAvailable, 64e9 * (1.0 - noise(i, 30))));
    m.push(Reading::host(Metric::MemUsedPct, pct(30)));
    m.push(Reading::host(Metric::SwapUsedPct, pct(31)));
    for (k, mount) in ["/", "/var", "/home", "/data"].into_iter().enumerate() {
        m.push(Reading::new(Metric::DiskTotal, mount, 1e12));
        m.push(Reading::new(Metric::DiskUsed, mount, 1e12 * noise(i, 40 + k)));
        m.push(Reading::new(
            Metric::DiskFree,
            mount,
            1e12 * (1.0 - noise(i, 40 + k)),
        ));
        m.push(Reading::new(Metric::DiskUsedPct, mount, pct(40 + k)));
    }
    for (k, nic) in ["eth0", "eth1"].into_iter().enumerate() {
        for (j, metric) in [
            Metric::NetRxBytes,
            Metric::NetTxBytes,
            Metric::NetRxPackets,
            Metric::NetTxPackets,
            Metric::NetRxErrors,
            Metric::NetTxErrors,
            Metric::NetRxDrops,
            Metric::NetTxDrops,
            Metric::NetRxBps,
            Metric::NetTxBps,
        ]
        .into_iter()
        .enumerate()
        {
            m.push(Reading::new(metric, nic, 1e9 * noise(i, 50 + 10 * k + j)));
        }
    }
    m.push(Reading::host(Metric::PingRtt, 10.0 * noise(i, 80)));
    m.push(Reading::host(Metric::PingJitter, noise(i, 81)));
    m.push(Reading::host(Metric::PingLoss, pct(82) / 10.0));
    m.push(Reading::new(
        Metric::ProcCount,
        "httpd",
        (8.0 * noise(i, 90)).floor(),
    ));
    assert_eq!(m.len(), 60);
    Arc::new(HostView {
        group: Some(if i.is_multiple_of(2) { "web" } else { "db" }.to_string()),
        last_update: Some(now),
        rounds: 10,
        ..HostView::new(&format!("host{i:04}"), Via::Ssh, HostStatus::Up, m)
    })
}

fn rules(names: &[HostName]) -> Vec<Rule> {
    // (metric, condition, instance pattern): thresholds near the top 2% of the values above.
    let kinds: &[(Metric, Condition, Option<&str>)] = &[
        (Metric::CpuUsage, Condition::Above(98.0), None),
        (Metric::CpuCoreUsage, Condition::Above(99.0), None),
        (Metric::LoadPerCore, Condition::Above(2.9), None),
        (Metric::MemUsedPct, Condition::Above(98.0), None),
        (Metric::SwapUsedPct, Condition::Above(98.0), None),
        (Metric::DiskUsedPct, Condition::Above(99.0), None),
        (Metric::DiskUsedPct, Condition::Above(98.0), Some("/var*")),
        (Metric::NetRxBps, Condition::Above(0.99e9), Some("eth*")),
        (Metric::PingLoss, Condition::Above(9.8), None),
        (Metric::HostUp, Condition::Below(1.0), None),
        (Metric::ProcCount, Condition::Below(1.0), Some("httpd")),
        (Metric::MemAvailable, Condition::Below(1e9), None),
    ];
    let half: Vec<HostName> = names.iter().step_by(2).cloned().collect();
    (0..200)
        .map(|i| {
            let (metric, condition, instance) = kinds[i % kinds.len()];
            let (scope, aggregate) = match i % 10 {
                0..=5 => (Scope::Each, None),
                6..=8 => (Scope::MaxRisk, None),
                _ => (Scope::Each, Some(Aggregate::AtLeast(5))),
            };
            Rule {
                name: format!("rule {i}"),
                metric,
                scope,
                hosts: (i % 4 == 1).then(|| half.clone()),
                instance: instance.map(String::from),
                condition,
                clear: condition.threshold(),
                hold: Duration::from_secs(if i % 3 == 0 { 0 } else { 30 }),
                cooldown: Duration::from_secs(300),
                repeat: (i % 5 == 0).then_some(Duration::from_secs(60)),
                severity: Severity::Warning,
                run: vec!["true".to_string()],
                run_on_resolve: Vec::new(),
                bell: false,
                aggregate,
                alertmanager: Vec::new(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let hosts: Vec<Arc<HostView>> = (0..HOSTS).map(|i| host(i, now)).collect();
    let names: Vec<HostName> = hosts.iter().map(|h| h.name.clone()).collect();
    let mut set = TriggerSet::new(rules(&names), Duration::from_secs(3600));
    // Reach the steady state: pending lines fire, firing lines stay.
    let mut firing = 0;
    for _ in 0..200 {
        now += Duration::from_millis(250);
        firing += set.evaluate(now, &hosts, &[]).len();
    }
    let lines = set.views().len();
    eprintln!("steady state: {lines} non-ok lines, {firing} events while settling");
    // CPU time actually spent per tick (this thread's time on a CPU, from schedstat), which
    // unlike wall time does not grow when other work shares the cores.
    let cpu_ns = || {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
    };
    if let Some(before) = cpu_ns() {
        let ticks = 200u32;
        for _ in 0..ticks {
            now += Duration::from_millis(250);
            std::hint::black_box(set.evaluate(now, &hosts, &[]));
        }
        if let Some(after) = cpu_ns() {
            let per_tick = (after - before) as f64 / f64::from(ticks) / 1e6;
            eprintln!("cpu time per tick: {per_tick:.3} ms (over {ticks} ticks)");
        }
    }
    c.bench_function("triggers: 200 rules x 1000 hosts x 60 series, one tick", |b| {
        b.iter(|| {
            now += Duration::from_millis(250);
            std::hint::black_box(set.evaluate(now, &hosts, &[]))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
