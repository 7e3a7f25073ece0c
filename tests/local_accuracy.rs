//! The local collector against the kernel's own files, read directly by the test.
//! Tolerances allow for the system moving between the two reads.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Arc;

use lookout::collectors::local::LocalCollector;
use lookout::config::{HostConfig, Via};
use lookout::model::{Metric, Sample};

fn host(processes: &[&str], interfaces: &[&str]) -> HostConfig {
    HostConfig {
        name: Arc::from("local"),
        group: None,
        via: Via::Local,
        ping: false,
        jump: None,
        processes: processes.iter().map(|p| Arc::from(*p)).collect(),
        mounts: Vec::new(),
        interfaces: interfaces.iter().map(ToString::to_string).collect(),
    }
}

fn value(s: &Sample, metric: Metric, instance: &str) -> f64 {
    s.readings
        .iter()
        .find(|r| r.metric == metric && &*r.instance == instance)
        .map(|r| r.value)
        .unwrap_or_else(|| panic!("no {metric} {instance:?} in the sample"))
}

fn meminfo_kb(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        })
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{key} not in /proc/meminfo"))
}

#[test]
fn memory_matches_proc_meminfo() {
    let mut c = LocalCollector::new(&host(&[], &[])).expect("collector");
    let s = c.collect();
    let total = meminfo_kb("MemTotal") * 1024.0;
    let available = meminfo_kb("MemAvailable") * 1024.0;
    assert_eq!(value(&s, Metric::MemTotal, ""), total);
    let got = value(&s, Metric::MemAvailable, "");
    // within 2% of total: other processes allocate between the two reads
    assert!(
        (got - available).abs() < total * 0.02,
        "available {got} vs {available}"
    );
    let pct = value(&s, Metric::MemUsedPct, "");
    assert!(
        (pct - (total - available) / total * 100.0).abs() < 2.0,
        "used% {pct}"
    );
}

#[test]
fn root_filesystem_matches_statvfs() {
    let mut c = LocalCollector::new(&host(&[], &[])).expect("collector");
    let s = c.collect();
    let st = rustix::fs::statvfs("/").expect("statvfs");
    let f = st.f_frsize as f64;
    let (total, free, avail) = (
        st.f_blocks as f64 * f,
        st.f_bfree as f64 * f,
        st.f_bavail as f64 * f,
    );
    let used = total - free;
    assert_eq!(value(&s, Metric::DiskTotal, "/"), total);
    // 64 MiB of slack for files written between the reads
    assert!((value(&s, Metric::DiskUsed, "/") - used).abs() < 64.0 * 1024.0 * 1024.0);
    assert!((value(&s, Metric::DiskFree, "/") - avail).abs() < 64.0 * 1024.0 * 1024.0);
    let pct = used / (used + avail) * 100.0;
    assert!(
        (value(&s, Metric::DiskUsedPct, "/") - pct).abs() < 0.1,
        "df-style used%"
    );
}

#[test]
fn load_matches_proc_loadavg() {
    let mut c = LocalCollector::new(&host(&[], &[])).expect("collector");
    let s = c.collect();
    let text = std::fs::read_to_string("/proc/loadavg").expect("loadavg");
    let l: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().expect("number"))
        .collect();
    assert!((value(&s, Metric::Load1, "") - l[0]).abs() < 0.5);
    assert!((value(&s, Metric::Load5, "") - l[1]).abs() < 0.2);
    assert!((value(&s, Metric::Load15, "") - l[2]).abs() < 0.1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let per_core = value(&s, Metric::LoadPerCore, "");
    assert!((per_core - value(&s, Metric::Load1, "") / cores).abs() < 1e-9);
}

struct Sleepers(Vec<Child>);
impl Drop for Sleepers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn counts_processes_the_test_started() {
    let name = format!("lookout-test-sleep-{}", std::process::id());
    let sleepers = Sleepers(
        (0..3)
            .map(|_| {
                Command::new("sleep")
                    .arg0(&name)
                    .arg("60")
                    .spawn()
                    .expect("spawn sleep")
            })
            .collect(),
    );
    let mut c = LocalCollector::new(&host(&[&name, "no-such-process-xyz"], &[])).expect("collector");
    c.collect();
    let s = c.collect();
    assert_eq!(value(&s, Metric::ProcCount, &name), 3.0);
    assert_eq!(value(&s, Metric::ProcCount, "no-such-process-xyz"), 0.0);
    let mut pids: Vec<u32> = s
        .processes
        .iter()
        .filter(|p| *p.watch == *name)
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    let mut expected: Vec<u32> = sleepers.0.iter().map(Child::id).collect();
    expected.sort_unstable();
    assert_eq!(pids, expected);
    let rss = value(&s, Metric::ProcRss, &name);
    assert!(rss > 0.0 && rss < 64.0 * 1024.0 * 1024.0, "rss {rss}");
    assert!(
        s.processes.iter().all(|p| !p.cpu_affinity.is_empty()),
        "affinity from /proc"
    );
    assert!(s.processes.iter().all(|p| p.cmdline.starts_with(&name)));
}

#[test]
fn interface_counters_match_proc_net_dev() {
    let mut c = LocalCollector::new(&host(&[], &["lo"])).expect("collector");
    let s = c.collect();
    let text = std::fs::read_to_string("/proc/net/dev").expect("net/dev");
    let lo = lookout::collectors::procfs::parse_net_dev(&text)
        .into_iter()
        .find(|d| d.name == "lo")
        .expect("lo");
    // other tests may talk over loopback meanwhile: 16 MiB / 20k packets of slack
    assert!((value(&s, Metric::NetRxBytes, "lo") - lo.rx_bytes as f64).abs() < 16.0 * 1024.0 * 1024.0);
    assert!((value(&s, Metric::NetTxPackets, "lo") - lo.tx_packets as f64).abs() < 20_000.0);
    assert_eq!(value(&s, Metric::NetRxDrops, "lo"), lo.rx_drops as f64);
    assert!(
        s.readings
            .iter()
            .all(|r| r.metric != Metric::NetRxBytes || &*r.instance == "lo")
    );
}

#[test]
fn cpu_percentages_arrive_from_the_second_round() {
    let mut c = LocalCollector::new(&host(&[], &[])).expect("collector");
    let first = c.collect();
    assert!(first.readings.iter().all(|r| r.metric != Metric::CpuUsage));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = c.collect();
    let cpu = value(&second, Metric::CpuUsage, "");
    assert!((0.0..=100.0).contains(&cpu));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(
        second
            .readings
            .iter()
            .filter(|r| r.metric == Metric::CpuCoreUsage)
            .count(),
        cores
    );
    assert!(value(&second, Metric::CpuIowait, "") >= 0.0);
}
