//! `cm-subnet`: the subnet's facts as code, shared by training and the probe
//! and never used by the server: the validator's seeded conversation
//! generator ([`gen`] over [`rng`]), its ground-truth rule ([`oracle`]), the
//! per-query reward ([`reward`]), and the labelled, seeded sets both sides
//! draw ([`sample`]). std and small on purpose: the probe depends on this
//! and must not pull in the trainer's linear algebra. The output rules are
//! the core's (`cm_core::rules`), because the core owns the answer type.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod gen;
pub mod oracle;
pub mod reward;
pub mod rng;
pub mod sample;
