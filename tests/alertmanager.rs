//! A trigger sends its firing alert and its resolution to a real Alertmanager (v2 API),
//! retrying while Alertmanager is down; checked through Alertmanager's own API.

mod promstack;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lookout::event::EventKind;
use lookout::model::{HostStatus, Metric, Reading, Sample, Source, Update};
use lookout::triggers::action::ActionResult;
use promstack::*;

async fn alerts(url: &str) -> Vec<serde_json::Value> {
    match reqwest::get(format!("{url}/api/v2/alerts")).await {
        Ok(r) => r.json::<Vec<serde_json::Value>>().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn ours(all: Vec<serde_json::Value>) -> Option<serde_json::Value> {
    all.into_iter()
        .find(|a| a["labels"]["trigger"] == "disk filling" && a["labels"]["host"] == "web1")
}

fn parse_time(v: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339_weak(
        v.as_str()
            .expect("time")
            .trim_end_matches('Z')
            .split('.')
            .next()
            .expect("t"),
    )
    .expect("rfc3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_and_resolution_reach_alertmanager() {
    if !available(&[ALERTMANAGER]) {
        return;
    }
    let port = free_port();
    let am_url = format!("http://127.0.0.1:{port}");
    let config = lookout::config::parse(
        &format!(
            "[general]\ninterval = \"1s\"\n[alertmanager]\nresend = \"3s\"\n[[trigger]]\nname = \"disk filling\"\nmetric = \"disk.used_pct\"\nscope = \"each\"\nabove = 90\nclear = 80\nseverity = \"critical\"\nalertmanager = [\"{am_url}\"]\n"
        ),
        "t.toml",
        None,
    )
    .expect("valid");
    assert_eq!(config.triggers[0].alertmanager, std::slice::from_ref(&am_url));
    let mut running = lookout::runtime::start(Arc::new(config));
    let mut events = running.subscribe_from_start();
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
    let value = Arc::new(std::sync::atomic::AtomicU64::new(95f64.to_bits()));
    let feed = {
        let (updates, web1, value) = (updates.clone(), web1.clone(), value.clone());
        tokio::spawn(async move {
            loop {
                let v = f64::from_bits(value.load(std::sync::atomic::Ordering::Relaxed));
                let s = Sample {
                    host: web1.clone(),
                    source: Source::External,
                    readings: vec![Reading::new(Metric::DiskUsedPct, "/var", v)],
                    processes: Vec::new(),
                };
                if updates.send(Update::Sample(s)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    // Alertmanager is not there yet: the delivery fails and says so in the event log.
    let failed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(e) = events.recv().await
                && let EventKind::Action(a) = &e.kind
                && a.argv.first().map(String::as_str) == Some("alertmanager")
            {
                return a.clone();
            }
        }
    })
    .await
    .expect("a failed delivery in the event log");
    assert!(matches!(failed.result, ActionResult::Failed), "{failed:?}");
    assert_eq!(failed.argv[1], am_url);
    assert!(failed.error.is_some());

    // It comes up: the retry delivers the firing alert.
    let am = alertmanager_on(port);
    wait_ready(&am, "/-/ready").await;
    let alert = eventually(30, "the firing alert in Alertmanager", || {
        let url = am_url.clone();
        async move { ours(alerts(&url).await) }
    })
    .await;
    assert_eq!(alert["status"]["state"], "active", "{alert}");
    let labels = &alert["labels"];
    assert_eq!(labels["alertname"], "disk filling");
    assert_eq!(labels["instance"], "/var");
    assert_eq!(labels["metric"], "disk.used_pct");
    assert_eq!(labels["severity"], "critical");
    assert_eq!(alert["annotations"]["value"], "95");
    assert_eq!(alert["annotations"]["threshold"], "90");
    let ends = parse_time(&alert["endsAt"]);
    assert!(
        ends > SystemTime::now(),
        "endsAt in the future while firing: {alert}"
    );

    // Resent while firing: endsAt moves forward.
    let later = eventually(15, "a resend with a later endsAt", || {
        let url = am_url.clone();
        async move {
            let a = ours(alerts(&url).await)?;
            (parse_time(&a["endsAt"]) > ends).then_some(a)
        }
    })
    .await;
    assert_eq!(later["status"]["state"], "active");

    // Back under `clear`: resolved with endsAt = now, so Alertmanager drops it from the
    // active list well before the endsAt of the last resend (12s ahead) would have.
    value.store(50f64.to_bits(), std::sync::atomic::Ordering::Relaxed);
    let t0 = std::time::Instant::now();
    eventually(20, "the resolution in Alertmanager", || {
        let url = am_url.clone();
        async move { ours(alerts(&url).await).is_none().then_some(()) }
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "resolved by lookout, not expired: {:?}",
        t0.elapsed()
    );
    feed.abort();
    running.engine.abort();
}
