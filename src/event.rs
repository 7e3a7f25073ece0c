//! Everything worth telling the operator: host status changes, trigger transitions, action
//! results. The headless runner prints each as one JSON line; the TUI shows them in its log.

use serde::Serialize;

use crate::model::{HostName, HostStatus};
use crate::triggers::{ActionEvent, TriggerEvent};

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Event {
    /// RFC 3339 time of the event.
    pub at: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The runner started watching.
    Started {
        hosts: usize,
        triggers: usize,
    },
    HostStatus {
        host: HostName,
        status: HostStatus,
        error: Option<String>,
    },
    Trigger(TriggerEvent),
    Action(ActionEvent),
    /// The runner is stopping (signal or `--duration` reached).
    Stopped {
        reason: String,
    },
}

impl Event {
    pub fn new(at: std::time::SystemTime, kind: EventKind) -> Self {
        Event {
            at: crate::model::rfc3339(at),
            kind,
        }
    }

    /// One line for the log panel.
    pub fn summary(&self) -> String {
        match &self.kind {
            EventKind::Started { hosts, triggers } => {
                format!("watching {hosts} hosts with {triggers} triggers")
            }
            EventKind::HostStatus { host, status, error } => match error {
                Some(e) => format!("{host}: {status}: {e}"),
                None => format!("{host}: {status}"),
            },
            EventKind::Trigger(t) => t.summary(),
            EventKind::Action(a) => a.summary(),
            EventKind::Stopped { reason } => format!("stopped: {reason}"),
        }
    }
}
