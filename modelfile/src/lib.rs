//! The weights file format, defined once.
//!
//! `weights/model.json` is what training writes and what `build.rs` (and the
//! host's `--weights FILE`) reads. It stores the networks *as trained*:
//! BatchNorm layers with their running statistics, and the input scaler kept
//! separate, so the file can be diffed, audited and evaluated in f64 exactly as
//! the trainer saw it. Folding into inference-ready dense layers happens in
//! f64, and rounding to the storage type happens last.
//!
//! Modules: [`types`] (the serde types), [`validate`] (every check, errors
//! that name the place), [`fold`] (scaler/BatchNorm/target folding),
//! [`load`] (text to [`cm_core::model::Model`]), [`reference`] (the f64
//! forward pass the golden tests compare against), [`codegen`] (the Rust
//! source `build.rs` writes), [`transform`] (the f64 feature transform),
//! [`snap`] (weights made exact in f16, so both storage builds agree).

pub mod codegen;
pub mod fold;
pub mod load;
pub mod reference;
pub mod snap;
pub mod transform;
pub mod types;
pub mod validate;

pub use load::{build_model, load, load_model, parse_model_file, sha256_hex, LoadError, Loaded};
pub use types::*;
pub use validate::{validate, ModelError};
