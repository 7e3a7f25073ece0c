//! Fuzz target `known_hosts` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(known_hosts);
