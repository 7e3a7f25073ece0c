//! Triggers: rules from the config, the per-(rule, host, instance) state machine and the
//! notification commands run when a rule fires or resolves.

pub mod action;
pub mod rule;
pub mod state;

pub use action::ActionEvent;
pub use state::{Command, ReloadRequest, RuleChanges, TriggerEvent, TriggerSet, TriggerState, TriggerView};
