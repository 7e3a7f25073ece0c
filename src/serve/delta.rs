//! Snapshots as wire messages and back: the server turns consecutive snapshots into a
//! [`Delta`] (only hosts whose view changed, and of those only the sources that changed);
//! the viewer keeps a [`Replica`] that applies full states and deltas and hands the
//! dashboard an ordinary [`Snapshot`].
//!
//! Change detection is by pointer: the engine publishes a new `Arc<HostView>` only for a
//! host that changed, and within it a new `Arc` only for a source that sent a sample, so
//! comparing two snapshots costs one pointer comparison per host.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use super::protocol::{
    CheckChange, Delta, Header, Part, ProcFigures, ProcSteps, Procs, ServerMsg, State, WireCheck, WireChecks,
    WireHost, WireTriggers, step_count, steps_per_unit,
};
use crate::collectors::checks::parse::{MAX_MESSAGE, MAX_VALUES};
use crate::model::{CheckReport, HostName, HostStatus, Metric, ProcessDetail, Reading, Source};
use crate::snapshot::{HostView, Snapshot};
use crate::store::HostHistory;

fn header(s: &Snapshot) -> Header {
    Header {
        seq: s.seq,
        taken_at: s.taken_at,
        interval: s.interval,
    }
}

/// A host's wire form: every part when `old` is `None`, else only the parts that changed.
fn wire_host<'a>(h: &'a HostView, old: Option<&HostView>) -> WireHost<'a> {
    WireHost {
        name: h.name.clone(),
        group: h.group.as_deref().map(Cow::Borrowed),
        via: h.via,
        status: h.status,
        error: h.error.as_deref().map(Cow::Borrowed),
        last_update: h.last_update,
        rounds: h.rounds,
        system: part(&h.system, old.map(|o| &o.system)),
        ping: part(&h.ping, old.map(|o| &o.ping)),
        external: part(&h.external, old.map(|o| &o.external)),
        processes: procs(&h.processes, old.map(|o| &o.processes)),
        checks: checks(&h.checks, old.map(|o| &o.checks)),
    }
}

fn same_series(a: &Reading, b: &Reading) -> bool {
    a.metric == b.metric && (Arc::ptr_eq(&a.instance, &b.instance) || a.instance == b.instance)
}

/// One source's readings against what the viewer has: nothing when unchanged, the changed
/// values when the series are the same, else every reading.
fn part<'a>(new: &'a Arc<Vec<Reading>>, old: Option<&Arc<Vec<Reading>>>) -> Option<Part<'a>> {
    let Some(old) = old else {
        return Some(Part::Readings(Cow::Borrowed(new.as_slice())));
    };
    if Arc::ptr_eq(old, new) {
        return None;
    }
    if same_series_all(new, old)
        && let Some(p) = steps(new, old)
    {
        return p;
    }
    changed_readings(new, old)
}

fn same_series_all(new: &[Reading], old: &[Reading]) -> bool {
    old.len() == new.len() && old.iter().zip(new.iter()).all(|(a, b)| same_series(a, b))
}

/// The same series' changes as whole steps of their units ([`Part::Steps`]); `None` when a
/// changed value has no step (a check's own unit) or too many of them, and exact values
/// must travel instead.
///
/// The viewer's value of each series is always in the same step as the server's: exact
/// after a full state or exact values, `steps / per_unit` after steps, and unchanged when
/// the server's value stayed within its step. So adding the server's step difference to the
/// viewer's own count keeps it so.
fn steps(new: &[Reading], old: &[Reading]) -> Option<Option<Part<'static>>> {
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut moved = Vec::new();
    for (i, (a, b)) in old.iter().zip(new.iter()).enumerate() {
        if a.value.to_bits() == b.value.to_bits() {
            continue;
        }
        let per_unit = steps_per_unit(b.metric.info().unit)?;
        let by = step_count(b.value, per_unit)? - step_count(a.value, per_unit)?;
        if by != 0 {
            changed[i / 8] |= 1 << (i % 8);
            moved.push(by);
        }
    }
    Some((!moved.is_empty()).then_some(Part::Steps {
        changed,
        steps: moved,
    }))
}

/// `new` against `old`: `None` when every value is the same, the changed values when the
/// series are the same, else every reading.
fn changed_readings<'a>(new: &'a [Reading], old: &[Reading]) -> Option<Part<'a>> {
    if !same_series_all(new, old) {
        return Some(Part::Readings(Cow::Borrowed(new)));
    }
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut values = Vec::new();
    for (i, (a, b)) in old.iter().zip(new.iter()).enumerate() {
        if a.value.to_bits() != b.value.to_bits() {
            changed[i / 8] |= 1 << (i % 8);
            values.push(b.value);
        }
    }
    (!values.is_empty()).then_some(Part::Values { changed, values })
}

/// The readings a part gives over what the viewer had; `None` when it does not fit them.
fn readings_of(part: Part<'_>, old: Option<&[Reading]>) -> Option<Vec<Reading>> {
    match part {
        Part::Readings(p) => Some(p.into_owned()),
        Part::Values { changed, values } => {
            let mut new = values.into_iter();
            let readings = apply_changed(old?, &changed, |r| {
                r.value = new.next()?;
                Some(())
            })?;
            new.next().is_none().then_some(readings)
        }
        Part::Steps { changed, steps } => {
            let mut moved = steps.into_iter();
            let readings = apply_changed(old?, &changed, |r| {
                let per_unit = steps_per_unit(r.metric.info().unit)?;
                let q = step_count(r.value, per_unit)?.checked_add(moved.next()?)?;
                r.value = q as f64 / per_unit;
                Some(())
            })?;
            moved.next().is_none().then_some(readings)
        }
    }
}

/// A copy of `old` with `update` applied to the readings whose bit is set in `changed`
/// (bit i of byte i/8); `None` when the bitmap does not fit or an update fails.
fn apply_changed(
    old: &[Reading],
    changed: &[u8],
    mut update: impl FnMut(&mut Reading) -> Option<()>,
) -> Option<Vec<Reading>> {
    if changed.len() != old.len().div_ceil(8) {
        return None;
    }
    let mut readings = old.to_vec();
    for (i, r) in readings.iter_mut().enumerate() {
        if changed[i / 8] & (1 << (i % 8)) != 0 {
            update(r)?;
        }
    }
    Some(readings)
}

fn wire_check(c: &CheckReport) -> WireCheck<'_> {
    WireCheck {
        name: Cow::Borrowed(&c.name),
        status: c.status,
        message: Cow::Borrowed(&c.message),
        duration_ms: c.duration_ms,
        readings: Cow::Borrowed(&c.readings),
    }
}

/// A host's check reports against what the viewer has: nothing when unchanged; the reports
/// that changed (and of them only what changed) when the host runs the same checks in the
/// same order; else every report. The engine makes a new report for every run, so reports
/// are compared by content: a run that changed nothing does not travel.
fn checks<'a>(
    new: &'a Arc<Vec<Arc<CheckReport>>>,
    old: Option<&Arc<Vec<Arc<CheckReport>>>>,
) -> Option<WireChecks<'a>> {
    let all = || Some(WireChecks::All(new.iter().map(|c| wire_check(c)).collect()));
    let Some(old) = old else {
        return all();
    };
    if Arc::ptr_eq(old, new) {
        return None;
    }
    if old.len() != new.len() || !old.iter().zip(new.iter()).all(|(a, b)| a.name == b.name) {
        return all();
    }
    let changes: Vec<CheckChange<'a>> = old
        .iter()
        .zip(new.iter())
        .enumerate()
        .filter(|(_, (a, b))| !Arc::ptr_eq(a, b) && a != b)
        .map(|(i, (a, b))| CheckChange {
            index: i as u32,
            status: b.status,
            message: (a.message != b.message).then_some(Cow::Borrowed(&*b.message)),
            duration_ms: b.duration_ms,
            readings: changed_readings(&b.readings, &a.readings),
        })
        .collect();
    (!changes.is_empty()).then_some(WireChecks::Changed(changes))
}

/// A message from the server as the collector would have kept it: no control characters,
/// at most [`MAX_MESSAGE`] characters (the server's own are already so).
fn clean_message(text: &str) -> Arc<str> {
    let text = crate::model::sanitize(text);
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((at, _)) => format!("{}…", &text[..at]).into(),
        None => text.into(),
    }
}

/// A check's readings as the viewer keeps them: at most the values one run may report,
/// plus its status.
fn bounded(readings: Vec<Reading>) -> Option<Vec<Reading>> {
    (readings.len() <= MAX_VALUES + 1).then_some(readings)
}

fn figures(p: &ProcessDetail) -> ProcFigures {
    ProcFigures {
        cpu_pct: p.cpu_pct,
        mem_pct: p.mem_pct,
        rss_bytes: p.rss_bytes,
        vms_bytes: p.vms_bytes,
        shared_bytes: p.shared_bytes,
    }
}

fn same_process(a: &ProcessDetail, b: &ProcessDetail) -> bool {
    a.pid == b.pid
        && a.watch == b.watch
        && a.name == b.name
        && a.cpu_affinity == b.cpu_affinity
        && (Arc::ptr_eq(&a.cmdline, &b.cmdline) || a.cmdline == b.cmdline)
}

/// A host's processes against what the viewer has, the same way as [`part`].
fn procs<'a>(new: &'a Arc<Vec<ProcessDetail>>, old: Option<&Arc<Vec<ProcessDetail>>>) -> Option<Procs<'a>> {
    let Some(old) = old else {
        return Some(Procs::All(Cow::Borrowed(new.as_slice())));
    };
    if Arc::ptr_eq(old, new) {
        return None;
    }
    if old.len() != new.len() || !old.iter().zip(new.iter()).all(|(a, b)| same_process(a, b)) {
        return Some(edit(new, old).unwrap_or(Procs::All(Cow::Borrowed(new.as_slice()))));
    }
    if old.iter().zip(new.iter()).all(|(a, b)| figures(a) == figures(b)) {
        return None;
    }
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut moved = Vec::new();
    for (i, (a, b)) in old.iter().zip(new.iter()).enumerate() {
        let Some(s) = proc_steps(a, b) else {
            return Some(Procs::Figures(new.iter().map(figures).collect()));
        };
        if s != ProcSteps::default() {
            changed[i / 8] |= 1 << (i % 8);
            moved.push(s);
        }
    }
    (!moved.is_empty()).then_some(Procs::Steps {
        changed,
        steps: moved,
    })
}

/// Whether bit `i` of a bitmap (bit `i % 8` of byte `i / 8`) is set.
fn bit(map: &[u8], i: usize) -> bool {
    map.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

fn set(map: &mut Vec<u8>, i: usize) {
    if map.len() <= i / 8 {
        map.resize(i / 8 + 1, 0);
    }
    map[i / 8] |= 1 << (i % 8);
}

/// Another list of processes as an edit of the viewer's ([`Procs::Edit`]); `None` when none
/// stays, the staying ones changed order, or a figure has no step count.
fn edit<'a>(new: &'a [ProcessDetail], old: &[ProcessDetail]) -> Option<Procs<'a>> {
    let index: FxHashMap<(u32, &str), usize> = old
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.pid, &*p.watch), i))
        .collect();
    let mut kept = vec![0u8; old.len().div_ceil(8)];
    let mut changed = Vec::new();
    let (mut steps, mut added) = (Vec::new(), Vec::new());
    let (mut staying, mut last) = (0usize, None::<usize>);
    for (j, p) in new.iter().enumerate() {
        match index
            .get(&(p.pid, &*p.watch))
            .filter(|&&i| same_process(&old[i], p))
        {
            Some(&i) => {
                if last.is_some_and(|l| i <= l) {
                    return None;
                }
                last = Some(i);
                set(&mut kept, i);
                let s = proc_steps(&old[i], p)?;
                if s != ProcSteps::default() {
                    set(&mut changed, staying);
                    steps.push(s);
                }
                staying += 1;
            }
            None => added.push((j as u32, Cow::Borrowed(p))),
        }
    }
    changed.resize(staying.div_ceil(8), 0);
    (staying > 0).then_some(Procs::Edit {
        kept,
        changed,
        steps,
        added,
    })
}

/// The trigger lines against the viewer's: only the changed lines when the lines are the
/// same ones in the same order, else every line.
fn triggers<'a>(
    new: &'a [crate::triggers::TriggerView],
    old: &[crate::triggers::TriggerView],
) -> WireTriggers<'a> {
    let same = |a: &crate::triggers::TriggerView, b: &crate::triggers::TriggerView| {
        a.name == b.name && a.host == b.host && a.instance == b.instance
    };
    if new.len() != old.len() || !new.iter().zip(old).all(|(a, b)| same(a, b)) {
        return WireTriggers::All(Cow::Borrowed(new));
    }
    let bytes = |t: &crate::triggers::TriggerView| postcard::to_allocvec(t).unwrap_or_default();
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut lines = Vec::new();
    for (i, (a, b)) in new.iter().zip(old).enumerate() {
        if bytes(a) != bytes(b) {
            set(&mut changed, i);
            lines.push(Cow::Borrowed(a));
        }
    }
    WireTriggers::Lines { changed, lines }
}

/// How a process's figures moved from `a` to `b` (`None` for a share beyond any step count).
fn proc_steps(a: &ProcessDetail, b: &ProcessDetail) -> Option<ProcSteps> {
    let pct = |x: f64, y: f64| Some(step_count(y, 100.0)? - step_count(x, 100.0)?);
    let bytes = |x: u64, y: u64| y.wrapping_sub(x) as i64;
    Some(ProcSteps {
        cpu_pct: pct(a.cpu_pct, b.cpu_pct)?,
        mem_pct: pct(a.mem_pct, b.mem_pct)?,
        rss_bytes: bytes(a.rss_bytes, b.rss_bytes),
        vms_bytes: bytes(a.vms_bytes, b.vms_bytes),
        shared_bytes: bytes(a.shared_bytes, b.shared_bytes),
    })
}

/// A process's figures moved by `s` (the viewer's side of [`proc_steps`]).
fn moved_by(p: &ProcessDetail, s: ProcSteps) -> Option<ProcessDetail> {
    // A share that did not move keeps the value the viewer has.
    let pct = |x: f64, by: i64| match by {
        0 => Some(x),
        _ => Some(step_count(x, 100.0)?.checked_add(by)? as f64 / 100.0),
    };
    let bytes = |x: u64, by: i64| x.wrapping_add(by as u64);
    Some(ProcessDetail {
        cpu_pct: pct(p.cpu_pct, s.cpu_pct)?,
        mem_pct: pct(p.mem_pct, s.mem_pct)?,
        rss_bytes: bytes(p.rss_bytes, s.rss_bytes),
        vms_bytes: bytes(p.vms_bytes, s.vms_bytes),
        shared_bytes: bytes(p.shared_bytes, s.shared_bytes),
        ..p.clone()
    })
}

/// The whole state of a snapshot.
pub fn full(s: &Snapshot) -> ServerMsg<'_> {
    ServerMsg::Full(State {
        header: header(s),
        hosts: s.hosts.iter().map(|h| wire_host(h, None)).collect(),
        max_risk: Cow::Borrowed(&s.max_risk),
        triggers: Cow::Borrowed(&s.triggers),
    })
}

/// What changed from `old` to `new`: a delta, or a full state when hosts were reordered
/// (the engine only appends and removes, so that does not happen in practice).
/// `triggers_changed` is the caller's: trigger views have no equality of their own.
pub fn delta<'a>(old: &Snapshot, new: &'a Snapshot, triggers_changed: bool) -> ServerMsg<'a> {
    let mut hosts = Vec::new();
    let mut removed = Vec::new();
    let same_order =
        old.hosts.len() <= new.hosts.len() && old.hosts.iter().zip(&new.hosts).all(|(a, b)| a.name == b.name);
    if same_order {
        // The usual case: nothing removed, new hosts appended.
        for (i, h) in new.hosts.iter().enumerate() {
            match old.hosts.get(i) {
                Some(o) if Arc::ptr_eq(o, h) => {}
                Some(o) => hosts.push(wire_host(h, Some(o))),
                None => hosts.push(wire_host(h, None)),
            }
        }
    } else {
        let now: FxHashMap<&HostName, usize> =
            new.hosts.iter().enumerate().map(|(i, h)| (&h.name, i)).collect();
        let mut kept = Vec::new();
        for o in &old.hosts {
            match now.get(&o.name) {
                Some(&i) => kept.push((o, i)),
                None => removed.push(o.name.clone()),
            }
        }
        // The hosts that stay must keep their order, and new ones come after them.
        if kept.iter().enumerate().any(|(k, &(_, i))| k != i) {
            return full(new);
        }
        for (o, i) in kept {
            let h = &new.hosts[i];
            if !Arc::ptr_eq(o, h) {
                hosts.push(wire_host(h, Some(o)));
            }
        }
        let appended = new.hosts.len() - (old.hosts.len() - removed.len());
        for h in &new.hosts[new.hosts.len() - appended..] {
            hosts.push(wire_host(h, None));
        }
    }
    ServerMsg::Delta(Delta {
        header: header(new),
        hosts,
        removed,
        max_risk: (old.max_risk != new.max_risk).then_some(Cow::Borrowed(new.max_risk.as_slice())),
        triggers: triggers_changed.then(|| triggers(&new.triggers, &old.triggers)),
    })
}

/// Why a message could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a delta before any full state")]
    NoBase,
    #[error("delta for unknown host `{0}` without its values")]
    UnknownHost(String),
    #[error("delta for host `{0}` does not fit the values it has")]
    Mismatch(String),
}

/// The viewer's copy of the server's state.
pub struct Replica {
    /// Samples of history each host keeps for the charts (recorded here from the deltas).
    history_cap: usize,
    hosts: Vec<Arc<HostView>>,
    index: FxHashMap<HostName, usize>,
    current: Option<Arc<Snapshot>>,
}

impl Replica {
    pub fn new(history_cap: usize) -> Self {
        Replica {
            history_cap,
            hosts: Vec::new(),
            index: FxHashMap::default(),
            current: None,
        }
    }

    /// The snapshot after the last applied message.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.clone()
    }

    /// Applies a full state: hosts not in it are forgotten, the others keep their history.
    pub fn apply_full(&mut self, state: State<'_>) -> Arc<Snapshot> {
        let mut old: FxHashMap<HostName, Arc<HostView>> =
            self.hosts.drain(..).map(|h| (h.name.clone(), h)).collect();
        self.index.clear();
        for w in state.hosts {
            let base = old.remove(&w.name);
            let Ok(view) = self.build(w, base.as_deref()) else {
                // A full state carries whole parts, which always fit.
                continue;
            };
            self.index.insert(view.name.clone(), self.hosts.len());
            self.hosts.push(Arc::new(view));
        }
        self.publish(
            state.header,
            state.max_risk.into_owned(),
            state.triggers.into_owned(),
        )
    }

    /// Applies a delta to the state of the last full state or delta.
    pub fn apply_delta(&mut self, delta: Delta<'_>) -> Result<Arc<Snapshot>, ApplyError> {
        let Some(current) = self.current.clone() else {
            return Err(ApplyError::NoBase);
        };
        if !delta.removed.is_empty() {
            self.hosts.retain(|h| !delta.removed.contains(&h.name));
            self.index = self
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.name.clone(), i))
                .collect();
        }
        for w in delta.hosts {
            match self.index.get(&w.name) {
                Some(&i) => {
                    let view = self.build(w, Some(&self.hosts[i]))?;
                    self.hosts[i] = Arc::new(view);
                }
                None => {
                    let whole = |p: &Option<Part<'_>>| matches!(p, Some(Part::Readings(_)));
                    if !whole(&w.system)
                        || !whole(&w.ping)
                        || !whole(&w.external)
                        || !matches!(w.processes, Some(Procs::All(_)))
                        || !matches!(w.checks, Some(WireChecks::All(_)))
                    {
                        return Err(ApplyError::UnknownHost(w.name.to_string()));
                    }
                    let view = self.build(w, None)?;
                    self.index.insert(view.name.clone(), self.hosts.len());
                    self.hosts.push(Arc::new(view));
                }
            }
        }
        let max_risk = delta
            .max_risk
            .map_or_else(|| current.max_risk.clone(), Cow::into_owned);
        let triggers = match delta.triggers {
            None => current.triggers.clone(),
            Some(WireTriggers::All(t)) => t.into_owned(),
            Some(WireTriggers::Lines { changed, lines }) => {
                let mut all = current.triggers.clone();
                let bad = || ApplyError::Mismatch("the trigger lines".into());
                if changed.len() != all.len().div_ceil(8) {
                    return Err(bad());
                }
                let mut lines = lines.into_iter();
                for (i, t) in all.iter_mut().enumerate() {
                    if bit(&changed, i) {
                        *t = lines.next().ok_or_else(bad)?.into_owned();
                    }
                }
                if lines.next().is_some() {
                    return Err(bad());
                }
                all
            }
        };
        Ok(self.publish(delta.header, max_risk, triggers))
    }

    fn publish(
        &mut self,
        h: Header,
        max_risk: Vec<crate::snapshot::MaxRiskLine>,
        triggers: Vec<crate::triggers::TriggerView>,
    ) -> Arc<Snapshot> {
        let snap = Arc::new(Snapshot {
            taken_at: h.taken_at,
            seq: h.seq,
            interval: h.interval,
            hosts: self.hosts.clone(),
            max_risk,
            triggers,
        });
        self.current = Some(snap.clone());
        snap
    }

    /// A host's new view from its wire form over its previous view (parts not sent are kept).
    fn build(&self, w: WireHost<'_>, base: Option<&HostView>) -> Result<HostView, ApplyError> {
        let history = base.map_or_else(
            || Arc::new(RwLock::new(HostHistory::new(self.history_cap))),
            |b| b.history.clone(),
        );
        let name = w.name.clone();
        let mismatch = || ApplyError::Mismatch(name.to_string());
        let take = |part: Option<Part<'_>>, old: Option<&Arc<Vec<Reading>>>, source: Source| {
            let readings = match part {
                None => return Ok(old.cloned().unwrap_or_default()),
                Some(p) => readings_of(p, old.map(|o| o.as_slice())).ok_or_else(mismatch)?,
            };
            if let Ok(mut hist) = history.write() {
                hist.record(source, &readings);
            }
            Ok(Arc::new(readings))
        };
        let checks = match w.checks {
            None => base.map(|b| b.checks.clone()).unwrap_or_default(),
            Some(WireChecks::All(list)) => Arc::new(
                list.into_iter()
                    .map(|c| {
                        Ok(Arc::new(CheckReport {
                            name: c.name.as_ref().into(),
                            status: c.status,
                            message: clean_message(&c.message),
                            duration_ms: c.duration_ms,
                            readings: bounded(c.readings.into_owned()).ok_or_else(mismatch)?,
                        }))
                    })
                    .collect::<Result<Vec<_>, ApplyError>>()?,
            ),
            Some(WireChecks::Changed(changes)) => {
                let mut list = Vec::clone(base.map(|b| &b.checks).ok_or_else(mismatch)?);
                for c in changes {
                    let prev = list.get(c.index as usize).ok_or_else(mismatch)?;
                    let readings = match c.readings {
                        None => prev.readings.clone(),
                        Some(p) => readings_of(p, Some(&prev.readings))
                            .and_then(bounded)
                            .ok_or_else(mismatch)?,
                    };
                    let report = CheckReport {
                        name: prev.name.clone(),
                        status: c.status,
                        message: c
                            .message
                            .map_or_else(|| prev.message.clone(), |m| clean_message(&m)),
                        duration_ms: c.duration_ms,
                        readings,
                    };
                    list[c.index as usize] = Arc::new(report);
                }
                Arc::new(list)
            }
        };
        let processes = match w.processes {
            None => base.map(|b| b.processes.clone()).unwrap_or_default(),
            Some(Procs::All(p)) => Arc::new(p.into_owned()),
            Some(Procs::Figures(f)) => {
                let old = base.map(|b| &b.processes).ok_or_else(mismatch)?;
                if old.len() != f.len() {
                    return Err(mismatch());
                }
                Arc::new(
                    old.iter()
                        .zip(f)
                        .map(|(p, f)| ProcessDetail {
                            cpu_pct: f.cpu_pct,
                            mem_pct: f.mem_pct,
                            rss_bytes: f.rss_bytes,
                            vms_bytes: f.vms_bytes,
                            shared_bytes: f.shared_bytes,
                            ..p.clone()
                        })
                        .collect(),
                )
            }
            Some(Procs::Steps { changed, steps }) => {
                let old = base.map(|b| &b.processes).ok_or_else(mismatch)?;
                if changed.len() != old.len().div_ceil(8) {
                    return Err(mismatch());
                }
                let mut moved = steps.into_iter();
                let mut list = Vec::with_capacity(old.len());
                for (i, p) in old.iter().enumerate() {
                    if changed[i / 8] & (1 << (i % 8)) != 0 {
                        let s = moved.next().ok_or_else(mismatch)?;
                        list.push(moved_by(p, s).ok_or_else(mismatch)?);
                    } else {
                        list.push(p.clone());
                    }
                }
                if moved.next().is_some() {
                    return Err(mismatch());
                }
                Arc::new(list)
            }
            Some(Procs::Edit {
                kept,
                changed,
                steps,
                added,
            }) => {
                let old = base.map(|b| &b.processes).ok_or_else(mismatch)?;
                if kept.len() != old.len().div_ceil(8) {
                    return Err(mismatch());
                }
                let staying: Vec<&ProcessDetail> = old
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bit(&kept, *i))
                    .map(|(_, p)| p)
                    .collect();
                if changed.len() != staying.len().div_ceil(8) {
                    return Err(mismatch());
                }
                let mut moved = steps.into_iter();
                let mut list = Vec::with_capacity(staying.len() + added.len());
                for (i, p) in staying.into_iter().enumerate() {
                    if bit(&changed, i) {
                        let s = moved.next().ok_or_else(mismatch)?;
                        list.push(moved_by(p, s).ok_or_else(mismatch)?);
                    } else {
                        list.push(p.clone());
                    }
                }
                if moved.next().is_some() {
                    return Err(mismatch());
                }
                let mut last = None::<usize>;
                for (at, p) in added {
                    let at = at as usize;
                    if at > list.len() || last.is_some_and(|l| at <= l) {
                        return Err(mismatch());
                    }
                    list.insert(at, p.into_owned());
                    last = Some(at);
                }
                Arc::new(list)
            }
        };
        Ok(HostView {
            system: take(w.system, base.map(|b| &b.system), Source::System)?,
            ping: take(w.ping, base.map(|b| &b.ping), Source::Ping)?,
            external: take(w.external, base.map(|b| &b.external), Source::External)?,
            processes,
            up: Reading::host(Metric::HostUp, if w.status == HostStatus::Up { 1.0 } else { 0.0 }),
            name: w.name,
            group: w.group.map(Cow::into_owned),
            via: w.via,
            status: w.status,
            error: w.error.map(Cow::into_owned),
            last_update: w.last_update,
            rounds: w.rounds,
            checks,
            history,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Via;
    use crate::serve::protocol::{SERVER_FRAME_LIMIT, encode, read_frame};

    fn snap(seq: u64, hosts: Vec<Arc<HostView>>) -> Snapshot {
        Snapshot {
            seq,
            hosts,
            ..Snapshot::empty(std::time::Duration::from_secs(2))
        }
    }

    async fn round_trip(msg: &ServerMsg<'_>) -> ServerMsg<'static> {
        let bytes = encode(msg).expect("encodes");
        read_frame(&mut &bytes[..], SERVER_FRAME_LIMIT, &mut Vec::new())
            .await
            .expect("decodes")
    }

    fn json(s: &Snapshot) -> serde_json::Value {
        serde_json::to_value(s).expect("json")
    }

    #[tokio::test]
    async fn deltas_carry_only_what_changed_and_rebuild_the_same_snapshot() {
        let a = Arc::new(HostView::new(
            "a",
            Via::Ssh,
            HostStatus::Up,
            vec![Reading::host(Metric::CpuUsage, 5.0)],
        ));
        let b = Arc::new(HostView::new(
            "b",
            Via::Ssh,
            HostStatus::Up,
            vec![Reading::new(Metric::DiskUsedPct, "/", 50.0)],
        ));
        let s1 = snap(1, vec![a.clone(), b.clone()]);
        let mut replica = Replica::new(10);
        let ServerMsg::Full(state) = round_trip(&full(&s1)).await else {
            panic!("full")
        };
        let got = replica.apply_full(state);
        assert_eq!(json(&got), json(&s1));

        // b changes its status only: its readings do not travel again.
        let b2 = Arc::new(HostView {
            status: HostStatus::Timeout,
            error: Some("no answer".into()),
            up: Reading::host(Metric::HostUp, 0.0),
            ..HostView::clone(&b)
        });
        let c = Arc::new(HostView::new("c", Via::Ping, HostStatus::Connecting, vec![]));
        let s2 = snap(2, vec![a.clone(), b2, c]);
        let msg = delta(&s1, &s2, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert_eq!(d.hosts.len(), 2, "a is unchanged");
        assert!(d.hosts[0].system.is_none() && d.hosts[0].processes.is_none());
        assert!(d.hosts[1].system.is_some(), "a new host comes whole");
        assert!(d.max_risk.is_none() && d.triggers.is_none());
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got), json(&s2));
        assert_eq!(
            got.host("b").map(|h| h.value(Metric::DiskUsedPct, "/")),
            Some(Some(50.0))
        );

        // A host goes away.
        let s3 = snap(3, vec![a.clone(), s2.hosts[2].clone()]);
        let ServerMsg::Delta(d) = round_trip(&delta(&s2, &s3, false)).await else {
            panic!("delta")
        };
        assert_eq!(d.removed.len(), 1);
        assert!(d.hosts.is_empty());
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got), json(&s3));

        // New values of the same series: only the changed value travels, by position.
        let a2 = Arc::new(HostView {
            system: Arc::new(vec![Reading::host(Metric::CpuUsage, 7.5)]),
            processes: Arc::new(Vec::new()),
            ..HostView::clone(&a)
        });
        let s3b = snap(5, vec![a2.clone(), s3.hosts[1].clone()]);
        let msg = delta(&s3, &s3b, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(
            matches!(&d.hosts[0].system, Some(Part::Steps { changed, steps }) if changed == &[1] && steps == &[250]),
            "{:?}",
            d.hosts[0].system
        );
        assert!(
            d.hosts[0].processes.is_none(),
            "an equal empty list does not travel"
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got), json(&s3b));
        // Back to s3 for what follows.
        let ServerMsg::Delta(d) = round_trip(&delta(&s3b, &s3, false)).await else {
            panic!("delta")
        };
        replica.apply_delta(d).expect("applies");

        // Reordered hosts come as a full state.
        let s4 = snap(4, vec![s3.hosts[1].clone(), a]);
        let ServerMsg::Full(state) = round_trip(&delta(&s3, &s4, false)).await else {
            panic!("full")
        };
        assert_eq!(json(&replica.apply_full(state)), json(&s4));
    }

    #[test]
    fn a_delta_needs_a_base() {
        let s = snap(1, vec![]);
        let ServerMsg::Delta(d) = delta(&s, &s, false) else {
            panic!("delta")
        };
        assert!(matches!(Replica::new(2).apply_delta(d), Err(ApplyError::NoBase)));
    }

    #[tokio::test]
    async fn check_reports_travel_only_when_they_change() {
        let status = Metric::register(crate::model::NewMetric {
            name: "check.delta_test.status".into(),
            unit: crate::model::Unit::Count,
            instance: "",
            risk: crate::model::Risk::Higher,
            description: "test".into(),
        })
        .expect("registers");
        let value = Metric::register(crate::model::NewMetric {
            name: "check.delta_test".into(),
            unit: crate::model::Unit::Custom("jobs"),
            instance: "",
            risk: crate::model::Risk::Higher,
            description: "test".into(),
        })
        .expect("registers");
        let report = |status_v: u8, message: &str, took: f64, v: f64| {
            Arc::new(CheckReport {
                name: "delta_test".into(),
                status: status_v,
                message: message.into(),
                duration_ms: took,
                readings: vec![
                    Reading::host(status, f64::from(status_v)),
                    Reading::new(value, "q", v),
                ],
            })
        };
        let with = |checks: Vec<Arc<CheckReport>>| {
            Arc::new(HostView {
                checks: Arc::new(checks),
                ..HostView::new("a", Via::Ssh, HostStatus::Up, vec![])
            })
        };
        let s1 = snap(1, vec![with(vec![report(0, "OK - 3 jobs", 1.5, 3.0)])]);
        let mut replica = Replica::new(4);
        let ServerMsg::Full(state) = round_trip(&full(&s1)).await else {
            panic!("full")
        };
        assert_eq!(json(&replica.apply_full(state)), json(&s1));

        // A new run that changed nothing: the host's view is new, but nothing of it travels.
        let s2 = snap(2, vec![with(vec![report(0, "OK - 3 jobs", 1.5, 3.0)])]);
        let ServerMsg::Delta(d) = delta(&s1, &s2, false) else {
            panic!("delta")
        };
        assert!(d.hosts[0].checks.is_none());

        // Only the value and the run time changed: the message does not travel again.
        let s3 = snap(3, vec![with(vec![report(0, "OK - 3 jobs", 2.25, 4.0)])]);
        let msg = delta(&s2, &s3, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        let Some(WireChecks::Changed(c)) = &d.hosts[0].checks else {
            panic!("{:?}", d.hosts[0].checks)
        };
        assert_eq!(c.len(), 1);
        assert!(c[0].message.is_none());
        assert!(
            matches!(&c[0].readings, Some(Part::Values { changed, values }) if changed == &[2] && values == &[4.0])
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got), json(&s3));

        // Status and message change; a control character from the server never reaches
        // the screen.
        let s4 = snap(4, vec![with(vec![report(2, "CRIT \x1b[2J - 9 jobs", 2.0, 9.0)])]);
        let ServerMsg::Delta(d) = round_trip(&delta(&s3, &s4, false)).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        let c = got.host("a").and_then(|h| h.check("delta_test")).expect("check");
        assert_eq!((c.status, &*c.message), (2, "CRIT  [2J - 9 jobs"));
        assert_eq!(c.readings[0].value, 2.0);
        assert_eq!(c.readings[1].value, 9.0);

        // A second check: the list changed, so it comes whole.
        let mut other = CheckReport::clone(&report(1, "WARN", 1.0, 1.0));
        other.name = "zz_other".into();
        let s5 = snap(5, vec![with(vec![report(2, "CRIT", 2.0, 9.0), Arc::new(other)])]);
        let msg = delta(&s4, &s5, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(matches!(&d.hosts[0].checks, Some(WireChecks::All(l)) if l.len() == 2));
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        assert_eq!(json(&replica.apply_delta(d).expect("applies")), json(&s5));

        // A change for a check the viewer does not have is refused, not applied.
        let bad = Delta {
            header: header(&s5),
            hosts: vec![WireHost {
                checks: Some(WireChecks::Changed(vec![CheckChange {
                    index: 7,
                    status: 0,
                    message: None,
                    duration_ms: 1.0,
                    readings: None,
                }])),
                ..wire_host(&s5.hosts[0], Some(&s5.hosts[0]))
            }],
            removed: vec![],
            max_risk: None,
            triggers: None,
        };
        assert!(matches!(replica.apply_delta(bad), Err(ApplyError::Mismatch(_))));
    }

    #[tokio::test]
    async fn values_and_figures_travel_as_steps_within_half_a_step() {
        let process = |cpu: f64, rss: u64| ProcessDetail {
            watch: "w".into(),
            pid: 7,
            name: "p".into(),
            cpu_pct: cpu,
            mem_pct: 1.5,
            rss_bytes: rss,
            vms_bytes: 4096,
            shared_bytes: 1024,
            cpu_affinity: vec![],
            cmdline: "p --serve".into(),
        };
        let host = |cpu: f64, load: f64, rx: f64, procs: Vec<ProcessDetail>| {
            Arc::new(HostView {
                processes: Arc::new(procs),
                ..HostView::new(
                    "a",
                    Via::Ssh,
                    HostStatus::Up,
                    vec![
                        Reading::host(Metric::CpuUsage, cpu),
                        Reading::host(Metric::Load1, load),
                        Reading::new(Metric::NetRxBytes, "eth0", rx),
                    ],
                )
            })
        };
        let value = |s: &Snapshot, m: Metric| s.hosts[0].values(m).next().map(|r| r.value);
        let mut replica = Replica::new(4);
        let s1 = snap(1, vec![host(12.3456, 0.5, 1000.0, vec![process(1.234, 100)])]);
        let ServerMsg::Full(state) = round_trip(&full(&s1)).await else {
            panic!("full")
        };
        replica.apply_full(state);

        // The CPU share moves by less than half a hundredth: it does not travel; the load
        // and the counter do, as steps; so does the process's new RSS, alone.
        let s2 = snap(
            2,
            vec![host(12.3458, 0.75, 1_000_000_123.0, vec![process(1.234, 200)])],
        );
        let msg = delta(&s1, &s2, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(
            matches!(&d.hosts[0].system, Some(Part::Steps { changed, steps }) if changed == &[0b110] && steps == &[250, 999_999_123]),
            "{:?}",
            d.hosts[0].system
        );
        let Some(Procs::Steps { changed, steps }) = &d.hosts[0].processes else {
            panic!("{:?}", d.hosts[0].processes)
        };
        assert_eq!(changed, &[1]);
        assert_eq!(
            steps,
            &[ProcSteps {
                rss_bytes: 100,
                ..ProcSteps::default()
            }]
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(
            value(&got, Metric::CpuUsage),
            Some(12.3456),
            "the exact value it had"
        );
        assert_eq!(value(&got, Metric::Load1), Some(0.75));
        assert_eq!(
            value(&got, Metric::NetRxBytes),
            Some(1_000_000_123.0),
            "bytes are exact"
        );
        assert_eq!(got.hosts[0].processes[0].rss_bytes, 200);
        assert_eq!(got.hosts[0].processes[0].cpu_pct, 1.234);

        // Further moves keep the viewer within half a step of the server, every time.
        let mut prev = s2;
        for (k, cpu) in [50.0, 33.333_333, 0.004, 99.995, 7.0].into_iter().enumerate() {
            let s = snap(
                3 + k as u64,
                vec![host(cpu, 0.75, 1_000_000_123.0, vec![process(cpu / 3.0, 200)])],
            );
            let ServerMsg::Delta(d) = round_trip(&delta(&prev, &s, false)).await else {
                panic!("delta")
            };
            let got = replica.apply_delta(d).expect("applies");
            let seen = value(&got, Metric::CpuUsage).expect("cpu");
            assert!((seen - cpu).abs() <= 0.005 + 1e-9, "{seen} for {cpu}");
            let p = got.hosts[0].processes[0].cpu_pct;
            assert!((p - cpu / 3.0).abs() <= 0.005 + 1e-9, "{p} for {}", cpu / 3.0);
            prev = s;
        }

        // A value too large to count in steps travels exactly.
        let huge = snap(9, vec![host(7.0, 0.75, 1e300, vec![process(7.0 / 3.0, 200)])]);
        let msg = delta(&prev, &huge, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(
            matches!(&d.hosts[0].system, Some(Part::Values { .. })),
            "{:?}",
            d.hosts[0].system
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(value(&got, Metric::NetRxBytes), Some(1e300));
    }

    #[tokio::test]
    async fn process_lists_travel_as_edits_and_trigger_lines_one_by_one() {
        let process = |pid: u32, cpu: f64| ProcessDetail {
            watch: "python3".into(),
            pid,
            name: "python3".into(),
            cpu_pct: cpu,
            mem_pct: 1.5,
            rss_bytes: 1000,
            vms_bytes: 4096,
            shared_bytes: 1024,
            cpu_affinity: vec![],
            cmdline: format!("python3 worker.py --id {pid}").into(),
        };
        let host = |procs: Vec<ProcessDetail>| {
            Arc::new(HostView {
                processes: Arc::new(procs),
                ..HostView::new("a", Via::Ssh, HostStatus::Up, vec![])
            })
        };
        let line = |host: &str, value: f64| crate::triggers::TriggerView {
            name: "cpu".into(),
            state: crate::triggers::TriggerState::Firing,
            severity: crate::triggers::rule::Severity::Warning,
            metric: Metric::CpuUsage,
            host: host.into(),
            instance: String::new(),
            value: Some(value),
            threshold: 90.0,
            since: std::time::SystemTime::UNIX_EPOCH,
            fires_at: None,
            silenced_until: None,
            by: None,
        };
        let mut s1 = snap(
            1,
            vec![host(vec![process(10, 1.0), process(20, 2.0), process(30, 3.0)])],
        );
        s1.triggers = vec![line("a", 95.0), line("b", 96.0)];
        let mut replica = Replica::new(4);
        let ServerMsg::Full(state) = round_trip(&full(&s1)).await else {
            panic!("full")
        };
        replica.apply_full(state);

        // 20 goes, 25 and 40 come, 30 moves: an edit, not the whole list.
        let mut s2 = snap(
            2,
            vec![host(vec![
                process(10, 1.0),
                process(25, 0.5),
                process(30, 4.0),
                process(40, 0.0),
            ])],
        );
        s2.triggers = vec![line("a", 95.0), line("b", 97.5)];
        let msg = delta(&s1, &s2, true);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        let Some(Procs::Edit {
            kept,
            changed,
            steps,
            added,
        }) = &d.hosts[0].processes
        else {
            panic!("{:?}", d.hosts[0].processes)
        };
        assert_eq!(
            (kept.as_slice(), changed.as_slice()),
            (&[0b101u8][..], &[0b10u8][..])
        );
        assert_eq!(steps.len(), 1);
        assert_eq!(
            added.iter().map(|(at, p)| (*at, p.pid)).collect::<Vec<_>>(),
            [(1, 25), (3, 40)]
        );
        let Some(WireTriggers::Lines { changed, lines }) = &d.triggers else {
            panic!("{:?}", d.triggers)
        };
        assert_eq!((changed.as_slice(), lines.len()), (&[0b10u8][..], 1));
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got), json(&s2));

        // Nothing stays: the whole list; a line goes: every line.
        let mut s3 = snap(3, vec![host(vec![process(50, 1.0)])]);
        s3.triggers = vec![line("b", 97.5)];
        let msg = delta(&s2, &s3, true);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(matches!(d.hosts[0].processes, Some(Procs::All(_))));
        assert!(matches!(d.triggers, Some(WireTriggers::All(_))));
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        assert_eq!(json(&replica.apply_delta(d).expect("applies")), json(&s3));
    }
}
