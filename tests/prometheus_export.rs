//! `--metrics-addr`: a real Prometheus scrapes lookout's /metrics and the series come back
//! through its query API.

mod promstack;

use std::sync::Arc;
use std::time::Duration;

use lookout::model::{HostStatus, Metric, Reading, Sample, Source, Update};
use promstack::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_lookout() {
    if !available(&[PROMETHEUS]) {
        return;
    }
    let port = free_port();
    let mut config = lookout::config::parse(
        "[general]\ninterval = \"1s\"\n[[trigger]]\nname = \"disk filling\"\nmetric = \"disk.used_pct\"\nscope = \"each\"\nabove = 90\nseverity = \"critical\"\n",
        "t.toml",
        None,
    )
    .expect("valid");
    config.metrics_addr = Some(format!("127.0.0.1:{port}").parse().expect("addr"));
    let local = config.hosts[0].name.clone();
    let running = lookout::runtime::start(Arc::new(config));
    // A discovered host fed by the test, with a full disk so a trigger fires.
    let updates = running.updates();
    let web1: Arc<str> = Arc::from("web1");
    updates
        .send(Update::Discovered {
            host: web1.clone(),
            group: Some("web".into()),
            via: lookout::config::Via::Prometheus,
        })
        .await
        .expect("engine");
    updates
        .send(Update::Status {
            host: web1.clone(),
            status: HostStatus::Up,
            error: None,
        })
        .await
        .expect("engine");
    let feed = {
        let updates = updates.clone();
        let web1 = web1.clone();
        tokio::spawn(async move {
            loop {
                let s = Sample {
                    host: web1.clone(),
                    source: Source::External,
                    readings: vec![Reading::new(Metric::DiskUsedPct, "/var \"x\"", 95.5)],
                    processes: Vec::new(),
                };
                if updates.send(Update::Sample(s)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // The page itself.
    let page = eventually(20, "a /metrics page with the local host", || async {
        let body = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .header("Accept", "application/openmetrics-text;version=1.0.0")
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        (body.contains("lookout_cpu_usage_ratio{") && body.contains("lookout_trigger_state{")).then_some(body)
    })
    .await;
    assert!(page.contains("# TYPE lookout_mem_used_ratio gauge"), "{page}");
    assert!(page.ends_with("# EOF\n"), "OpenMetrics text");
    assert!(
        page.contains("lookout_disk_used_ratio{host=\"web1\",mount=\"/var \\\"x\\\"\"} 0.955"),
        "{page}"
    );
    assert!(page.contains("lookout_process_cpu_seconds_total "), "{page}");
    // Without asking for OpenMetrics: the classic text format, counters' HELP on `_total`.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("answer");
    assert!(
        plain.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/plain; version=0.0.4"))
    );
    let plain = plain.text().await.expect("body");
    assert!(
        plain.contains("# HELP lookout_process_cpu_seconds_total ") && !plain.contains("# EOF"),
        "{plain}"
    );
    let missing = reqwest::get(format!("http://127.0.0.1:{port}/nope"))
        .await
        .expect("answer");
    assert_eq!(missing.status().as_u16(), 404);

    let prom = prometheus(
        "1s",
        &format!("  - job_name: lookout\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
    )
    .await;
    let url = prom.url();
    let q = |promql: String| {
        let url = url.clone();
        async move { query(&url, &promql, None).await }
    };
    let mem = eventually(30, "lookout_mem_total_bytes in Prometheus", || {
        let q = q(format!("lookout_mem_total_bytes{{host=\"{local}\"}}"));
        async move { q.await.first().map(|s| s.1) }
    })
    .await;
    let snap = running.snapshots.borrow().clone();
    assert_eq!(
        Some(mem),
        snap.host(&local).and_then(|h| h.value(Metric::MemTotal, ""))
    );
    let disk = q("lookout_disk_used_ratio{host=\"web1\"}".into()).await;
    assert_eq!(disk.len(), 1);
    assert_eq!(disk[0].0["mount"], "/var \"x\"");
    assert_eq!(disk[0].1, 0.955);
    let cpu = q(format!("lookout_cpu_usage_ratio{{host=\"{local}\"}}")).await;
    assert_eq!(cpu.len(), 1, "one series, no instance label for host metrics");
    let max_risk = q("lookout_max_risk{metric=\"disk.used_pct\"}".into()).await;
    assert_eq!(max_risk.len(), 1);
    assert_eq!(max_risk[0].0["host"], "web1");
    let firing = eventually(10, "the firing trigger in Prometheus", || {
        let q = q("lookout_trigger_state{trigger=\"disk filling\", state=\"firing\"}".into());
        async move { q.await.into_iter().next() }
    })
    .await;
    assert_eq!(firing.0["host"], "web1");
    assert_eq!(firing.0["severity"], "critical");
    let up = q("lookout_hosts{status=\"up\"}".into()).await;
    assert_eq!(up.first().map(|s| s.1), Some(2.0));
    let rss = q("lookout_process_resident_memory_bytes".into()).await;
    assert!(rss.first().is_some_and(|s| s.1 > 1e6), "{rss:?}");
    let cpu_total = q("lookout_process_cpu_seconds_total".into()).await;
    assert!(cpu_total.first().is_some_and(|s| s.1 > 0.0), "{cpu_total:?}");
    let poll = q("lookout_poll_duration_max_seconds".into()).await;
    assert_eq!(poll.len(), 1);
    feed.abort();
    running.engine.abort();
}
