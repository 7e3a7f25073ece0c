//! The local host, read with sysinfo (plus the few Linux /proc fields sysinfo does not
//! offer: iowait, interface drops, shared memory and CPU affinity of processes).
//!
//! One `System` lives for the whole run and only what is watched is refreshed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Networks, Pid, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System, UpdateKind,
};
use tokio::sync::mpsc;

use super::procfs::{self, CpuTimes};
use crate::config::HostConfig;
use crate::model::{HostName, Interner, Metric, ProcessDetail, Reading, Sample, Source, Update, sanitize};

/// Measures the local host; keeps what it needs between rounds (cpu ticks).
pub struct LocalCollector {
    host: HostName,
    system: System,
    disks: Disks,
    /// Only where /proc/net/dev is missing.
    networks: Option<Networks>,
    watched_processes: Vec<Arc<str>>,
    mounts: Vec<String>,
    interfaces: Vec<String>,
    own_pid: Pid,
    prev_stat: Option<CpuTimes>,
    rounds: u64,
    names: Interner,
}

impl LocalCollector {
    pub fn new(host: &HostConfig) -> Result<Self, String> {
        let system = System::new_with_specifics(RefreshKind::nothing())
            .map_err(|e| format!("cannot read the local system: {e}"))?;
        Ok(LocalCollector {
            host: host.name.clone(),
            system,
            disks: Disks::new_with_refreshed_list().map_err(|e| format!("cannot list disks: {e}"))?,
            networks: None,
            watched_processes: host.processes.clone(),
            mounts: host.mounts.clone(),
            interfaces: host.interfaces.clone(),
            own_pid: sysinfo::get_current_pid().unwrap_or(Pid::from_u32(std::process::id())),
            prev_stat: None,
            rounds: 0,
            names: Interner::default(),
        })
    }

    /// One round of measurement. CPU percentages need two rounds, so the first sample has
    /// none; rates are derived by the engine from the counters.
    pub fn collect(&mut self) -> Sample {
        let started = Instant::now();
        self.rounds += 1;
        let mut readings = Vec::with_capacity(64);

        self.system
            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_usage());
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        let cores = self.system.cpus().len().max(1);
        if self.rounds > 1 {
            readings.push(Reading::host(
                Metric::CpuUsage,
                f64::from(self.system.global_cpu_usage()),
            ));
            for (i, cpu) in self.system.cpus().iter().enumerate() {
                readings.push(Reading::new(
                    Metric::CpuCoreUsage,
                    i.to_string(),
                    f64::from(cpu.usage()),
                ));
            }
        }
        // iowait is Linux-only and not in sysinfo.
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let (Some(now), _) = procfs::parse_stat_cpus(&stat)
        {
            if let Some(prev) = self.prev_stat
                && let Some((_, iowait)) = procfs::cpu_percent(&prev, &now)
            {
                readings.push(Reading::host(Metric::CpuIowait, iowait));
            }
            self.prev_stat = Some(now);
        }

        if let Ok(load) = System::load_average() {
            readings.push(Reading::host(Metric::Load1, load.one));
            readings.push(Reading::host(Metric::Load5, load.five));
            readings.push(Reading::host(Metric::Load15, load.fifteen));
            readings.push(Reading::host(Metric::LoadPerCore, load.one / cores as f64));
        }
        if let Ok(up) = System::uptime() {
            readings.push(Reading::host(Metric::HostUptime, up as f64));
        }

        let total = self.system.total_memory();
        let available = self.system.available_memory();
        let used = total.saturating_sub(available);
        readings.push(Reading::host(Metric::MemTotal, total as f64));
        readings.push(Reading::host(Metric::MemUsed, used as f64));
        readings.push(Reading::host(Metric::MemAvailable, available as f64));
        if total > 0 {
            readings.push(Reading::host(
                Metric::MemUsedPct,
                used as f64 / total as f64 * 100.0,
            ));
        }
        let swap_total = self.system.total_swap();
        let swap_pct = if swap_total > 0 {
            self.system.used_swap() as f64 / swap_total as f64 * 100.0
        } else {
            0.0
        };
        readings.push(Reading::host(Metric::SwapUsedPct, swap_pct));

        self.collect_disks(&mut readings);
        self.collect_networks(&mut readings);
        let processes = self.collect_processes(total, &mut readings);

        readings.push(Reading::host(
            Metric::HostPollMs,
            started.elapsed().as_secs_f64() * 1000.0,
        ));
        Sample {
            host: self.host.clone(),
            source: Source::System,
            readings,
            processes,
        }
    }

    fn collect_disks(&mut self, readings: &mut Vec<Reading>) {
        // The usage figures come from statvfs below; sysinfo only supplies the list of mounts,
        // which changes rarely, so it is re-read every 30 rounds rather than every round.
        if self.rounds % 30 == 1 {
            self.disks.refresh(true);
        }
        let mut seen = Vec::new();
        for disk in self.disks.iter() {
            let mount = disk.mount_point().to_string_lossy().into_owned();
            let fstype = disk.file_system().to_string_lossy();
            let wanted = if self.mounts.is_empty() {
                super::is_real_filesystem(&mount, &fstype)
            } else {
                self.mounts.contains(&mount)
            };
            if !wanted || seen.contains(&mount) {
                continue;
            }
            // df's figures: used = total - free; used% = used / (used + available to users).
            let Ok(st) = rustix::fs::statvfs(disk.mount_point()) else {
                continue;
            };
            let frag = st.f_frsize.max(1);
            let total = st.f_blocks.saturating_mul(frag);
            let free_all = st.f_bfree.saturating_mul(frag);
            let avail = st.f_bavail.saturating_mul(frag);
            let used = total.saturating_sub(free_all);
            let instance = self.names.get(&sanitize(&mount));
            readings.push(Reading::new(Metric::DiskTotal, instance.clone(), total as f64));
            readings.push(Reading::new(Metric::DiskUsed, instance.clone(), used as f64));
            readings.push(Reading::new(Metric::DiskFree, instance.clone(), avail as f64));
            if used + avail > 0 {
                let pct = used as f64 / (used + avail) as f64 * 100.0;
                readings.push(Reading::new(Metric::DiskUsedPct, instance, pct));
            }
            seen.push(mount);
        }
    }

    /// Interface counters from /proc/net/dev: one read for every interface and all eight
    /// counters (sysinfo reads eight /sys files per interface and has no drop counters).
    /// Where /proc/net/dev is missing (not Linux), sysinfo's counters are used, without drops.
    fn collect_networks(&mut self, readings: &mut Vec<Reading>) {
        let mut devs = match std::fs::read_to_string("/proc/net/dev") {
            Ok(text) => procfs::parse_net_dev(&text),
            Err(_) => self.sysinfo_networks(),
        };
        devs.sort_by(|a, b| a.name.cmp(&b.name));
        for d in devs {
            if !super::wants_interface(&self.interfaces, &d.name) {
                continue;
            }
            let inst = self.names.get(&d.name);
            d.push_readings(&inst, readings);
        }
    }

    fn sysinfo_networks(&mut self) -> Vec<procfs::NetDev> {
        if self.networks.is_none() {
            self.networks = Networks::new_with_refreshed_list().ok();
        }
        let Some(networks) = self.networks.as_mut() else {
            return Vec::new();
        };
        networks.refresh(true);
        networks
            .iter()
            .map(|(n, d)| procfs::NetDev {
                name: sanitize(&n.to_string_lossy()),
                rx_bytes: d.total_received(),
                tx_bytes: d.total_transmitted(),
                rx_packets: d.total_packets_received(),
                tx_packets: d.total_packets_transmitted(),
                rx_errors: d.total_errors_on_received(),
                tx_errors: d.total_errors_on_transmitted(),
                rx_drops: 0,
                tx_drops: 0,
            })
            .collect()
    }

    fn collect_processes(&mut self, total_mem: u64, readings: &mut Vec<Reading>) -> Vec<ProcessDetail> {
        if self.watched_processes.is_empty() {
            return Vec::new();
        }
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_cmd(UpdateKind::OnlyIfNotSet),
        );
        let mut details = Vec::new();
        for watch in &self.watched_processes {
            for (pid, p) in self.system.processes() {
                if *pid == self.own_pid
                    || p.thread_kind()
                        .is_some_and(|k| k == sysinfo::ThreadKind::Userland)
                {
                    continue;
                }
                let name = p.name().to_string_lossy();
                let cmdline = p
                    .cmd()
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !super::process_matches(watch, &name, &cmdline) {
                    continue;
                }
                let pid = pid.as_u32();
                let (p_shared, affinity) = linux_process_extras(pid);
                let p_cpu = f64::from(p.cpu_usage());
                let p_mem = if total_mem > 0 {
                    p.memory() as f64 / total_mem as f64 * 100.0
                } else {
                    0.0
                };
                details.push(ProcessDetail {
                    watch: watch.clone(),
                    pid,
                    name: sanitize(&name).into(),
                    cpu_pct: p_cpu,
                    mem_pct: p_mem,
                    rss_bytes: p.memory(),
                    vms_bytes: p.virtual_memory(),
                    shared_bytes: p_shared,
                    cpu_affinity: affinity,
                    cmdline: sanitize(&cmdline).into(),
                });
            }
            super::push_process_totals(watch, &details, total_mem, readings);
        }
        details.sort_by(|a, b| a.watch.cmp(&b.watch).then(a.pid.cmp(&b.pid)));
        details
    }
}

/// Shared memory (bytes, from /proc/PID/statm) and allowed CPUs (from /proc/PID/status) of a
/// process; zero and empty where /proc does not say.
fn linux_process_extras(pid: u32) -> (u64, Vec<usize>) {
    let page = rustix::param::page_size() as u64;
    let shared = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| {
            s.split_ascii_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page);
    let affinity = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|l| parse_cpu_list(l.trim()))
        })
        .unwrap_or_default();
    (shared, affinity)
}

/// Parses a kernel CPU list such as `0-3,6,8-9`.
pub fn parse_cpu_list(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    out.extend(a..=b.min(a + 4096));
                }
            }
            None => out.extend(part.parse::<usize>().ok()),
        }
    }
    out
}

/// Runs the local collector on its own thread (sysinfo blocks) until the engine goes away.
pub fn spawn(host: &HostConfig, interval: Duration, tx: mpsc::Sender<Update>) -> std::thread::JoinHandle<()> {
    spawn_stoppable(host, interval, tx, Arc::default())
}

/// [`spawn`] that also ends (before its next sample) once `stop` is set: a reload that
/// drops or changes the host.
pub fn spawn_stoppable(
    host: &HostConfig,
    interval: Duration,
    tx: mpsc::Sender<Update>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let stopped = move || stop.load(std::sync::atomic::Ordering::Relaxed);
    let host = host.clone();
    std::thread::Builder::new()
        .name("lookout-local".into())
        .spawn(move || {
            let mut collector = match LocalCollector::new(&host) {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.blocking_send(Update::Status {
                        host: host.name.clone(),
                        status: crate::model::HostStatus::Error,
                        error: Some(e),
                    });
                    return;
                }
            };
            let mut next = Instant::now();
            loop {
                let sample = collector.collect();
                if stopped() || tx.blocking_send(Update::Sample(sample)).is_err() {
                    return;
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the local collector thread: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list("0-3,6,8-9"), [0, 1, 2, 3, 6, 8, 9]);
        assert_eq!(super::parse_cpu_list("0"), [0]);
        assert_eq!(super::parse_cpu_list("x-y,,"), Vec::<usize>::new());
    }
}
