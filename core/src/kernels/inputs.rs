//! Network inputs made ready once per prediction, for all its networks.
//!
//! An ensemble answer runs 3 to 5 networks on the same inputs, so the work
//! that depends only on the inputs is done once here instead of in every
//! network's layer 1: the clamp of the core's input rule
//! ([`super::clamp_input`]) and the list of inputs that are not zero.
//!
//! Why zeros can be skipped without changing a bit: a zero input adds
//! `fma(0, w, acc) = acc + (±0)` to each unit, which is `acc` itself unless
//! `acc` is a zero, where only the sign of that zero can change; the next
//! non-zero term or, at the end, the ReLU (which gives +0 for -0) erases
//! that sign. So a kernel that skips zero inputs gives the canonical
//! layer-1 output bit for bit (`kernels/tests.rs` compares the SIMD
//! kernels, which skip, with the scalar one, which does not, on inputs
//! with zeros of both signs).

use super::clamp_input;
use crate::schema::N_INPUTS;

const _: () = assert!(N_INPUTS <= u8::MAX as usize, "indices are stored as u8");

/// Clamped network inputs and the indices of the non-zero ones, in order.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    x: [f32; N_INPUTS],
    nonzero: [u8; N_INPUTS],
    count: usize,
}

impl Inputs {
    /// Clamps every input ([`clamp_input`]) and lists the non-zero ones.
    #[inline]
    pub fn new(raw: &[f32; N_INPUTS]) -> Inputs {
        let x = raw.map(clamp_input);
        let mut nonzero = [0u8; N_INPUTS];
        let mut count = 0;
        for (i, v) in x.iter().enumerate() {
            // Branch-free: always write, advance only past a non-zero.
            nonzero[count.min(N_INPUTS - 1)] = i as u8;
            count += usize::from(*v != 0.0);
        }
        Inputs { x, nonzero, count }
    }

    /// The clamped inputs.
    #[inline(always)]
    pub fn values(&self) -> &[f32; N_INPUTS] {
        &self.x
    }

    /// Indices of the non-zero clamped inputs, increasing.
    #[inline(always)]
    pub fn nonzero(&self) -> &[u8] {
        &self.nonzero[..self.count]
    }
}
