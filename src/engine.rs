//! The engine: the single writer of lookout's state.
//!
//! Collectors send [`Update`]s; the engine applies them to per-host state, derives rates,
//! keeps history, computes the maximal-risk line of every metric, evaluates triggers and
//! publishes an immutable [`Snapshot`]. It is plain synchronous code driven by updates and an
//! injected [`Clock`], so tests can script it; [`run`] is the thin async loop around it.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, mpsc, watch};

use crate::clock::Clock;
use crate::config::{Config, Via};
use crate::event::{Event, EventKind};
use crate::model::{
    CATALOGUE, CheckReport, HostName, HostStatus, Metric, Risk, Sample, Source, Update, sanitize,
};
use crate::snapshot::{HostView, MaxRiskLine, Snapshot};
use crate::store::{HostHistory, RateTracker};
use crate::triggers::{Command, TriggerSet};

mod reload;

struct HostState {
    view: Arc<HostView>,
    rates: RateTracker,
    /// This host's worst reading of each metric with a risk direction: (index in
    /// `view.metrics()`, value), [`NONE`] where it has none. Kept at ingest, so the
    /// max-risk lines compare a few dozen inline values per host instead of walking every
    /// reading of every host on each flush.
    /// Indexed by [`Metric::index`]; shorter than the registry when later metrics were
    /// registered after the host's last sample (the missing ones are [`NONE`]).
    worst: Vec<(u32, f64)>,
    /// What [`fill_worst`] said of the readings `worst` was folded from.
    worst_split: bool,
}

const NONE: (u32, f64) = (u32::MAX, 0.0);
const CATALOGUE_LEN: usize = CATALOGUE.len();

/// The worst reading of each metric in a view (ties go to the instance reported first),
/// into a kept vector: a host's is refilled on every sample, and a new one each time was
/// an allocation per host per round. Returns whether the view's own parts hold
/// only catalogue metrics and its checks only registered ones (then [`update_worst`] may
/// refold one region alone).
fn fill_worst(view: &HostView, worst: &mut Vec<(u32, f64)>) -> bool {
    worst.clear();
    worst.resize(CATALOGUE_LEN, NONE);
    let own = worst_of_own(view, worst);
    let checks = worst_of_checks(view, worst);
    own && checks
}

/// Where a view's check readings start in [`HostView::metrics`]: after `host.up` and its
/// own parts (system, ping, external).
fn checks_offset(view: &HostView) -> usize {
    1 + view.system.len() + view.ping.len() + view.external.len()
}

/// Folds `host.up` and the view's own parts into `worst`; true if they hold only catalogue
/// metrics.
fn worst_of_own(view: &HostView, worst: &mut Vec<(u32, f64)>) -> bool {
    let own = std::iter::once(&view.up)
        .chain(view.system.iter())
        .chain(view.ping.iter())
        .chain(view.external.iter());
    let mut catalogue = true;
    for (i, r) in own.enumerate() {
        catalogue &= r.metric.index() < CATALOGUE_LEN;
        fold_worst(worst, i, r, r.metric.risk());
    }
    catalogue
}

/// Folds the view's check readings into `worst`; true if they hold only registered
/// metrics (past the catalogue). A report's readings share one or two metrics, so the
/// registry is asked for a risk only when the metric changes.
fn worst_of_checks(view: &HostView, worst: &mut Vec<(u32, f64)>) -> bool {
    let mut i = checks_offset(view);
    let mut last: Option<(Metric, Risk)> = None;
    let mut registered = true;
    for c in view.checks.iter() {
        for r in &c.readings {
            let risk = match last {
                Some((m, risk)) if m == r.metric => risk,
                _ => {
                    let risk = r.metric.risk();
                    last = Some((r.metric, risk));
                    risk
                }
            };
            registered &= r.metric.index() >= CATALOGUE_LEN;
            fold_worst(worst, i, r, risk);
            i += 1;
        }
    }
    registered
}

fn fold_worst(worst: &mut Vec<(u32, f64)>, i: usize, r: &crate::model::Reading, risk: Risk) {
    if risk == Risk::None {
        return;
    }
    let m = r.metric.index();
    if m >= worst.len() {
        worst.resize(m + 1, NONE);
    }
    let slot = &mut worst[m];
    if slot.0 == u32::MAX || risk.is_worse(r.value, slot.1) {
        *slot = (i as u32, r.value);
    }
}

/// Brings `worst` from `old`'s view to `new`'s, refolding only the region whose readings
/// changed: a check batch leaves the catalogue's metrics alone, a sample leaves the checks'
/// (as long as their positions stay). Anything else is a full refill. `split` is what
/// [`fill_worst`] returned for the readings `worst` holds, and is kept up to date.
fn update_worst(old: &HostView, new: &HostView, worst: &mut Vec<(u32, f64)>, split: &mut bool) {
    let own_same = Arc::ptr_eq(&old.system, &new.system)
        && Arc::ptr_eq(&old.ping, &new.ping)
        && Arc::ptr_eq(&old.external, &new.external)
        && old.up.value.to_bits() == new.up.value.to_bits();
    let checks_same = Arc::ptr_eq(&old.checks, &new.checks);
    match (own_same, checks_same) {
        (true, true) => {}
        (true, false) if *split => {
            worst.truncate(CATALOGUE_LEN);
            if !worst_of_checks(new, worst) {
                *split = fill_worst(new, worst);
            }
        }
        (false, true) if *split && checks_offset(old) == checks_offset(new) => {
            let checks = worst.split_off(CATALOGUE_LEN);
            worst.clear();
            worst.resize(CATALOGUE_LEN, NONE);
            if worst_of_own(new, worst) {
                worst.extend(checks);
            } else {
                *split = fill_worst(new, worst);
            }
        }
        _ => *split = fill_worst(new, worst),
    }
}

impl HostState {
    fn new(name: HostName, group: Option<String>, via: Via, cap: usize) -> Self {
        let status = if via == Via::Local {
            HostStatus::Up
        } else {
            HostStatus::Connecting
        };
        let view = HostView {
            name,
            group,
            history: Arc::new(RwLock::new(HostHistory::new(cap))),
            ..HostView::new("", via, status, Vec::new())
        };
        let mut worst = Vec::new();
        let worst_split = fill_worst(&view, &mut worst);
        HostState {
            worst,
            worst_split,
            view: Arc::new(view),
            rates: RateTracker::default(),
        }
    }
}

pub struct Engine {
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    hosts: Vec<HostState>,
    index: FxHashMap<HostName, usize>,
    triggers: TriggerSet,
    seq: u64,
    /// Whether anything changed since the last snapshot.
    dirty: bool,
    events: Vec<Event>,
    last: Option<Arc<Snapshot>>,
    /// The maximal-risk lines of the current data, and when they were computed (staleness
    /// moves with time: see [`cached_max_risk`](Self::cached_max_risk)).
    max_risk: Option<(SystemTime, Arc<Vec<MaxRiskLine>>)>,
    /// Scratch for [`tick`](Self::tick), empty between calls.
    views: Vec<Arc<HostView>>,
}

impl Engine {
    pub fn new(config: Arc<Config>, clock: Arc<dyn Clock>) -> Self {
        let cap = config.general.history_len();
        let hosts: Vec<HostState> = config
            .hosts
            .iter()
            .map(|h| HostState::new(h.name.clone(), h.group.clone(), h.via, cap))
            .collect();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.view.name.clone(), i))
            .collect();
        let triggers = TriggerSet::new(config.triggers.clone(), config.general.interval);
        Engine {
            config,
            clock,
            hosts,
            index,
            triggers,
            seq: 0,
            dirty: true,
            events: Vec::new(),
            last: None,
            max_risk: None,
            views: Vec::new(),
        }
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Applies one update from a collector.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Sample(sample) => self.apply_sample(sample),
            Update::Status { host, status, error } => self.apply_status(&host, status, error),
            Update::Discovered { host, group, via } => self.add_host(host, group, via),
            Update::Checks { host, reports } => self.apply_checks(&host, reports),
        }
    }

    /// Each check's report replaces its previous one on that host (kept in config order);
    /// the host's view is rebuilt once for all of them.
    fn apply_checks(&mut self, host: &HostName, reports: Vec<CheckReport>) {
        let Some(&i) = self.index.get(host) else {
            return;
        };
        let order = |name: &str| self.config.checks.iter().position(|c| &*c.name == name);
        let mut checks = Vec::clone(&self.hosts[i].view.checks);
        for mut report in reports {
            report.readings.retain(|r| r.value.is_finite());
            let at = order(&report.name);
            let report = Arc::new(report);
            match checks.iter().position(|c| c.name == report.name) {
                Some(k) => checks[k] = report,
                None => {
                    let k = checks
                        .iter()
                        .position(|c| order(&c.name) > at)
                        .unwrap_or(checks.len());
                    checks.insert(k, report);
                }
            }
        }
        self.rebuild_view(i, |v| v.checks = Arc::new(checks));
    }

    /// Adds a host found at run time (no-op for a known name).
    fn add_host(&mut self, host: HostName, group: Option<String>, via: Via) {
        if self.index.contains_key(&host) {
            return;
        }
        let cap = self.config.general.history_len();
        self.index.insert(host.clone(), self.hosts.len());
        self.hosts.push(HostState::new(host, group, via, cap));
        self.dirty = true;
        self.max_risk = None;
    }

    fn apply_sample(&mut self, sample: Sample) {
        let Some(&i) = self.index.get(&sample.host) else {
            log::debug!("sample for unknown host {}", sample.host);
            return;
        };
        let now = self.clock.now();
        let Sample {
            source,
            mut readings,
            processes,
            ..
        } = sample;
        // host.up is the engine's to derive from the status, whatever a source says.
        readings.retain(|r| r.value.is_finite() && r.metric != Metric::HostUp);
        let h = &mut self.hosts[i];
        // An external source (Prometheus) sends its own rates, computed over its scrapes;
        // deltas between our polls of a value that changes only per scrape would be wrong.
        if source != Source::External {
            let mut rates = Vec::new();
            h.rates.derive(&readings, now, &mut rates);
            readings.append(&mut rates);
        }
        if let Ok(mut hist) = h.view.history.write() {
            hist.record(source, &readings);
        }
        let is_primary = match source {
            Source::Ping => h.view.via == Via::Ping,
            Source::System | Source::External => h.view.via != Via::Ping,
        };
        let readings = Arc::new(readings);
        self.rebuild_view(i, |v| {
            match source {
                Source::System => {
                    v.system = readings;
                    v.processes = Arc::new(processes);
                }
                Source::Ping => v.ping = readings,
                Source::External => v.external = readings,
            }
            if is_primary {
                v.last_update = Some(now);
                v.rounds += 1;
            }
        });
    }

    fn apply_status(&mut self, host: &HostName, status: HostStatus, error: Option<String>) {
        let Some(&i) = self.index.get(host) else {
            return;
        };
        let error = error.map(|e| sanitize(&e)).filter(|e| !e.is_empty());
        let view = &self.hosts[i].view;
        if view.status == status && view.error == error {
            return;
        }
        let h = &mut self.hosts[i];
        let gone = status != HostStatus::Up && h.view.via != Via::Ping;
        if gone {
            // Counter baselines of a host that stopped answering are void (it may reboot).
            h.rates.forget();
        }
        let now = self.clock.now();
        self.events.push(Event::new(
            now,
            EventKind::HostStatus {
                host: host.clone(),
                status,
                error: error.clone(),
            },
        ));
        self.rebuild_view(i, |v| {
            v.status = status;
            v.error = error;
            if gone {
                // Values from a host that no longer answers are not current.
                v.system = Arc::default();
                v.processes = Arc::default();
                v.checks = Arc::default();
            }
        });
    }

    /// Publishes a new view of one host: a copy of the old one (a few reference counts, no
    /// readings copied) changed by `edit`. Snapshots holding the old view keep it unchanged.
    fn rebuild_view(&mut self, i: usize, edit: impl FnOnce(&mut HostView)) {
        let h = &mut self.hosts[i];
        let mut view = HostView::clone(&h.view);
        edit(&mut view);
        view.up.value = if view.status == HostStatus::Up { 1.0 } else { 0.0 };
        update_worst(&h.view, &view, &mut h.worst, &mut h.worst_split);
        h.view = Arc::new(view);
        self.dirty = true;
        self.max_risk = None;
    }

    /// A command from a front end (acknowledge, silence). Reconnects are the collectors'.
    pub fn command(&mut self, cmd: &Command) {
        if let Command::Reload(req) = cmd {
            req.answer(self.reload(req.config.clone()));
            return;
        }
        let now = self.clock.now();
        let events = self.triggers.command(cmd, now);
        if !events.is_empty() {
            self.dirty = true;
        }
        self.events
            .extend(events.into_iter().map(|t| Event::new(now, EventKind::Trigger(t))));
    }

    /// The maximal-risk lines, computed at most once per change and clock reading. Time
    /// matters only through staleness (three intervals), so lines computed a moment ago
    /// still hold: the snapshot published right after a tick reuses the tick's (computing
    /// them twice per flush was a twentieth of lookout's CPU at 1,000 hosts).
    fn cached_max_risk(&mut self, now: SystemTime) -> Arc<Vec<MaxRiskLine>> {
        const REUSE: Duration = Duration::from_millis(20);
        match &self.max_risk {
            Some((at, lines)) if now.duration_since(*at).is_ok_and(|d| d < REUSE) => lines.clone(),
            _ => {
                let lines = Arc::new(self.max_risk(now));
                self.max_risk = Some((now, lines.clone()));
                lines
            }
        }
    }

    /// The maximal-risk line of every metric over fresh data; ties go to the host listed first
    /// (then the instance reported first), so the line does not flicker between equals.
    pub fn max_risk(&self, now: SystemTime) -> Vec<MaxRiskLine> {
        let hosts = self.hosts.iter().map(|h| (&h.view, h.worst.as_slice()));
        max_risk_lines(hosts, now, self.config.general.interval)
    }

    /// Evaluates triggers against the current data; call it on every clock tick as well as
    /// after updates so that `for` durations and staleness advance without new data.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        // A kept vector: a new one per tick was a large allocation at 1,000 hosts.
        let mut views = std::mem::take(&mut self.views);
        views.extend(self.hosts.iter().map(|h| h.view.clone()));
        let max_risk = self.cached_max_risk(now);
        let mut events = self.triggers.evaluate(now, &views, &max_risk);
        crate::collectors::checks::attach_messages(&self.config.checks, &views, &mut events);
        // Emptied at once, so that no replaced view outlives this tick.
        views.clear();
        self.views = views;
        if !events.is_empty() || self.triggers.take_changed() {
            self.dirty = true;
        }
        self.events
            .extend(events.into_iter().map(|t| Event::new(now, EventKind::Trigger(t))));
    }

    /// Whether there is something new to publish.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The current snapshot (rebuilt only when something changed).
    pub fn snapshot(&mut self) -> Arc<Snapshot> {
        if let (false, Some(last)) = (self.dirty, &self.last) {
            return last.clone();
        }
        let now = self.clock.now();
        self.seq += 1;
        let snap = Arc::new(Snapshot {
            taken_at: now,
            seq: self.seq,
            interval: self.config.general.interval,
            hosts: self.hosts.iter().map(|h| h.view.clone()).collect(),
            max_risk: Vec::clone(&self.cached_max_risk(now)),
            triggers: self.triggers.views(),
        });
        self.dirty = false;
        self.last = Some(snap.clone());
        snap
    }

    /// Events produced since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn triggers(&self) -> &TriggerSet {
        &self.triggers
    }
}

/// Channels that connect collectors and front ends to a running engine.
pub struct EngineChannels {
    pub updates: mpsc::Receiver<Update>,
    pub commands: mpsc::Receiver<Command>,
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    pub events: broadcast::Sender<Event>,
}

/// How often triggers are re-evaluated without new data (for `for` countdowns, staleness).
pub const TICK: Duration = Duration::from_millis(250);

/// Updates arriving closer together than this share one trigger evaluation and one
/// snapshot. With 1,000 hosts at a 2 s interval a sample arrives every 2 ms on average;
/// evaluating triggers and publishing after each one cost most of lookout's CPU
/// (docs/fleet.md). The first update after a quiet spell is still published at once.
/// Equal to [`TICK`]: with the tick restarted after every flush, a busy engine evaluates
/// four times a second (at 100 ms, max-risk and triggers were a sixth of lookout's CPU
/// at 1,000 hosts), and nothing waits longer than a tick to be seen.
pub const COALESCE: Duration = TICK;

/// Drives an engine until the update channel closes: applies updates as they arrive,
/// evaluates triggers, publishes snapshots and broadcasts events (actions are run by the
/// receivers) at most once per [`COALESCE`] for updates, and on every [`TICK`] and command.
pub async fn run(mut engine: Engine, mut ch: EngineChannels) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_flush = tokio::time::Instant::now()
        .checked_sub(COALESCE)
        .unwrap_or_else(tokio::time::Instant::now);
    // When applied updates wait for their evaluation.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let flush = tokio::select! {
            update = ch.updates.recv() => {
                let Some(update) = update else { break };
                engine.apply(update);
                while let Ok(u) = ch.updates.try_recv() {
                    engine.apply(u);
                }
                let at = last_flush + COALESCE;
                if due.is_none() && at <= tokio::time::Instant::now() {
                    true
                } else {
                    due.get_or_insert(at);
                    false
                }
            }
            Some(cmd) = ch.commands.recv() => {
                engine.command(&cmd);
                true
            }
            _ = tick.tick() => true,
            () = sleep_until_due(due) => true,
        };
        if !flush {
            continue;
        }
        due = None;
        last_flush = tokio::time::Instant::now();
        // A flush for updates also advances time-based state: the next tick can wait.
        tick.reset();
        engine.tick();
        for e in engine.drain_events() {
            let _ = ch.events.send(e);
        }
        if engine.is_dirty() {
            let _ = ch.snapshots.send(engine.snapshot());
        }
    }
}

async fn sleep_until_due(due: Option<tokio::time::Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The maximal-risk lines of host views that no engine holds (a recorded moment), by the
/// rules of [`Engine::max_risk`]: fresh data only (host.up excepted), ties to the first host.
pub fn max_risk_of(views: &[Arc<HostView>], now: SystemTime, interval: Duration) -> Vec<MaxRiskLine> {
    let digests: Vec<Vec<(u32, f64)>> = views
        .iter()
        .map(|v| {
            let mut worst = Vec::new();
            fill_worst(v, &mut worst);
            worst
        })
        .collect();
    max_risk_lines(views.iter().zip(digests.iter().map(Vec::as_slice)), now, interval)
}

/// The maximal-risk lines of hosts given with their digests ([`fill_worst`]), in host order:
/// fresh data only (host.up excepted), ties to the host listed first.
fn max_risk_lines<'a>(
    hosts: impl Iterator<Item = (&'a Arc<HostView>, &'a [(u32, f64)])>,
    now: SystemTime,
    interval: Duration,
) -> Vec<MaxRiskLine> {
    // (value, host, index of the reading in the host's metrics)
    let mut worst: Vec<Option<(f64, &'a Arc<HostView>, u32)>> = Vec::new();
    // Read once: a registered metric's row sits behind the registry's lock.
    let risks: Vec<Risk> = Metric::all().iter().map(|m| m.risk).collect();
    for (view, digest) in hosts {
        let fresh = !view.is_stale(now, interval);
        for (m, &(idx, value)) in digest.iter().enumerate() {
            // Only host.up speaks for a host whose data is stale.
            if idx == u32::MAX || (!fresh && m != Metric::HostUp.index()) {
                continue;
            }
            if m >= worst.len() {
                worst.resize(m + 1, None);
            }
            let slot = &mut worst[m];
            match slot {
                Some((v, _, _)) if !risks.get(m).is_some_and(|r| r.is_worse(value, *v)) => {}
                _ => *slot = Some((value, view, idx)),
            }
        }
    }
    worst
        .into_iter()
        .flatten()
        .filter_map(|(value, view, idx)| {
            let r = view.reading(idx as usize)?;
            Some(MaxRiskLine {
                metric: r.metric,
                host: view.name.clone(),
                instance: r.instance.clone(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::model::{Reading, Sample};

    fn engine(hosts: &[&str]) -> (Engine, Arc<FakeClock>) {
        let toml = format!(
            "[general]\ninterval = \"1s\"\nhistory = \"5s\"\n[[hosts]]\nnames = [{}]\nvia = \"ssh\"\n",
            hosts
                .iter()
                .map(|h| format!("\"{h}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let config = crate::config::parse(&toml, "t.toml", None).expect("valid");
        let clock = Arc::new(FakeClock::at_epoch());
        (Engine::new(Arc::new(config), clock.clone()), clock)
    }

    fn sample(host: &str, readings: Vec<Reading>) -> Update {
        Update::Sample(Sample {
            host: Arc::from(host),
            source: Source::System,
            readings,
            processes: Vec::new(),
        })
    }

    fn up(e: &mut Engine, host: &str) {
        e.apply(Update::Status {
            host: Arc::from(host),
            status: HostStatus::Up,
            error: None,
        });
    }

    fn line(e: &Engine, now: SystemTime, m: Metric) -> Option<(String, String, f64)> {
        e.max_risk(now)
            .into_iter()
            .find(|l| l.metric == m)
            .map(|l| (l.host.to_string(), l.instance.to_string(), l.value))
    }

    /// Refolding one region (a check batch, a sample) gives what a full refill gives, over
    /// a sequence that changes each part in turn, with positions moving and an instance
    /// tie.
    #[test]
    fn worst_updated_by_region_equals_a_full_refill() {
        let register = |name: &str| {
            Metric::register(crate::model::NewMetric {
                name: name.to_string(),
                unit: crate::model::Unit::Custom("jobs"),
                instance: "",
                risk: Risk::Higher,
                description: "test".to_string(),
            })
            .expect("registers")
        };
        let check = register("check.engine_worst_probe");
        let status_metric = register("check.engine_worst_probe.status");
        let report = |v: f64, status: u8| {
            Arc::new(CheckReport {
                name: Arc::from("engine_worst_probe"),
                status,
                message: Arc::from(""),
                duration_ms: 1.0,
                readings: vec![
                    Reading::host(status_metric, f64::from(status)),
                    Reading::new(check, "a", v),
                    Reading::new(check, "b", v),
                ],
            })
        };
        let system = |cpu: f64, disks: usize| {
            let mut v = vec![Reading::host(Metric::CpuUsage, cpu)];
            for d in 0..disks {
                v.push(Reading::new(
                    Metric::DiskUsedPct,
                    format!("/d{d}"),
                    50.0 + d as f64,
                ));
            }
            Arc::new(v)
        };
        let mut view = HostView::new("h", Via::Ssh, HostStatus::Up, Vec::new());
        view.system = system(10.0, 2);
        view.checks = Arc::new(vec![report(3.0, 0)]);
        let mut worst = Vec::new();
        let mut split = fill_worst(&view, &mut worst);
        assert!(split);
        type Step<'a> = Box<dyn Fn(&mut HostView) + 'a>;
        let steps: Vec<Step> = vec![
            Box::new(|v| v.checks = Arc::new(vec![report(7.0, 2)])),
            Box::new(|v| v.system = system(90.0, 2)),
            Box::new(|v| v.system = system(20.0, 3)),
            Box::new(|v| v.checks = Arc::new(vec![report(1.0, 0), report(2.0, 1)])),
            Box::new(|v| v.up.value = 0.0),
            Box::new(|v| v.checks = Arc::default()),
            Box::new(|v| v.system = system(30.0, 1)),
            Box::new(|v| v.error = Some("nothing that counts".to_string())),
        ];
        for (k, step) in steps.iter().enumerate() {
            let mut next = view.clone();
            step(&mut next);
            update_worst(&view, &next, &mut worst, &mut split);
            let mut full = Vec::new();
            assert_eq!(split, fill_worst(&next, &mut full), "step {k}");
            let trim = |w: &[(u32, f64)]| {
                let end = w.iter().rposition(|&s| s != NONE).map_or(0, |i| i + 1);
                w[..end].to_vec()
            };
            assert_eq!(trim(&worst), trim(&full), "step {k}");
            view = next;
        }
    }

    #[test]
    fn max_risk_follows_the_risk_direction() {
        let (mut e, clock) = engine(&["a", "b"]);
        up(&mut e, "a");
        up(&mut e, "b");
        e.apply(sample(
            "a",
            vec![
                Reading::new(Metric::DiskUsedPct, "/", 50.0),
                Reading::new(Metric::DiskUsedPct, "/var", 91.0),
                Reading::host(Metric::MemAvailable, 4e9),
                Reading::new(Metric::ProcCount, "httpd", 3.0),
            ],
        ));
        e.apply(sample(
            "b",
            vec![
                Reading::new(Metric::DiskUsedPct, "/", 70.0),
                Reading::host(Metric::MemAvailable, 1e9),
                Reading::new(Metric::ProcCount, "httpd", 0.0),
            ],
        ));
        let now = clock.now();
        // higher is worse
        assert_eq!(
            line(&e, now, Metric::DiskUsedPct),
            Some(("a".into(), "/var".into(), 91.0))
        );
        // lower is worse
        assert_eq!(
            line(&e, now, Metric::MemAvailable),
            Some(("b".into(), String::new(), 1e9))
        );
        assert_eq!(
            line(&e, now, Metric::ProcCount),
            Some(("b".into(), "httpd".into(), 0.0))
        );
        // no line for a metric without risk
        e.apply(sample("a", vec![Reading::host(Metric::MemTotal, 8e9)]));
        assert_eq!(line(&e, now, Metric::MemTotal), None);
    }

    #[test]
    fn ties_go_to_the_first_host() {
        let (mut e, clock) = engine(&["a", "b", "c"]);
        for h in ["c", "b", "a"] {
            up(&mut e, h);
            e.apply(sample(h, vec![Reading::host(Metric::CpuUsage, 50.0)]));
        }
        assert_eq!(
            line(&e, clock.now(), Metric::CpuUsage).map(|l| l.0),
            Some("a".into())
        );
    }

    #[test]
    fn down_and_stale_hosts_leave_the_max_risk_line() {
        let (mut e, clock) = engine(&["a", "b"]);
        up(&mut e, "a");
        up(&mut e, "b");
        e.apply(sample("a", vec![Reading::host(Metric::CpuUsage, 90.0)]));
        e.apply(sample("b", vec![Reading::host(Metric::CpuUsage, 10.0)]));
        e.apply(Update::Status {
            host: Arc::from("a"),
            status: HostStatus::Timeout,
            error: Some("no answer in 5s\x1b[2J".into()),
        });
        let now = clock.now();
        assert_eq!(line(&e, now, Metric::CpuUsage).map(|l| l.0), Some("b".into()));
        assert_eq!(
            line(&e, now, Metric::HostUp),
            Some(("a".into(), String::new(), 0.0))
        );
        let snap = e.snapshot();
        assert_eq!(
            snap.host("a").and_then(|h| h.error.clone()).as_deref(),
            Some("no answer in 5s [2J")
        );
        // b goes quiet for more than three intervals: stale, out of the line
        clock.advance(Duration::from_secs(4));
        assert_eq!(line(&e, clock.now(), Metric::CpuUsage), None);
    }

    #[test]
    fn history_is_bounded_and_rates_are_derived() {
        let (mut e, clock) = engine(&["a"]);
        up(&mut e, "a");
        for i in 0..10 {
            e.apply(sample(
                "a",
                vec![
                    Reading::host(Metric::CpuUsage, f64::from(i)),
                    Reading::new(Metric::NetRxBytes, "eth0", f64::from(i) * 1000.0),
                ],
            ));
            clock.advance(Duration::from_secs(1));
        }
        let snap = e.snapshot();
        let h = snap.host("a").expect("host");
        // history = 5s / 1s interval = 5 samples
        assert_eq!(h.history(Metric::CpuUsage, "", 100), [5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(h.value(Metric::NetRxBps, "eth0"), Some(1000.0));
        assert_eq!(h.rounds, 10);
    }

    #[test]
    fn snapshots_are_rebuilt_only_on_change() {
        let (mut e, _clock) = engine(&["a"]);
        let s1 = e.snapshot();
        let s2 = e.snapshot();
        assert!(Arc::ptr_eq(&s1, &s2));
        up(&mut e, "a");
        let s3 = e.snapshot();
        assert_eq!(s3.seq, s1.seq + 1);
        assert_eq!(s3.hosts[0].status, HostStatus::Up);
        assert_eq!(
            s1.hosts[0].status,
            HostStatus::Connecting,
            "old snapshots are immutable"
        );
    }

    #[tokio::test]
    async fn a_burst_of_updates_shares_snapshots_and_none_is_lost() {
        let (engine, _) = engine(&["a", "b"]);
        let (tx, updates) = mpsc::channel(1024);
        let (_cmd_tx, commands) = mpsc::channel(4);
        let (snap_tx, mut snaps) = watch::channel(Arc::new(Snapshot::empty(Duration::from_secs(1))));
        let (events, _) = broadcast::channel(64);
        let task = tokio::spawn(run(
            engine,
            EngineChannels {
                updates,
                commands,
                snapshots: snap_tx,
                events,
            },
        ));
        // a lone update is published at once
        tx.send(sample("a", vec![Reading::host(Metric::Load1, 1.0)]))
            .await
            .expect("engine runs");
        tokio::time::sleep(Duration::from_millis(1)).await;
        let first = snaps.borrow_and_update().clone();
        assert_eq!(
            first.host("a").and_then(|h| h.value(Metric::Load1, "")),
            Some(1.0)
        );
        // 100 updates, one every 2 ms (1,000 hosts at a 2 s interval)
        let started = tokio::time::Instant::now();
        for i in 0..100u32 {
            tx.send(sample("b", vec![Reading::host(Metric::Load1, f64::from(i))]))
                .await
                .expect("engine runs");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(COALESCE).await;
        let last = snaps.borrow_and_update().clone();
        assert_eq!(
            last.host("b").and_then(|h| h.value(Metric::Load1, "")),
            Some(99.0)
        );
        // at most one flush per COALESCE while they came (ticks wait for flushes), not one
        // per update
        let elapsed = started.elapsed().as_secs_f64();
        let bound = (elapsed / COALESCE.as_secs_f64()).ceil() as u64 + 3;
        let published = last.seq - first.seq;
        assert!(
            published <= bound.min(50),
            "{published} snapshots for 100 updates in {elapsed:.2}s"
        );
        drop(tx);
        task.await.expect("engine ends when collectors are gone");
    }

    #[test]
    fn discovered_hosts_become_rows_and_external_rates_are_kept() {
        let (mut e, clock) = engine(&["a"]);
        let discover = |name: &str| Update::Discovered {
            host: Arc::from(name),
            group: Some("node".into()),
            via: Via::Prometheus,
        };
        e.apply(discover("n1:9100"));
        e.apply(discover("n1:9100"));
        e.apply(discover("a"));
        assert_eq!(e.snapshot().hosts.len(), 2, "known names are not added twice");
        up(&mut e, "n1:9100");
        for i in 0..3 {
            e.apply(Update::Sample(Sample {
                host: Arc::from("n1:9100"),
                source: Source::External,
                readings: vec![
                    Reading::new(Metric::NetRxBytes, "eth0", f64::from(i) * 1e6),
                    Reading::new(Metric::NetRxBps, "eth0", 42.0),
                ],
                processes: Vec::new(),
            }));
            clock.advance(Duration::from_secs(1));
        }
        let snap = e.snapshot();
        let h = snap.host("n1:9100").expect("discovered host");
        assert_eq!(h.group.as_deref(), Some("node"));
        assert_eq!(h.via, Via::Prometheus);
        assert_eq!(h.status, HostStatus::Up);
        // the source's own rate, not one derived from deltas between polls
        assert_eq!(
            h.values(Metric::NetRxBps).map(|r| r.value).collect::<Vec<_>>(),
            [42.0]
        );
        assert_eq!(
            line(&e, clock.now() - Duration::from_secs(1), Metric::NetRxBps).map(|l| l.0),
            Some("n1:9100".into())
        );
    }
}
