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

use super::protocol::{Delta, Header, ServerMsg, State, WireHost};
use crate::model::{HostName, HostStatus, Metric, Reading, Source};
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
    let changed = |new: &'a Arc<Vec<Reading>>, old: Option<&Arc<Vec<Reading>>>| {
        (!old.is_some_and(|o| Arc::ptr_eq(o, new))).then(|| Cow::Borrowed(new.as_slice()))
    };
    WireHost {
        name: h.name.clone(),
        group: h.group.as_deref().map(Cow::Borrowed),
        via: h.via,
        status: h.status,
        error: h.error.as_deref().map(Cow::Borrowed),
        last_update: h.last_update,
        rounds: h.rounds,
        system: changed(&h.system, old.map(|o| &o.system)),
        ping: changed(&h.ping, old.map(|o| &o.ping)),
        external: changed(&h.external, old.map(|o| &o.external)),
        processes: (!old.is_some_and(|o| Arc::ptr_eq(&o.processes, &h.processes)))
            .then(|| Cow::Borrowed(h.processes.as_slice())),
    }
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
        triggers: triggers_changed.then_some(Cow::Borrowed(new.triggers.as_slice())),
    })
}

/// Why a message could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("a delta before any full state")]
    NoBase,
    #[error("delta for unknown host `{0}` without its values")]
    UnknownHost(String),
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
            let view = self.build(w, base.as_deref());
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
                    let view = self.build(w, Some(&self.hosts[i]));
                    self.hosts[i] = Arc::new(view);
                }
                None => {
                    if w.system.is_none() || w.ping.is_none() || w.external.is_none() || w.processes.is_none()
                    {
                        return Err(ApplyError::UnknownHost(w.name.to_string()));
                    }
                    let view = self.build(w, None);
                    self.index.insert(view.name.clone(), self.hosts.len());
                    self.hosts.push(Arc::new(view));
                }
            }
        }
        let max_risk = delta
            .max_risk
            .map_or_else(|| current.max_risk.clone(), Cow::into_owned);
        let triggers = delta
            .triggers
            .map_or_else(|| current.triggers.clone(), Cow::into_owned);
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
    fn build(&self, w: WireHost<'_>, base: Option<&HostView>) -> HostView {
        let history = base.map_or_else(
            || Arc::new(RwLock::new(HostHistory::new(self.history_cap))),
            |b| b.history.clone(),
        );
        let take =
            |part: Option<Cow<'_, [Reading]>>, old: Option<&Arc<Vec<Reading>>>, source: Source| match part {
                Some(p) => {
                    let readings = p.into_owned();
                    if let Ok(mut hist) = history.write() {
                        hist.record(source, &readings);
                    }
                    Arc::new(readings)
                }
                None => old.cloned().unwrap_or_default(),
            };
        HostView {
            system: take(w.system, base.map(|b| &b.system), Source::System),
            ping: take(w.ping, base.map(|b| &b.ping), Source::Ping),
            external: take(w.external, base.map(|b| &b.external), Source::External),
            processes: match w.processes {
                Some(p) => Arc::new(p.into_owned()),
                None => base.map(|b| b.processes.clone()).unwrap_or_default(),
            },
            name: w.name,
            group: w.group.map(Cow::into_owned),
            via: w.via,
            status: w.status,
            error: w.error.map(Cow::into_owned),
            last_update: w.last_update,
            rounds: w.rounds,
            up: Reading::host(Metric::HostUp, if w.status == HostStatus::Up { 1.0 } else { 0.0 }),
            // Check reports do not travel over the wire yet (the viewer shows none).
            checks: base.map(|b| b.checks.clone()).unwrap_or_default(),
            history: history.clone(),
        }
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
}
