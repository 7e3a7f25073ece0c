//! `/metrics` as Prometheus users expect it: the real `promtool check metrics` linter
//! (Debian package `prometheus`) finds nothing in a page holding every kind of series
//! (per-host, per-mount, per-interface counters and rates, processes, ping, triggers), in
//! the classic text format served to clients that do not ask for OpenMetrics.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use lookout::model::{HostStatus, Metric, Reading, Sample, Source, Update};

const PROMTOOL: &str = "/usr/bin/promtool";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_finds_nothing_to_complain_about() {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "promtool is missing: apt-get install -y prometheus"
    );
    let config = lookout::config::parse(
        "[general]\ninterval = \"500ms\"\n[[trigger]]\nname = \"disk filling\"\nmetric = \"disk.used_pct\"\nscope = \"each\"\nabove = 90\nseverity = \"critical\"\n",
        "t.toml",
        None,
    )
    .expect("valid");
    let running = lookout::runtime::start(Arc::new(config));
    let updates = running.updates();
    let web1: Arc<str> = Arc::from("web1");
    for u in [
        Update::Discovered {
            host: web1.clone(),
            group: None,
            via: lookout::config::Via::Prometheus,
        },
        Update::Status {
            host: web1.clone(),
            status: HostStatus::Up,
            error: None,
        },
    ] {
        updates.send(u).await.expect("engine");
    }
    let mut page = String::new();
    for round in 0..40u32 {
        let v = f64::from(round);
        let s = Sample {
            host: web1.clone(),
            source: Source::External,
            readings: vec![
                Reading::new(Metric::DiskUsedPct, "/var", 95.5),
                Reading::new(Metric::NetRxBytes, "eth0", 1000.0 * v),
                Reading::new(Metric::NetRxPackets, "eth0", 10.0 * v),
                Reading::new(Metric::ProcCount, "sshd", 2.0),
                Reading::host(Metric::PingRtt, 0.4),
                Reading::host(Metric::HostPollMs, 12.0),
                Reading::host(Metric::HostUptime, 1000.0),
            ],
            processes: Vec::new(),
        };
        updates.send(Update::Sample(s)).await.expect("engine");
        tokio::time::sleep(Duration::from_millis(250)).await;
        page = lookout::export::render_text(running.snapshots.borrow().clone());
        let wanted = [
            "lookout_net_rx_bytes_total{",
            "lookout_net_rx_bytes_per_second{",
            "lookout_ping_rtt_seconds{",
            "lookout_cpu_usage_ratio{",
            "lookout_trigger_state{",
        ];
        if wanted.iter().all(|w| page.contains(w)) {
            break;
        }
    }
    assert!(page.contains("lookout_net_rx_bytes_total{"), "{page}");
    assert!(
        page.contains("# TYPE lookout_net_rx_bytes_total counter"),
        "{page}"
    );
    assert!(!page.contains("# EOF"), "{page}");
    assert!(
        page.contains("lookout_disk_used_ratio{host=\"web1\",mount=\"/var\"} 0.955"),
        "{page}"
    );
    assert!(
        page.contains("lookout_ping_rtt_seconds{host=\"web1\"} 0.0004"),
        "{page}"
    );
    assert!(
        !page.contains("instance="),
        "no series may carry an instance label:\n{page}"
    );

    let mut lint = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("feed promtool");
    let out = lint.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{page}"
    );
    running.engine.abort();
}
