//! `--metrics-addr HOST:PORT`: serves the current snapshot at `/metrics` in the Prometheus
//! (OpenMetrics) text format, encoded by the Prometheus organisation's `prometheus-client`.
//!
//! Every current series follows the Prometheus conventions ([`exported`]): base units
//! (`lookout_ping_rtt_seconds`, `lookout_cpu_usage_ratio`), counters as `_total`
//! (`lookout_net_rx_bytes_total`), a `host` label and the instance in a label named for
//! what it is (`mount`, `device`, `core`, `name`), never `instance`, which Prometheus sets
//! itself at scrape time. The maximal-risk lines are `lookout_max_risk{metric,host,item}`;
//! each trigger line is `lookout_trigger_state{trigger,host,item,severity,state} 1`; and
//! lookout's own health is `lookout_hosts{status}`, `lookout_poll_duration_max_seconds`,
//! `lookout_snapshot_age_seconds`, `lookout_process_cpu_seconds_total` and
//! `lookout_process_resident_memory_bytes`. The page is built from the snapshot on each
//! scrape (a registry collector, no copy of the data kept between scrapes).
//!
//! The server is hyper's HTTP/1 connection driver on lookout's own tokio runtime: hyper is
//! already in the tree for the Prometheus and Alertmanager clients, and a scrape endpoint
//! needs no router, middleware or thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::model::{HostStatus, Kind, Metric, Unit};
use crate::snapshot::Snapshot;

/// How one registry metric is exported: its Prometheus name, type, the label its instance
/// goes in, and what lookout's value is divided by to be in the base unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub name: String,
    pub counter: bool,
    /// `None` for per-host metrics.
    pub label: Option<String>,
    pub divisor: f64,
}

/// Prometheus conventions from lookout's registry, for every metric alike (built-in and
/// registered at run time): base units (`_ms` -> `_seconds` divided by 1000, `_pct` ->
/// `_ratio` divided by 100, `_bps` -> `_bytes_per_second`), counters as `_total`, no
/// `_count` suffix (reserved for histograms), and the instance in a label named for what it
/// is (`mount`, `device`, `core`, `name`) rather than `instance`, which Prometheus sets.
pub fn exported(m: Metric) -> Exported {
    let info = m.info();
    let mut base: String = info
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let strip = |b: &mut String, suffix: &str| {
        if let Some(s) = b.strip_suffix(suffix) {
            *b = s.to_string();
        }
    };
    let mut divisor = 1.0;
    match info.unit {
        Unit::Millis => {
            strip(&mut base, "_ms");
            base.push_str("_seconds");
            divisor = 1000.0;
        }
        Unit::Seconds => {
            strip(&mut base, "_s");
            if !base.ends_with("_seconds") {
                base.push_str("_seconds");
            }
        }
        Unit::Percent => {
            strip(&mut base, "_pct");
            base.push_str("_ratio");
            divisor = 100.0;
        }
        Unit::BytesPerSec => {
            strip(&mut base, "_bps");
            base.push_str("_bytes_per_second");
        }
        Unit::Bytes if !base.ends_with("_bytes") => base.push_str("_bytes"),
        _ => {}
    }
    for reserved in ["_count", "_sum", "_bucket", "_total"] {
        if let Some(s) = base.strip_suffix(reserved) {
            // proc.count -> lookout_proc_processes; other names keep what they count.
            base = if info.metric == Metric::ProcCount {
                format!("{s}_processes")
            } else {
                format!("{s}{reserved}_value")
            };
        }
    }
    let counter = info.kind == Kind::Counter;
    if counter {
        base.push_str("_total");
    }
    let label = match info.instance {
        "" => None,
        "interface" => Some("device".to_string()),
        "instance" | "host" | "metric" | "job" => Some("item".to_string()),
        other => Some(
            other
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect(),
        ),
    };
    Exported {
        name: format!("lookout_{base}"),
        counter,
        label,
        divisor,
    }
}

/// The exported name of a registry metric (see [`exported`]).
pub fn series_name(m: Metric) -> String {
    exported(m).name
}

/// Encodes one snapshot on each scrape.
#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

type Labels = Vec<(&'static str, String)>;

fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    counter: bool,
    series: impl Iterator<Item = (Vec<(String, String)>, f64)>,
) -> Result<(), std::fmt::Error> {
    // The encoder adds `_total` to a counter's name itself.
    let (name, kind) = if counter {
        (name.strip_suffix("_total").unwrap_or(name), MetricType::Counter)
    } else {
        (name, MetricType::Gauge)
    };
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        if labels.is_empty() {
            // A lone value: no `{}` after the name.
            return if counter {
                prometheus_client::metrics::counter::ConstCounter::new(value.max(0.0)).encode(m)
            } else {
                ConstGauge::new(value).encode(m)
            };
        }
        let e = m.encode_family(&labels)?;
        if counter {
            prometheus_client::metrics::counter::ConstCounter::new(value.max(0.0)).encode(e)?;
        } else {
            ConstGauge::new(value).encode(e)?;
        }
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        name,
        help,
        false,
        series.map(|(l, v)| (l.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), v)),
    )
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = &self.0;
        let now = SystemTime::now();
        for info in Metric::all() {
            let ex = exported(info.metric);
            let help = format!("{} (lookout metric {})", info.description, info.name);
            let series = snap.hosts.iter().flat_map(|h| {
                let fresh = info.metric == Metric::HostUp || !h.is_stale(snap.taken_at, snap.interval);
                let ex = &ex;
                h.values(info.metric)
                    .filter(move |_| fresh)
                    .map(|r| {
                        let mut labels = vec![("host".to_string(), h.name.to_string())];
                        if let Some(l) = &ex.label {
                            labels.push((l.clone(), r.instance.to_string()));
                        }
                        (labels, r.value / ex.divisor)
                    })
                    .collect::<Vec<_>>()
            });
            family(&mut enc, &ex.name, &help, ex.counter, series)?;
        }
        gauge(
            &mut enc,
            "lookout_max_risk",
            "The worst value of each metric across the cluster (in the metric's exported base unit), with where it is",
            snap.max_risk.iter().map(|l| {
                (
                    vec![
                        ("metric", l.metric.name().to_string()),
                        ("host", l.host.to_string()),
                        ("item", l.instance.to_string()),
                    ],
                    l.value / exported(l.metric).divisor,
                )
            }),
        )?;
        gauge(
            &mut enc,
            "lookout_trigger_state",
            "1 for the current state of each trigger line",
            snap.triggers.iter().map(|t| {
                (
                    vec![
                        ("trigger", t.name.clone()),
                        ("host", t.host.clone()),
                        ("item", t.instance.clone()),
                        ("severity", t.severity.as_str().to_string()),
                        ("state", t.state.as_str().to_string()),
                    ],
                    1.0,
                )
            }),
        )?;
        let statuses = [
            HostStatus::Up,
            HostStatus::Connecting,
            HostStatus::Unreachable,
            HostStatus::Timeout,
            HostStatus::AuthFailed,
            HostStatus::HostKeyMismatch,
            HostStatus::Error,
        ];
        gauge(
            &mut enc,
            "lookout_hosts",
            "Watched hosts by status",
            statuses.iter().map(|s| {
                (
                    vec![("status", s.as_str().to_string())],
                    snap.count_status(*s) as f64,
                )
            }),
        )?;
        let poll_max = snap
            .hosts
            .iter()
            .filter_map(|h| h.value(Metric::HostPollMs, ""))
            .fold(0.0_f64, f64::max);
        gauge(
            &mut enc,
            "lookout_poll_duration_max_seconds",
            "The longest time any host took to collect one round",
            std::iter::once((Vec::new(), poll_max / 1000.0)),
        )?;
        gauge(
            &mut enc,
            "lookout_snapshot_age_seconds",
            "Age of the data served",
            std::iter::once((
                Vec::new(),
                now.duration_since(snap.taken_at)
                    .unwrap_or_default()
                    .as_secs_f64(),
            )),
        )?;
        let own = own_usage();
        if let Some(cpu) = own.cpu_seconds {
            let m = enc.encode_descriptor(
                "lookout_process_cpu_seconds",
                "CPU time lookout itself has used",
                None,
                MetricType::Counter,
            )?;
            prometheus_client::metrics::counter::ConstCounter::new(cpu).encode(m)?;
        }
        if let Some(rss) = own.rss_bytes {
            gauge(
                &mut enc,
                "lookout_process_resident_memory_bytes",
                "Resident memory of lookout itself",
                std::iter::once((Vec::new(), rss)),
            )?;
        }
        Ok(())
    }
}

/// lookout's own CPU time and resident memory, from /proc/self.
#[derive(Debug, Default, Clone, Copy)]
pub struct OwnUsage {
    pub cpu_seconds: Option<f64>,
    pub rss_bytes: Option<f64>,
}

pub fn own_usage() -> OwnUsage {
    let mut u = OwnUsage::default();
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        if let Some((_, rest)) = stat.rsplit_once(')') {
            let f: Vec<&str> = rest.split_ascii_whitespace().collect();
            if let (Some(ut), Some(st)) = (
                f.get(11).and_then(|v| v.parse::<f64>().ok()),
                f.get(12).and_then(|v| v.parse::<f64>().ok()),
            ) {
                let hz = rustix::param::clock_ticks_per_second() as f64;
                u.cpu_seconds = Some((ut + st) / hz.max(1.0));
            }
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(pages) = statm
            .split_ascii_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
    {
        u.rss_bytes = Some(pages * rustix::param::page_size() as f64);
    }
    u
}

/// The `/metrics` page of one snapshot.
pub fn render(snap: Arc<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector(snap)));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
        log::error!("cannot encode /metrics: {e}");
    }
    out
}

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The page in the classic Prometheus text format (0.0.4), for a client that does not ask
/// for OpenMetrics (curl, `promtool check metrics`): a counter's HELP and TYPE name the
/// `_total` series, and there is no `# UNIT` or `# EOF` line.
pub fn render_text(snap: Arc<Snapshot>) -> String {
    let open = render(snap);
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64 * counters.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}\n"));
                } else {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn respond(
    req: &Request<hyper::body::Incoming>,
    snaps: &watch::Receiver<Arc<Snapshot>>,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            let snap = snaps.borrow().clone();
            // Prometheus asks for OpenMetrics; anything else gets the classic text format.
            let open = req
                .headers()
                .get(hyper::header::ACCEPT)
                .and_then(|a| a.to_str().ok())
                .is_some_and(|a| a.contains("application/openmetrics-text"));
            if open {
                (StatusCode::OK, CONTENT_TYPE, render(snap))
            } else {
                (StatusCode::OK, TEXT_CONTENT_TYPE, render_text(snap))
            }
        }
        (&hyper::Method::GET, "/") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "lookout: metrics at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found; try /metrics\n".to_string(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

/// Binds `addr` and serves `/metrics` from the latest snapshot until the runtime stops.
/// Returns the bound address (useful with port 0).
pub async fn serve(addr: SocketAddr, snaps: watch::Receiver<Arc<Snapshot>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("metrics endpoint: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let snaps = snaps.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let resp = respond(&req, &snaps);
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
                {
                    log::debug!("metrics endpoint: connection ended: {e}");
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_usage_reads_proc_self() {
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let u = own_usage();
        assert!(u.cpu_seconds.is_some_and(|c| c > 0.0), "{u:?}");
        assert!(u.rss_bytes.is_some_and(|r| r > 1e6), "{u:?}");
    }

    #[test]
    fn names_and_lone_values() {
        assert_eq!(series_name(Metric::Load1), "lookout_load_1");
        assert_eq!(series_name(Metric::DiskUsedPct), "lookout_disk_used_ratio");
        assert_eq!(series_name(Metric::HostUptime), "lookout_host_uptime_seconds");
        assert_eq!(series_name(Metric::ProcCount), "lookout_proc_processes");
        let rtt = exported(Metric::PingRtt);
        assert_eq!(
            (rtt.name.as_str(), rtt.divisor),
            ("lookout_ping_rtt_seconds", 1000.0)
        );
        let rx = exported(Metric::NetRxBytes);
        assert_eq!(rx.name, "lookout_net_rx_bytes_total");
        assert!(rx.counter);
        assert_eq!(rx.label.as_deref(), Some("device"));
        assert_eq!(series_name(Metric::NetTxBps), "lookout_net_tx_bytes_per_second");
        assert_eq!(exported(Metric::DiskFree).label.as_deref(), Some("mount"));
        let page = render(Arc::new(Snapshot::empty(std::time::Duration::from_secs(1))));
        assert!(
            page.contains("\nlookout_poll_duration_max_seconds 0.0\n"),
            "{page}"
        );
        assert!(page.contains("\nlookout_hosts{status=\"up\"} 0.0\n"), "{page}");
        assert!(page.contains("\nlookout_process_cpu_seconds_total "), "{page}");
        assert!(page.ends_with("# EOF\n"));
    }
}
