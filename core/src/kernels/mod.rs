//! Dense-layer kernels for the fixed 47-64-32-1 network (`schema`'s `N_INPUTS`,
//! `H1`, `H2`).
//!
//! Weights are stored input-major (`w1[i][j]` connects input `i` to hidden
//! unit `j`), so a layer is a sum of broadcast-multiplied rows: the inner
//! loop runs over outputs, which vectorises without horizontal reductions,
//! and a ReLU unit that is zero can skip its whole row of the next layer.
//!
//! Layout of this folder, one concept per file:
//! - [`scalar`]: plain loops that spell out the canonical arithmetic below,
//!   the reference every other kernel is tested against bit for bit.
//! - `body`: the one SIMD kernel, written once, `#[inline(always)]`, generic
//!   over a small vector trait (`Lanes`). Each ISA file implements that trait
//!   with `core::arch` intrinsics and instantiates the body with one
//!   `isa_kernel!` invocation, the one macro that writes the thin
//!   `#[target_feature]` wrappers, so the body is compiled once per ISA with
//!   that ISA's instructions. The wrappers live in a module named for the
//!   storage and the ISA (`dense_f16w_avx2_fma_f16c`, `dense_f32w_neon`,
//!   ...), so a profile or a disassembly says which code ran.
//! - `avx2`, `avx512` (x86_64) and `neon` (aarch64): the per-ISA vector types
//!   and wrappers.
//! - [`dispatch`]: CPU detection ([`CpuFeatures::detect`], run time with
//!   the `std` feature), capability tokens and the [`Kernel`] enum. A SIMD
//!   kernel is reachable only through a token that proves its ISA is
//!   present.
//!
//! # One answer per input: the canonical arithmetic
//!
//! Every kernel computes the same f32 operations in the same order, so a
//! forward pass gives the same bits on every CPU (and the server answers the
//! same bytes whatever kernel it picked). The rule, written here once:
//!
//! 1. **Inputs** go through [`clamp_input`] first (into
//!    `[-INPUT_LIMIT, INPUT_LIMIT]`, NaN to 0): the core's one rule for
//!    non-finite and huge values. With it no kernel ever sees an infinite
//!    or NaN input, and for a network whose [`Mlp::activation_bound`] is
//!    finite no partial sum of any layer can overflow (before the rule,
//!    inputs near `f32::MAX` overflowed in one kernel's order and not
//!    another's, and the same request got different classes on different
//!    CPUs). Beyond the limit every input answers as it would at the
//!    limit, which no real feature comes near (validator features are
//!    below 10^4).
//! 2. **Multiply-adds are fused**: every product is added with one
//!    rounding, `fma(a, b, acc)`, as the FMA instructions of AVX2, AVX-512
//!    and NEON do (the scalar kernel emulates it exactly, [`scalar::fma`]).
//!    Weights are widened to f32 exactly ([`weight_to_f32`]).
//! 3. **ReLU** is [`relu`]: `v` if `v > 0`, else +0 (so -0 and NaN give +0).
//! 4. **Layer 1**, unit `j`: start at `b1[j]`, then `fma(x[i], w1[i][j], acc)`
//!    for `i = 0, 1, ..., N_INPUTS - 1`; then ReLU. (Each SIMD lane is one
//!    unit, so the vector kernels follow this naturally.)
//! 5. **Layer 2**, unit `j`: only the *active* rows count, those with
//!    `h1[i] > 0` (an inactive row is skipped, not multiplied by zero: this
//!    is what lets the SIMD kernels skip it and still agree). The active
//!    rows are split into [`L2_PARTS`] = 2 parts by parity: part 0 starts at
//!    `b2[j]` and takes the even rows, part 1 starts at +0 and takes the odd
//!    rows, each in increasing row order; the unit is
//!    `relu(part0 + part1)`. Two chains let AVX-512 and AVX2 (2 zmm or 4 ymm
//!    of outputs) keep twice the FMAs in flight by running the parts side by
//!    side, while NEON, whose outputs fill 8 registers, runs one part after
//!    the other.
//! 6. **Output**: [`OUT_PARTS`] = 16 partial sums, partial `j` the fma chain
//!    from +0 over `h2[i] * w3[i]` for `i ≡ j (mod 16)` in increasing `i`;
//!    then [`sum_parts`] (`j` with `j + 8`, then `+ 4`, `+ 2`, `+ 1`), then
//!    `+ b3`. A 16-lane vector holds the partials in its lanes, 8-lane
//!    vectors in two registers and 4-lane ones in four, and halving the
//!    register (or adding the registers) is exactly that tree.
//!
//! A zero input (rule 4) or inactive row (rule 5) adds an exact zero, so a
//! kernel may skip it without changing a bit: only the sign of a zero sum
//! can differ, and ReLU gives +0 for both ([`Inputs`] skips zero inputs
//! for the SIMD kernels; the scalar kernel runs them). Weights are finite
//! (the model loaders refuse others, [`weight_fits`]).
//!
//! `tests.rs` checks the rule bit for bit (`f32::to_bits`) on every kernel
//! the CPU runs, on random networks and inputs at the extremes;
//! `tests/kernels_agree.rs` does the same on the compiled model, for the
//! whole `predict` answer and the served bytes; `scripts/test-aarch64.sh`
//! runs `tests.rs` for NEON under qemu.
//!
//! Weight storage is [`W`]: `f32` in this crate by default, IEEE half
//! precision with the `f16-weights` feature (see `core/Cargo.toml`), which
//! the conversion-miner binary turns on by default. Only the two big matrices
//! (`w1`, `w2`, 99% of the bytes) use it; biases and the output row stay
//! `f32`. With f16 a 47-64-32-1 network shrinks from 20.3 KiB to 10.4 KiB
//! (the earlier 47-128-64-1 ones from 56 KB, more than a 32 KB L1 data
//! cache, to 28 KB, which fit it); the SIMD kernels widen
//! to f32 in registers (F16C `vcvtph2ps`, AVX-512F `vcvtph2ps`, and an
//! integer shift-and-scale on NEON) and accumulate in f32. Measured with
//! AVX2 on the development machine (Zen 3; `cargo bench --bench forward`
//! and `--bench predict`, with and without `--features
//! cm-core/f16-weights`): one forward 386 -> 260 ns, the five-network
//! ensemble answer 1.97 -> 1.54 µs (the wide networks; README, "Weight
//! storage", for the current ones). The shipped weights are snapped onto the
//! f16 grid when trained (`cm_modelfile::snap`), so f16 storage costs them
//! no reward (README, "f32 or f16").

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod body;
pub mod dispatch;
mod inputs;
pub mod scalar;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(test)]
mod tests;

#[cfg(target_arch = "aarch64")]
pub use dispatch::NeonToken;
#[cfg(target_arch = "x86_64")]
pub use dispatch::{Avx2FmaF16c, Avx512F};
pub use dispatch::{CpuFeatures, Kernel, KernelError};
pub use inputs::Inputs;

use crate::schema::{H1, H2, N_INPUTS};

/// Storage type of the two weight matrices: `f32`.
#[cfg(not(feature = "f16-weights"))]
pub type W = f32;
/// Storage type of the two weight matrices: IEEE binary16 (`f16-weights`).
#[cfg(feature = "f16-weights")]
pub type W = half::f16;

/// Largest magnitude of a network input the kernels compute with: larger
/// inputs are clamped to it ([`clamp_input`]). 10^9 (exact in f32) is five
/// orders above any feature a validator sends, and small enough that the
/// shipped networks' [`Mlp::activation_bound`] stays far below `f32::MAX`
/// (about 3.4e38): `tests/golden.rs` checks it is below 10^30 and prints it.
pub const INPUT_LIMIT: f32 = 1.0e9;

/// One network input as every kernel uses it: clamped into
/// `[-INPUT_LIMIT, INPUT_LIMIT]`, and NaN (which carries no value) as 0.
#[inline(always)]
pub fn clamp_input(x: f32) -> f32 {
    let c = x.clamp(-INPUT_LIMIT, INPUT_LIMIT);
    if c.is_nan() {
        0.0
    } else {
        c
    }
}

/// [`clamp_input`] on every input: what each kernel's layer 1 runs on.
#[inline(always)]
pub fn clamp_inputs(x: &[f32; N_INPUTS]) -> [f32; N_INPUTS] {
    x.map(clamp_input)
}

/// Parts the active rows of layer 2 are split into, by row parity (rule 5
/// of the module docs).
pub const L2_PARTS: usize = 2;

/// Partial sums of the output dot product (rule 6 of the module docs).
pub const OUT_PARTS: usize = 16;

/// The ReLU of every kernel: `v` if `v > 0`, else +0 (-0 and NaN give +0).
#[inline(always)]
pub fn relu(v: f32) -> f32 {
    if v > 0.0 {
        v
    } else {
        0.0
    }
}

/// Adds the output's [`OUT_PARTS`] partial sums in the one fixed tree every
/// kernel follows: `p[j] + p[j + 8]`, then the same with 4, 2 and 1.
#[inline(always)]
pub fn sum_parts(p: &[f32; OUT_PARTS]) -> f32 {
    const { assert!(OUT_PARTS == 16) };
    let a: [f32; 8] = core::array::from_fn(|j| p[j] + p[j + 8]);
    let b: [f32; 4] = core::array::from_fn(|j| a[j] + a[j + 4]);
    let c: [f32; 2] = core::array::from_fn(|j| b[j] + b[j + 2]);
    c[0] + c[1]
}

/// Bytes per stored weight, for documentation and benches.
pub const W_BYTES: usize = core::mem::size_of::<W>();

/// Name of the storage type [`W`], for logs, `/health` and reports.
pub const W_NAME: &str = if W_BYTES == 2 { "f16" } else { "f32" };

/// The IEEE binary16 bit pattern nearest to `x` (ties to even; beyond
/// 65504 by half a step or more, infinity; NaN stays NaN).
///
/// Written here because `half` 2.7's `f16::from_f64` is not correctly
/// rounded: it drops the low 32 bits of the f64 before rounding, so a value
/// just above a midpoint between two f16 values (by less than 2^-20 of a
/// step) rounds down. One trained weight in a few thousand sits that close.
/// Every step below is exact integer arithmetic on the f64's fields.
pub const fn f16_bits_from_f64(x: f64) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 48) & 0x8000) as u16;
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if exp == 0x7ff {
        // Infinity, or NaN made quiet with its top payload bits kept.
        let nan = if frac != 0 {
            0x0200 | (frac >> 42) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    if exp == 0 {
        // Zero or an f64 subnormal: far below half the smallest f16.
        return sign;
    }
    let e = exp - 1023;
    if e > 15 {
        return sign | 0x7c00;
    }
    // The 53-bit significand, cut to 11 bits for a normal f16 (exponent
    // -14 and up) and to fewer below, where the f16 step is fixed at 2^-24.
    let sig = frac | (1u64 << 52);
    let shift = if e >= -14 { 42 } else { 42 - 14 - e } as u32;
    if shift >= 54 {
        // Below a quarter of the smallest step: rounds to zero.
        return sign;
    }
    let mut q = sig >> shift;
    let rest = sig & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    if rest > half || (rest == half && q & 1 == 1) {
        q += 1;
    }
    // A normal's `q` carries the hidden bit (1024..=2048); adding it to the
    // exponent field minus one gives the right field, and a round-up to
    // 2048 carries into the exponent (to infinity past 65504). A
    // subnormal's `q` is the field itself (1024 is the smallest normal).
    let field = if e >= -14 {
        (((e + 14) as u64) << 10) + q
    } else {
        q
    };
    sign | field as u16
}

/// Rounds an `f64` weight to the storage type [`W`] (round to nearest even,
/// directly from the f64: see [`f16_bits_from_f64`]).
///
/// `const`, so generated code can write `weight_from_f64(0.25)` for every
/// weight whatever the storage type. With f16 storage a value beyond the
/// f16 range (|x| > 65504) becomes infinite: check [`weight_fits`] first.
#[inline]
pub const fn weight_from_f64(x: f64) -> W {
    #[cfg(not(feature = "f16-weights"))]
    {
        x as f32
    }
    #[cfg(feature = "f16-weights")]
    {
        half::f16::from_bits(f16_bits_from_f64(x))
    }
}

/// Whether `x` is finite and stays finite after rounding to [`W`].
#[inline]
pub const fn weight_fits(x: f64) -> bool {
    if !x.is_finite() {
        return false;
    }
    #[cfg(not(feature = "f16-weights"))]
    {
        (x as f32).is_finite()
    }
    #[cfg(feature = "f16-weights")]
    {
        half::f16::from_bits(f16_bits_from_f64(x)).is_finite()
    }
}

/// Widens a stored weight to `f32` (exact for both storage types).
#[inline(always)]
pub fn weight_to_f32(w: W) -> f32 {
    #[cfg(not(feature = "f16-weights"))]
    {
        w
    }
    #[cfg(feature = "f16-weights")]
    {
        // The exact shift-and-scale the NEON kernel uses, with infinity and
        // NaN chosen by a bit mask instead of a branch, so the scalar
        // kernel's row loops (`scalar::fma_row`) vectorise. Tested against
        // `half` on all 65536 patterns. (`half`'s software conversion made
        // the scalar forward 21x slower than f32 weights; an early return
        // for the special case measured faster than a select in the old
        // scalar loops, before those loops were written to vectorise.)
        /// 2^112 = 2^(127 - 15): f32 exponent bias minus f16 bias.
        const REBIAS: f32 = f32::from_bits(0x7780_0000);
        let b = u32::from(w.to_bits());
        let rest = b & 0x7fff;
        let sign = (b & 0x8000) << 16;
        // Normal and subnormal: exponent and mantissa moved into place,
        // then re-biased by an exact multiplication.
        let finite = (f32::from_bits(rest << 13) * REBIAS).to_bits();
        // Infinity and NaN: f32 exponent all ones, mantissa kept.
        let special = 0x7f80_0000 | ((b & 0x03ff) << 13);
        // All ones when the f16 exponent field is all ones (rest >= 0x7c00,
        // so rest + 0x400 reaches bit 15), else zero.
        let is_special = ((rest + 0x0400) >> 15).wrapping_neg();
        f32::from_bits((finite & !is_special) | (special & is_special) | sign)
    }
}

/// One multilayer perceptron with BatchNorm and the input scaler already
/// folded into its linear layers. Output is a single pre-activation value
/// (a logit for classifiers, seconds for regressors).
///
/// `repr(C, align(64))`: with `w1` first, every weight row starts on a
/// 64-byte cache line (`H1 * size_of::<W>()` and `H2 * size_of::<W>()` are
/// multiples of 64), so no vector load splits a line.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
pub struct Mlp {
    /// Layer 1 weights, input-major: `w1[i][j]` for input `i`, unit `j`.
    pub w1: [[W; H1]; N_INPUTS],
    /// Layer 1 biases.
    pub b1: [f32; H1],
    /// Layer 2 weights, input-major: `w2[i][j]` for layer-1 unit `i`, unit `j`.
    pub w2: [[W; H2]; H1],
    /// Layer 2 biases.
    pub b2: [f32; H2],
    /// Output layer weights.
    pub w3: [f32; H2],
    /// Output bias.
    pub b3: f32,
}

const _: () = {
    assert!((H1 * W_BYTES).is_multiple_of(64) && (H2 * W_BYTES).is_multiple_of(64));
    assert!(
        H1 <= 128,
        "layer 2 tracks active layer-1 units in two u64 masks"
    );
};

impl Mlp {
    /// All weights and biases zero.
    pub const ZERO: Mlp = Mlp {
        w1: [[weight_from_f64(0.0); H1]; N_INPUTS],
        b1: [0.0; H1],
        w2: [[weight_from_f64(0.0); H2]; H1],
        b2: [0.0; H2],
        w3: [0.0; H2],
        b3: 0.0,
    };

    /// Forward pass of one sample: `w3 · relu(W2 · relu(W1 · x + b1) + b2) + b3`,
    /// with `x` clamped by [`clamp_input`] first.
    #[inline]
    pub fn forward(&self, kernel: Kernel, x: &[f32; N_INPUTS]) -> f32 {
        dispatch::forward(self, kernel, &Inputs::new(x))
    }

    /// [`Mlp::forward`] on inputs already prepared ([`Inputs::new`]), so
    /// the networks of one prediction share that work.
    #[inline]
    pub fn forward_inputs(&self, kernel: Kernel, x: &Inputs) -> f32 {
        dispatch::forward(self, kernel, x)
    }

    /// Layer 1 alone: `relu(W1 · x + b1)`, with `x` clamped by
    /// [`clamp_input`] first.
    #[inline]
    pub fn layer1(&self, kernel: Kernel, x: &[f32; N_INPUTS]) -> [f32; H1] {
        dispatch::layer1(self, kernel, &Inputs::new(x))
    }

    /// Layer 2 alone: `relu(W2 · relu(h1) + b2)`.
    ///
    /// `h1` is normally [`Mlp::layer1`]'s output, already non-negative; any
    /// entry that is not `> 0` (negative, zero or NaN) counts as zero, which
    /// is what lets the SIMD kernels skip its row of `w2`.
    #[inline]
    pub fn layer2(&self, kernel: Kernel, h1: &[f32; H1]) -> [f32; H2] {
        dispatch::layer2(self, kernel, h1)
    }

    /// The largest magnitude any partial sum of any layer can reach on
    /// inputs within `INPUT_LIMIT` (after [`clamp_input`]), in any order
    /// of addition: the output of the "absolute" network (every weight and
    /// bias replaced by its magnitude, every input by `INPUT_LIMIT`),
    /// computed in f64. While it is finite in f32 (below `f32::MAX` with
    /// room for rounding), no activation can overflow in any kernel.
    pub fn activation_bound(&self) -> f64 {
        let lim = f64::from(INPUT_LIMIT);
        let mut a1 = [0.0f64; H1];
        for (j, a) in a1.iter_mut().enumerate() {
            let s: f64 = self
                .w1
                .iter()
                .map(|row| f64::from(weight_to_f32(row[j])).abs() * lim)
                .sum();
            *a = s + f64::from(self.b1[j]).abs();
        }
        let mut a2 = [0.0f64; H2];
        for (j, a) in a2.iter_mut().enumerate() {
            let s: f64 = self
                .w2
                .iter()
                .zip(a1.iter())
                .map(|(row, h)| f64::from(weight_to_f32(row[j])).abs() * h)
                .sum();
            *a = s + f64::from(self.b2[j]).abs();
        }
        let out: f64 = self
            .w3
            .iter()
            .zip(a2.iter())
            .map(|(w, h)| f64::from(*w).abs() * h)
            .sum::<f64>()
            + f64::from(self.b3).abs();
        a1.iter().chain(a2.iter()).fold(out, |m, v| m.max(*v))
    }

    /// Output layer alone: `w3 · h2 + b3` (no activation).
    #[inline]
    pub fn output(&self, kernel: Kernel, h2: &[f32; H2]) -> f32 {
        dispatch::output(self, kernel, h2)
    }
}
