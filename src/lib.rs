//! The `conversion-miner` binary's library half: the `predict` subcommand
//! and the embedded model's path, kept out of `main.rs` so integration tests
//! and benches can reach them.

pub mod predict;

/// The compiled-in model (the `cm-model` crate), under the name the binary,
/// tests and benches have always used.
pub use cm_model as embedded;
