//! Fuzz target `check_output` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(check_output);
