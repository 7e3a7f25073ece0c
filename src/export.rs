//! `--metrics-addr HOST:PORT`: serves the current snapshot at `/metrics` in the Prometheus
//! (OpenMetrics) text format, encoded by the Prometheus organisation's `prometheus-client`.
//!
//! Every current series is `lookout_<metric>` (dots become underscores) with `host` and
//! `instance` labels; the maximal-risk lines are `lookout_max_risk{metric,host,instance}`;
//! each trigger line is `lookout_trigger_state{trigger,host,instance,severity,state} 1`; and
//! lookout's own health is `lookout_hosts{status}`, `lookout_poll_ms_max`,
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

use crate::model::{HostStatus, Metric};
use crate::snapshot::Snapshot;

/// The exported name of a catalogue metric: `lookout_` + the name with dots as underscores.
pub fn series_name(m: Metric) -> String {
    format!("lookout_{}", m.name().replace('.', "_"))
}

/// Encodes one snapshot on each scrape.
#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (Vec<(&'static str, String)>, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        if labels.is_empty() {
            // A lone value: no `{}` after the name.
            ConstGauge::new(value).encode(m)?;
            return Ok(());
        }
        let e = m.encode_family(&labels)?;
        ConstGauge::new(value).encode(e)?;
    }
    Ok(())
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = &self.0;
        let now = SystemTime::now();
        for info in Metric::all() {
            let name = series_name(info.metric);
            let help = format!("{} ({})", info.description, info.name);
            let series = snap.hosts.iter().flat_map(|h| {
                let fresh = info.metric == Metric::HostUp || !h.is_stale(snap.taken_at, snap.interval);
                h.values(info.metric)
                    .filter(move |_| fresh)
                    .map(|r| {
                        (
                            vec![("host", h.name.to_string()), ("instance", r.instance.to_string())],
                            r.value,
                        )
                    })
                    .collect::<Vec<_>>()
            });
            gauge(&mut enc, &name, &help, series)?;
        }
        gauge(
            &mut enc,
            "lookout_max_risk",
            "The worst value of each metric across the cluster, with where it is",
            snap.max_risk.iter().map(|l| {
                (
                    vec![
                        ("metric", l.metric.name().to_string()),
                        ("host", l.host.to_string()),
                        ("instance", l.instance.to_string()),
                    ],
                    l.value,
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
                        ("instance", t.instance.clone()),
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
            "lookout_poll_ms_max",
            "The longest time any host took to collect one round, ms",
            std::iter::once((Vec::new(), poll_max)),
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

fn respond(
    req: &Request<hyper::body::Incoming>,
    snaps: &watch::Receiver<Arc<Snapshot>>,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match (req.method(), req.uri().path()) {
        (&hyper::Method::GET, "/metrics") => {
            let snap = snaps.borrow().clone();
            (StatusCode::OK, CONTENT_TYPE, render(snap))
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
        assert_eq!(series_name(Metric::DiskUsedPct), "lookout_disk_used_pct");
        let page = render(Arc::new(Snapshot::empty(std::time::Duration::from_secs(1))));
        assert!(page.contains("\nlookout_poll_ms_max 0.0\n"), "{page}");
        assert!(page.contains("\nlookout_hosts{status=\"up\"} 0.0\n"), "{page}");
        assert!(page.contains("\nlookout_process_cpu_seconds_total "), "{page}");
        assert!(page.ends_with("# EOF\n"));
    }
}
