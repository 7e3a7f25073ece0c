//! Alertmanager as a receiver: triggers with `alertmanager = ["http://host:9093"]` send their
//! firing and resolved alerts to Alertmanager's v2 API (`POST /api/v2/alerts`).
//!
//! Alertmanager forgets an alert whose `endsAt` has passed, so while a trigger is firing the
//! alert is re-sent every `resend` (default 1m) with `endsAt` four resends ahead, as
//! Prometheus does; a resolution is sent with `endsAt` = the time it resolved and retried
//! until each URL has taken it. Deliveries run in their own tasks: a slow or dead
//! Alertmanager never holds up the engine, the actions or another Alertmanager. Failures go
//! to the event log (as action events whose argv is `alertmanager <url>`) and are retried.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use toml::Spanned;

use crate::clock::Clock;
use crate::config::{ConfigError, Locator};
use crate::event::{Event, EventKind};
use crate::triggers::action::ActionResult;
use crate::triggers::{ActionEvent, TriggerEvent, TriggerState};

/// `[alertmanager]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerFile {
    /// How often a firing alert is sent again.
    #[serde(default, with = "humantime_serde")]
    pub resend: Option<Duration>,
    /// Time allowed for one delivery.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct AlertmanagerSettings {
    pub resend: Duration,
    pub timeout: Duration,
}

impl AlertmanagerSettings {
    pub fn from_file(f: &AlertmanagerFile) -> Self {
        AlertmanagerSettings {
            resend: f
                .resend
                .unwrap_or(Duration::from_secs(60))
                .max(Duration::from_secs(1)),
            timeout: f.timeout.unwrap_or(Duration::from_secs(10)),
        }
    }
}

/// Checks a trigger's `alertmanager` list: http(s) base URLs.
pub fn validate_urls(urls: &[Spanned<String>], loc: &Locator, errors: &mut Vec<ConfigError>) -> Vec<String> {
    let mut out = Vec::new();
    for u in urls {
        let text = u.get_ref().trim().trim_end_matches('/');
        match reqwest::Url::parse(text) {
            Ok(p) if matches!(p.scheme(), "http" | "https") && p.host_str().is_some() => {
                if !out.iter().any(|x| x == text) {
                    out.push(text.to_string());
                }
            }
            _ => errors.push(loc.error(
                u.span(),
                format!("`alertmanager` in [[trigger]]: `{text}` is not an http:// or https:// URL"),
            )),
        }
    }
    out
}

/// One alert as Alertmanager's v2 API takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Which alert an event is about.
type Key = (String, String, String);

fn key(e: &TriggerEvent) -> Key {
    (e.trigger.clone(), e.host.clone(), e.instance.clone())
}

/// The labels and annotations of a trigger event (empty labels left out, as Prometheus does).
pub fn alert_for(e: &TriggerEvent, starts: SystemTime, ends: SystemTime) -> Alert {
    let mut labels = BTreeMap::new();
    for (k, v) in [
        ("alertname", e.trigger.as_str()),
        ("trigger", e.trigger.as_str()),
        ("host", e.host.as_str()),
        ("instance", e.instance.as_str()),
        ("metric", e.metric.name()),
        ("severity", e.severity.as_str()),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    let mut annotations = BTreeMap::new();
    if let Some(v) = e.value {
        annotations.insert("value".to_string(), format!("{v}"));
    }
    annotations.insert("threshold".to_string(), format!("{}", e.threshold));
    let place = [e.host.as_str(), e.instance.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    annotations.insert(
        "summary".to_string(),
        format!("{} {} {}", e.trigger, place, e.metric).trim().to_string(),
    );
    Alert {
        labels,
        annotations,
        starts_at: crate::model::rfc3339(starts),
        ends_at: crate::model::rfc3339(ends),
        generator_url: String::new(),
    }
}

/// Whether a trigger state means the alert is on (an acknowledged or silenced trigger is
/// still breaching; muting it is Alertmanager's business, not a resolution).
fn is_on(s: TriggerState) -> bool {
    matches!(
        s,
        TriggerState::Firing | TriggerState::Acknowledged | TriggerState::Silenced
    )
}

struct Active {
    event: TriggerEvent,
    starts: SystemTime,
    urls: Arc<[String]>,
}

/// Per-URL delivery state.
#[derive(Default)]
struct Target {
    /// Resolutions not yet taken by this URL, with their sequence numbers.
    resolved: Vec<(u64, Alert)>,
    next_send: Option<Instant>,
    in_flight: bool,
    /// Something changed while a delivery was in flight: send again when it returns.
    dirty: bool,
    failing: bool,
    failures: u32,
}

struct Outcome {
    url: String,
    /// Highest resolution sequence number the delivery carried.
    resolved_upto: u64,
    result: Result<(), String>,
    new_alerts: usize,
}

/// Sends trigger events to Alertmanager; run it with [`Notifier::serve`].
pub struct Notifier {
    settings: AlertmanagerSettings,
    /// Rule name -> URLs.
    rules: FxHashMap<String, Arc<[String]>>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
    active: BTreeMap<Key, Active>,
    targets: BTreeMap<String, Target>,
    seq: u64,
    /// Firing alerts not yet delivered once (their first delivery is reported in the log).
    fresh: usize,
}

/// Shortest wait before a failed delivery is tried again.
const RETRY_MIN: Duration = Duration::from_secs(1);

impl Notifier {
    /// `None` when no trigger names an Alertmanager.
    pub fn new(
        config: &crate::config::Config,
        clock: Arc<dyn Clock>,
        events: broadcast::Sender<Event>,
    ) -> Option<Self> {
        let rules: FxHashMap<String, Arc<[String]>> = config
            .triggers
            .iter()
            .filter(|r| !r.alertmanager.is_empty())
            .map(|r| (r.name.clone(), Arc::from(r.alertmanager.clone())))
            .collect();
        if rules.is_empty() {
            return None;
        }
        let client = match reqwest::Client::builder()
            .timeout(config.alertmanager.timeout)
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                log::error!("cannot start the Alertmanager client: {e}");
                return None;
            }
        };
        let targets = rules
            .values()
            .flat_map(|u| u.iter().cloned())
            .map(|u| (u, Target::default()))
            .collect();
        Some(Notifier {
            settings: config.alertmanager.clone(),
            rules,
            client,
            clock,
            events,
            active: BTreeMap::new(),
            targets,
            seq: 0,
            fresh: 0,
        })
    }

    /// How far ahead `endsAt` of a firing alert lies.
    fn hold(&self) -> Duration {
        self.settings.resend * 4
    }

    /// Takes one trigger event; returns the URLs that need a delivery now.
    fn on_event(&mut self, e: &TriggerEvent) -> Vec<String> {
        let Some(urls) = self.rules.get(&e.trigger).cloned() else {
            return Vec::new();
        };
        let k = key(e);
        let now = self.clock.now();
        if is_on(e.state) {
            match self.active.get_mut(&k) {
                Some(a) => {
                    // Same alert, newer value: it goes out with the next resend.
                    a.event = e.clone();
                    Vec::new()
                }
                None => {
                    self.active.insert(
                        k,
                        Active {
                            event: e.clone(),
                            starts: e.since,
                            urls: urls.clone(),
                        },
                    );
                    self.fresh += 1;
                    urls.to_vec()
                }
            }
        } else if let Some(a) = self.active.remove(&k) {
            let mut ev = a.event.clone();
            if e.value.is_some() {
                ev.value = e.value;
            }
            let alert = alert_for(&ev, a.starts, now);
            for u in a.urls.iter() {
                self.seq += 1;
                if let Some(t) = self.targets.get_mut(u) {
                    t.resolved.push((self.seq, alert.clone()));
                }
            }
            a.urls.to_vec()
        } else {
            Vec::new()
        }
    }

    /// The alerts one URL should get now: every active one, then its pending resolutions.
    fn batch(&self, url: &str) -> (Vec<Alert>, u64) {
        let now = self.clock.now();
        let ends = now + self.hold();
        let mut alerts: Vec<Alert> = self
            .active
            .values()
            .filter(|a| a.urls.iter().any(|u| u == url))
            .map(|a| alert_for(&a.event, a.starts, ends))
            .collect();
        let mut upto = 0;
        if let Some(t) = self.targets.get(url) {
            for (seq, a) in &t.resolved {
                alerts.push(a.clone());
                upto = upto.max(*seq);
            }
        }
        (alerts, upto)
    }

    fn deliver(&mut self, url: &str, done: &mpsc::Sender<Outcome>) {
        match self.targets.get_mut(url) {
            None => return,
            Some(t) if t.in_flight => {
                t.dirty = true;
                return;
            }
            Some(_) => {}
        }
        let (alerts, upto) = self.batch(url);
        let Some(t) = self.targets.get_mut(url) else {
            return;
        };
        t.next_send = Some(Instant::now() + self.settings.resend);
        if alerts.is_empty() {
            return;
        }
        t.in_flight = true;
        let new_alerts = std::mem::take(&mut self.fresh);
        let client = self.client.clone();
        let url = url.to_string();
        let done = done.clone();
        tokio::spawn(async move {
            let endpoint = format!("{url}/api/v2/alerts");
            let result = match client.post(&endpoint).json(&alerts).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    Err(format!("{status}: {}", crate::model::sanitize(&body)))
                }
                Err(e) => Err(crate::collectors::prometheus::chain(&e)),
            };
            let _ = done
                .send(Outcome {
                    url,
                    resolved_upto: upto,
                    result,
                    new_alerts,
                })
                .await;
        });
    }

    fn report(&self, url: &str, result: ActionResult, error: Option<String>, started: Instant) {
        let event = ActionEvent {
            trigger: "alertmanager".to_string(),
            host: String::new(),
            instance: String::new(),
            state: TriggerState::Firing,
            argv: vec!["alertmanager".to_string(), url.to_string()],
            result,
            exit_code: None,
            signal: None,
            duration_ms: started.elapsed().as_millis() as u64,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            error,
        };
        let _ = self
            .events
            .send(Event::new(self.clock.now(), EventKind::Action(event)));
    }

    fn on_outcome(&mut self, o: Outcome, done: &mpsc::Sender<Outcome>) {
        let resend = self.settings.resend;
        let Some(t) = self.targets.get_mut(&o.url) else {
            return;
        };
        t.in_flight = false;
        let report = match &o.result {
            Ok(()) => {
                t.resolved.retain(|(seq, _)| *seq > o.resolved_upto);
                let recovered = t.failing;
                t.failing = false;
                t.failures = 0;
                t.next_send = Some(Instant::now() + resend);
                (recovered || o.resolved_upto > 0 || o.new_alerts > 0).then_some((ActionResult::Ok, None))
            }
            Err(e) => {
                log::warn!("alertmanager {}: {e}", o.url);
                t.failures = t.failures.saturating_add(1);
                let backoff = RETRY_MIN * 2u32.saturating_pow(t.failures.min(10) - 1);
                t.next_send = Some(Instant::now() + backoff.min(resend));
                let first = !t.failing;
                t.failing = true;
                // A fresh alert that was not delivered still counts as fresh.
                self.fresh += o.new_alerts;
                first.then(|| (ActionResult::Failed, Some(e.clone())))
            }
        };
        let dirty = std::mem::take(&mut t.dirty);
        if let Some((result, error)) = report {
            self.report(&o.url, result, error, Instant::now());
        }
        if dirty && o.result.is_ok() {
            self.deliver(&o.url, done);
        }
    }

    /// Runs until the event channel closes.
    pub async fn serve(mut self, mut events: broadcast::Receiver<Event>) {
        let (done_tx, mut done_rx) = mpsc::channel(64);
        let mut tick = tokio::time::interval(RETRY_MIN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event { kind: EventKind::Trigger(t), .. }) => {
                        for url in self.on_event(&t) {
                            self.deliver(&url, &done_tx);
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("the Alertmanager notifier missed {n} events");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(o) = done_rx.recv() => self.on_outcome(o, &done_tx),
                _ = tick.tick() => {
                    let now = Instant::now();
                    let due: Vec<String> = self
                        .targets
                        .iter()
                        .filter(|(_, t)| t.next_send.is_some_and(|at| at <= now))
                        .map(|(u, _)| u.clone())
                        .collect();
                    for url in due {
                        self.deliver(&url, &done_tx);
                    }
                }
            }
        }
    }
}

/// Starts the notifier when some trigger names an Alertmanager.
pub fn spawn(config: &crate::config::Config, clock: Arc<dyn Clock>, events: &broadcast::Sender<Event>) {
    if let Some(n) = Notifier::new(config, clock, events.clone()) {
        tokio::spawn(n.serve(events.subscribe()));
    }
}
