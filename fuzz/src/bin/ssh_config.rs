//! Fuzz target `ssh_config` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(ssh_config);
