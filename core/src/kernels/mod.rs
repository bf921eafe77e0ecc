//! Dense-layer kernels for the fixed 47-128-64-1 network.
//!
//! Weights are stored input-major (`w1[i][j]` connects input `i` to hidden
//! unit `j`), so a layer is a sum of broadcast-multiplied rows: the inner loop
//! runs over outputs, which vectorises without horizontal reductions.

use crate::schema::{H1, H2, N_INPUTS};

/// One multilayer perceptron with BatchNorm and the input scaler already
/// folded into its linear layers. Output is a single pre-activation value
/// (a logit for classifiers, seconds for regressors).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// Layer 1 weights, input-major: `w1[i][j]` for input `i`, unit `j`.
    pub w1: [[f32; H1]; N_INPUTS],
    pub b1: [f32; H1],
    /// Layer 2 weights, input-major: `w2[i][j]` for layer-1 unit `i`, unit `j`.
    pub w2: [[f32; H2]; H1],
    pub b2: [f32; H2],
    /// Output layer weights.
    pub w3: [f32; H2],
    pub b3: f32,
}

/// Which kernel implementation runs a forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kernel {
    /// Portable reference implementation.
    Scalar,
}

impl Kernel {
    /// Short lowercase name, as used by `--kernel` and in `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
        }
    }
}

impl Mlp {
    /// Forward pass of one sample.
    #[inline]
    pub fn forward(&self, kernel: Kernel, x: &[f32; N_INPUTS]) -> f32 {
        match kernel {
            Kernel::Scalar => scalar::forward(self, x),
        }
    }
}

pub mod scalar {
    //! Reference kernel: plain loops, the ground truth the SIMD kernels are tested against.
    use super::Mlp;
    use crate::schema::{H1, H2, N_INPUTS};

    pub fn forward(m: &Mlp, x: &[f32; N_INPUTS]) -> f32 {
        let mut h1 = m.b1;
        for (xi, row) in x.iter().zip(m.w1.iter()) {
            for (h, w) in h1.iter_mut().zip(row.iter()) {
                *h += xi * w;
            }
        }
        for h in h1.iter_mut() {
            *h = h.max(0.0);
        }
        let mut h2 = m.b2;
        for (hi, row) in h1.iter().zip(m.w2.iter()) {
            for (h, w) in h2.iter_mut().zip(row.iter()) {
                *h += hi * w;
            }
        }
        let mut out = m.b3;
        for (h, w) in h2.iter().zip(m.w3.iter()) {
            out += h.max(0.0) * w;
        }
        let _ = (H1, H2);
        out
    }
}
