//! Real Prometheus, node_exporter and Alertmanager (Debian's packages) started by the tests on
//! free loopback ports, each with its own config and data directory, killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PROMETHEUS: &str = "/usr/bin/prometheus";
pub const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
pub const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// Whether the programs are installed; under CI their absence is a failure.
pub fn available(programs: &[&str]) -> bool {
    let missing: Vec<&&str> = programs.iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "missing {missing:?}: scripts/test.sh installs prometheus, prometheus-node-exporter and prometheus-alertmanager"
    );
    eprintln!("skipping: {missing:?} not installed (scripts/test.sh installs them)");
    false
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A program started by a test; killed (and its directory removed) on drop.
pub struct Daemon {
    pub name: &'static str,
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Daemon {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(name: &'static str, program: &str, port: u16, dir: tempfile::TempDir, args: &[String]) -> Daemon {
    let log = std::fs::File::create(dir.path().join("log")).expect("log file");
    let child = Command::new(program)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Daemon {
        name,
        port,
        child,
        dir,
    }
}

/// Waits until `url` answers 200.
pub async fn wait_ready(d: &Daemon, path: &str) {
    let url = format!("{}{path}", d.url());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not ready at {url}:\n{}",
            d.name,
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn node_exporter() -> Daemon {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = [
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--collector.disable-defaults".into(),
        "--collector.cpu".into(),
        "--collector.meminfo".into(),
        "--collector.loadavg".into(),
        "--collector.filesystem".into(),
        "--collector.netdev".into(),
        "--collector.stat".into(),
        "--collector.time".into(),
    ]
    .to_vec();
    let d = spawn("node_exporter", NODE_EXPORTER, port, dir, &args);
    wait_ready(&d, "/metrics").await;
    d
}

/// A Prometheus with `scrape_configs` (YAML list items, indented by two spaces).
pub async fn prometheus(scrape_interval: &str, scrape_configs: &str) -> Daemon {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\nscrape_configs:\n{scrape_configs}"
    );
    let cfg: PathBuf = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, config).expect("config");
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--log.level=warn".into(),
    ];
    let d = spawn("prometheus", PROMETHEUS, port, dir, &args);
    wait_ready(&d, "/-/ready").await;
    d
}

/// An Alertmanager with a receiver that drops notifications (the tests read its API).
pub fn alertmanager_on(port: u16) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: drop\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: drop\n",
    )
    .expect("config");
    let args = vec![
        format!("--config.file={}", cfg.display()),
        format!("--storage.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".into(),
        "--log.level=warn".into(),
    ];
    spawn("alertmanager", ALERTMANAGER, port, dir, &args)
}

/// An instant query answered by Prometheus: (labels, value) per series.
pub async fn query(
    url: &str,
    promql: &str,
    at: Option<f64>,
) -> Vec<(serde_json::Map<String, serde_json::Value>, f64)> {
    let mut params = vec![("query", promql.to_string())];
    if let Some(t) = at {
        params.push(("time", format!("{t:.3}")));
    }
    let r: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/v1/query"))
        .query(&params)
        .send()
        .await
        .expect("query sent")
        .json()
        .await
        .expect("json answer");
    assert_eq!(r["status"], "success", "{promql}: {r}");
    r["data"]["result"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|s| {
            let labels = s["metric"].as_object().cloned().unwrap_or_default();
            let v: f64 = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("value");
            (labels, v)
        })
        .collect()
}

/// Polls `f` until it returns Some, or panics with `what` after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
