//! `cm-model`: the model compiled in by `build.rs` from
//! `weights/model.json`: a `static`, so it costs nothing at start-up and
//! cannot fail to load.
//!
//! Its own crate so that everything needing the shipped model (the binary,
//! benches, tests and the fuzz targets) gets it with only `cm-core` at run
//! time, not the server or the trainer.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use cm_core::model::Model;

include!(concat!(env!("OUT_DIR"), "/model.rs"));

/// The embedded model.
pub fn model() -> &'static Model {
    &MODEL
}

/// `{"training_stats": [...]}` of the model file the embedded model was built
/// from (written by `build.rs`): the reference of the drift monitor and
/// `drift`. Only this part of the 2.5 MB file is kept as text.
pub const TRAINING_STATS_JSON: &str =
    include_str!(concat!(env!("OUT_DIR"), "/training_stats.json"));
