//! Running notification commands (to be completed with issue 5).

use serde::Serialize;

/// The outcome of one action.
#[derive(Debug, Clone, Serialize)]
pub struct ActionEvent {
    pub trigger: String,
}

impl ActionEvent {
    pub fn summary(&self) -> String {
        self.trigger.clone()
    }
}
