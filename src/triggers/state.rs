//! The trigger state machine (to be completed with issue 5): one state per (rule, host,
//! instance), driven by the engine's ticks.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::rule::Rule;
use crate::snapshot::{HostView, MaxRiskLine};

/// What a front end may ask of the triggers.
#[derive(Debug, Clone)]
pub enum Command {
    Acknowledge {
        trigger: String,
        host: String,
        instance: String,
    },
    Silence {
        trigger: String,
        host: String,
        instance: String,
        until: SystemTime,
    },
    Reconnect {
        host: String,
    },
}

/// Where one (rule, host, instance) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerState {
    Ok,
    /// The condition holds, waiting out `for`.
    Pending,
    Firing,
    /// Back past `clear`; becomes `ok` on the next evaluation.
    Resolved,
    /// Firing, but an operator acknowledged it: no flashing, no repeats.
    Acknowledged,
    /// Muted by an operator until `silenced_until`.
    Silenced,
}

/// One trigger line as the snapshot shows it (states other than `ok` are listed).
#[derive(Debug, Clone, Serialize)]
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
    #[serde(serialize_with = "ser_time")]
    pub since: SystemTime,
    /// For `pending`: when it will fire if the condition keeps holding.
    #[serde(serialize_with = "ser_opt_time")]
    pub fires_at: Option<SystemTime>,
    #[serde(serialize_with = "ser_opt_time")]
    pub silenced_until: Option<SystemTime>,
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

/// A transition of one trigger.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerEvent {
    pub trigger: String,
}

impl TriggerEvent {
    pub fn summary(&self) -> String {
        self.trigger.clone()
    }
}

pub struct TriggerSet {
    rules: Vec<Rule>,
    changed: bool,
}

impl TriggerSet {
    pub fn new(rules: Vec<Rule>, _interval: Duration) -> Self {
        TriggerSet {
            rules,
            changed: false,
        }
    }
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
    pub fn evaluate(
        &mut self,
        _now: SystemTime,
        _hosts: &[Arc<HostView>],
        _max_risk: &[MaxRiskLine],
    ) -> Vec<TriggerEvent> {
        Vec::new()
    }
    pub fn command(&mut self, _cmd: &Command, _now: SystemTime) -> Vec<TriggerEvent> {
        Vec::new()
    }
    pub fn views(&self) -> Vec<TriggerView> {
        Vec::new()
    }
    /// Whether views changed since the last call (countdowns, flashing state).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}
