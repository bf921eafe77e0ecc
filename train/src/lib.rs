//! Training side of conversion-miner (std).
pub mod cli;
