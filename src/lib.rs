//! The `conversion-miner` binary's library half: the embedded model and the
//! `predict` subcommand, kept out of `main.rs` so integration tests and
//! benches can reach them.

pub mod embedded;
pub mod predict;
