//! The model compiled into this binary by `build.rs` from
//! `weights/model.json`: a `static`, so it costs nothing at start-up and
//! cannot fail to load.

use cm_core::model::Model;

include!(concat!(env!("OUT_DIR"), "/model.rs"));

/// The embedded model.
pub fn model() -> &'static Model {
    &MODEL
}

/// The text of the model file the embedded model was built from; its
/// `training_stats` are the reference of the drift monitor and `drift`.
pub const SOURCE_JSON: &str = include_str!("../weights/model.json");
