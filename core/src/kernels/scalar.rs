//! Reference kernel: the canonical arithmetic of the module docs
//! (`kernels`), written out one operation at a time.
//!
//! Every SIMD kernel must give these results bit for bit, so this file does
//! exactly what the rule says and nothing else: each sum is a chain of
//! correctly rounded fused multiply-adds ([`fma`]) in the rule's order, the
//! layer-2 rows are split by parity as the SIMD kernels split them, and the
//! output's 16 partial sums go through [`sum_parts`]. It is also the kernel
//! for CPUs without a SIMD path (x86_64 without AVX2).
//!
//! The fma is computed in f64 rather than by calling `libm::fmaf`: libm
//! picks the hardware instruction at run time through a function pointer,
//! an opaque call per multiply-add that keeps the loops from vectorising,
//! and it has no FMA instruction to pick on exactly the CPUs this kernel is
//! the fallback for. `tests.rs` checks [`fma`] against `libm::fmaf`, std's
//! `f32::mul_add` and hand-made double-rounding traps.
//!
//! Speed: a row of multiply-adds ([`fma_row`]) first takes the plain f64
//! sum rounded to f32, which is already the correctly rounded answer unless
//! the f64 sum sits on an f32 rounding midpoint or is below the f32 normal
//! range; only a row where some output is in that case (rare: a 2^-29
//! chance per output for ordinary values) is redone with [`fma`]. The
//! common path has no branch, so the compiler vectorises it over the
//! outputs. Measured on the shared 2-vCPU Xeon (2026-12-07, load 6 to 9,
//! `cargo bench --bench predict -- stage/ensemble/scalar`, f16 weights):
//! one ensemble answer took 235 and 249 µs with [`fma`] on every
//! multiply-add, and 180 and 170 µs with [`fma_row`] (and the branch-free
//! `weight_to_f32`), in the same runs. Before the canonical rule (plain
//! multiply and add, not one answer per input) it took about 85 µs, 6.4 µs
//! with f32 weights: exactness costs this fallback kernel about 2x with
//! f16 weights. Where the rest of the time goes was not measured: a
//! standalone copy of the row loop with f32 weights compiles to packed
//! SSE2 instructions (`rustc -O --emit asm`), so the next suspects are the
//! f16 widening in the loop and how often a row is redone.
//!
use super::{clamp_inputs, relu, sum_parts, weight_to_f32, Mlp, L2_PARTS, OUT_PARTS};
use crate::schema::{H1, H2, N_INPUTS};

/// `a * b + c` with one rounding (round to nearest, ties to even), as an
/// FMA instruction computes it, for every finite input (and IEEE results
/// for infinities and NaN).
///
/// How: the product of two f32 is exact in f64 (24 + 24 bits < 53), so only
/// the sum rounds. Rounding that sum to f64 and then to f32 can go wrong
/// ("double rounding") when the f64 lands exactly halfway between two f32
/// values. So the f64 sum is rounded *to odd* instead: its exact error is
/// found with the TwoSum steps (Knuth), and an inexact sum with an even last
/// bit is moved one f64 step towards the exact value. A round-to-odd result
/// with at least two more bits than the target rounds to the target
/// correctly (Boldo and Melquiond, "Emulation of FMA and correctly rounded
/// sums: proved algorithms using rounding to odd", 2008); 53 >= 24 + 2, and
/// f32 subnormals are normal in f64.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let z = f64::from(c);
    let s = p + z;
    // TwoSum: `e` is exactly `(p + z) - s` whenever `s` is finite.
    let pv = s - z;
    let zv = s - pv;
    let e = (p - pv) + (z - zv);
    let bits = s.to_bits();
    // Away from zero when the error has the sign of the sum, else towards.
    let step: u64 = if (e > 0.0) == (s > 0.0) { 1 } else { u64::MAX };
    let odd = if e != 0.0 && s.is_finite() && bits & 1 == 0 {
        bits.wrapping_add(step)
    } else {
        bits
    };
    f64::from_bits(odd) as f32
}

/// f64 bits below an f32's last mantissa bit (52 - 23 = 29 of them).
const LOW29: u64 = (1 << 29) - 1;
/// Those bits at an f32 rounding midpoint: the top one set, the rest clear.
const HALF29: u64 = 1 << 28;
/// The smallest normal f32, as f64: below it the f32 step is fixed and the
/// midpoint test on `LOW29` does not apply.
const F32_NORMAL: f64 = f32::MIN_POSITIVE as f64;

/// `acc[j] = fma(x, w[j], acc[j])` for every `j`, bit for bit as [`fma`].
///
/// The f64 sum `s` of the exact product and `acc[j]` rounds to the right
/// f32 unless it was inexact and is an f32 midpoint (the exact sum may have
/// been on the other side of it) or below the normal range (where
/// midpoints sit elsewhere); a row with any such `s` is redone with [`fma`].
/// (Exact sums on a midpoint are common with f16 weights and round inputs,
/// so the test for exactness matters: without it most rows were redone.)
#[inline(always)]
pub fn fma_row<const N: usize>(x: f32, w: &[super::W; N], acc: &mut [f32; N]) {
    let xd = f64::from(x);
    let mut next = [0.0f32; N];
    let mut suspect = false;
    for ((n, a), w) in next.iter_mut().zip(acc.iter()).zip(w.iter()) {
        let p = xd * f64::from(weight_to_f32(*w));
        let z = f64::from(*a);
        let s = p + z;
        // TwoSum, as in `fma`: is the f64 sum exact? An exact sum rounds
        // once, so only an inexact one on a midpoint or below the normal
        // range can be wrong.
        let pv = s - z;
        let inexact = (p - pv) + (z - (s - pv)) != 0.0;
        let risky = (s.to_bits() & LOW29) == HALF29 || s.abs() < F32_NORMAL;
        suspect |= inexact && risky;
        *n = s as f32;
    }
    if suspect {
        for ((n, a), w) in next.iter_mut().zip(acc.iter()).zip(w.iter()) {
            *n = fma(x, weight_to_f32(*w), *a);
        }
    }
    *acc = next;
}

/// Layer 1: for each unit, the bias, then one [`fma`] per input in input
/// order, then [`relu`]; on the inputs clamped by [`clamp_inputs`].
pub fn layer1(m: &Mlp, x: &[f32; N_INPUTS]) -> [f32; H1] {
    let x = &clamp_inputs(x);
    let mut h = m.b1;
    for (xi, row) in x.iter().zip(m.w1.iter()) {
        fma_row(*xi, row, &mut h);
    }
    h.map(relu)
}

/// Layer 2: over the active rows only (`h1[i] > 0`), split by parity: part
/// 0 starts at the bias and takes the even rows, part 1 starts at +0 and
/// takes the odd rows, each in row order; the unit is `relu(part0 + part1)`.
pub fn layer2(m: &Mlp, h1: &[f32; H1]) -> [f32; H2] {
    const { assert!(L2_PARTS == 2) };
    let mut parts = [m.b2, [0.0; H2]];
    for (i, (hi, row)) in h1.iter().zip(m.w2.iter()).enumerate() {
        if *hi > 0.0 {
            fma_row(*hi, row, &mut parts[i % L2_PARTS]);
        }
    }
    core::array::from_fn(|j| relu(parts[0][j] + parts[1][j]))
}

/// Output: partial `j` is the [`fma`] chain from +0 over the units
/// `i ≡ j (mod OUT_PARTS)` in order; the partials are added by
/// [`sum_parts`], then the bias.
pub fn output(m: &Mlp, h2: &[f32; H2]) -> f32 {
    let mut p = [0.0f32; OUT_PARTS];
    for (i, (h, w)) in h2.iter().zip(m.w3.iter()).enumerate() {
        p[i % OUT_PARTS] = fma(*h, *w, p[i % OUT_PARTS]);
    }
    sum_parts(&p) + m.b3
}

/// The whole network.
pub fn forward(m: &Mlp, x: &[f32; N_INPUTS]) -> f32 {
    output(m, &layer2(m, &layer1(m, x)))
}
