//! A synthetic fleet: deterministic snapshots of any number of hosts, for the UI's snapshot
//! tests, the render benchmark and the `fleet` example (which feeds the real dashboard to
//! measure what it writes to the terminal). Values wander smoothly from round to round.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::Via;
use crate::model::{HostStatus, Metric, ProcessDetail, Reading};
use crate::snapshot::{HostView, MaxRiskLine, Snapshot};
use crate::store::HostHistory;

/// A fixed, readable instant (2026-01-01T00:00:00Z) for deterministic tests.
pub fn epoch() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// A small deterministic hash of (host, series, round) into [0, 1).
fn noise(i: usize, series: u64, round: u64) -> f64 {
    let mut x =
        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ series.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ round;
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 10_000) as f64 / 10_000.0
}

/// A value that drifts slowly around `base` by up to `spread`.
fn wander(i: usize, series: u64, round: u64, base: f64, spread: f64) -> f64 {
    let a = noise(i, series, round / 4);
    let b = noise(i, series, round / 4 + 1);
    let f = (round % 4) as f64 / 4.0;
    base + spread * (a + (b - a) * f - 0.5) * 2.0
}

/// The state of a synthetic fleet between rounds (history rings persist).
pub struct Fleet {
    pub names: Vec<Arc<str>>,
    histories: Vec<Arc<RwLock<HostHistory>>>,
    pub round: u64,
    pub interval: Duration,
    pub start: SystemTime,
}

impl Fleet {
    pub fn new(n: usize, interval: Duration) -> Self {
        let names = (0..n)
            .map(|i| {
                Arc::from(format!(
                    "{}{:02}",
                    ["web", "db", "cache", "batch"][i % 4],
                    i / 4 + 1
                ))
            })
            .collect();
        Fleet {
            names,
            histories: (0..n)
                .map(|_| Arc::new(RwLock::new(HostHistory::new(120))))
                .collect(),
            round: 0,
            interval,
            start: epoch(),
        }
    }

    /// Readings of host `i` at round `r`.
    pub fn readings(&self, i: usize, r: u64) -> Vec<Reading> {
        let busy = if i % 7 == 3 { 60.0 } else { 20.0 };
        let cpu = wander(i, 1, r, busy, 15.0).clamp(0.0, 100.0);
        let cores = 4;
        let mut v = vec![
            Reading::host(Metric::HostUp, 1.0),
            Reading::host(Metric::HostUptime, 86_400.0 * 3.0 + (i * 3600) as f64 + r as f64),
            Reading::host(Metric::HostPollMs, wander(i, 2, r, 6.0, 2.0)),
            Reading::host(Metric::CpuUsage, cpu),
            Reading::host(Metric::CpuIowait, wander(i, 3, r, 2.0, 1.5).max(0.0)),
        ];
        for c in 0..cores {
            v.push(Reading::new(
                Metric::CpuCoreUsage,
                c.to_string(),
                wander(i * 8 + c, 4, r, cpu, 20.0).clamp(0.0, 100.0),
            ));
        }
        let load = cpu / 100.0 * cores as f64 * 1.2;
        v.extend([
            Reading::host(Metric::Load1, load),
            Reading::host(Metric::Load5, load * 0.9),
            Reading::host(Metric::Load15, load * 0.8),
            Reading::host(Metric::LoadPerCore, load / cores as f64),
        ]);
        let total = 16.0 * 1024.0 * 1024.0 * 1024.0;
        let mem = wander(i, 5, r, 45.0 + (i % 5) as f64 * 8.0, 5.0);
        v.extend([
            Reading::host(Metric::MemTotal, total),
            Reading::host(Metric::MemUsed, total * mem / 100.0),
            Reading::host(Metric::MemAvailable, total * (1.0 - mem / 100.0)),
            Reading::host(Metric::MemUsedPct, mem),
            Reading::host(Metric::SwapUsedPct, (i % 3) as f64 * 2.5),
        ]);
        for (k, mount) in ["/", "/var"].iter().enumerate() {
            let pct = 30.0 + ((i * 13 + k * 29) % 55) as f64 + r as f64 * 0.001;
            let size = 200.0 * 1024.0 * 1024.0 * 1024.0;
            v.extend([
                Reading::new(Metric::DiskUsedPct, *mount, pct),
                Reading::new(Metric::DiskUsed, *mount, size * pct / 100.0),
                Reading::new(Metric::DiskFree, *mount, size * (1.0 - pct / 100.0)),
                Reading::new(Metric::DiskTotal, *mount, size),
            ]);
        }
        v.extend([
            Reading::new(
                Metric::NetRxBps,
                "eth0",
                wander(i, 6, r, 400_000.0, 350_000.0).max(0.0),
            ),
            Reading::new(
                Metric::NetTxBps,
                "eth0",
                wander(i, 7, r, 120_000.0, 100_000.0).max(0.0),
            ),
            Reading::new(Metric::NetRxErrors, "eth0", 0.0),
            Reading::new(Metric::NetTxErrors, "eth0", 0.0),
            Reading::new(Metric::NetRxDrops, "eth0", (i % 11 == 5) as u8 as f64 * 3.0),
            Reading::new(Metric::NetTxDrops, "eth0", 0.0),
            Reading::host(Metric::PingRtt, wander(i, 8, r, 0.6, 0.3).max(0.05)),
            Reading::host(Metric::PingJitter, wander(i, 9, r, 0.1, 0.05).max(0.0)),
            Reading::host(Metric::PingLoss, 0.0),
        ]);
        v
    }

    fn processes(&self, i: usize) -> Vec<ProcessDetail> {
        ["sshd", "nginx"]
            .iter()
            .enumerate()
            .map(|(k, name)| ProcessDetail {
                watch: Arc::from(*name),
                pid: 1000 + (i * 10 + k) as u32,
                name: (*name).into(),
                cpu_pct: 0.5 + k as f64,
                mem_pct: 0.2 + k as f64 * 0.3,
                rss_bytes: 6_000_000 + k as u64 * 20_000_000,
                vms_bytes: 20_000_000 + k as u64 * 80_000_000,
                shared_bytes: 4_000_000,
                cpu_affinity: vec![0, 1, 2, 3],
                cmdline: format!("/usr/sbin/{name} -D").into(),
            })
            .collect()
    }

    /// Advances one round (recording history) and returns the snapshot of that moment.
    pub fn next_round(&mut self) -> Snapshot {
        self.round += 1;
        let r = self.round;
        let taken_at = self.start + self.interval * r as u32;
        let hosts: Vec<Arc<HostView>> = (0..self.names.len())
            .map(|i| {
                let metrics = self.readings(i, r);
                if let Ok(mut h) = self.histories[i].write() {
                    h.record(crate::model::Source::System, &metrics);
                }
                let system: Vec<_> = metrics
                    .into_iter()
                    .filter(|m| m.metric != Metric::HostUp)
                    .collect();
                Arc::new(HostView {
                    name: self.names[i].clone(),
                    group: Some(["web", "db", "cache", "batch"][i % 4].to_string()),
                    last_update: Some(taken_at),
                    rounds: r,
                    processes: self.processes(i).into(),
                    history: self.histories[i].clone(),
                    ..HostView::new("", Via::Ssh, HostStatus::Up, system)
                })
            })
            .collect();
        let max_risk = max_risk(&hosts);
        Snapshot {
            taken_at,
            seq: r,
            interval: self.interval,
            hosts,
            max_risk,
            triggers: Vec::new(),
        }
    }

    /// Runs `rounds` rounds and returns the last snapshot (histories filled).
    pub fn warm(n: usize, rounds: u64) -> Snapshot {
        let mut f = Fleet::new(n, Duration::from_secs(2));
        let mut snap = f.next_round();
        for _ in 1..rounds {
            snap = f.next_round();
        }
        snap
    }
}

/// The maximal-risk lines of a set of hosts, as the engine computes them (worst wins, ties
/// to the first host), for synthetic snapshots.
pub fn max_risk(hosts: &[Arc<HostView>]) -> Vec<MaxRiskLine> {
    let mut out: Vec<MaxRiskLine> = Vec::new();
    for info in crate::model::CATALOGUE {
        if info.risk == crate::model::Risk::None {
            continue;
        }
        let mut best: Option<(&Arc<HostView>, &Reading)> = None;
        for h in hosts {
            for r in h.values(info.metric) {
                if best.is_none_or(|(_, b)| info.metric.is_worse(r.value, b.value)) {
                    best = Some((h, r));
                }
            }
        }
        if let Some((h, r)) = best {
            out.push(MaxRiskLine {
                metric: info.metric,
                host: h.name.clone(),
                instance: r.instance.clone(),
                value: r.value,
            });
        }
    }
    out
}
