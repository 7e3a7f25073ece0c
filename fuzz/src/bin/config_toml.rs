//! Fuzz target `config_toml` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(config_toml);
