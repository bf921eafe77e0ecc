//! Network inputs made ready once per prediction, for all its networks.
//!
//! An ensemble answer runs 3 to 5 networks on the same inputs, so the work
//! that depends only on the inputs is done once here instead of in every
//! network's layer 1: the clamp of the core's input rule
//! ([`super::clamp_input`]) and the bit mask of inputs that are not zero.
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

const _: () = assert!(N_INPUTS <= u64::BITS as usize, "one mask bit per input");

/// Clamped network inputs and a bit mask of the non-zero ones.
#[derive(Clone, Copy, Debug)]
pub struct Inputs {
    x: [f32; N_INPUTS],
    /// Bit `i` set iff `x[i] != 0`.
    nonzero: u64,
}

impl Inputs {
    /// Clamps every input ([`clamp_input`]) and marks the non-zero ones.
    ///
    /// A mask rather than a list of indices: neither loop here carries a
    /// dependence from one input to the next, so both vectorise. The list
    /// it replaced advanced a write index per input, a chain through all
    /// 47 inputs; the ensemble answer went from 1.73 to 1.70 µs (`cargo
    /// bench --bench batches -- ensemble`, minimum batch, three alternating
    /// runs per build, Xeon 2.3 GHz with AVX-512, 2026-12-07).
    #[inline]
    pub fn new(raw: &[f32; N_INPUTS]) -> Inputs {
        let x = raw.map(clamp_input);
        let mut nonzero = 0u64;
        for (i, v) in x.iter().enumerate() {
            nonzero |= u64::from(*v != 0.0) << i;
        }
        Inputs { x, nonzero }
    }

    /// The clamped inputs.
    #[inline(always)]
    pub fn values(&self) -> &[f32; N_INPUTS] {
        &self.x
    }

    /// Bit `i` set iff the clamped input `i` is not zero (bits at and
    /// above `N_INPUTS` are clear).
    #[inline(always)]
    pub fn nonzero_mask(&self) -> u64 {
        self.nonzero
    }
}
