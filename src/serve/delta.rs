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
    CheckChange, Delta, Header, HostChange, HostMeta, MaxRiskChange, Part, ProcFigures, ProcSteps, Procs,
    ServerMsg, Stamp, State, TriggerChange, WireCheck, WireChecks, WireHost, WireMaxRisk, WireTriggers,
    relative, relative_value, scale, step_count,
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

/// A host's whole wire form, with its processes or without.
fn wire_host(h: &HostView, with_processes: bool) -> WireHost<'_> {
    WireHost {
        name: h.name.clone(),
        group: h.group.as_deref().map(Cow::Borrowed),
        via: h.via,
        status: h.status,
        error: h.error.as_deref().map(Cow::Borrowed),
        last_update: h.last_update,
        rounds: h.rounds,
        system: part(&h.system, None),
        ping: part(&h.ping, None),
        external: part(&h.external, None),
        processes: with_processes.then(|| Procs::All(Cow::Borrowed(h.processes.as_slice()))),
        checks: checks(&h.checks, None),
    }
}

/// What changed of a host from `old` to `h` (the viewer has `old`'s, within its codes),
/// `skip` hosts after the previous change. Processes do not travel here.
fn host_change<'a>(
    h: &'a HostView,
    old: &HostView,
    skip: u32,
    taken_at: std::time::SystemTime,
) -> HostChange<'a> {
    let meta = (h.group != old.group || h.via != old.via || h.status != old.status || h.error != old.error)
        .then(|| HostMeta {
            group: h.group.as_deref().map(Cow::Borrowed),
            via: h.via,
            status: h.status,
            error: h.error.as_deref().map(Cow::Borrowed),
        });
    HostChange {
        skip,
        meta,
        last_update: stamp(h.last_update, old.last_update, taken_at),
        rounds: h.rounds.wrapping_sub(old.rounds),
        system: part(&h.system, Some(&old.system)),
        ping: part(&h.ping, Some(&old.ping)),
        external: part(&h.external, Some(&old.external)),
        checks: checks(&h.checks, Some(&old.checks)),
    }
}

fn stamp(
    new: Option<std::time::SystemTime>,
    old: Option<std::time::SystemTime>,
    taken_at: std::time::SystemTime,
) -> Stamp {
    match new {
        _ if new == old => Stamp::Same,
        None => Stamp::Never,
        Some(t) => match taken_at.duration_since(t) {
            Ok(d) => Stamp::Before(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            Err(_) => Stamp::At(t),
        },
    }
}

/// The viewer's `last_update` after a stamp.
fn stamped(
    s: Stamp,
    old: Option<std::time::SystemTime>,
    taken_at: std::time::SystemTime,
) -> Option<std::time::SystemTime> {
    match s {
        Stamp::Same => old,
        Stamp::Never => None,
        Stamp::Before(ms) => Some(
            taken_at
                .checked_sub(std::time::Duration::from_millis(ms))
                .unwrap_or(std::time::UNIX_EPOCH),
        ),
        Stamp::At(t) => Some(t),
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

/// The same series' changes as differences of their codes ([`Part::Steps`], [`scale`]);
/// `None` when a changed value has no code (a check's own unit, a value beyond the codes),
/// and exact values must travel instead.
///
/// The viewer's value of each series always has the same code as the server's: exact
/// after a full state or exact values, the value of the code after steps (whose code is
/// that code again), and unchanged when the server's value stayed within its code. So
/// adding the server's difference of codes to the viewer's own code keeps it so.
fn steps(new: &[Reading], old: &[Reading]) -> Option<Option<Part<'static>>> {
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut moved = Vec::new();
    for (i, (a, b)) in old.iter().zip(new.iter()).enumerate() {
        if a.value.to_bits() == b.value.to_bits() {
            continue;
        }
        let scale = scale(b.metric.info().unit)?;
        let by = scale.code(b.value)? - scale.code(a.value)?;
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
                let scale = scale(r.metric.info().unit)?;
                let c = scale.code(r.value)?.checked_add(moved.next()?)?;
                r.value = scale.value(c)?;
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
    // All but the value (and the names `same` compared).
    let rest_same = |a: &crate::triggers::TriggerView, b: &crate::triggers::TriggerView| {
        a.state == b.state
            && a.severity == b.severity
            && a.metric == b.metric
            && a.threshold.to_bits() == b.threshold.to_bits()
            && a.since == b.since
            && a.fires_at == b.fires_at
            && a.silenced_until == b.silenced_until
            && a.by == b.by
    };
    let value = |t: &crate::triggers::TriggerView| t.value.map(f64::to_bits);
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut lines = Vec::new();
    for (i, (a, b)) in new.iter().zip(old).enumerate() {
        if !rest_same(a, b) {
            set(&mut changed, i);
            lines.push(TriggerChange::Line(Cow::Borrowed(a)));
        } else if value(a) != value(b) {
            set(&mut changed, i);
            lines.push(TriggerChange::Value(a.value));
        }
    }
    WireTriggers::Lines { changed, lines }
}

/// The code of a size (see [`relative`]).
fn size_code(x: u64) -> Option<i64> {
    relative(x as f64)
}

/// How a process's figures moved from `a` to `b` (`None` for a figure beyond any code).
fn proc_steps(a: &ProcessDetail, b: &ProcessDetail) -> Option<ProcSteps> {
    let pct = |x: f64, y: f64| Some(step_count(y, 100.0)? - step_count(x, 100.0)?);
    let bytes = |x: u64, y: u64| Some(size_code(y)? - size_code(x)?);
    Some(ProcSteps {
        cpu_pct: pct(a.cpu_pct, b.cpu_pct)?,
        mem_pct: pct(a.mem_pct, b.mem_pct)?,
        rss_bytes: bytes(a.rss_bytes, b.rss_bytes)?,
        vms_bytes: bytes(a.vms_bytes, b.vms_bytes)?,
        shared_bytes: bytes(a.shared_bytes, b.shared_bytes)?,
    })
}

/// A process's figures moved by `s` (the viewer's side of [`proc_steps`]).
fn moved_by(p: &ProcessDetail, s: ProcSteps) -> Option<ProcessDetail> {
    // A figure that did not move keeps the value the viewer has.
    let pct = |x: f64, by: i64| match by {
        0 => Some(x),
        _ => Some(step_count(x, 100.0)?.checked_add(by)? as f64 / 100.0),
    };
    let bytes = |x: u64, by: i64| match by {
        0 => Some(x),
        _ => {
            let v = relative_value(size_code(x)?.checked_add(by)?)?;
            (0.0..=u64::MAX as f64).contains(&v).then_some(v as u64)
        }
    };
    Some(ProcessDetail {
        cpu_pct: pct(p.cpu_pct, s.cpu_pct)?,
        mem_pct: pct(p.mem_pct, s.mem_pct)?,
        rss_bytes: bytes(p.rss_bytes, s.rss_bytes)?,
        vms_bytes: bytes(p.vms_bytes, s.vms_bytes)?,
        shared_bytes: bytes(p.shared_bytes, s.shared_bytes)?,
        ..p.clone()
    })
}

/// The whole state of a snapshot, every host's processes included (`snapshot --socket`).
pub fn full(s: &Snapshot) -> ServerMsg<'_> {
    full_state(s, true)
}

/// The whole state of a snapshot as a dashboard is sent it: without process lists (a
/// viewer asks for the processes of the host it shows in detail, [`processes`]).
pub fn full_view(s: &Snapshot) -> ServerMsg<'_> {
    full_state(s, false)
}

fn full_state(s: &Snapshot, with_processes: bool) -> ServerMsg<'_> {
    ServerMsg::Full(State {
        header: header(s),
        hosts: s.hosts.iter().map(|h| wire_host(h, with_processes)).collect(),
        max_risk: Cow::Borrowed(&s.max_risk),
        triggers: Cow::Borrowed(&s.triggers),
    })
}

/// What changed from `old` to `new` for a dashboard (no process lists): a delta, or a full
/// state when hosts were reordered (the engine only appends and removes, so that does not
/// happen in practice). `triggers_changed` is the caller's: trigger views have no equality
/// of their own.
pub fn delta<'a>(old: &Snapshot, new: &'a Snapshot, triggers_changed: bool) -> ServerMsg<'a> {
    let mut removed = Vec::new();
    // The hosts of `old` that stay, each with its position in `new`.
    let same_order =
        old.hosts.len() <= new.hosts.len() && old.hosts.iter().zip(&new.hosts).all(|(a, b)| a.name == b.name);
    let kept = if same_order {
        // The usual case: nothing removed, new hosts appended.
        old.hosts.len()
    } else {
        let now: FxHashMap<&HostName, usize> =
            new.hosts.iter().enumerate().map(|(i, h)| (&h.name, i)).collect();
        let mut kept = 0;
        for (j, o) in old.hosts.iter().enumerate() {
            match now.get(&o.name) {
                // The hosts that stay must keep their order, and new ones come after them.
                Some(&i) if i == kept => kept += 1,
                Some(_) => return full_view(new),
                None => removed.push(j as u32),
            }
        }
        kept
    };
    let mut hosts = Vec::new();
    let mut next = 0;
    let mut gone = removed.iter().peekable();
    let staying = old.hosts.iter().enumerate().filter_map(|(j, o)| {
        if gone.peek().is_some_and(|&&r| r as usize == j) {
            gone.next();
            None
        } else {
            Some(o)
        }
    });
    for (i, (o, h)) in staying.zip(&new.hosts[..kept]).enumerate() {
        if !Arc::ptr_eq(o, h) {
            hosts.push(host_change(h, o, (i - next) as u32, new.taken_at));
            next = i + 1;
        }
    }
    ServerMsg::Delta(Delta {
        header: header(new),
        removed,
        hosts,
        added: new.hosts[kept..].iter().map(|h| wire_host(h, false)).collect(),
        max_risk: max_risk(&new.max_risk, &old.max_risk),
        triggers: triggers_changed.then(|| triggers(&new.triggers, &old.triggers)),
    })
}

/// The maximal-risk lines against the viewer's: nothing when equal, the changed lines when
/// they are of the same metrics in the same order, else every line.
fn max_risk<'a>(
    new: &'a [crate::snapshot::MaxRiskLine],
    old: &[crate::snapshot::MaxRiskLine],
) -> Option<WireMaxRisk<'a>> {
    if new == old {
        return None;
    }
    if new.len() != old.len() || !new.iter().zip(old).all(|(a, b)| a.metric == b.metric) {
        return Some(WireMaxRisk::All(Cow::Borrowed(new)));
    }
    let mut changed = vec![0u8; new.len().div_ceil(8)];
    let mut lines = Vec::new();
    for (i, (a, b)) in new.iter().zip(old).enumerate() {
        if a != b {
            set(&mut changed, i);
            lines.push(MaxRiskChange {
                place: (a.host != b.host || a.instance != b.instance)
                    .then(|| (a.host.clone(), Cow::Borrowed(&*a.instance))),
                value: a.value,
            });
        }
    }
    Some(WireMaxRisk::Lines { changed, lines })
}

/// The processes of `host` for a viewer that has `sent` of them (`None`: nothing yet, or
/// not since its last full state): whole, or what changed; `None` when nothing did.
pub fn processes<'a>(
    id: u32,
    host: &'a HostView,
    sent: Option<&Arc<Vec<ProcessDetail>>>,
) -> Option<ServerMsg<'a>> {
    Some(ServerMsg::Processes {
        id,
        host: host.name.clone(),
        procs: procs(&host.processes, sent)?,
    })
}

/// Why a message could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a delta before any full state")]
    NoBase,
    #[error("delta for host {0}, which the viewer does not have")]
    UnknownHost(String),
    #[error("delta for host `{0}` does not fit the values it has")]
    Mismatch(String),
}

/// The viewer's copy of the server's state.
pub struct Replica {
    /// Samples of history each host keeps for the charts (recorded here from the deltas).
    history_cap: usize,
    hosts: Vec<Arc<HostView>>,
    current: Option<Arc<Snapshot>>,
    /// The last detail request (its id, and the host): only its answers are applied.
    detail: Option<(u32, HostName)>,
}

/// A host's parts in a message, whole or as changes.
struct Parts<'a> {
    system: Option<Part<'a>>,
    ping: Option<Part<'a>>,
    external: Option<Part<'a>>,
    checks: Option<WireChecks<'a>>,
}

impl Replica {
    pub fn new(history_cap: usize) -> Self {
        Replica {
            history_cap,
            hosts: Vec::new(),
            current: None,
            detail: None,
        }
    }

    /// The snapshot after the last applied message.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.clone()
    }

    /// Applies a full state: hosts not in it are forgotten, the others keep their history.
    /// A host without its processes in it has none (a dashboard's full state: the viewer
    /// asks for those of its detail host again).
    pub fn apply_full(&mut self, state: State<'_>) -> Arc<Snapshot> {
        let mut old: FxHashMap<HostName, Arc<HostView>> =
            self.hosts.drain(..).map(|h| (h.name.clone(), h)).collect();
        for w in state.hosts {
            let base = old.remove(&w.name);
            let Ok(view) = self.whole(w, base.as_deref()) else {
                // A full state carries whole parts, which always fit.
                continue;
            };
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
            let mut gone = delta.removed.iter().peekable();
            let mut j = 0u32;
            self.hosts.retain(|_| {
                let remove = gone.peek().is_some_and(|&&r| r == j);
                if remove {
                    gone.next();
                }
                j += 1;
                !remove
            });
            if gone.next().is_some() {
                return Err(ApplyError::UnknownHost("positions removed".into()));
            }
        }
        let mut at = 0usize;
        for c in delta.hosts {
            let i = at
                .checked_add(c.skip as usize)
                .filter(|&i| i < self.hosts.len())
                .ok_or_else(|| ApplyError::UnknownHost(format!("#{}", at.saturating_add(c.skip as usize))))?;
            let view = self.change(c, &self.hosts[i], delta.header.taken_at)?;
            self.hosts[i] = Arc::new(view);
            at = i + 1;
        }
        for w in delta.added {
            let whole = |p: &Option<Part<'_>>| matches!(p, Some(Part::Readings(_)));
            if !whole(&w.system)
                || !whole(&w.ping)
                || !whole(&w.external)
                || !matches!(w.checks, Some(WireChecks::All(_)))
            {
                return Err(ApplyError::Mismatch(w.name.to_string()));
            }
            let view = self.whole(w, None)?;
            self.hosts.push(Arc::new(view));
        }
        let max_risk = match delta.max_risk {
            None => current.max_risk.clone(),
            Some(WireMaxRisk::All(l)) => l.into_owned(),
            Some(WireMaxRisk::Lines { changed, lines }) => {
                let mut all = current.max_risk.clone();
                let bad = || ApplyError::Mismatch("the maximal-risk lines".into());
                if changed.len() != all.len().div_ceil(8) {
                    return Err(bad());
                }
                let mut lines = lines.into_iter();
                for (i, l) in all.iter_mut().enumerate() {
                    if bit(&changed, i) {
                        let c = lines.next().ok_or_else(bad)?;
                        if let Some((host, instance)) = c.place {
                            l.host = host;
                            l.instance = instance.as_ref().into();
                        }
                        l.value = c.value;
                    }
                }
                if lines.next().is_some() {
                    return Err(bad());
                }
                all
            }
        };
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
                        match lines.next().ok_or_else(bad)? {
                            TriggerChange::Value(v) => t.value = v,
                            TriggerChange::Line(l) => *t = l.into_owned(),
                        }
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

    /// The viewer asks for the processes of `host` (or of none) with request `id`: answers
    /// to earlier requests are ignored from now on, and the host it showed before keeps no
    /// processes (they would no longer be kept up to date).
    pub fn set_detail(&mut self, id: u32, host: Option<HostName>) {
        if let Some((_, old)) = self.detail.take()
            && host.as_ref() != Some(&old)
            && let Some(h) = self.hosts.iter_mut().find(|h| h.name == old)
            && !h.processes.is_empty()
        {
            *h = Arc::new(HostView {
                processes: Arc::default(),
                ..HostView::clone(h)
            });
        }
        self.detail = host.map(|h| (id, h));
    }

    /// Applies the processes of the detail host; `Ok(None)` for an answer to an earlier
    /// request (or about a host the viewer no longer has: it went in a delta).
    pub fn apply_processes(
        &mut self,
        id: u32,
        host: &HostName,
        procs: Procs<'_>,
    ) -> Result<Option<Arc<Snapshot>>, ApplyError> {
        let Some(current) = self.current.clone() else {
            return Err(ApplyError::NoBase);
        };
        if self.detail.as_ref().is_none_or(|(i, h)| *i != id || h != host) {
            return Ok(None);
        }
        let Some(i) = self.hosts.iter().position(|h| h.name == *host) else {
            return Ok(None);
        };
        let processes = processes_of(procs, &self.hosts[i].processes)
            .ok_or_else(|| ApplyError::Mismatch(host.to_string()))?;
        self.hosts[i] = Arc::new(HostView {
            processes: Arc::new(processes),
            ..HostView::clone(&self.hosts[i])
        });
        let h = Header {
            seq: current.seq,
            taken_at: current.taken_at,
            interval: current.interval,
        };
        Ok(Some(self.publish(
            h,
            current.max_risk.clone(),
            current.triggers.clone(),
        )))
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

    /// A host's view from its whole wire form (history kept from `base`, the view it had).
    fn whole(&self, w: WireHost<'_>, base: Option<&HostView>) -> Result<HostView, ApplyError> {
        let history = base.map_or_else(
            || Arc::new(RwLock::new(HostHistory::new(self.history_cap))),
            |b| b.history.clone(),
        );
        let processes = match w.processes {
            None => Arc::default(),
            Some(p) => {
                Arc::new(processes_of(p, &[]).ok_or_else(|| ApplyError::Mismatch(w.name.to_string()))?)
            }
        };
        let parts = Parts {
            system: w.system,
            ping: w.ping,
            external: w.external,
            checks: w.checks,
        };
        let (system, ping, external, checks) = Self::parts(&w.name, parts, None, &history)?;
        Ok(HostView {
            system,
            ping,
            external,
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

    /// A host's new view from a change over its previous view (parts not sent are kept).
    fn change(
        &self,
        c: HostChange<'_>,
        base: &HostView,
        taken_at: std::time::SystemTime,
    ) -> Result<HostView, ApplyError> {
        let parts = Parts {
            system: c.system,
            ping: c.ping,
            external: c.external,
            checks: c.checks,
        };
        let (system, ping, external, checks) = Self::parts(&base.name, parts, Some(base), &base.history)?;
        let mut view = HostView {
            system,
            ping,
            external,
            checks,
            last_update: stamped(c.last_update, base.last_update, taken_at),
            rounds: base.rounds.wrapping_add(c.rounds),
            ..base.clone()
        };
        if let Some(m) = c.meta {
            view.group = m.group.map(Cow::into_owned);
            view.via = m.via;
            view.status = m.status;
            view.error = m.error.map(Cow::into_owned);
            view.up = Reading::host(Metric::HostUp, if m.status == HostStatus::Up { 1.0 } else { 0.0 });
        }
        Ok(view)
    }

    /// A host's readings and checks from their wire form over `base`'s; readings that came
    /// are recorded in its history.
    #[allow(clippy::type_complexity)]
    fn parts(
        name: &HostName,
        w: Parts<'_>,
        base: Option<&HostView>,
        history: &crate::store::SharedHistory,
    ) -> Result<
        (
            Arc<Vec<Reading>>,
            Arc<Vec<Reading>>,
            Arc<Vec<Reading>>,
            Arc<Vec<Arc<CheckReport>>>,
        ),
        ApplyError,
    > {
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
        Ok((
            take(w.system, base.map(|b| &b.system), Source::System)?,
            take(w.ping, base.map(|b| &b.ping), Source::Ping)?,
            take(w.external, base.map(|b| &b.external), Source::External)?,
            checks,
        ))
    }
}

/// A host's processes from their wire form over the viewer's `old` ones; `None` when it
/// does not fit them.
fn processes_of(procs: Procs<'_>, old: &[ProcessDetail]) -> Option<Vec<ProcessDetail>> {
    Some(match procs {
        Procs::All(p) => p.into_owned(),
        Procs::Figures(f) => {
            if old.len() != f.len() {
                return None;
            }
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
                .collect()
        }
        Procs::Steps { changed, steps } => {
            if changed.len() != old.len().div_ceil(8) {
                return None;
            }
            let mut moved = steps.into_iter();
            let mut list = Vec::with_capacity(old.len());
            for (i, p) in old.iter().enumerate() {
                if bit(&changed, i) {
                    list.push(moved_by(p, moved.next()?)?);
                } else {
                    list.push(p.clone());
                }
            }
            if moved.next().is_some() {
                return None;
            }
            list
        }
        Procs::Edit {
            kept,
            changed,
            steps,
            added,
        } => {
            if kept.len() != old.len().div_ceil(8) {
                return None;
            }
            let staying: Vec<&ProcessDetail> = old
                .iter()
                .enumerate()
                .filter(|(i, _)| bit(&kept, *i))
                .map(|(_, p)| p)
                .collect();
            if changed.len() != staying.len().div_ceil(8) {
                return None;
            }
            let mut moved = steps.into_iter();
            let mut list = Vec::with_capacity(staying.len() + added.len());
            for (i, p) in staying.into_iter().enumerate() {
                if bit(&changed, i) {
                    list.push(moved_by(p, moved.next()?)?);
                } else {
                    list.push(p.clone());
                }
            }
            if moved.next().is_some() {
                return None;
            }
            let mut last = None::<usize>;
            for (at, p) in added {
                let at = at as usize;
                if at > list.len() || last.is_some_and(|l| at <= l) {
                    return None;
                }
                list.insert(at, p.into_owned());
                last = Some(at);
            }
            list
        }
    })
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
        assert_eq!(d.hosts.len(), 1, "a is unchanged");
        assert_eq!(d.hosts[0].skip, 1, "b is the second host");
        assert!(d.hosts[0].system.is_none() && d.hosts[0].meta.is_some());
        assert_eq!(d.hosts[0].last_update, Stamp::Same);
        assert_eq!(d.added.len(), 1);
        assert!(d.added[0].system.is_some(), "a new host comes whole");
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
        assert_eq!(d.removed, [1]);
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
            hosts: vec![HostChange {
                checks: Some(WireChecks::Changed(vec![CheckChange {
                    index: 7,
                    status: 0,
                    message: None,
                    duration_ms: 1.0,
                    readings: None,
                }])),
                ..host_change(&s5.hosts[0], &s5.hosts[0], 0, s5.taken_at)
            }],
            removed: vec![],
            added: vec![],
            max_risk: None,
            triggers: None,
        };
        assert!(matches!(replica.apply_delta(bad), Err(ApplyError::Mismatch(_))));
    }

    /// The processes of `new`'s first host after `old`'s, as a viewer with detail request
    /// `id` is sent them, applied to its replica (`None`: nothing travelled).
    async fn detail(
        replica: &mut Replica,
        id: u32,
        old: Option<&Snapshot>,
        new: &Snapshot,
    ) -> Option<Arc<Snapshot>> {
        let msg = processes(id, &new.hosts[0], old.map(|o| &o.hosts[0].processes))?;
        let ServerMsg::Processes { id, host, procs } = round_trip(&msg).await else {
            panic!("processes")
        };
        replica.apply_processes(id, &host, procs).expect("applies")
    }

    #[tokio::test]
    async fn values_and_figures_travel_as_codes_within_their_resolution() {
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
        let ServerMsg::Full(state) = round_trip(&full_view(&s1)).await else {
            panic!("full")
        };
        let got = replica.apply_full(state);
        assert!(
            got.hosts[0].processes.is_empty(),
            "a dashboard's state has no processes"
        );
        replica.set_detail(1, Some("a".into()));
        let got = detail(&mut replica, 1, None, &s1)
            .await
            .expect("the processes, whole");
        assert_eq!(json(&got), json(&s1));

        // The CPU share moves by less than half a hundredth: it does not travel; the load
        // and the counter do, as codes; so does the process's new RSS, alone.
        let s2 = snap(
            2,
            vec![host(12.3458, 0.75, 1_000_000_123.0, vec![process(1.234, 200)])],
        );
        let msg = delta(&s1, &s2, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        let rx = relative(1_000_000_123.0).expect("a code") - 1000;
        assert!(
            matches!(&d.hosts[0].system, Some(Part::Steps { changed, steps }) if changed == &[0b110] && steps == &[250, rx]),
            "{:?}",
            d.hosts[0].system
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        replica.apply_delta(d).expect("applies");
        let ServerMsg::Processes {
            procs: Procs::Steps { changed, steps },
            ..
        } = processes(1, &s2.hosts[0], Some(&s1.hosts[0].processes)).expect("moved")
        else {
            panic!("steps")
        };
        assert_eq!(changed, &[1]);
        assert_eq!(
            steps,
            &[ProcSteps {
                rss_bytes: 100,
                ..ProcSteps::default()
            }]
        );
        let got = detail(&mut replica, 1, Some(&s1), &s2).await.expect("moved");
        assert_eq!(
            value(&got, Metric::CpuUsage),
            Some(12.3456),
            "the exact value it had"
        );
        assert_eq!(value(&got, Metric::Load1), Some(0.75));
        let seen = value(&got, Metric::NetRxBytes).expect("rx");
        assert!(
            (seen - 1_000_000_123.0).abs() <= 1_000_000_123.0 / 4096.0,
            "within 12 significant bits: {seen}"
        );
        assert_eq!(got.hosts[0].processes[0].rss_bytes, 200, "small sizes are exact");
        assert_eq!(got.hosts[0].processes[0].cpu_pct, 1.234);

        // Further moves keep the viewer within half a step (a code) of the server, every time.
        let mut prev = s2;
        for (k, (cpu, rx, rss)) in [
            (50.0, 1_000_500_000.0, 5_000_000),
            (33.333_333, 1_000_500_001.0, 5_000_001),
            (0.004, 2e12, 7_777_777_777),
            (99.995, 2.0001e12, 4095),
            (7.0, 4097.0, 4097),
        ]
        .into_iter()
        .enumerate()
        {
            let s = snap(
                3 + k as u64,
                vec![host(cpu, 0.75, rx, vec![process(cpu / 3.0, rss)])],
            );
            let ServerMsg::Delta(d) = round_trip(&delta(&prev, &s, false)).await else {
                panic!("delta")
            };
            let mut got = replica.apply_delta(d).expect("applies");
            if let Some(g) = detail(&mut replica, 1, Some(&prev), &s).await {
                got = g;
            }
            let seen = value(&got, Metric::CpuUsage).expect("cpu");
            assert!((seen - cpu).abs() <= 0.005 + 1e-9, "{seen} for {cpu}");
            let seen = value(&got, Metric::NetRxBytes).expect("rx");
            assert!((seen - rx).abs() <= rx / 4096.0, "{seen} for {rx}");
            let p = &got.hosts[0].processes[0];
            assert!(
                (p.cpu_pct - cpu / 3.0).abs() <= 0.005 + 1e-9,
                "{} for {}",
                p.cpu_pct,
                cpu / 3.0
            );
            assert!(
                p.rss_bytes.abs_diff(rss) <= rss / 4096,
                "{} for {rss}",
                p.rss_bytes
            );
            prev = s;
        }

        // A value too large for the codes travels exactly.
        let huge = snap(9, vec![host(7.0, 0.75, 1e305, vec![process(7.0 / 3.0, 4097)])]);
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
        assert_eq!(value(&got, Metric::NetRxBytes), Some(1e305));
    }

    #[test]
    fn relative_codes_keep_twelve_significant_bits() {
        // Exact below 4096, and every code is the code of its value.
        for x in [0.0, 1.0, 17.0, 2047.0, 2048.0, 4095.0, -3.0] {
            let c = relative(x).expect("a code");
            assert_eq!(c, x as i64);
            assert_eq!(relative_value(c), Some(x));
        }
        let mut last = None;
        let mut x = 1.0f64;
        while x < 1e20 {
            for v in [x, x * 1.000_1, x * 1.5, x * 1.999_9, -x] {
                let c = relative(v).expect("a code");
                let back = relative_value(c).expect("a value");
                assert_eq!(relative(back), Some(c), "{v}: code {c} is its value's");
                assert!((back - v).abs() <= (v.abs() / 4096.0).max(0.5), "{v} -> {back}");
            }
            // Codes grow with values, by one between neighbours.
            let c = relative(x).expect("a code");
            if let Some(l) = last {
                assert!(c >= l, "{x}");
            }
            last = Some(c);
            x *= 1.37;
        }
        // The bands join: the top of one is the bottom of the next.
        for e in 12..60 {
            let edge = 2f64.powi(e);
            let (below, at) = (relative(edge - edge / 8192.0 / 4.0), relative(edge));
            assert!(below.is_some_and(|b| at.is_some_and(|a| a - b <= 1)), "{e}");
        }
        // A small move of a large value is a small difference of codes.
        let a = relative(10e9).expect("a code");
        let b = relative(10e9 * 1.01).expect("a code");
        // (1% of a mantissa in [2048, 4096).)
        assert!((20..=41).contains(&(b - a)), "{}", b - a);
        assert_eq!(relative(10e9 + 1000.0), Some(a), "below its resolution");
        for bad in [f64::NAN, f64::INFINITY, 1e305] {
            assert_eq!(relative(bad), None);
        }
        // Seconds and milliseconds keep microseconds (as before) under 4.096 s.
        let s = crate::serve::protocol::scale(crate::model::Unit::Seconds).expect("a scale");
        assert_eq!(s.value(s.code(1.234_567).expect("a code")), Some(1.235));
    }

    /// Whether the viewer's snapshot is the server's, within what the wire keeps: the same
    /// hosts in the same order with the same header, values within their codes, updates
    /// within a millisecond.
    fn assert_close(got: &Snapshot, want: &Snapshot) {
        assert_eq!(got.seq, want.seq);
        let names = |s: &Snapshot| s.hosts.iter().map(|h| h.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(got), names(want));
        for (g, w) in got.hosts.iter().zip(&want.hosts) {
            assert_eq!(
                (g.status, &g.error, g.rounds, &g.group),
                (w.status, &w.error, w.rounds, &w.group)
            );
            match (g.last_update, w.last_update) {
                (Some(a), Some(b)) => {
                    let d = a
                        .duration_since(b)
                        .or_else(|_| b.duration_since(a))
                        .expect("a difference");
                    assert!(d <= std::time::Duration::from_millis(1), "{d:?}");
                }
                (a, b) => assert_eq!(a, b),
            }
            for (gs, ws) in [(&g.system, &w.system), (&g.ping, &w.ping)] {
                assert_eq!(gs.len(), ws.len());
                for (a, b) in gs.iter().zip(ws.iter()) {
                    assert!(same_series(a, b));
                    let tolerance = match scale(b.metric.info().unit) {
                        Some(crate::serve::protocol::Scale::Linear(p)) => 0.5 / p + 1e-9,
                        Some(crate::serve::protocol::Scale::Relative(p)) => {
                            (b.value.abs() / 4096.0).max(0.5 / p)
                        }
                        None => 0.0,
                    };
                    assert!(
                        (a.value - b.value).abs() <= tolerance,
                        "{}: {} for {}",
                        b.metric,
                        a.value,
                        b.value
                    );
                }
            }
        }
        assert_eq!(got.max_risk, want.max_risk);
    }

    #[tokio::test]
    async fn deltas_address_hosts_by_position_and_rebuild_the_server_state() {
        let t0 = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let host = |i: usize, round: u64| {
            let v = (i as f64 + 1.0) * (round as f64 + 1.0);
            Arc::new(HostView {
                last_update: Some(
                    t0 + std::time::Duration::from_micros(2_000_000 * round + 1_234 * i as u64),
                ),
                rounds: round,
                ..HostView::new(
                    &format!("host-{i:04}"),
                    Via::Ssh,
                    HostStatus::Up,
                    vec![
                        Reading::host(Metric::CpuUsage, v % 100.0),
                        Reading::host(Metric::MemUsed, v * 1e7 + 0.5),
                        Reading::new(Metric::NetRxBps, "eth0", v * 123.456),
                        Reading::host(Metric::HostUptime, 1e6 + v),
                        Reading::host(Metric::HostPollMs, v / 7.0),
                    ],
                )
            })
        };
        let at = |seq: u64, hosts: Vec<Arc<HostView>>| {
            let mut s = snap(seq, hosts);
            s.taken_at = t0 + std::time::Duration::from_secs(2 * seq) + std::time::Duration::from_millis(300);
            s.max_risk = s
                .hosts
                .iter()
                .take(2)
                .map(|h| crate::snapshot::MaxRiskLine {
                    metric: Metric::CpuUsage,
                    host: h.name.clone(),
                    instance: "".into(),
                    value: h.system[0].value,
                })
                .collect();
            s
        };
        let mut ids: Vec<usize> = (0..40).collect();
        let mut hosts: Vec<Arc<HostView>> = ids.iter().map(|&i| host(i, 0)).collect();
        let mut prev = at(0, hosts.clone());
        let mut replica = Replica::new(4);
        let ServerMsg::Full(state) = round_trip(&full_view(&prev)).await else {
            panic!("full")
        };
        assert_close(&replica.apply_full(state), &prev);
        for round in 1..8u64 {
            // Every third host sends a sample; one goes and one comes every other round.
            for (h, &id) in hosts.iter_mut().zip(&ids) {
                if (id as u64 + round).is_multiple_of(3) {
                    *h = host(id, round);
                }
            }
            if round.is_multiple_of(2) {
                hosts.remove(round as usize);
                ids.remove(round as usize);
                hosts.push(host(100 + round as usize, round));
                ids.push(100 + round as usize);
            }
            if round == 5 {
                let h = &mut hosts[7];
                *h = Arc::new(HostView {
                    status: HostStatus::Timeout,
                    error: Some("no answer".into()),
                    last_update: None,
                    ..HostView::clone(h)
                });
            }
            let next = at(round, hosts.clone());
            let msg = delta(&prev, &next, false);
            let ServerMsg::Delta(d) = &msg else {
                panic!("delta")
            };
            let changed = hosts
                .iter()
                .filter(|h| !prev.hosts.iter().any(|p| Arc::ptr_eq(p, h)))
                .count();
            assert_eq!(d.hosts.len() + d.added.len(), changed);
            let reach: usize = d.hosts.iter().map(|c| c.skip as usize + 1).sum();
            assert!(reach <= next.hosts.len(), "{round}: positions beyond the list");
            // Status and error travel when they change (round 5), and then back (later).
            assert!(
                round > 5
                    || d.hosts
                        .iter()
                        .all(|c| c.meta.is_some() == (round == 5 && c.last_update == Stamp::Never))
            );
            assert!(
                d.hosts
                    .iter()
                    .filter(|c| c.last_update != Stamp::Never)
                    .all(|c| matches!(c.last_update, Stamp::Before(ms) if ms < 400) && c.rounds >= 1)
            );
            let ServerMsg::Delta(d) = round_trip(&msg).await else {
                panic!("delta")
            };
            assert_close(&replica.apply_delta(d).expect("applies"), &next);
            prev = next;
        }
        // A position the viewer does not have is refused.
        let bad = Delta {
            header: header(&prev),
            removed: vec![],
            hosts: vec![host_change(&prev.hosts[0], &host(0, 0), 500, prev.taken_at)],
            added: vec![],
            max_risk: None,
            triggers: None,
        };
        assert!(matches!(
            replica.apply_delta(bad),
            Err(ApplyError::UnknownHost(_))
        ));
    }

    #[tokio::test]
    async fn max_risk_lines_travel_one_by_one() {
        let line = |metric: Metric, host: &str, value: f64| crate::snapshot::MaxRiskLine {
            metric,
            host: host.into(),
            instance: "".into(),
            value,
        };
        let mut s1 = snap(1, vec![]);
        s1.max_risk = vec![line(Metric::CpuUsage, "a", 90.0), line(Metric::Load1, "b", 3.0)];
        let mut replica = Replica::new(4);
        let ServerMsg::Full(state) = round_trip(&full_view(&s1)).await else {
            panic!("full")
        };
        replica.apply_full(state);
        let mut s2 = snap(2, vec![]);
        s2.max_risk = vec![line(Metric::CpuUsage, "a", 91.0), line(Metric::Load1, "c", 3.0)];
        let msg = delta(&s1, &s2, false);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        let Some(WireMaxRisk::Lines { changed, lines }) = &d.max_risk else {
            panic!("{:?}", d.max_risk)
        };
        assert_eq!(changed, &[0b11]);
        assert!(lines[0].place.is_none() && lines[0].value == 91.0);
        assert!(lines[1].place.as_ref().is_some_and(|(h, _)| h.as_ref() == "c"));
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        assert_eq!(replica.apply_delta(d).expect("applies").max_risk, s2.max_risk);
        // Unchanged: nothing; another metric: every line.
        assert!(matches!(
            delta(&s2, &s2, false),
            ServerMsg::Delta(Delta { max_risk: None, .. })
        ));
        let mut s3 = snap(3, vec![]);
        s3.max_risk = vec![line(Metric::Load1, "c", 3.0)];
        let ServerMsg::Delta(d) = round_trip(&delta(&s2, &s3, false)).await else {
            panic!("delta")
        };
        assert!(matches!(d.max_risk, Some(WireMaxRisk::All(_))));
        assert_eq!(replica.apply_delta(d).expect("applies").max_risk, s3.max_risk);
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
        let ServerMsg::Full(state) = round_trip(&full_view(&s1)).await else {
            panic!("full")
        };
        replica.apply_full(state);
        // Processes for a request the viewer has not made, or an earlier one: ignored.
        assert!(detail(&mut replica, 1, None, &s1).await.is_none());
        replica.set_detail(2, Some("a".into()));
        assert!(detail(&mut replica, 1, None, &s1).await.is_none());
        let got = detail(&mut replica, 2, None, &s1).await.expect("applied");
        assert_eq!(json(&got), json(&s1));

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
        let Some(WireTriggers::Lines { changed, lines }) = &d.triggers else {
            panic!("{:?}", d.triggers)
        };
        assert_eq!((changed.as_slice(), lines.len()), (&[0b10u8][..], 1));
        assert!(
            matches!(lines[0], TriggerChange::Value(Some(v)) if v == 97.5),
            "only the value: {lines:?}"
        );
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        replica.apply_delta(d).expect("applies");
        // An acknowledged line travels whole.
        let mut s2b = snap(2, s2.hosts.clone());
        s2b.triggers = s2.triggers.clone();
        s2b.triggers[0].state = crate::triggers::TriggerState::Acknowledged;
        s2b.triggers[0].by = Some("root".into());
        let ServerMsg::Delta(d) = round_trip(&delta(&s2, &s2b, true)).await else {
            panic!("delta")
        };
        assert!(
            matches!(&d.triggers, Some(WireTriggers::Lines { lines, .. }) if matches!(lines[..], [TriggerChange::Line(_)]))
        );
        let got = replica.apply_delta(d).expect("applies");
        assert_eq!(json(&got)["triggers"], json(&s2b)["triggers"]);
        let ServerMsg::Delta(d) = round_trip(&delta(&s2b, &s2, true)).await else {
            panic!("delta")
        };
        replica.apply_delta(d).expect("applies");
        let Some(ServerMsg::Processes {
            procs:
                Procs::Edit {
                    kept,
                    changed,
                    steps,
                    added,
                },
            ..
        }) = processes(2, &s2.hosts[0], Some(&s1.hosts[0].processes))
        else {
            panic!("an edit")
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
        let got = detail(&mut replica, 2, Some(&s1), &s2).await.expect("applied");
        assert_eq!(json(&got), json(&s2));

        // Nothing stays: the whole list; a line goes: every line.
        let mut s3 = snap(3, vec![host(vec![process(50, 1.0)])]);
        s3.triggers = vec![line("b", 97.5)];
        let msg = delta(&s2, &s3, true);
        let ServerMsg::Delta(d) = &msg else {
            panic!("delta")
        };
        assert!(matches!(d.triggers, Some(WireTriggers::All(_))));
        assert!(matches!(
            processes(2, &s3.hosts[0], Some(&s2.hosts[0].processes)),
            Some(ServerMsg::Processes {
                procs: Procs::All(_),
                ..
            })
        ));
        let ServerMsg::Delta(d) = round_trip(&msg).await else {
            panic!("delta")
        };
        replica.apply_delta(d).expect("applies");
        let got = detail(&mut replica, 2, Some(&s2), &s3).await.expect("applied");
        assert_eq!(json(&got), json(&s3));

        // The detail view closes: the host keeps no processes the server no longer updates.
        replica.set_detail(3, None);
        let ServerMsg::Delta(d) = round_trip(&delta(&s3, &s3, false)).await else {
            panic!("delta")
        };
        assert!(
            replica.apply_delta(d).expect("applies").hosts[0]
                .processes
                .is_empty()
        );
    }
}
