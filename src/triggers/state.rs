//! The trigger state machine: one line per (rule, host, instance) — one per rule for the
//! `max-risk` scope and for aggregate rules — driven by the engine's ticks.
//!
//! A line's *phase* is `ok -> pending -> firing -> resolved -> ok`; on top of it an operator
//! may acknowledge a firing line (no flashing, no repeats) or silence a line until a time
//! (no notifications). Missing or stale data never moves a line: it keeps its phase and
//! shows its value as `None`.
//!
//! Evaluation is built to run on every 250 ms tick over thousands of series: the series are
//! grouped by metric once per tick into reused buffers, and only lines that are not `ok`
//! are kept, so a quiet series costs a comparison and no lookup.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::rule::{Aggregate, Condition, Rule, Scope, Severity};
use crate::model::{HostStatus, Metric};
use crate::snapshot::{HostView, MaxRiskLine};

/// What a front end may ask of the triggers.
#[derive(Debug, Clone)]
pub enum Command {
    Acknowledge {
        trigger: String,
        host: String,
        instance: String,
    },
    /// Mutes a line until `until` (a time not after now lifts an earlier silence).
    Silence {
        trigger: String,
        host: String,
        instance: String,
        until: SystemTime,
    },
    Reconnect {
        host: String,
    },
    /// Apply a new, validated config in place (src/reload.rs sends it; the engine answers
    /// with what became of each rule).
    Reload(Arc<ReloadRequest>),
    /// A command given by a named operator (a viewer of `lookout serve`): the name is kept
    /// with the line it acknowledged or silenced and shown with it.
    By {
        user: String,
        command: Box<Command>,
    },
}

/// A config for the engine to apply, and where to send the outcome.
#[derive(Debug)]
pub struct ReloadRequest {
    pub config: Arc<crate::config::Config>,
    reply: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<RuleChanges>>>,
}

impl ReloadRequest {
    pub fn new(
        config: Arc<crate::config::Config>,
    ) -> (Arc<Self>, tokio::sync::oneshot::Receiver<RuleChanges>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = ReloadRequest {
            config,
            reply: std::sync::Mutex::new(Some(tx)),
        };
        (Arc::new(req), rx)
    }

    /// Sends the outcome (once; later calls do nothing).
    pub fn answer(&self, changes: RuleChanges) {
        let taken = self.reply.lock().ok().and_then(|mut r| r.take());
        if let Some(tx) = taken {
            let _ = tx.send(changes);
        }
    }
}

/// Where one (rule, host, instance) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    Ok,
    /// The condition holds, waiting out `for`.
    Pending,
    Firing,
    /// Back past `clear`; becomes `ok` after [`RESOLVED_SHOWN`] unless it breaches again.
    Resolved,
    /// Firing, but an operator acknowledged it: no flashing, no repeats.
    Acknowledged,
    /// Muted by an operator until `silenced_until`.
    Silenced,
}

impl TriggerState {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerState::Ok => "ok",
            TriggerState::Pending => "pending",
            TriggerState::Firing => "firing",
            TriggerState::Resolved => "resolved",
            TriggerState::Acknowledged => "acknowledged",
            TriggerState::Silenced => "silenced",
        }
    }
    /// Order of the trigger panel: what needs attention first.
    fn rank(self) -> u8 {
        match self {
            TriggerState::Firing => 0,
            TriggerState::Acknowledged => 1,
            TriggerState::Pending => 2,
            TriggerState::Silenced => 3,
            TriggerState::Resolved => 4,
            TriggerState::Ok => 5,
        }
    }
}

impl std::fmt::Display for TriggerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a resolved line stays listed before it becomes `ok`.
pub const RESOLVED_SHOWN: Duration = Duration::from_secs(30);

/// One trigger line as the snapshot shows it (states other than `ok` are listed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerView {
    pub name: String,
    pub state: TriggerState,
    pub severity: super::rule::Severity,
    pub metric: crate::model::Metric,
    /// Host of the line ("" for an aggregate rule).
    pub host: String,
    pub instance: String,
    /// The value that last decided the state (None when there is no data).
    pub value: Option<f64>,
    pub threshold: f64,
    /// When the line entered its current state.
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub since: SystemTime,
    /// For `pending`: when it will fire if the condition keeps holding.
    #[serde(serialize_with = "ser_opt_time", deserialize_with = "de_opt_time")]
    pub fires_at: Option<SystemTime>,
    #[serde(serialize_with = "ser_opt_time", deserialize_with = "de_opt_time")]
    pub silenced_until: Option<SystemTime>,
    /// Who acknowledged or silenced the line, when a viewer of `lookout serve` did.
    /// Always present (null otherwise): the wire format of `serve` is not self-describing.
    #[serde(default)]
    pub by: Option<String>,
}

fn ser_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::model::rfc3339(*t))
}

fn ser_opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&crate::model::rfc3339(*t)),
        None => s.serialize_none(),
    }
}

fn de_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
}

fn de_opt_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(text) => humantime::parse_rfc3339(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// Why a line moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The condition started to hold.
    Breach,
    /// It held for `for`.
    Held,
    /// It stopped holding before `for` was over.
    Dip,
    /// The value is back past `clear`.
    Cleared,
    /// A resolved line has been shown long enough.
    Settled,
    /// Still firing, `repeat` is over: notify again.
    Repeat,
    /// Still firing; the notification held back by `cooldown` goes out now.
    CooldownOver,
    /// Still firing, but the maximal-risk line is now on another host or instance.
    Moved,
    Acknowledged,
    Silenced,
    SilenceEnded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Breach => "breach",
            Reason::Held => "held",
            Reason::Dip => "dip",
            Reason::Cleared => "cleared",
            Reason::Settled => "settled",
            Reason::Repeat => "repeat",
            Reason::CooldownOver => "cooldown_over",
            Reason::Moved => "moved",
            Reason::Acknowledged => "acknowledged",
            Reason::Silenced => "silenced",
            Reason::SilenceEnded => "silence_ended",
        }
    }
}

/// A transition of one trigger line (or a notification while it keeps firing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerEvent {
    pub trigger: String,
    pub previous: TriggerState,
    pub state: TriggerState,
    pub reason: Reason,
    pub severity: Severity,
    pub metric: Metric,
    /// "" for an aggregate rule.
    pub host: String,
    pub instance: String,
    /// None when there is no (fresh) data.
    pub value: Option<f64>,
    pub threshold: f64,
    /// When the line entered `state` (for a repeat: when it started firing).
    #[serde(serialize_with = "ser_time", deserialize_with = "de_time")]
    pub since: SystemTime,
    /// Whether this event is a notification: its action runs (when the rule has one) and,
    /// for a firing one, the UI may ring the bell.
    pub notify: bool,
    /// Free text for the log (held back by cooldown, moved from, how many hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(
        serialize_with = "ser_opt_time",
        deserialize_with = "de_opt_time",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub silenced_until: Option<SystemTime>,
    /// For a rule on a check's metric: the check's message on that host (set by the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The operator who acknowledged or silenced the line (a viewer of `lookout serve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The rule asked for the terminal bell and this is a firing notification.
    #[serde(skip)]
    pub bell: bool,
    /// The command to run for this notification (`run` or `run_on_resolve`), unexpanded.
    #[serde(skip)]
    pub run: Option<Arc<[String]>>,
}

impl TriggerEvent {
    pub fn summary(&self) -> String {
        let mut s = format!("{} {}", self.severity.as_str(), self.trigger);
        if !self.host.is_empty() {
            s.push(' ');
            s.push_str(&self.host);
        }
        if !self.instance.is_empty() {
            s.push(' ');
            s.push_str(&self.instance);
        }
        s.push_str(&format!(": {} -> {}", self.previous, self.state));
        if let Some(v) = self.value {
            s.push_str(&format!(" at {}", format_value(v)));
        }
        if let Some(n) = &self.note {
            s.push_str(&format!(" ({n})"));
        }
        if let Some(by) = &self.by {
            s.push_str(&format!(" by {by}"));
        }
        s
    }

    /// A compact line used by the scenario tests:
    /// `name @host instance: previous -> state [reason] notify`.
    pub fn brief(&self) -> String {
        let inst = if self.instance.is_empty() {
            String::new()
        } else {
            format!(" {}", self.instance)
        };
        format!(
            "{} @{}{inst}: {} -> {} [{}]{}",
            self.trigger,
            self.host,
            self.previous,
            self.state,
            self.reason.as_str(),
            if self.notify { " notify" } else { "" }
        )
    }
}

/// A value as placeholders and summaries show it: at most 2 decimals, no trailing zeros.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The phase of a line, beneath acknowledgement and silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ok,
    Pending,
    Firing,
    Resolved,
}

/// What one tick saw of a line's series.
#[derive(Debug, Clone, Copy)]
struct Obs {
    value: f64,
    breached: bool,
    cleared: bool,
}

#[derive(Debug, Clone)]
struct Line {
    host: Option<u32>,
    instance: Arc<str>,
    phase: Phase,
    /// When the phase began.
    phase_since: SystemTime,
    /// For pending: when `for` is over.
    fires_at: Option<SystemTime>,
    acked_at: Option<SystemTime>,
    silenced_at: SystemTime,
    silenced_until: Option<SystemTime>,
    /// The operator who acknowledged or silenced the line, when one was named.
    by: Option<Arc<str>>,
    value: Option<f64>,
    /// This tick's observation (None: no fresh data).
    obs: Option<Obs>,
    /// Last firing notification (kept across episodes for `cooldown`).
    last_notified: Option<SystemTime>,
    /// Whether the current firing episode has been notified (gates `run_on_resolve`).
    episode_notified: bool,
    note: Option<String>,
}

impl Line {
    fn new(host: Option<u32>, instance: Arc<str>, now: SystemTime) -> Self {
        Line {
            host,
            instance,
            phase: Phase::Ok,
            phase_since: now,
            fires_at: None,
            acked_at: None,
            silenced_at: now,
            silenced_until: None,
            by: None,
            value: None,
            obs: None,
            last_notified: None,
            episode_notified: false,
            note: None,
        }
    }

    fn silenced(&self, now: SystemTime) -> bool {
        self.silenced_until.is_some_and(|u| u > now)
    }

    /// The state beneath a silence.
    fn underlying(&self) -> TriggerState {
        match self.phase {
            Phase::Ok => TriggerState::Ok,
            Phase::Pending => TriggerState::Pending,
            Phase::Firing if self.acked_at.is_some() => TriggerState::Acknowledged,
            Phase::Firing => TriggerState::Firing,
            Phase::Resolved => TriggerState::Resolved,
        }
    }

    fn shown(&self, now: SystemTime) -> TriggerState {
        if self.silenced(now) {
            TriggerState::Silenced
        } else {
            self.underlying()
        }
    }

    fn shown_since(&self, now: SystemTime) -> SystemTime {
        match (self.shown(now), self.acked_at) {
            (TriggerState::Silenced, _) => self.silenced_at,
            (TriggerState::Acknowledged, Some(t)) => t,
            _ => self.phase_since,
        }
    }

    /// Whether the line can be forgotten: ok, not silenced, no cooldown to remember.
    fn idle(&self, now: SystemTime, cooldown: Duration) -> bool {
        self.phase == Phase::Ok
            && self.silenced_until.is_none()
            && self.last_notified.is_none_or(|t| t + cooldown <= now)
    }
}

/// Per-rule state.
#[derive(Debug, Default)]
struct RuleState {
    /// `each` lines by host index (allocated on the first line).
    by_host: Vec<Vec<Line>>,
    /// Hosts that have lines, in no particular order.
    active_hosts: Vec<u32>,
    /// The one line of a `max-risk` or aggregate rule.
    single: Option<Line>,
    /// Host mask from the rule's selectors (empty: all hosts).
    selected: Vec<bool>,
    run: Option<Arc<[String]>>,
    run_on_resolve: Option<Arc<[String]>>,
}

/// Every rule's lines.
pub struct TriggerSet {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    interval: Duration,
    changed: bool,
    /// Host names of the views last seen, to notice a different host list.
    host_names: Vec<crate::model::HostName>,
    /// Per-tick scratch, reused: the series of each metric a rule reads, by metric (empty
    /// for the others: indexing every reading of every host four times a second was a
    /// twentieth of lookout's CPU at 1,000 hosts, for the few metrics rules use).
    series: Vec<Vec<Entry>>,
    /// Which metrics some rule reads.
    wanted: Vec<bool>,
    /// Per host: [`FRESH`] and [`UP_KNOWN`] bits.
    known: Vec<u8>,
    /// Per host position: the wanted readings of its view's parts as last indexed, reused
    /// while the parts are the same allocations (most hosts did not change in a tick, and
    /// walking every reading of every host was most of the evaluation's time).
    host_index: Vec<HostIndex>,
    /// The time of the last evaluation or command (what `views` judges silences by).
    now: SystemTime,
    /// Rules were replaced: re-resolve their host selections on the next evaluation.
    reselect: bool,
}

/// What a [`TriggerSet::reload`] did with each rule, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RuleChanges {
    /// Unchanged: state kept.
    pub kept: Vec<String>,
    /// Changed: restarted from `ok`.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// One series in the per-tick index: where its reading is, and its value inline so the
/// common case (a quiet series) needs no pointer chasing.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    host: u32,
    idx: u32,
    value: f64,
}

/// The wanted readings of one host's view, as last indexed, and which parts they came from.
/// The parts are held weakly: an allocation is not reused while a `Weak` points at it, so
/// an equal pointer means the same, unchanged part (its contents are immutable behind the
/// `Arc`), and the readings themselves are freed as soon as the engine drops them.
#[derive(Default)]
struct HostIndex {
    system: std::sync::Weak<Vec<crate::model::Reading>>,
    ping: std::sync::Weak<Vec<crate::model::Reading>>,
    external: std::sync::Weak<Vec<crate::model::Reading>>,
    checks: std::sync::Weak<Vec<Arc<crate::model::CheckReport>>>,
    /// (metric, index in [`HostView::metrics`], value) of each wanted reading but `host.up`.
    entries: Vec<(u32, u32, f64)>,
}

impl HostIndex {
    fn is_of(&self, h: &HostView) -> bool {
        std::ptr::eq(self.system.as_ptr(), Arc::as_ptr(&h.system))
            && std::ptr::eq(self.ping.as_ptr(), Arc::as_ptr(&h.ping))
            && std::ptr::eq(self.external.as_ptr(), Arc::as_ptr(&h.external))
            && std::ptr::eq(self.checks.as_ptr(), Arc::as_ptr(&h.checks))
    }

    fn rebuild(&mut self, h: &HostView, wanted: &[bool]) {
        self.system = Arc::downgrade(&h.system);
        self.ping = Arc::downgrade(&h.ping);
        self.external = Arc::downgrade(&h.external);
        self.checks = Arc::downgrade(&h.checks);
        self.entries.clear();
        // Index 0 is `host.up`, which lives in the view itself and is read every tick.
        for (ri, r) in h.metrics().enumerate().skip(1) {
            let m = r.metric.index();
            if wanted.get(m).copied().unwrap_or(false) {
                self.entries.push((m as u32, ri as u32, r.value));
            }
        }
    }
}

/// The host's data is fresh (updated within 3 intervals).
const FRESH: u8 = 1;
/// The host's `host.up` is known: fresh, or the host has answered (or failed) at least once.
const UP_KNOWN: u8 = 2;

impl TriggerSet {
    pub fn new(rules: Vec<Rule>, interval: Duration) -> Self {
        let states = rules
            .iter()
            .map(|r| RuleState {
                run: (!r.run.is_empty()).then(|| Arc::from(r.run.clone())),
                run_on_resolve: (!r.run_on_resolve.is_empty()).then(|| Arc::from(r.run_on_resolve.clone())),
                ..RuleState::default()
            })
            .collect();
        // Sized by the metrics rules read: ids past it are wanted by no rule.
        let mut wanted = vec![false; rules.iter().map(|r| r.metric.index() + 1).max().unwrap_or(0)];
        for r in &rules {
            wanted[r.metric.index()] = true;
        }
        TriggerSet {
            rules,
            states,
            interval,
            changed: false,
            host_names: Vec::new(),
            series: vec![Vec::new(); wanted.len()],
            wanted,
            known: Vec::new(),
            host_index: Vec::new(),
            now: SystemTime::UNIX_EPOCH,
            reselect: false,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Re-maps host selectors and per-host lines when the list of hosts differs from the
    /// last evaluation (a host discovered, or hosts added and removed by a reload): lines
    /// follow their host by name, lines of hosts that are gone or no longer selected go.
    fn sync_hosts(&mut self, hosts: &[Arc<HostView>]) {
        let same = self.host_names.len() == hosts.len()
            && self
                .host_names
                .iter()
                .zip(hosts)
                .all(|(a, h)| Arc::ptr_eq(a, &h.name) || *a == h.name);
        if same && !self.reselect {
            return;
        }
        self.reselect = false;
        let new_index: rustc_hash::FxHashMap<&str, u32> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (&*h.name, i as u32))
            .collect();
        // old host index -> new one (None: the host is gone)
        let remap: Vec<Option<u32>> = self
            .host_names
            .iter()
            .map(|n| new_index.get(&**n).copied())
            .collect();
        for (rule, st) in self.rules.iter().zip(&mut self.states) {
            st.selected = match &rule.hosts {
                None => Vec::new(),
                Some(_) => hosts.iter().map(|h| rule.applies_to_host(&h.name)).collect(),
            };
            let selected = &st.selected;
            let keep = |h: u32| selected.is_empty() || selected.get(h as usize).copied().unwrap_or(false);
            let mut by_host: Vec<Vec<Line>> = Vec::new();
            let mut active = Vec::new();
            for old in std::mem::take(&mut st.active_hosts) {
                let Some(Some(new)) = remap.get(old as usize).copied() else {
                    continue;
                };
                let mut lines = std::mem::take(&mut st.by_host[old as usize]);
                if lines.is_empty() || !keep(new) {
                    continue;
                }
                for l in &mut lines {
                    l.host = Some(new);
                }
                if by_host.len() <= new as usize {
                    by_host.resize_with(hosts.len(), Vec::new);
                }
                by_host[new as usize] = lines;
                active.push(new);
            }
            st.by_host = by_host;
            st.active_hosts = active;
            if let Some(l) = &mut st.single {
                l.host = l.host.and_then(|h| remap.get(h as usize).copied().flatten());
            }
        }
        self.host_names = hosts.iter().map(|h| h.name.clone()).collect();
    }

    /// Replaces the rules (a config reload). A rule that judges as before (see
    /// [`Rule::same_rule`]) keeps its lines — pending timers, firing, acknowledged,
    /// silenced — and only re-resolves its hosts; a changed or new rule starts from `ok`.
    pub fn reload(&mut self, rules: Vec<Rule>, interval: Duration) -> RuleChanges {
        let mut next = TriggerSet::new(rules, interval);
        let mut changes = RuleChanges::default();
        let mut old: Vec<Option<(Rule, RuleState)>> = std::mem::take(&mut self.rules)
            .into_iter()
            .zip(std::mem::take(&mut self.states))
            .map(Some)
            .collect();
        for (rule, st) in next.rules.iter().zip(&mut next.states) {
            let found = old
                .iter()
                .position(|o| o.as_ref().is_some_and(|(r, _)| r.name == rule.name));
            match found.and_then(|i| old[i].take()) {
                Some((before, state)) if before.same_rule(rule) => {
                    *st = state;
                    changes.kept.push(rule.name.clone());
                }
                Some(_) => changes.changed.push(rule.name.clone()),
                None => changes.added.push(rule.name.clone()),
            }
        }
        changes.removed = old.into_iter().flatten().map(|(r, _)| r.name).collect();
        next.host_names = std::mem::take(&mut self.host_names);
        next.now = self.now;
        next.reselect = true;
        next.changed = true;
        *self = next;
        changes
    }
    /// Groups the current readings of the metrics rules read, by metric, into the reused
    /// scratch buffers (in host order, then the order each host reported them).
    fn index(&mut self, now: SystemTime, hosts: &[Arc<HostView>]) {
        for v in &mut self.series {
            v.clear();
        }
        self.known.clear();
        self.host_index.resize_with(hosts.len(), HostIndex::default);
        let up = Metric::HostUp.index();
        let want_up = self.wanted.get(up).copied().unwrap_or(false);
        for (hi, (h, cached)) in hosts.iter().zip(&mut self.host_index).enumerate() {
            let fresh = !h.is_stale(now, self.interval);
            let up_known = fresh || answered(h);
            self.known
                .push((u8::from(fresh) * FRESH) | (u8::from(up_known) * UP_KNOWN));
            let host = hi as u32;
            if want_up {
                self.series[up].push(Entry {
                    host,
                    idx: 0,
                    value: h.up.value,
                });
            }
            if !cached.is_of(h) {
                cached.rebuild(h, &self.wanted);
            }
            for &(m, idx, value) in &cached.entries {
                self.series[m as usize].push(Entry { host, idx, value });
            }
        }
    }

    /// Evaluates every rule against the current views; returns the transitions.
    pub fn evaluate(
        &mut self,
        now: SystemTime,
        hosts: &[Arc<HostView>],
        _max_risk: &[MaxRiskLine],
    ) -> Vec<TriggerEvent> {
        self.now = now;
        self.sync_hosts(hosts);
        self.index(now, hosts);
        let mut events = Vec::new();
        let mut changed = false;
        for ri in 0..self.rules.len() {
            let rule = &self.rules[ri];
            let st = &mut self.states[ri];
            let m = rule.metric.index();
            let series = &self.series[m];
            let ctx = Ctx {
                rule,
                run: &st.run,
                run_on_resolve: &st.run_on_resolve,
                now,
                hosts,
            };
            let known = &self.known;
            let selected = &st.selected;
            let need = if rule.metric == Metric::HostUp {
                UP_KNOWN
            } else {
                FRESH
            };
            // Cheap checks first; the instance pattern only when a series matters.
            let host_ok = |h: u32| {
                let h = h as usize;
                known[h] & need != 0 && (selected.is_empty() || selected[h])
            };
            let reading = |e: &Entry| hosts[e.host as usize].reading(e.idx as usize);
            let inst_ok = |e: &Entry| {
                rule.instance.is_none() || reading(e).is_some_and(|r| rule.matches_instance(&r.instance))
            };
            if let Some(agg) = rule.aggregate {
                let usable = |e: &Entry| host_ok(e.host) && inst_ok(e);
                let obs = aggregate(rule, agg, series, hosts.len(), &usable, selected);
                let line = st
                    .single
                    .get_or_insert_with(|| Line::new(None, crate::model::empty_instance(), now));
                let (o, note) = obs.unzip();
                line.obs = o;
                line.note = note;
                changed |= step(&ctx, line, &mut events);
                continue;
            }
            match rule.scope {
                Scope::MaxRisk => {
                    let mut worst: Option<&Entry> = None;
                    for e in series {
                        if !host_ok(e.host)
                            || worst.is_some_and(|w| !worse(rule.condition, e.value, w.value))
                            || !inst_ok(e)
                        {
                            continue;
                        }
                        worst = Some(e);
                    }
                    let line = st
                        .single
                        .get_or_insert_with(|| Line::new(None, crate::model::empty_instance(), now));
                    line.obs = worst.map(|w| observe(rule, w.value));
                    if let Some((w, r)) = worst.and_then(|w| Some((w, reading(w)?))) {
                        let moved = line.host != Some(w.host) || *line.instance != *r.instance;
                        if moved {
                            let from = line
                                .host
                                .map(|h| describe(&hosts[h as usize].name, &line.instance));
                            line.host = Some(w.host);
                            line.instance = r.instance.clone();
                            line.value = Some(r.value);
                            changed = true;
                            if line.phase == Phase::Firing
                                && let Some(from) = from
                            {
                                events.push(ctx.event(
                                    line,
                                    line.underlying(),
                                    Reason::Moved,
                                    false,
                                    Some(format!("moved from {from}")),
                                ));
                            }
                        }
                    }
                    changed |= step(&ctx, line, &mut events);
                }
                Scope::Each => {
                    for e in series {
                        if !host_ok(e.host) {
                            continue;
                        }
                        let (hi, h) = (e.host, e.host as usize);
                        let obs = observe(rule, e.value);
                        let has_lines = st.by_host.get(h).is_some_and(|v| !v.is_empty());
                        if !obs.breached && !has_lines {
                            continue;
                        }
                        let Some(r) = reading(e) else { continue };
                        if !rule.matches_instance(&r.instance) {
                            continue;
                        }
                        if st.by_host.len() < hosts.len() {
                            st.by_host.resize_with(hosts.len(), Vec::new);
                        }
                        let lines = &mut st.by_host[h];
                        match lines.iter_mut().find(|l| *l.instance == *r.instance) {
                            Some(l) => l.obs = Some(obs),
                            None if obs.breached => {
                                if lines.is_empty() {
                                    st.active_hosts.push(hi);
                                }
                                let mut l = Line::new(Some(hi), r.instance.clone(), now);
                                l.obs = Some(obs);
                                lines.push(l);
                            }
                            None => {}
                        }
                    }
                    let cooldown = rule.cooldown;
                    let mut k = 0;
                    while k < st.active_hosts.len() {
                        let h = st.active_hosts[k] as usize;
                        let lines = &mut st.by_host[h];
                        for l in lines.iter_mut() {
                            changed |= step(&ctx, l, &mut events);
                            l.obs = None;
                        }
                        lines.retain(|l| !l.idle(now, cooldown));
                        if lines.is_empty() {
                            st.active_hosts.swap_remove(k);
                        } else {
                            k += 1;
                        }
                    }
                }
            }
        }
        self.changed |= changed || !events.is_empty();
        events
    }

    /// Applies an operator's command; returns the transitions it caused.
    pub fn command(&mut self, cmd: &Command, now: SystemTime) -> Vec<TriggerEvent> {
        self.command_by(cmd, now, None)
    }

    fn command_by(&mut self, cmd: &Command, now: SystemTime, by: Option<&str>) -> Vec<TriggerEvent> {
        let (trigger, host, instance, until) = match cmd {
            Command::By { user, command } => return self.command_by(command, now, Some(user)),
            Command::Acknowledge {
                trigger,
                host,
                instance,
            } => (trigger, host, instance, None),
            Command::Silence {
                trigger,
                host,
                instance,
                until,
            } => (trigger, host, instance, Some(*until)),
            Command::Reconnect { .. } | Command::Reload(_) => return Vec::new(),
        };
        self.now = self.now.max(now);
        let mut events = Vec::new();
        let host_index = self.host_names.iter().position(|h| **h == **host);
        for ri in 0..self.rules.len() {
            let rule = &self.rules[ri];
            if rule.name != *trigger {
                continue;
            }
            let st = &mut self.states[ri];
            let ctx = Ctx {
                rule,
                run: &st.run,
                run_on_resolve: &st.run_on_resolve,
                now,
                hosts: &[],
            };
            let names = &self.host_names;
            let line: &mut Line = if rule.aggregate.is_some() || rule.scope == Scope::MaxRisk {
                st.single
                    .get_or_insert_with(|| Line::new(None, crate::model::empty_instance(), now))
            } else {
                let Some(hi) = host_index else { continue };
                if st.by_host.len() < names.len() {
                    st.by_host.resize_with(names.len(), Vec::new);
                }
                let lines = &mut st.by_host[hi];
                let pos = match lines.iter().position(|l| *l.instance == **instance) {
                    Some(p) => p,
                    // Silencing a quiet line ahead of time (maintenance) creates it.
                    None if until.is_some() => {
                        if lines.is_empty() {
                            st.active_hosts.push(hi as u32);
                        }
                        lines.push(Line::new(Some(hi as u32), Arc::from(instance.as_str()), now));
                        lines.len() - 1
                    }
                    None => continue,
                };
                &mut lines[pos]
            };
            let host_name = line.host.and_then(|h| names.get(h as usize)).cloned();
            let ctx = CmdCtx {
                ctx: &ctx,
                host: host_name.as_deref().unwrap_or(""),
            };
            match until {
                None => {
                    if line.phase == Phase::Firing && line.acked_at.is_none() {
                        let previous = line.underlying();
                        line.acked_at = Some(now);
                        line.by = by.map(Arc::from);
                        events.push(ctx.event(line, previous, Reason::Acknowledged));
                    }
                }
                Some(until) if until > now => {
                    let previous = line.shown(now);
                    line.silenced_until = Some(until);
                    line.silenced_at = now;
                    line.by = by.map(Arc::from);
                    events.push(ctx.event(line, previous, Reason::Silenced));
                }
                Some(_) => {
                    if line.silenced(now) {
                        line.silenced_until = None;
                        events.push(ctx.event(line, TriggerState::Silenced, Reason::SilenceEnded));
                    }
                }
            }
        }
        if !events.is_empty() {
            self.changed = true;
        }
        events
    }

    /// Every line that is not `ok`, most urgent first.
    pub fn views(&self) -> Vec<TriggerView> {
        let mut out = Vec::new();
        let now = self.now;
        for (rule, st) in self.rules.iter().zip(&self.states) {
            let mut push = |l: &Line| {
                let state = l.shown(now);
                if state == TriggerState::Ok {
                    return;
                }
                let host = l
                    .host
                    .and_then(|h| self.host_names.get(h as usize))
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                out.push(TriggerView {
                    name: rule.name.clone(),
                    state,
                    severity: rule.severity,
                    metric: rule.metric,
                    host,
                    instance: l.instance.to_string(),
                    value: l.value,
                    threshold: shown_threshold(rule),
                    since: l.shown_since(now),
                    fires_at: if l.phase == Phase::Pending {
                        l.fires_at
                    } else {
                        None
                    },
                    silenced_until: l.silenced_until.filter(|_| state == TriggerState::Silenced),
                    by: l
                        .by
                        .as_deref()
                        .filter(|_| matches!(state, TriggerState::Acknowledged | TriggerState::Silenced))
                        .map(str::to_string),
                });
            };
            if let Some(l) = &st.single {
                push(l);
            }
            for &h in &st.active_hosts {
                for l in &st.by_host[h as usize] {
                    push(l);
                }
            }
        }
        out.sort_by(|a, b| {
            a.state
                .rank()
                .cmp(&b.state.rank())
                .then(b.severity.cmp(&a.severity))
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| a.host.cmp(&b.host))
                .then_with(|| a.instance.cmp(&b.instance))
        });
        out
    }

    /// Whether views changed since the last call (countdowns, flashing state).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

/// The threshold shown with a line: the count or share of hosts for an aggregate rule.
fn shown_threshold(rule: &Rule) -> f64 {
    match rule.aggregate {
        Some(Aggregate::AtLeast(n)) => n as f64,
        Some(Aggregate::Percent(p)) => p,
        None => rule.condition.threshold(),
    }
}

/// Whether a host has ever answered: before that, a host still connecting has no
/// `host.up` to judge (it is not down yet, it is unknown).
fn answered(h: &HostView) -> bool {
    !(h.status == HostStatus::Connecting && h.rounds == 0)
}

fn describe(host: &str, instance: &str) -> String {
    if instance.is_empty() {
        host.to_string()
    } else {
        format!("{host} {instance}")
    }
}

/// Whether `a` is further past the rule's threshold than `b` (the maximal-risk direction
/// of the condition: highest for `above`, lowest for `below`).
fn worse(c: Condition, a: f64, b: f64) -> bool {
    match c {
        Condition::Above(_) => a > b,
        Condition::Below(_) => a < b,
    }
}

fn observe(rule: &Rule, value: f64) -> Obs {
    Obs {
        value,
        breached: rule.condition.breached(value),
        cleared: rule.condition.cleared(value, rule.clear),
    }
}

/// An aggregate rule's observation: how many (or what share of the) selected hosts with
/// fresh data breach; it clears when fewer than needed are still past `clear`.
fn aggregate(
    rule: &Rule,
    agg: Aggregate,
    series: &[Entry],
    host_count: usize,
    usable: &dyn Fn(&Entry) -> bool,
    selected: &[bool],
) -> Option<(Obs, String)> {
    let (mut with_data, mut breaching, mut uncleared) = (0usize, 0usize, 0usize);
    let mut current: Option<(u32, bool, bool)> = None;
    let mut flush = |c: Option<(u32, bool, bool)>| {
        if let Some((_, b, u)) = c {
            with_data += 1;
            breaching += usize::from(b);
            uncleared += usize::from(u);
        }
    };
    // Series are grouped by host in order, so one pass folds each host's instances.
    for e in series {
        if !usable(e) {
            continue;
        }
        let hi = e.host;
        let b = rule.condition.breached(e.value);
        let u = !rule.condition.cleared(e.value, rule.clear);
        match &mut current {
            Some((h, cb, cu)) if *h == hi => {
                *cb |= b;
                *cu |= u;
            }
            _ => {
                flush(current.take());
                current = Some((hi, b, u));
            }
        }
    }
    flush(current);
    if with_data == 0 {
        return None;
    }
    let selected_count = if selected.is_empty() {
        host_count
    } else {
        selected.iter().filter(|s| **s).count()
    };
    let verb = match rule.condition {
        Condition::Above(t) => format!("above {}", format_value(t)),
        Condition::Below(t) => format!("below {}", format_value(t)),
    };
    let note = format!("{breaching} of {with_data} hosts with data {verb} ({selected_count} selected)");
    let obs = match agg {
        Aggregate::AtLeast(n) => Obs {
            value: breaching as f64,
            breached: breaching >= n,
            cleared: uncleared < n,
        },
        Aggregate::Percent(p) => {
            let pct = |k: usize| 100.0 * k as f64 / with_data as f64;
            Obs {
                value: pct(breaching),
                breached: pct(breaching) >= p,
                cleared: pct(uncleared) < p,
            }
        }
    };
    Some((obs, note))
}

/// What an evaluation of one rule needs to build events.
struct Ctx<'a> {
    rule: &'a Rule,
    run: &'a Option<Arc<[String]>>,
    run_on_resolve: &'a Option<Arc<[String]>>,
    now: SystemTime,
    hosts: &'a [Arc<HostView>],
}

impl Ctx<'_> {
    fn host_name(&self, line: &Line) -> String {
        line.host
            .and_then(|h| self.hosts.get(h as usize))
            .map(|h| h.name.to_string())
            .unwrap_or_default()
    }

    fn event(
        &self,
        line: &Line,
        previous: TriggerState,
        reason: Reason,
        notify: bool,
        note: Option<String>,
    ) -> TriggerEvent {
        let state = line.underlying();
        let run = match (notify, state) {
            (false, _) => None,
            (true, TriggerState::Resolved) => self.run_on_resolve.clone(),
            (true, _) => self.run.clone(),
        };
        TriggerEvent {
            trigger: self.rule.name.clone(),
            previous,
            state,
            reason,
            severity: self.rule.severity,
            metric: self.rule.metric,
            host: self.host_name(line),
            instance: line.instance.to_string(),
            value: line.value,
            threshold: shown_threshold(self.rule),
            since: line.phase_since,
            notify,
            note: note.or_else(|| line.note.clone()),
            silenced_until: line.silenced_until.filter(|_| line.silenced(self.now)),
            message: None,
            by: None,
            bell: notify && self.rule.bell && state == TriggerState::Firing,
            run,
        }
    }
}

/// A command's view of a line (the host name comes from the set, not from views).
struct CmdCtx<'a> {
    ctx: &'a Ctx<'a>,
    host: &'a str,
}

impl CmdCtx<'_> {
    fn event(&self, line: &Line, previous: TriggerState, reason: Reason) -> TriggerEvent {
        let mut e = self.ctx.event(line, previous, reason, false, None);
        e.host = self.host.to_string();
        e.by = line.by.as_deref().map(str::to_string);
        e.state = match reason {
            Reason::Acknowledged => TriggerState::Acknowledged,
            Reason::Silenced => TriggerState::Silenced,
            _ => line.underlying(),
        };
        e.since = line.shown_since(self.ctx.now);
        e
    }
}

/// Whether a firing notification may go out now (not silenced, acknowledged, or within
/// the cooldown of the last one).
fn may_notify(rule: &Rule, line: &Line, now: SystemTime) -> bool {
    !line.silenced(now)
        && line.acked_at.is_none()
        && line.last_notified.is_none_or(|t| t + rule.cooldown <= now)
}

/// Advances one line by one tick. Returns whether its view changed.
fn step(ctx: &Ctx, line: &mut Line, events: &mut Vec<TriggerEvent>) -> bool {
    let rule = ctx.rule;
    let now = ctx.now;
    let mut changed = false;
    let value = line.obs.map(|o| o.value);
    if value != line.value {
        line.value = value;
        changed = line.phase != Phase::Ok || line.silenced_until.is_some();
    }
    // A silence that ran out: a line still firing and never announced is announced now.
    if let Some(until) = line.silenced_until
        && until <= now
    {
        line.silenced_until = None;
        let notify = line.phase == Phase::Firing
            && line.obs.is_some()
            && !line.episode_notified
            && may_notify(rule, line, now);
        if notify {
            line.last_notified = Some(now);
            line.episode_notified = true;
        }
        events.push(ctx.event(line, TriggerState::Silenced, Reason::SilenceEnded, notify, None));
        changed = true;
    }
    let before = line.underlying();
    match (line.phase, line.obs) {
        // No fresh data: nothing moves (it is neither a breach nor OK).
        (_, None) => {}
        (Phase::Ok | Phase::Resolved, Some(o)) if o.breached => {
            line.acked_at = None;
            line.episode_notified = false;
            line.phase_since = now;
            if rule.hold.is_zero() {
                fire(ctx, line, before, Reason::Breach, events);
            } else {
                line.phase = Phase::Pending;
                line.fires_at = Some(now + rule.hold);
                events.push(ctx.event(line, before, Reason::Breach, false, None));
            }
            return true;
        }
        (Phase::Pending, Some(o)) if !o.breached => {
            line.phase = Phase::Ok;
            line.phase_since = now;
            line.fires_at = None;
            events.push(ctx.event(line, before, Reason::Dip, false, None));
            return true;
        }
        (Phase::Pending, Some(_)) if line.fires_at.is_some_and(|t| t <= now) => {
            line.phase_since = now;
            fire(ctx, line, before, Reason::Held, events);
            return true;
        }
        (Phase::Firing, Some(o)) if o.cleared => {
            let notify = line.episode_notified && !line.silenced(now) && ctx.run_on_resolve.is_some();
            line.phase = Phase::Resolved;
            line.phase_since = now;
            line.acked_at = None;
            events.push(ctx.event(line, before, Reason::Cleared, notify, None));
            return true;
        }
        _ => {}
    }
    match line.phase {
        Phase::Resolved if line.phase_since + RESOLVED_SHOWN <= now => {
            line.phase = Phase::Ok;
            line.phase_since = now;
            events.push(ctx.event(line, before, Reason::Settled, false, None));
            changed = true;
        }
        // Still firing on fresh data: a held-back notification, or a repeat.
        Phase::Firing if line.obs.is_some() && may_notify(rule, line, now) => {
            let reason = if !line.episode_notified {
                Some(Reason::CooldownOver)
            } else {
                rule.repeat
                    .filter(|r| line.last_notified.is_some_and(|t| t + *r <= now))
                    .map(|_| Reason::Repeat)
            };
            if let Some(reason) = reason {
                line.last_notified = Some(now);
                line.episode_notified = true;
                events.push(ctx.event(line, before, reason, true, None));
                changed = true;
            }
        }
        _ => {}
    }
    changed
}

/// Enters `firing`, notifying unless silenced, acknowledged or within the cooldown.
fn fire(ctx: &Ctx, line: &mut Line, before: TriggerState, reason: Reason, events: &mut Vec<TriggerEvent>) {
    line.phase = Phase::Firing;
    line.fires_at = None;
    let notify = may_notify(ctx.rule, line, ctx.now);
    let note = match line.last_notified {
        Some(t) if !notify && !line.silenced(ctx.now) => Some(format!(
            "notification held back by cooldown until {}",
            crate::model::rfc3339(t + ctx.rule.cooldown)
        )),
        _ => None,
    };
    if notify {
        line.last_notified = Some(ctx.now);
        line.episode_notified = true;
    }
    events.push(ctx.event(line, before, reason, notify, note));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use super::{TriggerSet, format_value};
    use crate::config::Via;
    use crate::model::{CheckReport, HostStatus, Metric, Reading};
    use crate::snapshot::HostView;
    use crate::triggers::rule::{Condition, Rule, Scope, Severity};

    fn rule(name: &str, metric: Metric, above: f64) -> Rule {
        Rule {
            name: name.to_string(),
            metric,
            scope: Scope::Each,
            hosts: None,
            instance: None,
            condition: Condition::Above(above),
            clear: above,
            hold: Duration::ZERO,
            cooldown: Duration::ZERO,
            repeat: None,
            severity: Severity::Warning,
            run: Vec::new(),
            run_on_resolve: Vec::new(),
            bell: false,
            aggregate: None,
            alertmanager: Vec::new(),
        }
    }

    fn firing(set: &TriggerSet) -> Vec<String> {
        let mut v: Vec<String> = set
            .views()
            .into_iter()
            .filter(|t| t.state == super::TriggerState::Firing)
            .map(|t| t.name)
            .collect();
        v.sort();
        v
    }

    /// The per-host index is reused while a view's parts are the same allocations: a new
    /// system vector, a new checks list or a part shared with an older view must each be
    /// seen on the next tick.
    #[test]
    fn cached_index_follows_every_changed_part() {
        let check = Metric::register(crate::model::NewMetric {
            name: "check.state_cache_probe".to_string(),
            unit: crate::model::Unit::Custom("jobs"),
            instance: "",
            risk: crate::model::Risk::Higher,
            description: "test".to_string(),
        })
        .expect("registers");
        let mut set = TriggerSet::new(
            vec![rule("cpu", Metric::CpuUsage, 90.0), rule("chk", check, 5.0)],
            Duration::from_secs(3600),
        );
        let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let report = |v: f64| {
            Arc::new(CheckReport {
                name: Arc::from("cache_probe"),
                status: 0,
                message: Arc::from(""),
                duration_ms: 1.0,
                readings: vec![Reading::host(check, v)],
            })
        };
        let base = HostView {
            last_update: Some(now),
            rounds: 3,
            checks: Arc::new(vec![report(1.0)]),
            ..HostView::new(
                "h1",
                Via::Ssh,
                HostStatus::Up,
                vec![Reading::host(Metric::CpuUsage, 10.0)],
            )
        };
        let mut tick = |set: &mut TriggerSet, v: &HostView| {
            now += Duration::from_millis(250);
            let mut view = v.clone();
            view.last_update = Some(now);
            set.evaluate(now, &[Arc::new(view)], &[]);
        };
        tick(&mut set, &base);
        assert!(firing(&set).is_empty());
        // Same parts again: nothing changes.
        tick(&mut set, &base);
        assert!(firing(&set).is_empty());
        // A new system vector: cpu breaches.
        let hot = HostView {
            system: Arc::new(vec![Reading::host(Metric::CpuUsage, 95.0)]),
            ..base.clone()
        };
        tick(&mut set, &hot);
        assert_eq!(firing(&set), ["cpu"]);
        // A new checks list on the same system vector: the check breaches too.
        let both = HostView {
            checks: Arc::new(vec![report(9.0)]),
            ..hot.clone()
        };
        tick(&mut set, &both);
        assert_eq!(firing(&set), ["chk", "cpu"]);
        // Back to the first view's parts (still alive): both resolve.
        tick(&mut set, &base);
        assert!(firing(&set).is_empty());
    }

    #[test]
    fn values_have_at_most_two_decimals() {
        assert_eq!(format_value(90.0), "90");
        assert_eq!(format_value(97.25), "97.25");
        assert_eq!(format_value(1.0 / 3.0), "0.33");
        assert_eq!(format_value(2.5), "2.5");
        assert_eq!(format_value(64e9), "64000000000");
    }
}
