//! Training side of conversion-miner (std): the validator's generator and
//! ground truth, the subnet's CSV and reward, an f32 MLP trainer on
//! nalgebra, export to `weights/model.json`, and evaluation.
#![deny(unsafe_op_in_unsafe_fn)]
// Matrix code reads best with explicit row/column indices.
#![allow(clippy::needless_range_loop)]

pub mod cli;
pub mod csv;
pub mod data;
pub mod eval;
pub mod export;
pub mod gen;
pub mod json_text;
pub mod nn;
pub mod oracle;
pub mod pipeline;
pub mod report_html;
pub mod reward;
pub mod rng;
pub mod trainer;
