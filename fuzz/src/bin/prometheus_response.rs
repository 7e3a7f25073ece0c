//! Fuzz target `prometheus_response` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(prometheus_response);
