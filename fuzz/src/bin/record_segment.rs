//! Fuzz target `record_segment` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(record_segment);
