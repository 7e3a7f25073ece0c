//! Fuzz target `serve_frames` (see src/harness.rs and docs/fuzzing.md).
lookout_fuzz::target!(serve_frames);
