//! One collector, many viewers: `lookout serve` runs the engine without a screen and
//! serves its state on a Unix socket; `lookout attach` is the same dashboard fed from it.
//!
//! [`protocol`] is the wire (versioned handshake, capped frames), [`delta`] turns
//! snapshots into full states and deltas and back, [`server`] is the socket server (an
//! output of the engine), [`client`] the viewer's side (a source of snapshots for `ui/`),
//! [`remote`] `attach HOST` over SSH and its `--stdio` end, [`socket`] paths and
//! permissions, [`logger`] the server's stderr log.

pub mod client;
pub mod delta;
pub mod logger;
pub mod protocol;
pub mod remote;
pub mod server;
pub mod socket;

pub use client::Target;
pub use server::{ServeOptions, serve};
