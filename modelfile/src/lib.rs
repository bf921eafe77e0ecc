//! The weights file format, defined once.
//!
//! `weights/model.json` is what training writes and what `build.rs` (and the
//! host's `--weights FILE`) reads. It stores the networks *as trained*:
//! BatchNorm layers with their running statistics, and the input scaler kept
//! separate, so the file can be diffed, audited and evaluated in f64 exactly as
//! the trainer saw it. Folding into inference-ready dense layers happens in
//! f64, and rounding to the storage type happens last.

pub mod transform;
pub mod types;
pub use types::*;
