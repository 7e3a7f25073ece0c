//! The shared vocabulary of lookout: metrics, readings, host status, updates and snapshots.
//!
//! Nothing here does I/O or knows about the terminal; collectors produce these values, the
//! engine consumes them and front ends read the resulting [`Snapshot`].

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

/// A host's name as the user wrote it in the config (an ssh alias, an address, or `local`).
pub type HostName = Arc<str>;

/// Which way of a metric is worse: the maximal-risk line picks the worst value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Risk {
    Higher,
    Lower,
    /// Informational only (totals, raw counters): no maximal-risk line.
    None,
}

impl Risk {
    /// Whether `a` is worse than `b` for a metric of this risk.
    pub fn is_worse(self, a: f64, b: f64) -> bool {
        match self {
            Risk::Higher => a > b,
            Risk::Lower => a < b,
            Risk::None => false,
        }
    }
}

/// Whether a value is a level (gauge) or an ever-growing counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
}

/// One row of the metric registry: the built-in catalogue (DESIGN.md, "Metric catalogue")
/// first, then the metrics registered at run time (checks' `check.<name>`).
#[derive(Debug)]
pub struct MetricInfo {
    pub metric: Metric,
    pub name: &'static str,
    pub unit: Unit,
    /// What the instance names ("" when there is one value per host).
    pub instance: &'static str,
    pub risk: Risk,
    pub kind: Kind,
    /// For counters: the per-second rate the engine derives from them.
    pub rate: Option<Metric>,
    /// Whether the engine keeps history for this series: exactly the ones the dashboard
    /// charts (`ui::detail::CHARTS`), as history is most of the memory a large fleet costs.
    pub history: bool,
    pub description: &'static str,
}

/// How a value is displayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bool,
    Seconds,
    Millis,
    Percent,
    Load,
    Bytes,
    BytesPerSec,
    Count,
    /// A plain number shown with a unit the user named (a check's `unit = "jobs"`); empty
    /// for none.
    Custom(&'static str),
}

/// A metric: an interned id into the registry. The built-in catalogue takes the first ids
/// (one associated constant each, so `Metric::CpuUsage` reads like the enum it replaced);
/// metrics registered at run time follow. Everything downstream (store, max-risk, triggers,
/// UI, JSON, export) goes through [`Metric::info`], so a registered metric is treated exactly
/// like a built-in one. The string names are the public contract (config, JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric(u16);

macro_rules! catalogue {
    ($( $variant:ident = $name:literal, $unit:ident, $inst:literal, $risk:ident, $kind:ident, $rate:expr, $hist:literal, $desc:literal; )*) => {
        /// The built-in metrics' ids, in catalogue order.
        #[allow(clippy::enum_variant_names)]
        #[repr(u16)]
        enum Builtin { $($variant),* }

        #[allow(non_upper_case_globals)]
        impl Metric {
            $(pub const $variant: Metric = Metric(Builtin::$variant as u16);)*
        }

        /// The built-in metrics, in catalogue order (the order the maximal-risk panel uses).
        pub const CATALOGUE: &[MetricInfo] = &[
            $(MetricInfo {
                metric: Metric::$variant,
                name: $name,
                unit: Unit::$unit,
                instance: $inst,
                risk: Risk::$risk,
                kind: Kind::$kind,
                rate: $rate,
                history: $hist,
                description: $desc,
            }),*
        ];
    };
}

catalogue! {
    HostUp = "host.up", Bool, "", Lower, Gauge, None, false, "1 while the host answers";
    HostUptime = "host.uptime_s", Seconds, "", None, Gauge, None, false, "seconds since boot";
    HostPollMs = "host.poll_ms", Millis, "", Higher, Gauge, None, false, "time to collect one round";
    CpuUsage = "cpu.usage_pct", Percent, "", Higher, Gauge, None, true, "% of all cores busy";
    CpuCoreUsage = "cpu.core_usage_pct", Percent, "core", Higher, Gauge, None, false, "% busy per core";
    CpuIowait = "cpu.iowait_pct", Percent, "", Higher, Gauge, None, false, "% of time waiting for I/O";
    Load1 = "load.1", Load, "", Higher, Gauge, None, true, "1-minute load average";
    Load5 = "load.5", Load, "", Higher, Gauge, None, false, "5-minute load average";
    Load15 = "load.15", Load, "", Higher, Gauge, None, false, "15-minute load average";
    LoadPerCore = "load.per_core", Load, "", Higher, Gauge, None, false, "load.1 divided by cores";
    MemTotal = "mem.total_bytes", Bytes, "", None, Gauge, None, false, "physical memory";
    MemUsed = "mem.used_bytes", Bytes, "", Higher, Gauge, None, false, "memory in use (total - available)";
    MemAvailable = "mem.available_bytes", Bytes, "", Lower, Gauge, None, false, "memory available to new work";
    MemUsedPct = "mem.used_pct", Percent, "", Higher, Gauge, None, true, "memory in use, %";
    SwapUsedPct = "swap.used_pct", Percent, "", Higher, Gauge, None, false, "swap in use, %";
    DiskTotal = "disk.total_bytes", Bytes, "mount", None, Gauge, None, false, "filesystem size";
    DiskUsed = "disk.used_bytes", Bytes, "mount", Higher, Gauge, None, false, "bytes used";
    DiskFree = "disk.free_bytes", Bytes, "mount", Lower, Gauge, None, false, "bytes available to users";
    DiskUsedPct = "disk.used_pct", Percent, "mount", Higher, Gauge, None, false, "used / (used + available), as df";
    NetRxBytes = "net.rx_bytes", Bytes, "interface", None, Counter, Some(Metric::NetRxBps), false, "bytes received";
    NetTxBytes = "net.tx_bytes", Bytes, "interface", None, Counter, Some(Metric::NetTxBps), false, "bytes sent";
    NetRxPackets = "net.rx_packets", Count, "interface", None, Counter, None, false, "packets received";
    NetTxPackets = "net.tx_packets", Count, "interface", None, Counter, None, false, "packets sent";
    NetRxErrors = "net.rx_errors", Count, "interface", Higher, Counter, None, false, "receive errors";
    NetTxErrors = "net.tx_errors", Count, "interface", Higher, Counter, None, false, "transmit errors";
    NetRxDrops = "net.rx_drops", Count, "interface", Higher, Counter, None, false, "received packets dropped";
    NetTxDrops = "net.tx_drops", Count, "interface", Higher, Counter, None, false, "sent packets dropped";
    NetRxBps = "net.rx_bps", BytesPerSec, "interface", Higher, Gauge, None, true, "bytes received per second";
    NetTxBps = "net.tx_bps", BytesPerSec, "interface", Higher, Gauge, None, true, "bytes sent per second";
    ProcCount = "proc.count", Count, "name", Lower, Gauge, None, false, "processes matching the watched name";
    ProcCpu = "proc.cpu_pct", Percent, "name", Higher, Gauge, None, false, "cpu % summed over matches";
    ProcMem = "proc.mem_pct", Percent, "name", Higher, Gauge, None, false, "memory % summed over matches";
    ProcRss = "proc.rss_bytes", Bytes, "name", Higher, Gauge, None, false, "resident memory summed over matches";
    ProcVms = "proc.vms_bytes", Bytes, "name", Higher, Gauge, None, false, "virtual memory summed over matches";
    ProcShared = "proc.shared_bytes", Bytes, "name", Higher, Gauge, None, false, "shared memory summed over matches";
    PingRtt = "ping.rtt_ms", Millis, "", Higher, Gauge, None, true, "mean round trip over the ping window";
    PingJitter = "ping.jitter_ms", Millis, "", Higher, Gauge, None, false, "mean difference between successive round trips";
    PingLoss = "ping.loss_pct", Percent, "", Higher, Gauge, None, false, "% of probes lost over the ping window";
}

/// Metrics registered at run time, after the catalogue: `Metric(CATALOGUE.len() + i)` is
/// `REGISTERED[i]`. Entries are leaked: there is one per distinct name ever registered
/// (bounded by the configured checks), and `&'static` lets every reader use them freely.
static REGISTERED: std::sync::RwLock<Vec<&'static MetricInfo>> = std::sync::RwLock::new(Vec::new());

/// What [`Metric::register`] needs to know of a new metric.
#[derive(Debug, Clone)]
pub struct NewMetric {
    pub name: String,
    pub unit: Unit,
    pub instance: &'static str,
    pub risk: Risk,
    pub description: String,
}

fn registered() -> std::sync::RwLockReadGuard<'static, Vec<&'static MetricInfo>> {
    REGISTERED
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metric {
    /// Position in the registry: a dense index for per-metric arrays.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// How many metrics exist now (built-in and registered): per-metric arrays sized by it
    /// must still check bounds, as more may be registered later (a config reload).
    pub fn count() -> usize {
        CATALOGUE.len() + registered().len()
    }

    /// Every metric's row: the catalogue first, then registered metrics in the order they
    /// were registered.
    pub fn all() -> Vec<&'static MetricInfo> {
        CATALOGUE.iter().chain(registered().iter().copied()).collect()
    }

    /// Registers a metric by name, or returns the one of that name already registered (a
    /// reload registers the same checks again). A name of the built-in catalogue, or a
    /// registered name with another unit, instance or risk, is an error.
    pub fn register(new: NewMetric) -> Result<Metric, String> {
        if CATALOGUE.iter().any(|m| m.name == new.name) {
            return Err(format!("`{}` is a built-in metric", new.name));
        }
        let mut all = REGISTERED
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = all.iter().find(|m| m.name == new.name) {
            // A changed unit or risk on reload takes effect on the next start only: the
            // entry is shared by every reader, so it is never rewritten.
            return Ok(m.metric);
        }
        let id = CATALOGUE.len() + all.len();
        let id = u16::try_from(id).map_err(|_| "too many metrics".to_string())?;
        let metric = Metric(id);
        let info: &'static MetricInfo = Box::leak(Box::new(MetricInfo {
            metric,
            name: Box::leak(new.name.into_boxed_str()),
            unit: new.unit,
            instance: new.instance,
            risk: new.risk,
            kind: Kind::Gauge,
            rate: None,
            history: false,
            description: Box::leak(new.description.into_boxed_str()),
        }));
        all.push(info);
        Ok(metric)
    }

    /// The registered metric of this name (built-in or registered at run time).
    pub fn by_name(name: &str) -> Option<Metric> {
        CATALOGUE
            .iter()
            .find(|m| m.name == name)
            .or_else(|| registered().iter().copied().find(|m| m.name == name))
            .map(|m| m.metric)
    }

    pub fn info(self) -> &'static MetricInfo {
        let i = self.index();
        match CATALOGUE.get(i) {
            Some(info) => info,
            // Ids are only made by the catalogue and by `register`, so every id past the
            // catalogue has its entry.
            None => registered()[i - CATALOGUE.len()],
        }
    }
    pub fn name(self) -> &'static str {
        self.info().name
    }
    pub fn risk(self) -> Risk {
        self.info().risk
    }
    /// Whether `a` is worse than `b` for this metric.
    pub fn is_worse(self, a: f64, b: f64) -> bool {
        self.risk().is_worse(a, b)
    }
    /// The registered name closest to `name`, for "did you mean" hints.
    pub fn nearest(name: &str) -> &'static str {
        crate::suggest::nearest(name, Metric::all().into_iter().map(|m| m.name)).unwrap_or("cpu.usage_pct")
    }
}

impl fmt::Debug for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Metric({})", self.name())
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::by_name(s)
            .ok_or_else(|| format!("unknown metric `{s}` — did you mean `{}`?", Metric::nearest(s)))
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One measured value of one series.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Reading {
    pub metric: Metric,
    pub instance: Arc<str>,
    pub value: f64,
}

impl Reading {
    pub fn new(metric: Metric, instance: impl Into<Arc<str>>, value: f64) -> Self {
        Reading {
            metric,
            instance: instance.into(),
            value,
        }
    }
    pub fn host(metric: Metric, value: f64) -> Self {
        Reading {
            metric,
            instance: empty_instance(),
            value,
        }
    }
}

/// The shared empty instance string (one allocation for the whole program).
pub fn empty_instance() -> Arc<str> {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Arc::from("")).clone()
}

/// Shares strings between polls, so a collector that reports the same mount, interface or
/// process every round hands the engine the same `Arc<str>` instead of a new allocation.
#[derive(Debug, Default)]
pub struct Interner {
    strings: std::collections::HashSet<Arc<str>>,
    /// Raw texts that sanitizing changes (command lines, with NULs between arguments), and
    /// the kept string each became: a known one is neither sanitized nor allocated again.
    raw: std::collections::HashMap<Box<str>, Arc<str>>,
}

impl Interner {
    /// Most distinct strings kept; past it the set starts over (hostile input cannot grow it).
    const LIMIT: usize = 4096;

    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return a.clone();
        }
        if self.strings.len() >= Self::LIMIT {
            self.strings.clear();
            self.raw.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(a.clone());
        a
    }

    /// [`get`](Self::get) of `sanitize(raw)`, without sanitizing (or allocating) when `raw`
    /// is already known: a kept string is sanitized, and sanitizing one changes nothing.
    pub fn get_sanitized(&mut self, raw: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(raw).or_else(|| self.raw.get(raw)) {
            return a.clone();
        }
        let a = self.get(&sanitize(raw));
        if *a != *raw {
            if self.raw.len() >= Self::LIMIT {
                self.raw.clear();
            }
            self.raw.insert(raw.into(), a.clone());
        }
        a
    }

    /// Forgets the strings that nothing outside the interner holds any more (a process
    /// that exited, a mount that went away), so that it keeps only what is in use: worker
    /// processes with a new command line each would otherwise fill it to its limit.
    pub fn prune(&mut self) {
        // A remembered raw text holds a second reference to its kept string.
        self.raw.retain(|_, a| Arc::strong_count(a) > 2);
        self.strings.retain(|a| Arc::strong_count(a) > 1);
    }
}

/// Per-process detail for the host view and the JSON snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ProcessDetail {
    /// The watched name this process matched.
    pub watch: Arc<str>,
    pub pid: u32,
    pub name: Arc<str>,
    pub cpu_pct: f64,
    pub mem_pct: f64,
    pub rss_bytes: u64,
    pub vms_bytes: u64,
    pub shared_bytes: u64,
    /// CPUs the process may run on (empty when unknown).
    pub cpu_affinity: Vec<usize>,
    pub cmdline: Arc<str>,
}

/// Connection state of a host (the JSON `status` values of DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostStatus {
    Connecting,
    Up,
    Unreachable,
    Timeout,
    AuthFailed,
    HostKeyMismatch,
    Error,
}

impl HostStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostStatus::Connecting => "connecting",
            HostStatus::Up => "up",
            HostStatus::Unreachable => "unreachable",
            HostStatus::Timeout => "timeout",
            HostStatus::AuthFailed => "auth_failed",
            HostStatus::HostKeyMismatch => "host_key_mismatch",
            HostStatus::Error => "error",
        }
    }
}

impl fmt::Display for HostStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which collector a sample came from: a host's values are the union of its sources, and a
/// new sample replaces only the values of its own source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The host's system metrics (local sysinfo or remote /proc over SSH).
    System,
    Ping,
    /// Metrics read from an external source such as Prometheus.
    External,
}

/// One complete measurement of one host by one source.
#[derive(Clone, Debug)]
pub struct Sample {
    pub host: HostName,
    pub source: Source,
    pub readings: Vec<Reading>,
    /// Watched processes (System source only).
    pub processes: Vec<ProcessDetail>,
}

/// One run of one `[[check]]` on one host (see `collectors::checks`).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    pub name: Arc<str>,
    /// 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub status: u8,
    /// The first line of output (or why the run failed), sanitized and bounded.
    pub message: Arc<str>,
    pub duration_ms: f64,
    /// `check.<name>.status` first, then the values as `check.<name>`.
    pub readings: Vec<Reading>,
}

/// What collectors send to the engine.
#[derive(Clone, Debug)]
pub enum Update {
    Sample(Sample),
    /// Checks ran on a host (those that ended together): each report replaces that check's
    /// previous one.
    Checks {
        host: HostName,
        reports: Vec<CheckReport>,
    },
    /// The connection state of a host changed (or its error message did).
    Status {
        host: HostName,
        status: HostStatus,
        error: Option<String>,
    },
    /// A host found at run time (a Prometheus target): the engine adds a row for it unless
    /// it already has one. Its samples and statuses then arrive like any other host's.
    Discovered {
        host: HostName,
        group: Option<String>,
        via: crate::config::Via,
    },
}

/// Seconds since the Unix epoch as RFC 3339, the form every timestamp takes in JSON.
/// Times humantime cannot write (before 1970, after 9999, e.g. from a damaged recording or a
/// hostile frame: found by fuzzing) are clamped to its range instead of panicking.
pub fn rfc3339(t: SystemTime) -> String {
    let last = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799);
    humantime::format_rfc3339_millis(t.clamp(SystemTime::UNIX_EPOCH, last)).to_string()
}

#[cfg(test)]
#[test]
fn rfc3339_never_panics_on_times_out_of_range() {
    let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::MAX / 4);
    assert_eq!(rfc3339(far), "9999-12-31T23:59:59.000Z");
    let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(10);
    assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000Z");
}

/// Removes control characters (escape sequences, bells, newlines) from text that came from a
/// remote host, so it can never drive the terminal or smuggle lines into logs and actions.
pub fn sanitize(text: &str) -> String {
    // Trimming before or after replacing gives the same text: whitespace control characters
    // at the ends go either way, and the others become spaces that the second trim removes.
    let trimmed = text.trim();
    let mut out = String::with_capacity(trimmed.len());
    out.extend(trimmed.chars().map(|c| if c.is_control() { ' ' } else { c }));
    let end = out.trim_end().len();
    out.truncate(end);
    let start = out.len() - out.trim_start().len();
    out.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_indexed_by_variant() {
        for (i, info) in CATALOGUE.iter().enumerate() {
            assert_eq!(info.metric.index(), i, "{}", info.name);
            assert_eq!(info.name.parse::<Metric>(), Ok(info.metric));
        }
    }

    #[test]
    fn registered_metrics_follow_the_catalogue() {
        let new = |name: &str| NewMetric {
            name: name.to_string(),
            unit: Unit::Custom("jobs"),
            instance: "",
            risk: Risk::Higher,
            description: "test".to_string(),
        };
        let q = Metric::register(new("check.model_test_queue")).expect("registers");
        assert!(q.index() >= CATALOGUE.len());
        assert_eq!(q.name(), "check.model_test_queue");
        assert_eq!(q.info().unit, Unit::Custom("jobs"));
        assert_eq!("check.model_test_queue".parse::<Metric>(), Ok(q));
        // Registering again (a reload) gives the same id; a built-in name is refused.
        assert_eq!(Metric::register(new("check.model_test_queue")), Ok(q));
        assert!(Metric::register(new("cpu.usage_pct")).is_err());
        assert!(Metric::all().iter().any(|m| m.metric == q));
        assert!(Metric::count() > q.index());
        assert!(q.is_worse(2.0, 1.0));
        let err = "check.model_test_queu".parse::<Metric>().unwrap_err();
        assert!(err.contains("did you mean `check.model_test_queue`"), "{err}");
    }

    #[test]
    fn unknown_metric_suggests_nearest() {
        let err = "disk.usedpct".parse::<Metric>().unwrap_err();
        assert!(err.contains("did you mean `disk.used_pct`"), "{err}");
    }

    #[test]
    fn sanitize_strips_escapes() {
        assert_eq!(sanitize("a\x1b[31mred\x07\n"), "a [31mred");
        assert_eq!(sanitize("\n\t plain name \r\n"), "plain name");
        assert_eq!(sanitize("\x07bell"), "bell");
        assert_eq!(sanitize("a\0b"), "a b");
        assert_eq!(sanitize("nginx\0-g\0daemon off;\0"), "nginx -g daemon off;");
        assert_eq!(sanitize("\0\x1b"), "");

        let mut names = Interner::default();
        let a = names.get_sanitized(" /mnt/\x1bx ");
        assert_eq!(&*a, "/mnt/ x");
        assert!(Arc::ptr_eq(&a, &names.get_sanitized("/mnt/ x")));
        assert!(Arc::ptr_eq(&a, &names.get_sanitized("/mnt/\x07x")));
        // A raw text that sanitizing changes is remembered as such.
        let c = names.get_sanitized("nginx\0-g\0daemon off;\0");
        assert_eq!(&*c, "nginx -g daemon off;");
        assert!(Arc::ptr_eq(&c, &names.get_sanitized("nginx\0-g\0daemon off;\0")));
        assert!(Arc::ptr_eq(&c, &names.get_sanitized("nginx -g daemon off;")));

        // What is still held elsewhere survives a prune; the rest is forgotten.
        drop(names.get_sanitized("python3\0job-1"));
        names.prune();
        assert!(Arc::ptr_eq(&a, &names.get_sanitized("/mnt/\x07x")));
        assert!(Arc::ptr_eq(&c, &names.get_sanitized("nginx\0-g\0daemon off;\0")));
        assert_eq!(names.strings.len(), 2);
        assert_eq!(names.raw.len(), 3);
        let again = names.get_sanitized("python3\0job-1");
        assert_eq!(&*again, "python3 job-1");
    }
}
