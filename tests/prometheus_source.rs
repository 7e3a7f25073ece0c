//! Prometheus as a source, against a real Prometheus scraping three real node_exporters.

mod promstack;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lookout::collectors::prometheus::Collector;
use lookout::config::Via;
use lookout::model::{HostStatus, Metric};
use promstack::*;

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Three node_exporters scraped every second, plus the lookout config reading them.
async fn stack() -> (Vec<Daemon>, Daemon) {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(node_exporter().await);
    }
    let targets = nodes
        .iter()
        .map(|n| format!("'{}'", n.addr()))
        .collect::<Vec<_>>()
        .join(", ");
    let prom = prometheus(
        "1s",
        &format!("  - job_name: node\n    static_configs:\n      - targets: [{targets}]\n        labels:\n          team: web\n"),
    )
    .await;
    // Every target up, and enough scrapes for 5s rates.
    eventually(30, "three targets up", || async {
        let up = query(&prom.url(), "sum(up{job=\"node\"})", None).await;
        (up.first().map(|s| s.1) == Some(3.0)).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    (nodes, prom)
}

fn config(prom: &Daemon, extra: &str) -> lookout::config::Config {
    let text = format!(
        "[general]\ninterval = \"1s\"\n[[prometheus]]\nurl = \"{}\"\nselector = '{{job=\"node\"}}'\ngroup_label = \"team\"\nrate_window = \"5s\"\n{extra}",
        prom.url()
    );
    lookout::config::parse(&text, "t.toml", None).expect("valid config")
}

/// How many instant queries Prometheus has answered (from its own /metrics).
async fn query_requests(prom: &Daemon) -> f64 {
    let page = reqwest::get(format!("{}/metrics", prom.url()))
        .await
        .expect("prometheus /metrics")
        .text()
        .await
        .expect("text");
    page.lines()
        .filter(|l| {
            l.starts_with("prometheus_http_requests_total{") && l.contains("handler=\"/api/v1/query\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_agree_with_the_same_promql_queried_directly() {
    if !available(&[PROMETHEUS, NODE_EXPORTER]) {
        return;
    }
    let (nodes, prom) = stack().await;
    let config = config(&prom, "");
    let source = Arc::new(config.prometheus[0].clone());
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let mut collector = Collector::new(source.clone(), tx).expect("client");

    let t = now_secs() - 1.0;
    let before = query_requests(&prom).await;
    let round = collector.query_round_at(t).await;
    let after = query_requests(&prom).await;
    assert!(round.errors.is_empty(), "{:?}", round.errors);
    // One query per metric for all hosts, never one per host.
    assert_eq!(after - before, source.queries.len() as f64);

    let mut names: Vec<&str> = round.hosts.iter().map(|h| &*h.name).collect();
    names.sort_unstable();
    let mut want: Vec<String> = nodes.iter().map(Daemon::addr).collect();
    want.sort();
    assert_eq!(names, want);

    for found in &round.hosts {
        let (host, group, readings, up) = (&found.name, &found.group, &found.readings, &found.up);
        assert_eq!(group.as_deref(), Some("web"));
        assert_eq!(*up, Some(1.0));
        let value = |m: Metric, inst: &str| {
            readings
                .iter()
                .find(|r| r.metric == m && &*r.instance == inst)
                .map(|r| r.value)
                .unwrap_or_else(|| panic!("{host}: no {m} {inst:?}"))
        };
        let sel = format!("instance=\"{host}\"");
        let direct = |q: String| {
            let url = prom.url();
            async move {
                let r = query(&url, &q, Some(t)).await;
                assert_eq!(r.len(), 1, "{q}: {r:?}");
                r[0].1
            }
        };
        // Every catalogue metric the node_exporter mapping covers is there.
        for m in [
            Metric::HostUptime,
            Metric::HostPollMs,
            Metric::CpuUsage,
            Metric::CpuIowait,
            Metric::Load1,
            Metric::Load5,
            Metric::Load15,
            Metric::LoadPerCore,
            Metric::MemTotal,
            Metric::MemUsed,
            Metric::MemAvailable,
            Metric::MemUsedPct,
            Metric::SwapUsedPct,
            Metric::CpuCoreUsage,
            Metric::DiskTotal,
            Metric::DiskUsed,
            Metric::DiskFree,
            Metric::DiskUsedPct,
            Metric::NetRxBytes,
            Metric::NetTxBytes,
            Metric::NetRxBps,
            Metric::NetTxBps,
            Metric::NetRxErrors,
            Metric::NetTxDrops,
        ] {
            assert!(readings.iter().any(|r| r.metric == m), "{host}: no {m}");
        }
        let checks: Vec<(Metric, &str, String)> = vec![
            (
                Metric::MemTotal,
                "",
                format!("node_memory_MemTotal_bytes{{{sel}}}"),
            ),
            (
                Metric::MemUsedPct,
                "",
                format!(
                    "100 * (1 - node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}})"
                ),
            ),
            (Metric::Load1, "", format!("node_load1{{{sel}}}")),
            (
                Metric::LoadPerCore,
                "",
                format!(
                    "scalar(node_load1{{{sel}}}) / count(node_cpu_seconds_total{{{sel}, mode=\"idle\"}})"
                ),
            ),
            (
                Metric::HostUptime,
                "",
                format!("node_time_seconds{{{sel}}} - node_boot_time_seconds{{{sel}}}"),
            ),
            (
                Metric::CpuUsage,
                "",
                format!(
                    "100 * (1 - sum(rate(node_cpu_seconds_total{{{sel}, mode=~\"idle|iowait\"}}[5s])) / count(node_cpu_seconds_total{{{sel}, mode=\"idle\"}}))"
                ),
            ),
            (
                Metric::CpuCoreUsage,
                "0",
                format!(
                    "100 * (1 - sum(rate(node_cpu_seconds_total{{{sel}, cpu=\"0\", mode=~\"idle|iowait\"}}[5s])))"
                ),
            ),
            (
                Metric::DiskUsedPct,
                "/",
                // (max: the same mount point can be listed for more than one device)
                format!(
                    "max(100 * (node_filesystem_size_bytes{{{sel}, mountpoint=\"/\"}} - node_filesystem_free_bytes{{{sel}, mountpoint=\"/\"}}) / (node_filesystem_size_bytes{{{sel}, mountpoint=\"/\"}} - node_filesystem_free_bytes{{{sel}, mountpoint=\"/\"}} + node_filesystem_avail_bytes{{{sel}, mountpoint=\"/\"}}))"
                ),
            ),
            (
                Metric::DiskFree,
                "/",
                format!("max(node_filesystem_avail_bytes{{{sel}, mountpoint=\"/\"}})"),
            ),
        ];
        for (m, inst, q) in checks {
            let (ours, theirs) = (value(m, inst), direct(q.clone()).await);
            assert!(
                close(ours, theirs),
                "{host} {m} {inst:?}: lookout {ours}, PromQL {theirs} ({q})"
            );
        }
        // Network: every interface but lo, counters and Prometheus's own rates.
        let devices: Vec<String> = readings
            .iter()
            .filter(|r| r.metric == Metric::NetRxBps)
            .map(|r| r.instance.to_string())
            .collect();
        assert!(
            !devices.is_empty() && !devices.iter().any(|d| d == "lo"),
            "{devices:?}"
        );
        for d in &devices {
            let q = format!("rate(node_network_receive_bytes_total{{{sel}, device=\"{d}\"}}[5s])");
            let (ours, theirs) = (value(Metric::NetRxBps, d), direct(q.clone()).await);
            assert!(
                close(ours, theirs),
                "{host} rx_bps {d}: lookout {ours}, PromQL {theirs}"
            );
            let q = format!("node_network_transmit_bytes_total{{{sel}, device=\"{d}\"}}");
            let (ours, theirs) = (value(Metric::NetTxBytes, d), direct(q).await);
            assert!(
                close(ours, theirs),
                "{host} tx_bytes {d}: lookout {ours}, PromQL {theirs}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_hosts_are_rows_and_failures_are_status() {
    if !available(&[PROMETHEUS, NODE_EXPORTER]) {
        return;
    }
    let (nodes, mut prom) = stack().await;
    // A user query that Prometheus rejects: the source says so, the rest keeps flowing.
    let config = config(
        &prom,
        "[[prometheus.metric]]\nname = \"ping.rtt_ms\"\nquery = \"probe_duration_seconds{{\"\n",
    );
    let source_name = config.prometheus[0].name.clone();
    assert!(
        config.hosts.is_empty(),
        "no local host when only Prometheus is configured"
    );
    let running = lookout::runtime::start(Arc::new(config));
    let mut snaps = running.snapshots.clone();
    let snap = eventually(20, "three hosts with cpu values", || {
        let snap = snaps.borrow_and_update().clone();
        async move {
            let ready = snap
                .hosts
                .iter()
                .filter(|h| h.via == Via::Prometheus && h.status == HostStatus::Up)
                .filter(|h| h.value(Metric::CpuUsage, "").is_some())
                .count()
                == 3;
            ready.then_some(snap)
        }
    })
    .await;
    for n in &nodes {
        let h = snap.host(&n.addr()).expect("a row per target");
        assert_eq!(h.group.as_deref(), Some("web"));
        assert_eq!(h.value(Metric::HostUp, ""), Some(1.0));
        assert!(h.value(Metric::MemTotal, "").is_some_and(|v| v > 0.0));
    }
    let src = snap.host(&source_name).expect("the source's own row");
    assert_eq!(src.status, HostStatus::Error, "{:?}", src.error);
    let err = src.error.clone().unwrap_or_default();
    assert!(err.contains("ping.rtt_ms") && err.contains("bad_data"), "{err}");
    assert!(src.value(Metric::HostPollMs, "").is_some());
    // JSON snapshot carries the discovered hosts like any other.
    let json = serde_json::to_value(&*snap).expect("json");
    assert!(json["hosts"].as_array().is_some_and(|h| h.len() == 4), "{json}");

    // Prometheus goes away: the source row and its hosts say so.
    prom.kill();
    let url = prom.url();
    let snap = eventually(20, "source unreachable", || {
        let snap = snaps.borrow_and_update().clone();
        let source_name = source_name.clone();
        async move {
            let src = snap.host(&source_name)?;
            let hosts_down = snap
                .hosts
                .iter()
                .filter(|h| h.via == Via::Prometheus && *h.name != *source_name)
                .all(|h| h.status == HostStatus::Unreachable);
            (src.status == HostStatus::Unreachable && hosts_down).then_some(snap)
        }
    })
    .await;
    let src = snap.host(&source_name).expect("row");
    let err = src.error.clone().unwrap_or_default();
    assert!(err.contains(&url), "{err}");
    let h = snap.host(&nodes[0].addr()).expect("row");
    assert!(
        h.error.as_deref().is_some_and(|e| e.contains("does not answer")),
        "{:?}",
        h.error
    );
    running.engine.abort();
}
