//! The two places the parser looks at 16 bytes at once, with SSE2.
//!
//! SSE2 is part of the x86_64 baseline, so this file is compiled for every
//! x86_64 target (the `cfg` is on its `mod` line) and needs no run-time
//! detection. It holds the only `unsafe` of the parser: each intrinsic reads
//! through a pointer, and each call site below says why the bytes it reads
//! are there. Other targets use the word-at-a-time code in `scan.rs` and
//! `keys.rs`, which gives the same answers (tests compare them).

use core::arch::x86_64::{
    __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
    _mm_set1_epi8,
};

/// Bytes per SSE2 register.
pub(super) const BLOCK: usize = 16;

/// Bit `k` set where byte `k` of `block` needs attention in a string: `"`,
/// `\`, a control character, or (when `ascii`) a byte >= 0x80.
#[inline(always)]
pub(super) fn string_stops(block: &[u8; BLOCK], ascii: bool) -> u32 {
    // SAFETY: SSE2 is enabled on every x86_64 target (this module is
    // compiled only there); `block` is a reference to 16 readable bytes, and
    // `_mm_loadu_si128` has no alignment requirement.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned v <= 0x1f exactly when max(v, 0x1f) == 0x1f.
        let low = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
        let special = _mm_or_si128(_mm_or_si128(quote, backslash), control);
        let non_ascii = if ascii { _mm_movemask_epi8(v) } else { 0 };
        (_mm_movemask_epi8(special) | non_ascii) as u32
    }
}

/// Bit `k` set where byte `k` of `a` equals byte `k` of `b` (32 bytes).
#[inline(always)]
pub(super) fn equal_bytes(a: &[u8; 2 * BLOCK], b: &[u8; 2 * BLOCK]) -> u32 {
    // SAFETY: SSE2 as above; both arguments are references to 32 readable
    // bytes, read as two unaligned 16-byte loads each (`add(1)` steps one
    // 16-byte lane, still inside the 32).
    unsafe {
        let (pa, pb) = (a.as_ptr().cast::<__m128i>(), b.as_ptr().cast::<__m128i>());
        let lo = _mm_cmpeq_epi8(_mm_loadu_si128(pa), _mm_loadu_si128(pb));
        let hi = _mm_cmpeq_epi8(_mm_loadu_si128(pa.add(1)), _mm_loadu_si128(pb.add(1)));
        (_mm_movemask_epi8(lo) as u32 & 0xFFFF) | ((_mm_movemask_epi8(hi) as u32) << 16)
    }
}
