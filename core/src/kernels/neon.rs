//! aarch64 NEON kernel.
//!
//! [`Q`] implements the body's vector trait with 128-bit intrinsics. NEON is
//! part of the aarch64 baseline, so its token is always available there;
//! the wrappers still name the feature so the body is compiled for it
//! explicitly. With 4 lanes, layer 2's 32 outputs are 8 accumulators (of
//! 32 vector registers), enough to hide FMA latency with one set.
//!
//! f16 weights are widened with integer operations instead of `vcvt_f32_f16`
//! (whose `float16x4_t` type is not stable Rust): move the 15 magnitude bits
//! into an f32's exponent and mantissa, multiply by 2^112 to re-bias the
//! exponent (exact, and right for subnormals too), then put the sign back.
//! Infinities and NaN would come out finite, which cannot matter: weights
//! are checked finite before they are stored.

use core::arch::aarch64::*;

use super::body::{self, Lanes};
use super::W;

/// Four f32 lanes in a q register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct Q(float32x4_t);

/// Lane `k` holds `1 << k`, to fold a comparison into a bit mask.
const LANE_BITS: [u32; 4] = [1, 2, 4, 8];

// SAFETY: every method only calls NEON intrinsics, and the trait's contract
// makes callers enable NEON; pointers are valid for 4 elements by the same
// contract.
unsafe impl Lanes for Q {
    const LANES: usize = 4;
    const L2_SETS: usize = 1;

    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: NEON enabled (trait contract).
        Q(unsafe { vdupq_n_f32(0.0) })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: NEON enabled (trait contract).
        Q(unsafe { vdupq_n_f32(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: NEON enabled and `p` valid for 4 f32 (trait contract).
        Q(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn load_w(p: *const W) -> Self {
        #[cfg(not(feature = "f16-weights"))]
        {
            // SAFETY: W = f32; as `load`.
            unsafe { Self::load(p) }
        }
        #[cfg(feature = "f16-weights")]
        {
            /// 2^112 = 2^(127 - 15): f32 exponent bias minus f16 bias.
            const REBIAS: f32 = f32::from_bits(0x7780_0000);
            // SAFETY: NEON enabled; `p` valid for 4 f16 = 4 u16, and f16 is
            // a transparent u16 holding IEEE binary16.
            unsafe {
                let u = vmovl_u16(vld1_u16(p.cast::<u16>()));
                let sign = vshlq_n_u32::<16>(vandq_u32(u, vdupq_n_u32(0x8000)));
                let mag = vshlq_n_u32::<13>(vandq_u32(u, vdupq_n_u32(0x7fff)));
                let f = vmulq_f32(vreinterpretq_f32_u32(mag), vdupq_n_f32(REBIAS));
                Q(vreinterpretq_f32_u32(vorrq_u32(
                    vreinterpretq_u32_f32(f),
                    sign,
                )))
            }
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: NEON enabled and `p` valid for 4 f32 (trait contract).
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: NEON enabled (trait contract).
        Q(unsafe { vfmaq_f32(self.0, a.0, b.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: NEON enabled (trait contract).
        Q(unsafe { vaddq_f32(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // SAFETY: NEON enabled. fmaxnm returns the number when one operand
        // is NaN, so NaN lanes become 0 (plain fmax would keep the NaN).
        Q(unsafe { vmaxnmq_f32(self.0, vdupq_n_f32(0.0)) })
    }
    #[inline(always)]
    unsafe fn positive_mask(self) -> u64 {
        // SAFETY: NEON enabled; LANE_BITS has 4 u32. fcmgt is false for NaN.
        let m = unsafe {
            let gt = vcgtq_f32(self.0, vdupq_n_f32(0.0));
            vaddvq_u32(vandq_u32(gt, vld1q_u32(LANE_BITS.as_ptr())))
        };
        u64::from(m)
    }
    #[inline(always)]
    unsafe fn sum16(parts: &[Self]) -> f32 {
        // Four vectors of partials 0-3, 4-7, 8-11, 12-15: j with j + 8 is
        // parts 0 + 2 and 1 + 3, j with j + 4 adds those two, j with j + 2
        // the halves, and the last step the two lanes left. Not
        // `vaddvq_f32`, which adds pairwise ((0 + 1) + (2 + 3)).
        // SAFETY: NEON enabled; `parts` has 4 vectors for 4 lanes.
        unsafe {
            let lo = vaddq_f32(parts[0].0, parts[2].0);
            let hi = vaddq_f32(parts[1].0, parts[3].0);
            let b = vaddq_f32(lo, hi);
            let c = vadd_f32(vget_low_f32(b), vget_high_f32(b));
            vget_lane_f32::<0>(c) + vget_lane_f32::<1>(c)
        }
    }
}

body::isa_kernel! {
    f16: dense_f16w_neon,
    f32: dense_f32w_neon,
    features: "neon",
    lanes: Q,
}
