//! x86_64 AVX2 + FMA kernel (+ F16C to widen f16-stored weights).
//!
//! [`Ymm`] implements the body's vector trait with 256-bit intrinsics; the
//! four wrappers below instantiate the body with `avx2,fma,f16c` enabled.
//! F16C is required even for f32 weights: every CPU with AVX2 has it
//! (Haswell and later, every Zen), and one token for both storage types
//! keeps dispatch simple.

use core::arch::x86_64::*;

use super::body::{self, Lanes};
use super::W;

/// Eight f32 lanes in a ymm register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct Ymm(__m256);

// SAFETY: every method only calls AVX/AVX2/FMA/F16C intrinsics, and the
// trait's contract makes callers enable those features; pointers are
// valid for 8 elements by the same contract.
unsafe impl Lanes for Ymm {
    const LANES: usize = 8;
    // Layer 2's 32 outputs are only 4 ymm, half the FMA latency x throughput
    // (4 x 2): two sets. Ensemble answer on the Xeon, `CM_KERNEL=avx2-fma-f16c
    // cargo bench --bench batches -- ensemble`, minimum batch, three
    // alternating runs (2026-12-07): 979, 987, 975 ns against 999, 1004,
    // 1005 ns with one set.
    const L2_SETS: usize = 2;

    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX enabled (trait contract).
        Ymm(unsafe { _mm256_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: AVX enabled (trait contract).
        Ymm(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX enabled and `p` valid for 8 f32 (trait contract).
        Ymm(unsafe { _mm256_loadu_ps(p) })
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
            // SAFETY: F16C enabled; `p` valid for 8 f16 = 16 bytes, and
            // f16 is a transparent u16 so the bytes are IEEE binary16.
            Ymm(unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast::<__m128i>())) })
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX enabled and `p` valid for 8 f32 (trait contract).
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: FMA enabled (trait contract).
        Ymm(unsafe { _mm256_fmadd_ps(a.0, b.0, self.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX enabled (trait contract).
        Ymm(unsafe { _mm256_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // SAFETY: AVX enabled. maxps returns the second operand when either
        // is NaN, so NaN lanes become 0.
        Ymm(unsafe { _mm256_max_ps(self.0, _mm256_setzero_ps()) })
    }
    #[inline(always)]
    unsafe fn positive_mask(self) -> u64 {
        // SAFETY: AVX enabled. _CMP_GT_OQ is false for NaN.
        let m =
            unsafe { _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(self.0, _mm256_setzero_ps())) };
        u64::from(m as u32)
    }
    #[inline(always)]
    unsafe fn sum16(parts: &[Self]) -> f32 {
        // Partials j and j + 8 sit in the same lane of the two vectors.
        // SAFETY: AVX enabled; `parts` has 2 vectors for 8 lanes.
        unsafe { sum8(_mm256_add_ps(parts[0].0, parts[1].0)) }
    }
}

/// Lanes `j` of `v` added as `kernels::sum_parts` adds its `a` (its steps
/// after the first): `j` with `j + 4` (the two 128-bit halves), then with
/// `j + 2` (`movehl`), then lane 0 with lane 1 (`movehdup`). AVX-512's
/// `sum16` ends with this too.
///
/// # Safety
/// AVX (and the SSE3 it implies) must be enabled.
#[inline(always)]
pub(super) unsafe fn sum8(v: __m256) -> f32 {
    // SAFETY: AVX enabled per the contract.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }
}

body::isa_kernel! {
    f16: dense_f16w_avx2_fma_f16c,
    f32: dense_f32w_avx2_fma_f16c,
    features: "avx2,fma,f16c",
    lanes: Ymm,
}
