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

/// One trigger line as the snapshot shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerView {
    pub name: String,
    pub state: String,
    pub host: String,
    pub instance: String,
    pub value: Option<f64>,
    pub since: String,
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
