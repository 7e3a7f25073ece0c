//! lookout: a terminal dashboard that watches a cluster of servers.
//!
//! Data flows one way: collectors -> engine -> snapshot -> front ends (DESIGN.md).

pub mod alertmanager;
pub mod cli;
pub mod cli_hosts;
pub mod clock;
pub mod collectors;
pub mod commands;
pub mod config;
pub mod engine;
pub mod event;
pub mod export;
pub mod fleet;
pub mod footprint;
pub mod format;
pub mod headless;
pub mod init;
pub mod manual;
pub mod model;
pub mod record;
pub mod reload;
pub mod resolution;
pub mod ruletest;
pub mod runtime;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod suggest;
pub mod triggers;
pub mod ui;
