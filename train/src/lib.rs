//! Training side of conversion-miner (std): the subnet's CSV, an f32 MLP
//! trainer on nalgebra, export to `weights/model.json`, and evaluation with
//! the subnet's reward. The generator, ground truth and reward themselves
//! are `cm-subnet`'s.
#![deny(unsafe_op_in_unsafe_fn)]
// Matrix code reads best with explicit row/column indices.
#![allow(clippy::needless_range_loop)]

pub mod cli;
pub mod csv;
pub mod data;
pub mod eval;
pub mod export;
pub mod json_text;
pub mod nn;
pub mod pipeline;
pub mod trainer;

// The subnet's facts live in `cm-subnet` (shared with the probe, which must
// not depend on this crate); re-exported so `cm_train::gen` and friends keep
// their paths.
pub use cm_subnet::{gen, oracle, reward, rng};
