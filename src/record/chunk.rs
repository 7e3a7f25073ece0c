//! The content of data and event blocks: how host rows and trigger lists are encoded by the
//! writer ([`Encoder`]) and rebuilt by the reader ([`Decoder`]).
//!
//! A data block holds, in order: the strings and series first used in it, the host rows,
//! and the trigger lists. Strings (host names, metric names, instances, errors, process
//! names) are numbered per *key run*: a key block starts the numbering afresh and holds a
//! row for every host with its whole state, so decoding can start at any key block. Metrics
//! are stored by NAME, so metrics added at run time (checks) record like catalogue ones.
//!
//! A row is one host's state after a change the engine published: time, status, error,
//! last update, rounds, and every current value (a delta of the series' previous value at
//! its scale, see [`codec`](super::codec)). A row is length-prefixed, so a reader that wants
//! one host's history can skip the others.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::codec::{Cursor, Malformed, Prev, get_value, put_bytes, put_ivar, put_uvar, put_value, scale_of};
use crate::config::Via;
use crate::model::{
    HostName, HostStatus, Metric, NewMetric, ProcessDetail, Reading, Risk, Source, empty_instance,
};
use crate::snapshot::{HostView, Snapshot};
use crate::store::HostHistory;
use crate::triggers::rule::Severity;
use crate::triggers::{TriggerState, TriggerView};

pub fn ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub fn from_ms(t: i64) -> SystemTime {
    if t >= 0 {
        UNIX_EPOCH + Duration::from_millis(t as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(t.unsigned_abs())
    }
}

const STATUSES: [HostStatus; 7] = [
    HostStatus::Connecting,
    HostStatus::Up,
    HostStatus::Unreachable,
    HostStatus::Timeout,
    HostStatus::AuthFailed,
    HostStatus::HostKeyMismatch,
    HostStatus::Error,
];
const VIAS: [Via; 4] = [Via::Ssh, Via::Local, Via::Ping, Via::Prometheus];
const SOURCES: [Source; 3] = [Source::System, Source::Ping, Source::External];

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).unwrap_or(0) as u8
}

/// A metric by its recorded name. A name this process does not know (a check metric of
/// the recording process, replayed elsewhere) is registered, with the recorded risk.
pub fn metric_by_name(name: &str, risk: Risk) -> Option<Metric> {
    Metric::by_name(name).or_else(|| {
        Metric::register(NewMetric {
            name: name.to_string(),
            unit: crate::model::Unit::Custom(""),
            instance: "",
            risk,
            description: "recorded check metric".to_string(),
        })
        .ok()
    })
}

const RISKS: [Risk; 3] = [Risk::None, Risk::Higher, Risk::Lower];

/// A trigger line as recorded (JSON inside the block: a list changes rarely and is small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecTrigger {
    pub name: String,
    pub state: String,
    pub severity: String,
    pub metric: String,
    pub host: String,
    pub instance: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub since: i64,
    pub fires_at: Option<i64>,
    pub silenced_until: Option<i64>,
    /// Who acknowledged or silenced it (a `lookout attach` viewer); absent in older segments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

const TRIGGER_STATES: [TriggerState; 6] = [
    TriggerState::Ok,
    TriggerState::Pending,
    TriggerState::Firing,
    TriggerState::Resolved,
    TriggerState::Acknowledged,
    TriggerState::Silenced,
];
const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

impl RecTrigger {
    pub fn from_view(t: &TriggerView) -> Self {
        RecTrigger {
            name: t.name.clone(),
            state: t.state.as_str().to_string(),
            severity: t.severity.as_str().to_string(),
            metric: t.metric.name().to_string(),
            host: t.host.clone(),
            instance: t.instance.clone(),
            value: t.value,
            threshold: t.threshold,
            since: ms(t.since),
            fires_at: t.fires_at.map(ms),
            silenced_until: t.silenced_until.map(ms),
            by: t.by.clone(),
        }
    }
    pub fn to_view(&self) -> Option<TriggerView> {
        Some(TriggerView {
            name: self.name.clone(),
            state: *TRIGGER_STATES.iter().find(|s| s.as_str() == self.state)?,
            severity: *SEVERITIES.iter().find(|s| s.as_str() == self.severity)?,
            metric: metric_by_name(&self.metric, Risk::None)?,
            host: self.host.clone(),
            instance: self.instance.clone(),
            value: self.value,
            threshold: self.threshold,
            since: from_ms(self.since),
            fires_at: self.fires_at.map(from_ms),
            silenced_until: self.silenced_until.map(from_ms),
            by: self.by.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Writing.

#[derive(Default)]
struct HostEnc {
    sid: u32,
    /// The last view written (a new `Arc` from the engine means the host changed).
    view: Option<Arc<HostView>>,
    t: i64,
    rounds: u64,
    layout: Vec<u32>,
    prev: Vec<Prev>,
    processes: Option<Arc<Vec<ProcessDetail>>>,
}

/// Turns the engine's snapshots into data block payloads (before compression).
pub struct Encoder {
    /// Keep values that are not whole steps of their scale exactly (measurements only).
    pub lossless: bool,
    strings: FxHashMap<Arc<str>, u32>,
    new_strings: Vec<Arc<str>>,
    series: FxHashMap<(Metric, Arc<str>, Source), u32>,
    series_scale: Vec<u32>,
    new_series: Vec<u8>,
    new_series_n: u64,
    hosts: FxHashMap<HostName, HostEnc>,
    rows: Vec<u8>,
    n_rows: u64,
    /// Values written since the last block (for bytes-per-sample figures).
    pub samples: u64,
    triggers: Vec<u8>,
    n_triggers: u64,
    last_triggers: Option<Vec<RecTrigger>>,
    span: Option<(i64, i64)>,
    key: bool,
    scratch: Vec<u8>,
    layout: Vec<u32>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Encoder {
            lossless: false,
            strings: FxHashMap::default(),
            new_strings: Vec::new(),
            series: FxHashMap::default(),
            series_scale: Vec::new(),
            new_series: Vec::new(),
            new_series_n: 0,
            hosts: FxHashMap::default(),
            rows: Vec::new(),
            n_rows: 0,
            samples: 0,
            triggers: Vec::new(),
            n_triggers: 0,
            last_triggers: None,
            span: None,
            key: true,
            scratch: Vec::new(),
            layout: Vec::new(),
        }
    }

    /// Starts a key run with the next block: string numbering starts over and every host
    /// gets a whole row at the next snapshot. Call it between blocks.
    pub fn start_key(&mut self) {
        self.strings.clear();
        self.series.clear();
        self.series_scale.clear();
        self.hosts.clear();
        self.last_triggers = None;
        self.key = true;
    }

    /// Whether the block being built has content.
    pub fn is_empty(&self) -> bool {
        self.span.is_none()
    }

    fn widen(&mut self, t: i64) {
        self.span = Some(match self.span {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
    }

    fn sid(&mut self, s: &Arc<str>) -> u32 {
        if let Some(&id) = self.strings.get(s) {
            return id;
        }
        let id = self.strings.len() as u32;
        self.strings.insert(s.clone(), id);
        self.new_strings.push(s.clone());
        id
    }

    fn series_id(&mut self, r: &Reading, source: Source) -> u32 {
        let key = (r.metric, r.instance.clone(), source);
        if let Some(&id) = self.series.get(&key) {
            return id;
        }
        let id = self.series.len() as u32;
        let scale = scale_of(r.metric.info().unit);
        let m = self.sid(&Arc::from(r.metric.name()));
        let i = self.sid(&r.instance);
        put_uvar(&mut self.new_series, u64::from(m));
        put_uvar(&mut self.new_series, u64::from(i));
        self.new_series.push(index_of(&SOURCES, &source));
        put_uvar(&mut self.new_series, u64::from(scale));
        self.new_series.push(index_of(&RISKS, &r.metric.risk()));
        self.new_series_n += 1;
        self.series.insert(key, id);
        self.series_scale.push(scale);
        id
    }

    /// Adds a row for every host whose view changed since the last one written, and the
    /// trigger list when it changed.
    pub fn add_snapshot(&mut self, snap: &Snapshot) {
        let t = ms(snap.taken_at);
        for view in &snap.hosts {
            let changed = self
                .hosts
                .get(&view.name)
                .and_then(|h| h.view.as_ref())
                .is_none_or(|v| !Arc::ptr_eq(v, view));
            if changed {
                self.add_row(t, view);
            }
        }
        let triggers: Vec<RecTrigger> = snap.triggers.iter().map(RecTrigger::from_view).collect();
        if self.last_triggers.as_ref() != Some(&triggers) {
            self.widen(t);
            put_ivar(&mut self.triggers, t);
            let json = serde_json::to_vec(&triggers).unwrap_or_default();
            put_bytes(&mut self.triggers, &json);
            self.n_triggers += 1;
            self.last_triggers = Some(triggers);
        }
    }

    fn add_row(&mut self, t: i64, view: &Arc<HostView>) {
        self.widen(t);
        let first = !self.hosts.contains_key(&view.name);
        if first {
            let sid = self.sid(&view.name);
            self.hosts.insert(
                view.name.clone(),
                HostEnc {
                    sid,
                    ..HostEnc::default()
                },
            );
        }
        let group = view.group.as_deref().map(|g| self.sid(&Arc::from(g)));
        let error = view.error.as_deref().map(|e| self.sid(&Arc::from(e)));
        // The series of this row, in the view's order (host.up is derived from the status).
        let mut layout = std::mem::take(&mut self.layout);
        layout.clear();
        for (source, part) in [
            (Source::System, &view.system),
            (Source::Ping, &view.ping),
            (Source::External, &view.external),
        ] {
            for r in part.iter() {
                let id = self.series_id(r, source);
                layout.push(id);
            }
        }
        let procs_changed = {
            let h = self.hosts.get(&view.name);
            h.and_then(|h| h.processes.as_ref())
                .is_none_or(|p| !Arc::ptr_eq(p, &view.processes) && **p != *view.processes)
        };
        let mut procs = Vec::new();
        if procs_changed {
            let before = self.hosts.get(&view.name).and_then(|h| h.processes.clone());
            self.encode_processes(&view.processes, before.as_deref().map(Vec::as_slice), &mut procs);
        }
        let Some(h) = self.hosts.get_mut(&view.name) else {
            return;
        };
        let out = &mut self.scratch;
        out.clear();
        out.push(u8::from(first));
        if first {
            put_uvar(out, group.map_or(0, |g| u64::from(g) + 1));
            out.push(index_of(&VIAS, &view.via));
        }
        put_ivar(out, t - h.t);
        h.t = t;
        out.push(index_of(&STATUSES, &view.status));
        put_uvar(out, error.map_or(0, |e| u64::from(e) + 1));
        put_uvar(
            out,
            view.last_update.map_or(0, |lu| (t - ms(lu)).max(0) as u64 + 1),
        );
        put_ivar(out, view.rounds as i64 - h.rounds as i64);
        h.rounds = view.rounds;
        if layout == h.layout {
            put_uvar(out, 0);
        } else {
            put_uvar(out, layout.len() as u64 + 1);
            let mut prev = Vec::with_capacity(layout.len());
            for &id in &layout {
                put_uvar(out, u64::from(id));
                let p = h.layout.iter().position(|&x| x == id).map(|i| h.prev[i]);
                prev.push(p.unwrap_or_default());
            }
            h.prev = prev;
            std::mem::swap(&mut h.layout, &mut layout);
        }
        let values = view
            .system
            .iter()
            .chain(view.ping.iter())
            .chain(view.external.iter());
        for ((r, p), &id) in values.zip(h.prev.iter_mut()).zip(&h.layout) {
            let scale = self.series_scale[id as usize];
            put_value(out, p, scale, self.lossless, r.value);
        }
        // A process's five numbers (cpu, mem, rss, vms, shared) are values of the moment too.
        self.samples += h.layout.len() as u64 + 5 * view.processes.len() as u64;
        if procs_changed {
            out.push(1);
            out.extend_from_slice(&procs);
            h.processes = Some(view.processes.clone());
        } else {
            out.push(0);
        }
        h.view = Some(view.clone());
        put_uvar(&mut self.rows, u64::from(h.sid));
        put_bytes(&mut self.rows, out);
        self.n_rows += 1;
        self.layout = layout;
    }

    /// A process list: each process either new (all its fields) or the same process as
    /// one of the host's previous list (same pid, names and affinity), then only the
    /// changes of its numbers.
    fn encode_processes(
        &mut self,
        procs: &[ProcessDetail],
        before: Option<&[ProcessDetail]>,
        out: &mut Vec<u8>,
    ) {
        put_uvar(out, procs.len() as u64);
        let before = before.unwrap_or(&[]);
        for (j, p) in procs.iter().enumerate() {
            let same = |q: &ProcessDetail| {
                q.pid == p.pid
                    && q.watch == p.watch
                    && q.name == p.name
                    && q.cmdline == p.cmdline
                    && q.cpu_affinity == p.cpu_affinity
            };
            let k = match before.get(j) {
                Some(q) if same(q) => Some(j),
                _ => before.iter().position(same),
            };
            if let Some(k) = k {
                let q = &before[k];
                put_uvar(out, k as u64 + 1);
                put_value(out, &mut Prev::of(q.cpu_pct, 100), 100, self.lossless, p.cpu_pct);
                put_value(out, &mut Prev::of(q.mem_pct, 100), 100, self.lossless, p.mem_pct);
                put_ivar(out, (p.rss_bytes as i64).wrapping_sub(q.rss_bytes as i64));
                put_ivar(out, (p.vms_bytes as i64).wrapping_sub(q.vms_bytes as i64));
                put_ivar(out, (p.shared_bytes as i64).wrapping_sub(q.shared_bytes as i64));
                continue;
            }
            put_uvar(out, 0);
            let watch = self.sid(&p.watch);
            let name = self.sid(&p.name);
            let cmd = self.sid(&p.cmdline);
            put_uvar(out, u64::from(watch));
            put_uvar(out, u64::from(p.pid));
            put_uvar(out, u64::from(name));
            put_value(out, &mut Prev::default(), 100, self.lossless, p.cpu_pct);
            put_value(out, &mut Prev::default(), 100, self.lossless, p.mem_pct);
            put_uvar(out, p.rss_bytes);
            put_uvar(out, p.vms_bytes);
            put_uvar(out, p.shared_bytes);
            put_uvar(out, p.cpu_affinity.len() as u64);
            for &c in &p.cpu_affinity {
                put_uvar(out, c as u64);
            }
            put_uvar(out, u64::from(cmd));
        }
    }

    /// The block built so far: (flags, t_first, t_last, payload), and a fresh one begun.
    pub fn take_block(&mut self) -> Option<(u8, i64, i64, Vec<u8>)> {
        let (t0, t1) = self.span.take()?;
        let mut p = Vec::with_capacity(self.rows.len() + self.triggers.len() + 256);
        put_uvar(&mut p, self.new_strings.len() as u64);
        for s in self.new_strings.drain(..) {
            put_bytes(&mut p, s.as_bytes());
        }
        put_uvar(&mut p, self.new_series_n);
        p.append(&mut self.new_series);
        self.new_series_n = 0;
        put_uvar(&mut p, self.n_rows);
        p.append(&mut self.rows);
        self.n_rows = 0;
        put_uvar(&mut p, self.n_triggers);
        p.append(&mut self.triggers);
        self.n_triggers = 0;
        let flags = if self.key { super::format::FLAG_KEY } else { 0 };
        self.key = false;
        Some((flags, t0, t1, p))
    }
}

/// An events block payload: (time, JSON line) pairs.
pub fn encode_events(events: &[(i64, String)]) -> Vec<u8> {
    let mut p = Vec::new();
    put_uvar(&mut p, events.len() as u64);
    for (t, line) in events {
        put_ivar(&mut p, *t);
        put_bytes(&mut p, line.as_bytes());
    }
    p
}

pub fn decode_events(p: &[u8]) -> Result<Vec<(i64, String)>, Malformed> {
    let mut c = Cursor::new(p);
    let n = c.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = c.ivar()?;
        let line = std::str::from_utf8(c.bytes()?).map_err(|_| Malformed("event is not UTF-8"))?;
        out.push((t, line.to_string()));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading.

#[derive(Clone)]
struct SeriesDef {
    metric: Option<Metric>,
    instance: Arc<str>,
    source: Source,
    scale: u32,
}

/// One host as rebuilt from its rows.
pub struct HostRec {
    pub name: HostName,
    group: Option<String>,
    via: Via,
    status: HostStatus,
    error: Option<String>,
    last_update: Option<i64>,
    rounds: u64,
    /// Time of the row last applied.
    pub t: i64,
    layout: Vec<u32>,
    prev: Vec<Prev>,
    values: Vec<f64>,
    processes: Arc<Vec<ProcessDetail>>,
    /// Boxed: most hosts of a decoder gather none (the seek cache keeps many states), and
    /// the rings' tables are large inline.
    history: Option<Box<HostHistory>>,
}

/// History to gather while decoding: rows from `from` on, `cap` samples a series, for the
/// hosts in `only` (every host when None) and the series of `metrics` (every charted one
/// when None).
#[derive(Clone, Debug, Default)]
pub struct HistorySpec {
    pub from: i64,
    pub cap: usize,
    pub only: Option<Vec<HostName>>,
    pub metrics: Option<Vec<Metric>>,
}

/// Rebuilds host states, trigger lists from data blocks, up to a time.
#[derive(Default)]
pub struct Decoder {
    strings: Vec<Arc<str>>,
    series: Vec<SeriesDef>,
    by_sid: FxHashMap<u32, usize>,
    by_name: FxHashMap<HostName, usize>,
    pub hosts: Vec<HostRec>,
    pub triggers: Vec<RecTrigger>,
    /// Time of the last row or trigger list applied.
    pub t: Option<i64>,
    pub history: Option<HistorySpec>,
    /// Whether a key block was applied (before one, nothing is known).
    pub started: bool,
    /// Values decoded so far (for bytes-per-value figures).
    pub values: u64,
}

impl Decoder {
    /// A decoder that gathers history as `history` asks.
    pub fn with_history(history: Option<HistorySpec>) -> Self {
        Decoder {
            history,
            ..Decoder::default()
        }
    }

    fn string(&self, id: u64) -> Result<&Arc<str>, Malformed> {
        self.strings.get(id as usize).ok_or(Malformed("unknown string"))
    }

    fn wants_history(&self, name: &str, t: i64) -> bool {
        self.history
            .as_ref()
            .is_some_and(|h| t >= h.from && h.only.as_ref().is_none_or(|o| o.iter().any(|n| &**n == name)))
    }

    /// Applies one decompressed data block, rows up to `until` (ms). With `full` false, rows
    /// of hosts outside the history's `only` list are skipped (before the key block a full
    /// state starts from, only history is wanted).
    pub fn apply(&mut self, key: bool, p: &[u8], until: i64, full: bool) -> Result<(), Malformed> {
        if key {
            self.strings.clear();
            self.series.clear();
            self.by_sid.clear();
            self.started = true;
        } else if !self.started {
            return Ok(());
        }
        let mut c = Cursor::new(p);
        for _ in 0..c.count()? {
            let s = std::str::from_utf8(c.bytes()?).map_err(|_| Malformed("string is not UTF-8"))?;
            self.strings.push(Arc::from(s));
        }
        for _ in 0..c.count()? {
            let m = c.uvar()?;
            let i = c.uvar()?;
            let source = *SOURCES.get(c.u8()? as usize).ok_or(Malformed("bad source"))?;
            let scale = c.uvar()?.clamp(1, 1_000_000_000) as u32;
            let risk = *RISKS.get(c.u8()? as usize).ok_or(Malformed("bad risk"))?;
            let metric = metric_by_name(self.string(m)?, risk);
            let instance = self.string(i)?.clone();
            let instance = if instance.is_empty() {
                empty_instance()
            } else {
                instance
            };
            self.series.push(SeriesDef {
                metric,
                instance,
                source,
                scale,
            });
        }
        // Which series feed the history, by series id (the overview wants one of ~40).
        let hist_series: Vec<bool> = match &self.history {
            Some(spec) => self
                .series
                .iter()
                .map(|s| {
                    s.metric.is_some_and(|m| {
                        m.info().history && spec.metrics.as_ref().is_none_or(|w| w.contains(&m))
                    })
                })
                .collect(),
            None => Vec::new(),
        };
        let rows = c.count()?;
        let mut stopped = false;
        for _ in 0..rows {
            let sid = c.uvar()? as u32;
            let body = c.bytes()?;
            if stopped {
                continue;
            }
            let mut r = Cursor::new(body);
            let first = r.u8()? == 1;
            if !first && !self.by_sid.contains_key(&sid) {
                // Its first row was in a block that could not be read.
                continue;
            }
            let name = self.string(u64::from(sid))?.clone();
            if !full && !self.wants_history(&name, i64::MAX) {
                continue;
            }
            let hi = if first {
                let group = match r.uvar()? {
                    0 => None,
                    g => Some(self.string(g - 1)?.to_string()),
                };
                let via = *VIAS.get(r.u8()? as usize).ok_or(Malformed("bad via"))?;
                let hi = match self.by_name.get(&name) {
                    Some(&hi) => hi,
                    None => {
                        self.hosts.push(HostRec {
                            name: name.clone(),
                            group: None,
                            via,
                            status: HostStatus::Connecting,
                            error: None,
                            last_update: None,
                            rounds: 0,
                            t: 0,
                            layout: Vec::new(),
                            prev: Vec::new(),
                            values: Vec::new(),
                            processes: Arc::default(),
                            history: None,
                        });
                        self.by_name.insert(name.clone(), self.hosts.len() - 1);
                        self.hosts.len() - 1
                    }
                };
                let h = &mut self.hosts[hi];
                h.group = group;
                h.via = via;
                h.t = 0;
                h.rounds = 0;
                h.layout.clear();
                h.prev.clear();
                h.values.clear();
                self.by_sid.insert(sid, hi);
                hi
            } else {
                self.by_sid[&sid]
            };
            let t = self.hosts[hi].t + r.ivar()?;
            if t > until {
                // Rows are in time order: the rest of the block is later still.
                stopped = true;
                continue;
            }
            let status = *STATUSES.get(r.u8()? as usize).ok_or(Malformed("bad status"))?;
            let error = match r.uvar()? {
                0 => None,
                e => Some(self.string(e - 1)?.to_string()),
            };
            let last_update = match r.uvar()? {
                0 => None,
                d => Some(t - (d as i64 - 1)),
            };
            let rounds_delta = r.ivar()?;
            let layout_n = r.uvar()?;
            let h = &self.hosts[hi];
            // A new sample moves last_update; a status change or a key block's repeat of
            // the state does not, and the engine's history holds samples only.
            let history =
                self.wants_history(&name, t) && last_update.is_some() && last_update != h.last_update;
            let h = &mut self.hosts[hi];
            h.t = t;
            h.status = status;
            h.error = error;
            h.last_update = last_update;
            h.rounds = (h.rounds as i64).wrapping_add(rounds_delta) as u64;
            if layout_n != 0 {
                let n = (layout_n - 1) as usize;
                if n > body.len() {
                    return Err(Malformed("layout beyond the row"));
                }
                let mut layout = Vec::with_capacity(n);
                let mut prev = Vec::with_capacity(n);
                for _ in 0..n {
                    let id = r.uvar()? as u32;
                    if id as usize >= self.series.len() {
                        return Err(Malformed("unknown series"));
                    }
                    let p = h.layout.iter().position(|&x| x == id).map(|i| h.prev[i]);
                    prev.push(p.unwrap_or_default());
                    layout.push(id);
                }
                h.layout = layout;
                h.prev = prev;
                h.values.resize(n, 0.0);
            }
            for ((v, p), &id) in h.values.iter_mut().zip(h.prev.iter_mut()).zip(&h.layout) {
                *v = get_value(&mut r, p, self.series[id as usize].scale)?;
            }
            self.values += h.layout.len() as u64;
            // Before the key block the state starts from, only history is wanted: that key
            // block repeats every host's process list in full.
            if full && r.u8()? == 1 {
                h.processes = Arc::new(decode_processes(&mut r, &self.strings, &h.processes)?);
            }
            self.values += 5 * h.processes.len() as u64;
            if history && let Some(spec) = &self.history {
                let hist = h
                    .history
                    .get_or_insert_with(|| Box::new(HostHistory::new(spec.cap)));
                for source in SOURCES {
                    // Only the wanted series become readings.
                    let readings: Vec<Reading> = h
                        .layout
                        .iter()
                        .zip(&h.values)
                        .filter_map(|(&id, &v)| {
                            if !hist_series.get(id as usize).copied().unwrap_or(false) {
                                return None;
                            }
                            let s = self.series.get(id as usize)?;
                            let metric = s.metric.filter(|_| s.source == source)?;
                            Some(Reading {
                                metric,
                                instance: s.instance.clone(),
                                value: v,
                            })
                        })
                        .collect();
                    if !readings.is_empty() {
                        hist.record(source, &readings);
                    }
                }
            }
            self.t = Some(self.t.map_or(t, |x| x.max(t)));
        }
        for _ in 0..c.count()? {
            let t = c.ivar()?;
            let json = c.bytes()?;
            if t > until || !full {
                continue;
            }
            self.triggers = serde_json::from_slice(json).map_err(|_| Malformed("bad trigger list"))?;
            self.t = Some(self.t.map_or(t, |x| x.max(t)));
        }
        Ok(())
    }

    /// The recorded state as a snapshot taken at `at`.
    pub fn snapshot(&mut self, at: SystemTime, interval: Duration) -> Snapshot {
        let hosts: Vec<Arc<HostView>> = self
            .hosts
            .iter_mut()
            .map(|h| Arc::new(h.view(&self.series)))
            .collect();
        let max_risk = crate::engine::max_risk_of(&hosts, at, interval);
        Snapshot {
            taken_at: at,
            seq: 0,
            interval,
            hosts,
            max_risk,
            triggers: self.triggers.iter().filter_map(RecTrigger::to_view).collect(),
        }
    }

    /// A copy of the decoded state without any history gathered: what a seek cache keeps
    /// between blocks, to go on decoding from there later.
    pub fn state_clone(&self) -> Decoder {
        Decoder {
            strings: self.strings.clone(),
            series: self.series.clone(),
            by_sid: self.by_sid.clone(),
            by_name: self.by_name.clone(),
            hosts: self.hosts.iter().map(HostRec::state_clone).collect(),
            triggers: self.triggers.clone(),
            t: self.t,
            history: None,
            started: self.started,
            values: self.values,
        }
    }

    /// Takes in another writer's hosts (two lookouts recording into one directory): the
    /// newer row of a host wins, and the newer trigger list.
    pub fn merge(&mut self, other: Decoder) {
        for h in other.hosts {
            match self.by_name.get(&h.name) {
                Some(&i) if self.hosts[i].t >= h.t => {}
                Some(&i) => self.hosts[i] = h,
                None => {
                    self.by_name.insert(h.name.clone(), self.hosts.len());
                    self.hosts.push(h);
                }
            }
        }
        if other.t > self.t {
            self.triggers = other.triggers;
            self.t = other.t;
        }
    }
}

fn readings_of(layout: &[u32], values: &[f64], series: &[SeriesDef], source: Source) -> Vec<Reading> {
    layout
        .iter()
        .zip(values)
        .filter_map(|(&id, &v)| {
            let s = series.get(id as usize)?;
            (s.source == source).then_some(())?;
            Some(Reading {
                metric: s.metric?,
                instance: s.instance.clone(),
                value: v,
            })
        })
        .collect()
}

impl HostRec {
    fn state_clone(&self) -> HostRec {
        HostRec {
            name: self.name.clone(),
            group: self.group.clone(),
            via: self.via,
            status: self.status,
            error: self.error.clone(),
            last_update: self.last_update,
            rounds: self.rounds,
            t: self.t,
            layout: self.layout.clone(),
            prev: self.prev.clone(),
            values: self.values.clone(),
            processes: self.processes.clone(),
            history: None,
        }
    }

    fn view(&mut self, series: &[SeriesDef]) -> HostView {
        let mut v = HostView::new("", self.via, self.status, Vec::new());
        v.name = self.name.clone();
        v.group = self.group.clone();
        v.error = self.error.clone();
        v.last_update = self.last_update.map(from_ms);
        v.rounds = self.rounds;
        v.system = Arc::new(readings_of(&self.layout, &self.values, series, Source::System));
        v.ping = Arc::new(readings_of(&self.layout, &self.values, series, Source::Ping));
        v.external = Arc::new(readings_of(&self.layout, &self.values, series, Source::External));
        v.processes = self.processes.clone();
        if let Some(h) = self.history.take() {
            v.history = Arc::new(std::sync::RwLock::new(*h));
        }
        v
    }
}

fn decode_processes(
    r: &mut Cursor,
    strings: &[Arc<str>],
    before: &[ProcessDetail],
) -> Result<Vec<ProcessDetail>, Malformed> {
    let s = |id: u64| {
        strings
            .get(id as usize)
            .cloned()
            .ok_or(Malformed("unknown string"))
    };
    let n = r.count()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let k = r.uvar()?;
        if k > 0 {
            let q = before.get(k as usize - 1).ok_or(Malformed("unknown process"))?;
            let cpu_pct = get_value(r, &mut Prev::of(q.cpu_pct, 100), 100)?;
            let mem_pct = get_value(r, &mut Prev::of(q.mem_pct, 100), 100)?;
            let rss_bytes = (q.rss_bytes as i64).wrapping_add(r.ivar()?) as u64;
            let vms_bytes = (q.vms_bytes as i64).wrapping_add(r.ivar()?) as u64;
            let shared_bytes = (q.shared_bytes as i64).wrapping_add(r.ivar()?) as u64;
            out.push(ProcessDetail {
                cpu_pct,
                mem_pct,
                rss_bytes,
                vms_bytes,
                shared_bytes,
                ..q.clone()
            });
            continue;
        }
        let watch = s(r.uvar()?)?;
        let pid = r.uvar()? as u32;
        let name = s(r.uvar()?)?;
        let cpu_pct = get_value(r, &mut Prev::default(), 100)?;
        let mem_pct = get_value(r, &mut Prev::default(), 100)?;
        let rss_bytes = r.uvar()?;
        let vms_bytes = r.uvar()?;
        let shared_bytes = r.uvar()?;
        let na = r.count()?;
        let mut cpu_affinity = Vec::with_capacity(na);
        for _ in 0..na {
            cpu_affinity.push(r.uvar()? as usize);
        }
        let cmdline = s(r.uvar()?)?;
        out.push(ProcessDetail {
            watch,
            pid,
            name,
            cpu_pct,
            mem_pct,
            rss_bytes,
            vms_bytes,
            shared_bytes,
            cpu_affinity,
            cmdline,
        });
    }
    Ok(out)
}
