//! `cm-core`: the inference core of conversion-miner.
//!
//! `#![no_std]` and no `alloc`: every buffer is a fixed array whose size is a
//! named const in [`schema`], so a request costs no heap traffic and the core
//! builds for bare-metal targets (CI builds it for `thumbv7em-none-eabihf`).
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod features;
pub mod kernels;
pub mod model;
pub mod parse;
pub mod respond;
pub mod rules;
pub mod schema;
