//! The immutable picture the engine publishes after each change; front ends only read it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde::ser::SerializeStruct;

use crate::config::Via;
use crate::model::{CheckReport, HostName, HostStatus, Metric, ProcessDetail, Reading, rfc3339};
use crate::store::SharedHistory;
use crate::triggers::TriggerView;

/// One host as the front ends see it.
#[derive(Debug, Clone)]
pub struct HostView {
    pub name: HostName,
    pub group: Option<String>,
    pub via: Via,
    pub status: HostStatus,
    /// The last error, already sanitized (why the host is not `up`).
    pub error: Option<String>,
    /// When the last system sample arrived (ping sample for ping-only hosts).
    pub last_update: Option<SystemTime>,
    /// How many samples of its primary source have arrived.
    pub rounds: u64,
    /// `host.up` (derived from the status).
    pub up: Reading,
    /// Current values by source, shared with the engine (a new sample replaces only its own
    /// source's list, so publishing a view never copies readings). `Arc<Vec>` rather than
    /// `Arc<[_]>`: a collector's vector is moved in, not copied into a new allocation.
    pub system: Arc<Vec<Reading>>,
    pub ping: Arc<Vec<Reading>>,
    pub external: Arc<Vec<Reading>>,
    pub processes: Arc<Vec<ProcessDetail>>,
    /// The last report of each check the host runs, in config order.
    pub checks: Arc<Vec<Arc<CheckReport>>>,
    pub history: SharedHistory,
}

impl HostView {
    /// A view of a host with the given status and system readings (`host.up` follows the
    /// status). For front-end tests and benchmarks; the engine builds its own.
    pub fn new(name: &str, via: Via, status: HostStatus, readings: Vec<Reading>) -> Self {
        HostView {
            name: HostName::from(name),
            group: None,
            via,
            status,
            error: None,
            last_update: None,
            rounds: 0,
            up: Reading::host(Metric::HostUp, if status == HostStatus::Up { 1.0 } else { 0.0 }),
            system: Arc::new(readings),
            ping: Arc::default(),
            external: Arc::default(),
            processes: Arc::default(),
            checks: Arc::default(),
            history: SharedHistory::default(),
        }
    }

    /// Every current value: `host.up` first, then system metrics (with rates), then ping,
    /// then external ones, then the checks' (in config order).
    pub fn metrics(&self) -> impl Iterator<Item = &Reading> + Clone {
        std::iter::once(&self.up)
            .chain(self.system.iter())
            .chain(self.ping.iter())
            .chain(self.external.iter())
            .chain(self.checks.iter().flat_map(|c| c.readings.iter()))
    }
    /// The `i`-th reading of [`metrics`](Self::metrics), without walking the others.
    pub fn reading(&self, i: usize) -> Option<&Reading> {
        if i == 0 {
            return Some(&self.up);
        }
        let mut i = i - 1;
        for part in [&self.system, &self.ping, &self.external] {
            if i < part.len() {
                return part.get(i);
            }
            i -= part.len();
        }
        for c in self.checks.iter() {
            if i < c.readings.len() {
                return c.readings.get(i);
            }
            i -= c.readings.len();
        }
        None
    }
    /// The last report of a check on this host.
    pub fn check(&self, name: &str) -> Option<&CheckReport> {
        self.checks.iter().find(|c| &*c.name == name).map(|c| &**c)
    }
    /// The worst check status of this host (`chk` in the overview), if it runs any yet.
    pub fn worst_check(&self) -> Option<u8> {
        self.checks.iter().map(|c| c.status).max()
    }
    pub fn value(&self, metric: Metric, instance: &str) -> Option<f64> {
        self.metrics()
            .find(|r| r.metric == metric && &*r.instance == instance)
            .map(|r| r.value)
    }
    /// Every value of a metric with its instance.
    pub fn values(&self, metric: Metric) -> impl Iterator<Item = &Reading> {
        self.metrics().filter(move |r| r.metric == metric)
    }
    /// The worst value of a metric over its instances (e.g. the fullest disk).
    pub fn worst(&self, metric: Metric) -> Option<&Reading> {
        self.values(metric)
            .fold(None, |best: Option<&Reading>, r| match best {
                Some(b) if !metric.is_worse(r.value, b.value) => Some(b),
                _ => Some(r),
            })
    }
    /// Whether the data is older than three intervals (or there is none yet).
    pub fn is_stale(&self, now: SystemTime, interval: Duration) -> bool {
        match self.last_update {
            None => true,
            Some(t) => now.duration_since(t).unwrap_or_default() > interval * 3,
        }
    }
    /// A short history of one series, oldest first (for sparklines and charts).
    pub fn history(&self, metric: Metric, instance: &str, n: usize) -> Vec<f32> {
        self.history
            .read()
            .map(|h| h.series(metric, instance, n))
            .unwrap_or_default()
    }
}

/// The worst (host, instance) of one metric across the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MaxRiskLine {
    pub metric: Metric,
    pub host: HostName,
    pub instance: Arc<str>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub taken_at: SystemTime,
    /// Increases with every published snapshot.
    pub seq: u64,
    pub interval: Duration,
    pub hosts: Vec<Arc<HostView>>,
    pub max_risk: Vec<MaxRiskLine>,
    pub triggers: Vec<TriggerView>,
}

impl Snapshot {
    pub fn empty(interval: Duration) -> Self {
        Snapshot {
            taken_at: SystemTime::now(),
            seq: 0,
            interval,
            hosts: Vec::new(),
            max_risk: Vec::new(),
            triggers: Vec::new(),
        }
    }
    pub fn host(&self, name: &str) -> Option<&Arc<HostView>> {
        self.hosts.iter().find(|h| &*h.name == name)
    }
    pub fn count_status(&self, status: HostStatus) -> usize {
        self.hosts.iter().filter(|h| h.status == status).count()
    }
}

/// The JSON contract of `lookout snapshot --json` (DESIGN.md, "Command line").
impl Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Snapshot", 4)?;
        st.serialize_field("taken_at", &rfc3339(self.taken_at))?;
        let hosts: Vec<JsonHost> = self
            .hosts
            .iter()
            .map(|h| JsonHost {
                host: &h.name,
                group: h.group.as_deref(),
                via: h.via,
                status: h.status,
                error: h.error.as_deref(),
                stale: h.is_stale(self.taken_at, self.interval),
                last_update: h.last_update.map(rfc3339),
                metrics: Metrics(h),
                processes: &h.processes,
                checks: Checks(h),
            })
            .collect();
        st.serialize_field("hosts", &hosts)?;
        st.serialize_field("max_risk", &self.max_risk)?;
        st.serialize_field("triggers", &self.triggers)?;
        st.end()
    }
}

#[derive(Serialize)]
struct JsonHost<'a> {
    host: &'a str,
    group: Option<&'a str>,
    via: Via,
    status: HostStatus,
    error: Option<&'a str>,
    stale: bool,
    last_update: Option<String>,
    metrics: Metrics<'a>,
    processes: &'a [ProcessDetail],
    checks: Checks<'a>,
}

/// A host's checks as JSON: name, status, message, duration_ms and values.
struct Checks<'a>(&'a HostView);

impl Serialize for Checks<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct JsonCheck<'a> {
            name: &'a str,
            status: u8,
            message: &'a str,
            duration_ms: f64,
            values: Vec<JsonValue<'a>>,
        }
        #[derive(Serialize)]
        struct JsonValue<'a> {
            instance: &'a str,
            value: f64,
        }
        s.collect_seq(self.0.checks.iter().map(|c| {
            JsonCheck {
                name: &c.name,
                status: c.status,
                message: &c.message,
                duration_ms: (c.duration_ms * 1000.0).round() / 1000.0,
                // The status is its own field; the values are `check.<name>`.
                values: c
                    .readings
                    .iter()
                    .skip(1)
                    .map(|r| JsonValue {
                        instance: &r.instance,
                        value: r.value,
                    })
                    .collect(),
            }
        }))
    }
}

/// Serializes a host's readings as one JSON list without collecting them.
struct Metrics<'a>(&'a HostView);

impl Serialize for Metrics<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.metrics())
    }
}
