//! Reference kernel: plain loops, no fused multiply-add, no skipped rows.
//!
//! It is the ground truth the SIMD kernels are tested against, and the
//! kernel for CPUs without a SIMD path. Slow on purpose only in the sense
//! that it does nothing clever; the compiler still vectorises the loops.

use super::{clamp_inputs, weight_to_f32, Mlp};
use crate::schema::{H1, H2, N_INPUTS};

/// `relu(W1 · x + b1)`, `x` clamped by [`clamp_inputs`] first (the
/// core's rule for extreme inputs, module docs of `kernels`).
pub fn layer1(m: &Mlp, x: &[f32; N_INPUTS]) -> [f32; H1] {
    let x = &clamp_inputs(x);
    let mut h = m.b1;
    for (xi, row) in x.iter().zip(m.w1.iter()) {
        for (hj, w) in h.iter_mut().zip(row.iter()) {
            *hj += xi * weight_to_f32(*w);
        }
    }
    for hj in h.iter_mut() {
        *hj = hj.max(0.0);
    }
    h
}

/// `relu(W2 · relu(h1) + b2)`.
pub fn layer2(m: &Mlp, h1: &[f32; H1]) -> [f32; H2] {
    let mut h = m.b2;
    for (hi, row) in h1.iter().zip(m.w2.iter()) {
        let hi = hi.max(0.0);
        for (hj, w) in h.iter_mut().zip(row.iter()) {
            *hj += hi * weight_to_f32(*w);
        }
    }
    for hj in h.iter_mut() {
        *hj = hj.max(0.0);
    }
    h
}

/// `w3 · h2 + b3`.
pub fn output(m: &Mlp, h2: &[f32; H2]) -> f32 {
    let mut out = m.b3;
    for (h, w) in h2.iter().zip(m.w3.iter()) {
        out += h * w;
    }
    out
}

/// The whole network.
pub fn forward(m: &Mlp, x: &[f32; N_INPUTS]) -> f32 {
    output(m, &layer2(m, &layer1(m, x)))
}
