//! x86_64 AVX-512F kernel.
//!
//! [`Zmm`] implements the body's vector trait with 512-bit intrinsics. One
//! layer-1 tile of 4 zmm accumulators covers all 64 units; layer 2 has only
//! 2 zmm outputs, so it runs the canonical even and odd parts in two
//! accumulator sets side by side, to keep 4 FMAs in flight. AVX-512F includes `vcvtph2ps zmm`, so f16 weights need nothing
//! more. The development machine (AMD Zen 3) has no AVX-512: this kernel is
//! built and its tests run only where the CPU has it. Emulation is no way
//! round that here: Debian's qemu-x86_64 (7.2) refuses `-cpu
//! Skylake-Server`'s AVX-512 ("TCG doesn't support requested feature"), and
//! Intel's SDE is not in any registry this project may use.

use core::arch::x86_64::*;

use super::avx2::sum8;
use super::body::{self, Lanes};
use super::W;

/// Sixteen f32 lanes in a zmm register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub(super) struct Zmm(__m512);

// SAFETY: every method only calls AVX-512F intrinsics, and the trait's
// contract makes callers enable that feature; pointers are valid for 16
// elements by the same contract.
unsafe impl Lanes for Zmm {
    const LANES: usize = 16;
    const L2_SETS: usize = 2;

    #[inline(always)]
    unsafe fn zero() -> Self {
        // SAFETY: AVX-512F enabled (trait contract).
        Zmm(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        // SAFETY: AVX-512F enabled (trait contract).
        Zmm(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: AVX-512F enabled and `p` valid for 16 f32 (trait contract).
        Zmm(unsafe { _mm512_loadu_ps(p) })
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
            // SAFETY: AVX-512F enabled; `p` valid for 16 f16 = 32 bytes,
            // and f16 is a transparent u16 holding IEEE binary16.
            Zmm(unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast::<__m256i>())) })
        }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: AVX-512F enabled and `p` valid for 16 f32 (trait contract).
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn mul_add(self, a: Self, b: Self) -> Self {
        // SAFETY: AVX-512F enabled (trait contract).
        Zmm(unsafe { _mm512_fmadd_ps(a.0, b.0, self.0) })
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        // SAFETY: AVX-512F enabled (trait contract).
        Zmm(unsafe { _mm512_add_ps(self.0, b.0) })
    }
    #[inline(always)]
    unsafe fn relu(self) -> Self {
        // SAFETY: AVX-512F enabled. vmaxps returns the second operand when
        // either is NaN, so NaN lanes become 0.
        Zmm(unsafe { _mm512_max_ps(self.0, _mm512_setzero_ps()) })
    }
    #[inline(always)]
    unsafe fn positive_mask(self) -> u64 {
        // SAFETY: AVX-512F enabled. _CMP_GT_OQ is false for NaN.
        let m = unsafe { _mm512_cmp_ps_mask::<_CMP_GT_OQ>(self.0, _mm512_setzero_ps()) };
        u64::from(m)
    }
    #[inline(always)]
    unsafe fn sum16(parts: &[Self]) -> f32 {
        // One vector holds all 16 partials: add the upper 8 lanes to the
        // lower 8 (j with j + 8), then AVX2's tree. Not
        // `_mm512_reduce_add_ps`, whose order is the compiler's choice.
        // SAFETY: AVX-512F (which implies AVX) enabled; one vector.
        unsafe {
            let v = parts[0].0;
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            sum8(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
        }
    }
}

body::isa_kernel! {
    f16: dense_f16w_avx512f,
    f32: dense_f32w_avx512f,
    features: "avx512f",
    lanes: Zmm,
}
