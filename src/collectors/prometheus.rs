//! Prometheus as a source: every target a `[[prometheus]]` server knows becomes a host row,
//! read with one instant query per catalogue metric per interval for all hosts at once
//! (never one query per host), through the `prometheus-http-query` client.
//!
//! The built-in queries map node_exporter (and process-exporter) series onto the metric
//! catalogue (docs/prometheus.md has the table); `[[prometheus.metric]]` replaces or adds
//! the query of one catalogue metric. The source itself is a row too (named after the
//! server) whose status says whether Prometheus answers and whose `host.poll_ms` is the time
//! one round of queries took; a failing query makes that row `error` with the message while
//! the other metrics keep flowing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use tokio::sync::mpsc;
use toml::Spanned;

use crate::config::{ConfigError, Locator, Via};
use crate::model::{HostName, HostStatus, Interner, Metric, Reading, Sample, Source, Update};

// ---------------------------------------------------------------------------------------------
// Configuration.

/// `[[prometheus]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusFile {
    /// Base URL of the server, e.g. `http://127.0.0.1:9090`.
    pub url: Spanned<String>,
    /// The name of the source's own row (default `prometheus <host:port>`).
    pub name: Option<String>,
    /// Label matchers added to every built-in query, e.g. `{job="node"}`.
    pub selector: Option<Spanned<String>>,
    /// The label that names a host (default `instance`).
    pub host_label: Option<Spanned<String>>,
    /// The label that gives a host's group (none by default).
    pub group_label: Option<Spanned<String>>,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// The range of `rate()` in built-in queries (at least four scrape intervals).
    #[serde(default, with = "humantime_serde")]
    pub rate_window: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Whether the built-in node_exporter mapping is queried (default true).
    pub builtin: Option<bool>,
    #[serde(default)]
    pub metric: Vec<PromMetricFile>,
}

/// `[[prometheus.metric]]`: the query of one catalogue metric.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromMetricFile {
    /// A catalogue metric name (`disk.used_pct`, ...).
    pub name: Spanned<String>,
    /// PromQL returning one series per host (and per instance), labelled with the host label.
    pub query: Spanned<String>,
    /// The label holding the instance (mount, interface, ...) for per-instance metrics.
    pub instance_label: Option<Spanned<String>>,
}

/// One query of a source: which metric it fills and where the instance comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricQuery {
    pub metric: Metric,
    pub query: String,
    pub instance_label: Option<String>,
}

/// A validated `[[prometheus]]` source.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    /// The source's own row.
    pub name: HostName,
    pub url: String,
    /// The matchers inside the selector's braces (may be empty).
    pub selector: String,
    pub host_label: String,
    pub group_label: Option<String>,
    pub interval: Duration,
    pub rate_window: Duration,
    pub timeout: Duration,
    /// Every query of a round: the built-in mapping (unless disabled) with the user's
    /// `[[prometheus.metric]]` queries replacing or adding to it.
    pub queries: Vec<MetricQuery>,
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label(
    v: Option<&Spanned<String>>,
    key: &str,
    loc: &Locator,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let v = v?;
    let s = v.get_ref().trim();
    if is_label_name(s) {
        Some(s.to_string())
    } else {
        errors.push(loc.error(
            v.span(),
            format!("`{key}` in [[prometheus]]: `{s}` is not a Prometheus label name (letters, digits, `_`)"),
        ));
        None
    }
}

impl PrometheusSource {
    /// Validates the `index`th `[[prometheus]]` table; problems go to `errors`.
    pub fn from_file(
        f: PrometheusFile,
        index: usize,
        general_interval: Duration,
        loc: &Locator,
        errors: &mut Vec<ConfigError>,
    ) -> Option<Self> {
        let before = errors.len();
        let url_text = f.url.get_ref().trim().trim_end_matches('/').to_string();
        let authority = match reqwest::Url::parse(&url_text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                let host = u.host_str().unwrap_or_default().to_string();
                u.port().map_or(host.clone(), |p| format!("{host}:{p}"))
            }
            Ok(_) | Err(_) => {
                errors.push(loc.error(
                    f.url.span(),
                    format!("`url` in [[prometheus]]: `{url_text}` is not an http:// or https:// URL"),
                ));
                String::new()
            }
        };
        let selector = match &f.selector {
            None => String::new(),
            Some(s) => {
                let t = s.get_ref().trim();
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(inner) => inner.trim().trim_end_matches(',').to_string(),
                    None => {
                        errors.push(loc.error(
                            s.span(),
                            format!("`selector` in [[prometheus]]: expected label matchers in braces such as `{{job=\"node\"}}`, not `{t}`"),
                        ));
                        String::new()
                    }
                }
            }
        };
        let host_label =
            label(f.host_label.as_ref(), "host_label", loc, errors).unwrap_or_else(|| "instance".to_string());
        let group_label = label(f.group_label.as_ref(), "group_label", loc, errors);
        let interval = f.interval.unwrap_or(general_interval);
        if interval < Duration::from_millis(100) {
            errors.push(loc.error(f.url.span(), "[[prometheus]] `interval` must be at least 100ms"));
        }
        let rate_window = f.rate_window.unwrap_or(Duration::from_secs(60));
        if rate_window < Duration::from_secs(1) {
            errors.push(loc.error(f.url.span(), "[[prometheus]] `rate_window` must be at least 1s"));
        }
        let mut source = PrometheusSource {
            name: Arc::from(
                f.name
                    .map(|n| crate::model::sanitize(&n))
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| {
                        if index == 0 {
                            format!("prometheus {authority}")
                        } else {
                            format!("prometheus {authority} #{}", index + 1)
                        }
                    }),
            ),
            url: url_text,
            selector,
            host_label,
            group_label,
            interval,
            rate_window,
            timeout: f.timeout.unwrap_or(interval.max(Duration::from_secs(5))),
            queries: Vec::new(),
        };
        if f.builtin.unwrap_or(true) {
            source.queries = builtin_queries(&source);
        }
        for m in f.metric {
            let metric = match m.name.get_ref().parse::<Metric>() {
                Ok(metric) => metric,
                Err(e) => {
                    errors.push(loc.error(m.name.span(), format!("[[prometheus.metric]] `name`: {e}")));
                    continue;
                }
            };
            let query = m.query.get_ref().trim().to_string();
            if query.is_empty() {
                errors.push(loc.error(m.query.span(), "[[prometheus.metric]] `query` is empty"));
                continue;
            }
            let instance_label = label(m.instance_label.as_ref(), "instance_label", loc, errors);
            let q = MetricQuery {
                metric,
                query,
                instance_label,
            };
            match source.queries.iter_mut().find(|x| x.metric == metric) {
                Some(existing) => *existing = q,
                None => source.queries.push(q),
            }
        }
        (errors.len() == before).then_some(source)
    }

    /// The labels every built-in query keeps: the host label and the group label.
    fn by(&self, extra: &str) -> String {
        let mut by = self.host_label.clone();
        if let Some(g) = &self.group_label {
            by.push_str(", ");
            by.push_str(g);
        }
        if !extra.is_empty() {
            by.push_str(", ");
            by.push_str(extra);
        }
        by
    }

    /// A vector selector: `name{extra, <selector>}`.
    fn sel(&self, name: &str, extra: &str) -> String {
        let parts: Vec<&str> = [extra, self.selector.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", parts.join(", "))
        }
    }

    fn window(&self) -> String {
        format!("{}ms", self.rate_window.as_millis())
    }
}

/// File systems left out of the disk metrics (the local collector's list).
fn pseudo_fs_matcher() -> String {
    format!(
        "fstype!~\"{}\"",
        crate::collectors::PSEUDO_FILESYSTEMS
            .iter()
            .map(|f| f.replace('.', "\\\\."))
            .collect::<Vec<_>>()
            .join("|")
    )
}

/// The built-in mapping from node_exporter and process-exporter series to the catalogue.
pub fn builtin_queries(s: &PrometheusSource) -> Vec<MetricQuery> {
    let w = s.window();
    let b = s.by("");
    let q = |metric, query: String, inst: Option<&str>| MetricQuery {
        metric,
        query,
        instance_label: inst.map(String::from),
    };
    let gauge = |metric, name: &str| q(metric, format!("max by ({b}) ({})", s.sel(name, "")), None);
    // Each core's modes add up to one second per second, so busy = 1 - (idle + iowait) /
    // cores. Counting the idle series instead of summing the rates of every mode cuts what
    // Prometheus evaluates by two thirds (2 s -> 0.65 s for 10,000 hosts, docs/prometheus.md).
    let cores = format!(
        "count by ({b}) ({})",
        s.sel("node_cpu_seconds_total", "mode=\"idle\"")
    );
    let cpu_idle = s.sel("node_cpu_seconds_total", "mode=~\"idle|iowait\"");
    let cpu_iowait = s.sel("node_cpu_seconds_total", "mode=\"iowait\"");
    let mem_total = s.sel("node_memory_MemTotal_bytes", "");
    let mem_avail = s.sel("node_memory_MemAvailable_bytes", "");
    let fs = pseudo_fs_matcher();
    let fs_size = s.sel("node_filesystem_size_bytes", &fs);
    let fs_free = s.sel("node_filesystem_free_bytes", &fs);
    let fs_avail = s.sel("node_filesystem_avail_bytes", &fs);
    let bm = s.by("mountpoint");
    let bd = s.by("device");
    let bc = s.by("cpu");
    let bg = s.by("groupname");
    let net = |metric, name: &str| {
        q(
            metric,
            format!("max by ({bd}) ({})", s.sel(name, "device!=\"lo\"")),
            Some("device"),
        )
    };
    let net_rate = |metric, name: &str| {
        q(
            metric,
            format!("sum by ({bd}) (rate({}[{w}]))", s.sel(name, "device!=\"lo\"")),
            Some("device"),
        )
    };
    let join = s.by("");
    vec![
        q(
            Metric::HostUp,
            format!("max by ({b}) ({})", s.sel("up", "")),
            None,
        ),
        q(
            Metric::HostUptime,
            format!(
                "max by ({b}) ({} - {})",
                s.sel("node_time_seconds", ""),
                s.sel("node_boot_time_seconds", "")
            ),
            None,
        ),
        q(
            Metric::HostPollMs,
            format!("1000 * max by ({b}) ({})", s.sel("scrape_duration_seconds", "")),
            None,
        ),
        q(
            Metric::CpuUsage,
            format!("100 * (1 - sum by ({b}) (rate({cpu_idle}[{w}])) / {cores})"),
            None,
        ),
        q(
            Metric::CpuCoreUsage,
            format!("100 * (1 - sum by ({bc}) (rate({cpu_idle}[{w}])))"),
            Some("cpu"),
        ),
        q(
            Metric::CpuIowait,
            format!("100 * sum by ({b}) (rate({cpu_iowait}[{w}])) / {cores}"),
            None,
        ),
        gauge(Metric::Load1, "node_load1"),
        gauge(Metric::Load5, "node_load5"),
        gauge(Metric::Load15, "node_load15"),
        q(
            Metric::LoadPerCore,
            format!("max by ({b}) ({}) / {cores}", s.sel("node_load1", "")),
            None,
        ),
        gauge(Metric::MemTotal, "node_memory_MemTotal_bytes"),
        q(
            Metric::MemUsed,
            format!("max by ({b}) ({mem_total} - {mem_avail})"),
            None,
        ),
        gauge(Metric::MemAvailable, "node_memory_MemAvailable_bytes"),
        q(
            Metric::MemUsedPct,
            format!("max by ({b}) (100 * (1 - {mem_avail} / {mem_total}))"),
            None,
        ),
        q(
            Metric::SwapUsedPct,
            format!(
                "max by ({b}) (100 * ({st} - {sf}) / clamp_min({st}, 1))",
                st = s.sel("node_memory_SwapTotal_bytes", ""),
                sf = s.sel("node_memory_SwapFree_bytes", "")
            ),
            None,
        ),
        q(
            Metric::DiskTotal,
            format!("max by ({bm}) ({fs_size})"),
            Some("mountpoint"),
        ),
        q(
            Metric::DiskUsed,
            format!("max by ({bm}) ({fs_size} - {fs_free})"),
            Some("mountpoint"),
        ),
        q(
            Metric::DiskFree,
            format!("max by ({bm}) ({fs_avail})"),
            Some("mountpoint"),
        ),
        q(
            Metric::DiskUsedPct,
            format!(
                "max by ({bm}) (100 * ({fs_size} - {fs_free}) / clamp_min({fs_size} - {fs_free} + {fs_avail}, 1))"
            ),
            Some("mountpoint"),
        ),
        net(Metric::NetRxBytes, "node_network_receive_bytes_total"),
        net(Metric::NetTxBytes, "node_network_transmit_bytes_total"),
        net(Metric::NetRxPackets, "node_network_receive_packets_total"),
        net(Metric::NetTxPackets, "node_network_transmit_packets_total"),
        net(Metric::NetRxErrors, "node_network_receive_errs_total"),
        net(Metric::NetTxErrors, "node_network_transmit_errs_total"),
        net(Metric::NetRxDrops, "node_network_receive_drop_total"),
        net(Metric::NetTxDrops, "node_network_transmit_drop_total"),
        net_rate(Metric::NetRxBps, "node_network_receive_bytes_total"),
        net_rate(Metric::NetTxBps, "node_network_transmit_bytes_total"),
        q(
            Metric::ProcCount,
            format!(
                "sum by ({bg}) ({})",
                s.sel("namedprocess_namegroup_num_procs", "")
            ),
            Some("groupname"),
        ),
        q(
            Metric::ProcCpu,
            format!(
                "100 * sum by ({bg}) (rate({}[{w}]))",
                s.sel("namedprocess_namegroup_cpu_seconds_total", "")
            ),
            Some("groupname"),
        ),
        q(
            Metric::ProcMem,
            format!(
                "100 * sum by ({bg}) ({}) / on ({join}) group_left max by ({join}) ({mem_total})",
                s.sel("namedprocess_namegroup_memory_bytes", "memtype=\"resident\"")
            ),
            Some("groupname"),
        ),
        q(
            Metric::ProcRss,
            format!(
                "sum by ({bg}) ({})",
                s.sel("namedprocess_namegroup_memory_bytes", "memtype=\"resident\"")
            ),
            Some("groupname"),
        ),
        q(
            Metric::ProcVms,
            format!(
                "sum by ({bg}) ({})",
                s.sel("namedprocess_namegroup_memory_bytes", "memtype=\"virtual\"")
            ),
            Some("groupname"),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Collection.

/// One host found in a round's answers.
#[derive(Debug)]
pub struct FoundHost {
    pub name: HostName,
    pub group: Option<String>,
    pub readings: Vec<Reading>,
    /// Its `up` series, when there is one.
    pub up: Option<f64>,
}

/// What one round of queries found.
#[derive(Debug, Default)]
pub struct Round {
    /// The hosts, in the order they were first seen.
    pub hosts: Vec<FoundHost>,
    /// `query name: message` for every query that failed.
    pub errors: Vec<String>,
    /// Whether every query failed for want of an answer (Prometheus unreachable).
    pub unreachable: bool,
    /// Whether every query failed because no answer came within the source's timeout (a
    /// hung Prometheus: the source row says `timeout`).
    pub timed_out: bool,
}

/// One series of a query's answer: its labels and value.
pub type Series = (std::collections::HashMap<String, String>, f64);

/// Folds query answers into per-host readings (pure; the tests feed it directly).
#[derive(Default)]
pub struct RoundBuilder {
    hosts: Vec<FoundHost>,
    index: FxHashMap<HostName, usize>,
    errors: Vec<String>,
    failures: usize,
    transport_failures: usize,
    timeouts: usize,
}

impl RoundBuilder {
    /// Adds the answer of one query; `names` shares host names between rounds.
    pub fn add(
        &mut self,
        source: &PrometheusSource,
        q: &MetricQuery,
        series: Vec<Series>,
        names: &mut FxHashMap<String, HostName>,
        interner: &mut Interner,
    ) {
        for (labels, value) in series {
            let Some(host) = labels.get(&source.host_label) else {
                continue;
            };
            let host = crate::model::sanitize(host);
            if host.is_empty() {
                continue;
            }
            let name = match names.get(&host) {
                Some(n) => n.clone(),
                None => {
                    let n: HostName = Arc::from(host.as_str());
                    names.insert(host, n.clone());
                    n
                }
            };
            let i = match self.index.get(&name) {
                Some(&i) => i,
                None => {
                    let group = source
                        .group_label
                        .as_ref()
                        .and_then(|g| labels.get(g))
                        .map(|g| crate::model::sanitize(g));
                    self.index.insert(name.clone(), self.hosts.len());
                    self.hosts.push(FoundHost {
                        name,
                        group,
                        readings: Vec::new(),
                        up: None,
                    });
                    self.hosts.len() - 1
                }
            };
            let entry = &mut self.hosts[i];
            if q.metric == Metric::HostUp {
                entry.up = Some(value);
                continue;
            }
            let instance = match &q.instance_label {
                Some(l) => interner.get_sanitized(labels.get(l).map(String::as_str).unwrap_or("")),
                None => crate::model::empty_instance(),
            };
            entry.readings.push(Reading {
                metric: q.metric,
                instance,
                value,
            });
        }
    }

    /// Records a failed query.
    pub fn fail(&mut self, q: &MetricQuery, message: String, transport: bool) {
        self.failures += 1;
        if transport {
            self.transport_failures += 1;
        }
        self.errors.push(format!("{}: {message}", q.metric));
    }

    /// Records a query that got no answer within `timeout` (a transport failure).
    pub fn timed_out(&mut self, q: &MetricQuery, timeout: Duration) {
        self.timeouts += 1;
        self.fail(q, no_answer_within(timeout), true);
    }

    pub fn finish(self, queries: usize) -> Round {
        Round {
            hosts: self.hosts,
            unreachable: queries > 0 && self.transport_failures == queries,
            timed_out: queries > 0 && self.timeouts == queries,
            errors: self.errors,
        }
    }
}

/// Whether a query failed for want of an answer within the client's timeout.
fn is_timeout<T>(result: &Result<T, prometheus_http_query::Error>) -> bool {
    matches!(result, Err(prometheus_http_query::Error::Client(e)) if e.inner().is_some_and(|e| e.is_timeout()))
}

fn no_answer_within(timeout: Duration) -> String {
    format!("no answer within {}", humantime::format_duration(timeout))
}

/// The series of a query's answer; an answer that is not an instant vector is an error.
pub fn series_of(data: prometheus_http_query::response::Data) -> Result<Vec<Series>, String> {
    match data {
        prometheus_http_query::response::Data::Vector(v) => Ok(v
            .into_iter()
            .map(|iv| {
                let (labels, sample) = iv.into_inner();
                (labels, sample.value())
            })
            .collect()),
        prometheus_http_query::response::Data::Scalar(_)
        | prometheus_http_query::response::Data::Matrix(_) => {
            Err("the query must return an instant vector".into())
        }
    }
}

/// An error with its causes (`error sending request: connection refused`).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Queries a Prometheus server every interval and feeds the engine.
pub struct Collector {
    source: Arc<PrometheusSource>,
    client: prometheus_http_query::Client,
    updates: mpsc::Sender<Update>,
    names: FxHashMap<String, HostName>,
    interner: Interner,
    /// Hosts already announced, with the status last sent.
    known: FxHashMap<HostName, (HostStatus, Option<String>)>,
    /// The source row's status last sent.
    own: Option<(HostStatus, Option<String>)>,
}

/// At most this many queries of one source in flight at once.
const PARALLEL_QUERIES: usize = 4;

impl Collector {
    pub fn new(source: Arc<PrometheusSource>, updates: mpsc::Sender<Update>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .no_proxy()
            .build()?;
        let client = prometheus_http_query::Client::from(http, &source.url)?;
        Ok(Collector {
            source,
            client,
            updates,
            names: FxHashMap::default(),
            interner: Interner::default(),
            known: FxHashMap::default(),
            own: None,
        })
    }

    /// Runs every query of one round (a few at a time), all evaluated at the same instant
    /// `at` (Unix seconds), and folds the answers.
    pub async fn query_round_at(&mut self, at: f64) -> Round {
        let time = format!("{at:.3}");
        let (client, source) = (self.client.clone(), self.source.clone());
        // Owned per-query futures (a borrowing closure would not be `Send` for every lifetime).
        let mut answers = futures::stream::iter(0..self.source.queries.len())
            .map(move |i| {
                let (client, query, time) = (client.clone(), source.queries[i].query.clone(), time.clone());
                async move { (i, client.query(query).query("time", time).get().await) }
            })
            .buffer_unordered(PARALLEL_QUERIES);
        let mut b = RoundBuilder::default();
        // Each query has the timeout; besides, a round in which no answer at all (timeouts
        // aside) came within the timeout stops there, the queries not yet answered failing
        // as timed out too. Otherwise a hung server, taking the queries a few at a time,
        // would hold a round for (queries / PARALLEL_QUERIES) timeouts and the source row
        // would say nothing for that long. A slow server that answers keeps its rounds.
        let timeout = self.source.timeout;
        let mut deadline = tokio::time::Instant::now() + timeout;
        let mut answered = vec![false; self.source.queries.len()];
        loop {
            let (i, result) = match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(answer)) => answer,
                Ok(None) => break,
                Err(_) => {
                    for (i, _) in answered.iter().enumerate().filter(|(_, a)| !**a) {
                        b.timed_out(&self.source.queries[i], timeout);
                    }
                    break;
                }
            };
            answered[i] = true;
            if !is_timeout(&result) {
                deadline = tokio::time::Instant::now() + timeout;
            }
            let q = &self.source.queries[i];
            match result {
                Ok(r) => match series_of(r.into_inner().0) {
                    Ok(series) => b.add(&self.source, q, series, &mut self.names, &mut self.interner),
                    Err(e) => b.fail(q, e, false),
                },
                Err(_) if is_timeout(&result) => b.timed_out(q, timeout),
                Err(e) => {
                    // No answer at all (refused, reset, no route) is a transport failure;
                    // an answer that is not Prometheus's (bad JSON, wrong media type, an
                    // HTTP error page) means the server is there but wrong.
                    let transport = matches!(&e, prometheus_http_query::Error::Client(c)
                        if c.inner().is_some_and(|r| !r.is_decode() && !r.is_status()));
                    b.fail(q, chain(&e), transport);
                }
            }
        }
        b.finish(self.source.queries.len())
    }

    async fn send(&self, u: Update) -> bool {
        self.updates.send(u).await.is_ok()
    }

    async fn set_status(&mut self, host: HostName, status: HostStatus, error: Option<String>) -> bool {
        let now = (status, error.clone());
        if self.known.get(&host) == Some(&now) {
            return true;
        }
        self.known.insert(host.clone(), now);
        self.send(Update::Status { host, status, error }).await
    }

    /// Sends what one round found; false once the engine is gone.
    pub async fn publish(&mut self, round: Round, took: Duration) -> bool {
        let src = self.source.name.clone();
        if self.own.is_none()
            && !self
                .send(Update::Discovered {
                    host: src.clone(),
                    group: Some("prometheus".to_string()),
                    via: Via::Prometheus,
                })
                .await
        {
            return false;
        }
        let (status, error) = if round.unreachable {
            (
                if round.timed_out {
                    HostStatus::Timeout
                } else {
                    HostStatus::Unreachable
                },
                round.errors.first().map(|e| {
                    let msg = e.split_once(": ").map_or(e.as_str(), |(_, m)| m);
                    format!("{}: {msg}", self.source.url)
                }),
            )
        } else if round.errors.is_empty() {
            (HostStatus::Up, None)
        } else {
            let more = round.errors.len() - 1;
            let mut msg = format!("query {}", round.errors[0]);
            if more > 0 {
                msg.push_str(&format!(" (and {more} more failing)"));
            }
            (HostStatus::Error, Some(msg))
        };
        if self.own.as_ref() != Some(&(status, error.clone())) {
            self.own = Some((status, error.clone()));
            if !self
                .send(Update::Status {
                    host: src.clone(),
                    status,
                    error,
                })
                .await
            {
                return false;
            }
        }
        if !self
            .send(Update::Sample(Sample {
                host: src.clone(),
                source: Source::External,
                readings: vec![Reading::host(Metric::HostPollMs, took.as_secs_f64() * 1000.0)],
                processes: Vec::new(),
            }))
            .await
        {
            return false;
        }
        if round.unreachable {
            let message = format!("via {src}: Prometheus does not answer");
            let hosts: Vec<HostName> = self.known.keys().cloned().collect();
            for h in hosts {
                if !self
                    .set_status(h, HostStatus::Unreachable, Some(message.clone()))
                    .await
                {
                    return false;
                }
            }
            return true;
        }
        let mut seen: FxHashSet<HostName> = FxHashSet::default();
        for FoundHost {
            name: host,
            group,
            readings,
            up,
        } in round.hosts
        {
            if host == src {
                continue;
            }
            if !self.known.contains_key(&host) {
                if !self
                    .send(Update::Discovered {
                        host: host.clone(),
                        group,
                        via: Via::Prometheus,
                    })
                    .await
                {
                    return false;
                }
                self.known.insert(host.clone(), (HostStatus::Connecting, None));
            }
            let (status, error) = match up {
                Some(v) if v < 1.0 => (
                    HostStatus::Unreachable,
                    Some(format!("{src}: target down (up = {v})")),
                ),
                _ => (HostStatus::Up, None),
            };
            if !self.set_status(host.clone(), status, error).await {
                return false;
            }
            seen.insert(host.clone());
            if !self
                .send(Update::Sample(Sample {
                    host,
                    source: Source::External,
                    readings,
                    processes: Vec::new(),
                }))
                .await
            {
                return false;
            }
        }
        let gone: Vec<HostName> = self
            .known
            .keys()
            .filter(|h| !seen.contains(*h))
            .cloned()
            .collect();
        for h in gone {
            let msg = format!("{src}: no series for this host any more");
            if !self.set_status(h, HostStatus::Unreachable, Some(msg)).await {
                return false;
            }
        }
        true
    }

    /// Polls until the engine goes away.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.source.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let started = Instant::now();
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let round = self.query_round_at(at).await;
            if !self.publish(round, started.elapsed()).await {
                return;
            }
        }
    }
}

/// Starts one task per `[[prometheus]]` source.
pub fn spawn_all(sources: &[PrometheusSource], updates: &mpsc::Sender<Update>) {
    for s in sources {
        match Collector::new(Arc::new(s.clone()), updates.clone()) {
            Ok(c) => {
                tokio::spawn(c.run());
            }
            Err(e) => {
                let host = s.name.clone();
                let updates = updates.clone();
                let error = Some(format!("cannot start the Prometheus client: {}", chain(&*e)));
                tokio::spawn(async move {
                    let _ = updates
                        .send(Update::Discovered {
                            host: host.clone(),
                            group: Some("prometheus".to_string()),
                            via: Via::Prometheus,
                        })
                        .await;
                    let _ = updates
                        .send(Update::Status {
                            host,
                            status: HostStatus::Error,
                            error,
                        })
                        .await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(extra: &str) -> PrometheusSource {
        let text = format!("[[prometheus]]\nurl = \"http://127.0.0.1:9090\"\n{extra}");
        let c = crate::config::parse(&text, "t.toml", None).expect("valid");
        c.prometheus[0].clone()
    }

    fn errs(text: &str) -> Vec<String> {
        match crate::config::parse(text, "t.toml", None) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn builtin_queries_cover_the_mapping_and_use_the_selector() {
        let s = source("selector = '{job=\"node\"}'\ngroup_label = \"team\"\nrate_window = \"30s\"\n");
        assert_eq!(&*s.name, "prometheus 127.0.0.1:9090");
        let q = |m: Metric| {
            s.queries
                .iter()
                .find(|q| q.metric == m)
                .map(|q| q.query.clone())
                .expect("query")
        };
        assert_eq!(
            q(Metric::Load1),
            "max by (instance, team) (node_load1{job=\"node\"})"
        );
        assert_eq!(q(Metric::HostUp), "max by (instance, team) (up{job=\"node\"})");
        assert!(
            q(Metric::CpuUsage)
                .contains("rate(node_cpu_seconds_total{mode=~\"idle|iowait\", job=\"node\"}[30000ms])")
        );
        assert!(q(Metric::NetRxBps).starts_with("sum by (instance, team, device) (rate("));
        // one query per metric, no duplicates
        let mut metrics: Vec<Metric> = s.queries.iter().map(|q| q.metric).collect();
        let n = metrics.len();
        metrics.dedup();
        assert_eq!(metrics.len(), n);
        assert!(n >= 34, "{n}");
    }

    #[test]
    fn user_metrics_replace_builtin_ones() {
        let s = source(
            "builtin = true\n[[prometheus.metric]]\nname = \"load.1\"\nquery = \"node_load5\"\n[[prometheus.metric]]\nname = \"ping.rtt_ms\"\nquery = \"probe_duration_seconds * 1000\"\n",
        );
        let load: Vec<&MetricQuery> = s.queries.iter().filter(|q| q.metric == Metric::Load1).collect();
        assert_eq!(load.len(), 1);
        assert_eq!(load[0].query, "node_load5");
        assert!(s.queries.iter().any(|q| q.metric == Metric::PingRtt));
        let s = source(
            "builtin = false\n[[prometheus.metric]]\nname = \"disk.used_pct\"\nquery = \"x\"\ninstance_label = \"mountpoint\"\n",
        );
        assert_eq!(
            s.queries,
            [MetricQuery {
                metric: Metric::DiskUsedPct,
                query: "x".into(),
                instance_label: Some("mountpoint".into())
            }]
        );
    }

    #[test]
    fn bad_keys_are_located_errors() {
        let e = errs(
            "[[prometheus]]\nurl = \"ftp://x\"\nselector = 'job=\"node\"'\nhost_label = \"in-stance\"\n[[prometheus.metric]]\nname = \"load1\"\nquery = \"node_load1\"\n",
        );
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(
            e[0].starts_with("t.toml:2:7: `url` in [[prometheus]]"),
            "{}",
            e[0]
        );
        assert!(e[1].starts_with("t.toml:3:12: `selector`"), "{}", e[1]);
        assert!(e[2].starts_with("t.toml:4:14: `host_label`"), "{}", e[2]);
        assert!(e[3].contains("did you mean `load.1`"), "{}", e[3]);
        let e = errs("[[prometheus]]\nurl = \"http://x\"\nselectr = \"{}\"\n");
        assert_eq!(
            e,
            ["unknown key `selectr` in [[prometheus]] at t.toml:3:1 — did you mean `selector`?"]
        );
        let e = errs(
            "[[prometheus]]\nurl = \"http://x\"\n[[prometheus.metric]]\nname = \"load.1\"\nqeury = \"x\"\n",
        );
        assert!(
            e[0].contains("unknown key `qeury` in [[prometheus.metric]]"),
            "{e:?}"
        );
        let e = errs("[[hosts]]\nnames = [\"a\"]\nvia = \"prometheus\"\n");
        assert!(
            e[0].contains("unknown variant `prometheus`, expected one of `ssh`, `local`, `ping`"),
            "{e:?}"
        );
    }

    #[test]
    fn a_prometheus_only_config_has_no_local_host() {
        let c = crate::config::parse("[[prometheus]]\nurl = \"http://127.0.0.1:1\"\n", "t.toml", None)
            .expect("valid");
        assert!(c.hosts.is_empty());
    }

    fn series(pairs: &[(&str, &str)], v: f64) -> Series {
        (
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            v,
        )
    }

    #[test]
    fn answers_fold_into_hosts() {
        let s = source("group_label = \"job\"\n");
        let q = |m: Metric| s.queries.iter().find(|q| q.metric == m).expect("q").clone();
        let mut names = FxHashMap::default();
        let mut interner = Interner::default();
        let mut b = RoundBuilder::default();
        b.add(
            &s,
            &q(Metric::HostUp),
            vec![
                series(&[("instance", "a:9100"), ("job", "node")], 1.0),
                series(&[("instance", "b:9100"), ("job", "node")], 0.0),
                series(&[("job", "node")], 1.0),
            ],
            &mut names,
            &mut interner,
        );
        b.add(
            &s,
            &q(Metric::DiskUsedPct),
            vec![
                series(&[("instance", "a:9100"), ("mountpoint", "/")], 40.0),
                series(&[("instance", "a:9100"), ("mountpoint", "/var\x1b[2J")], 90.0),
                series(&[("instance", "c:9100"), ("mountpoint", "/")], 10.0),
            ],
            &mut names,
            &mut interner,
        );
        b.fail(&q(Metric::Load1), "bad_data: parse error".into(), false);
        let r = b.finish(3);
        assert!(!r.unreachable);
        assert_eq!(r.errors, ["load.1: bad_data: parse error"]);
        let hosts: Vec<(&str, Option<&str>, usize, Option<f64>)> = r
            .hosts
            .iter()
            .map(|h| (&*h.name, h.group.as_deref(), h.readings.len(), h.up))
            .collect();
        assert_eq!(
            hosts,
            [
                ("a:9100", Some("node"), 2, Some(1.0)),
                ("b:9100", Some("node"), 0, Some(0.0)),
                ("c:9100", None, 1, None)
            ]
        );
        assert_eq!(&*r.hosts[0].readings[1].instance, "/var [2J");
        let mut b = RoundBuilder::default();
        b.fail(&q(Metric::Load1), "connection refused".into(), true);
        let r = b.finish(1);
        assert!(r.unreachable && !r.timed_out);
        // Every query timed out: unreachable, and said to be a timeout.
        let mut b = RoundBuilder::default();
        b.timed_out(&q(Metric::Load1), Duration::from_millis(1500));
        b.timed_out(&q(Metric::Load5), Duration::from_millis(1500));
        let r = b.finish(2);
        assert!(r.unreachable && r.timed_out);
        assert_eq!(r.errors[0], "load.1: no answer within 1s 500ms");
        // One of two: neither.
        let mut b = RoundBuilder::default();
        b.timed_out(&q(Metric::Load1), Duration::from_secs(1));
        let r = b.finish(2);
        assert!(!r.unreachable && !r.timed_out);
    }
}
