//! Fuzz target `remote_sample` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(remote_sample);
