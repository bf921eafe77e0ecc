//! The one SIMD kernel body, generic over a vector type.
//!
//! Every ISA runs this same code: each ISA file implements [`Lanes`] with its
//! intrinsics and instantiates these functions with one [`isa_kernel!`]
//! invocation, which writes the `#[target_feature]` wrappers. Everything
//! here is `#[inline(always)]`, so the body and the trait methods are
//! inlined into the wrapper and compiled with the wrapper's features (the
//! pattern memchr and matrixmultiply use).
//!
//! Measured on the development machine (AMD EPYC, Zen 3, 3.2 GHz, AVX2;
//! criterion medians of thread CPU time, `cargo bench --bench forward`,
//! 2026-11-25): layer 1 alone takes 182 ns, about 580 cycles, against the
//! 376 the two FMA units need. Part of the gap is the per-row broadcast of
//! `x[i]`, which competes with the weight rows for the load ports (a C
//! model of one tile ran at 240 cycles with it, 196 without). Skipping rows
//! of zero inputs, as layer 2 does for inactive units, was first tried
//! inside layer 1 and dropped (EPYC: with 20% zero inputs it saved 4%, with
//! none it cost 12%; validator requests have about 10%). It is done now
//! because the mask of non-zero inputs is built once per prediction
//! ([`super::Inputs`], shared by the 3 to 5 networks, with the clamp), and
//! on the Xeon (AVX-512, where each f16 row costs a `vcvtph2ps` on the FMA
//! ports) the ensemble answer measured 2 to 11% faster in four paired
//! runs of `cargo bench --bench predict -- stage/ensemble/avx512f`
//! (1.97/1.91/2.39/2.12 µs before, 1.91/1.87/2.12/1.96 µs after; 2026-12-07,
//! machine shared, load 6 to 9, so the spread is wide); AVX2 moved by less
//! than the noise. The whole network does not fit a
//! 32 KB L1 with f32 weights (56 KB), so the fused forward (386 ns on the
//! trained classifier) is slower than its layers timed alone (312 ns); with
//! `f16-weights` (28 KB) it takes 260 ns.
//!
//! With f32 weights layer 2 therefore prefetched its rows of `w2` (T0,
//! 4 active rows ahead, found by a second walk over the mask):
//! the trained network went from 387.5 to 358.7 ns (2026-11-25, same
//! command, `--warm-up-time 1 --measurement-time 4`, filter
//! `trained/network/avx2|trained/layer./avx2`). Layer 2 timed alone, with
//! `w2` already in L1, gets slower (120 to 164 ns: the second walk costs
//! about 26 ns, the prefetches 18), so the prefetch was compiled only when
//! the weights exceeded L1; f16 kept the plain loop (258
//! ns before and after; with the prefetch it took 312). Tried and dropped:
//! prefetching 2 or 8 rows ahead (372, 359 ns against 360 for 4), the NTA
//! hint (358, no better than T0), and a single walk feeding a ring of
//! indices (364 ns, layer 2 alone 182) or a prebuilt index list (418 ns).
//!
//! On the Xeon (AVX-512, 48 KB L1) the f16 ensemble runs near the limit
//! of its two vector ports: a zmm FMA issues twice per cycle there but a
//! zmm `vcvtph2ps` once (two micro-ops, on the FMA's ports; a register-only
//! loop of each, 0.18 and 0.37 ns), so an f16 row of 16 weights costs
//! 1.5 port cycles where an f32 row costs 0.5, and the five networks'
//! 4.3 x 544 weight vectors per answer (skipped rows left out) need about
//! 3,500 cycles, 1.3 µs, against 1.7 µs measured. Storage layouts tried
//! there (`cargo bench --bench batches -- ensemble`: the minimum of 60
//! batch means, thread CPU time; three alternating runs per build, another
//! build running beside them, 2026-12-07): f16 everywhere
//! 1.70-1.74 µs; `w1` in f32 and `w2` in f16 1.70-1.72; the first 24
//! inputs' rows in f32, the rest f16, 1.77-1.79; each `w1` row half f32
//! (units 0-63), half f16 (units 64-127), so one loop uses both ports and
//! both cache paths, 1.66-1.67; f32 everywhere (`--no-default-features`)
//! 1.55-1.60, and with the AVX2 kernel 1.91 against 2.38. So on this CPU
//! f32 storage is the faster build, by 6% of the ensemble and 3% of the
//! whole request path; on the EPYC (32 KB L1) f16 was, by 22%. The
//! default stays f16 (most small cloud machines have a 32 KB L1); the
//! README says when to build f32. Layer 2 in one accumulator set instead
//! of two: 1.68-1.70 against 1.70 µs, inside the noise.
//!
//! Every figure above is of the earlier 47-128-64-1 networks. The networks
//! are 47-64-32-1 now (`docs/MEASUREMENTS.md`, 2026-12-07 14:57): an answer
//! converts about 4.3 x 230 weight vectors (42 non-zero inputs x 4, 31
//! active units x 2), about 1,500 port cycles or 0.65 µs with f16, and
//! takes 0.74 µs (`batches -- ensemble`, minimum batch). One network in f32
//! (20.3 KiB) now fits even a 32 KB L1, so the `w2` prefetch above, which
//! only ever ran when a network did not, was removed with the wide networks.
//!
//! Shape of the work, per layer:
//! - Layer 1 (`N_INPUTS` x `H1`): the outputs are cut into tiles of
//!   [`L1_ACC`] vectors that stay in registers while all inputs stream past;
//!   each input is broadcast once per tile and fused-multiply-added into its
//!   weight row. With AVX2 (8 lanes) one tile of 8 accumulators covers the
//!   64 outputs (8 accumulators plus one broadcast fit in 16 ymm registers);
//!   AVX-512 covers them with 4 (`l1_acc`), and NEON takes two tiles of 8.
//! - Layer 2 (`H1` x `H2`): a ReLU unit that is zero contributes nothing, so
//!   the kernel first builds a bit mask of the positive layer-1 units and
//!   runs only their rows of `w2` (48% of them for the trained classifier on
//!   validator requests). All `H2` outputs stay in registers. The canonical rule splits the
//!   active rows into an even and an odd part (`kernels` module docs, rule
//!   5): with `L2_SETS == 2` (AVX-512 and AVX2, whose 2 zmm or 4 ymm of
//!   outputs are too few to hide the FMA latency) the two parts run side by
//!   side in two accumulator sets; with `L2_SETS == 1` (NEON) the even part
//!   runs first, its sums wait in the output buffer, then the odd part.
//!   AVX-512 with one set (the parts one after the other) was tried on the
//!   Xeon with the earlier 47-128-64-1 networks and f16 weights, where the `vcvtph2ps` per row already hides the FMA
//!   latency: 2.14, 2.07, 1.90 µs per ensemble answer against 2.26, 2.00,
//!   2.28 µs with two sets, alternating runs on the shared machine (load
//!   about 6, `stage/ensemble/avx512f`), which is inside the noise; two sets
//!   stay, for f32 weights where nothing else hides the latency.
//! - Output (`H2` -> 1): 16 partial sums held in `16 / LANES` vectors, then
//!   the fixed tree of `sum_parts` ([`Lanes::sum16`]).

use super::{Inputs, Mlp, L2_PARTS, OUT_PARTS, W};
use crate::schema::{H1, H2};

/// Most accumulator vectors per layer-1 tile.
pub(super) const L1_ACC: usize = 8;
/// Most accumulator vectors any ISA needs for layer 2 (`H2` / 4 lanes).
const L2_MAX_ACC: usize = 16;
/// Most vectors the output's 16 partial sums take (4 lanes: 4 vectors).
const OUT_MAX_VECS: usize = OUT_PARTS / 4;
/// Mask bits of the even rows (layer 2's part 0).
const EVEN_ROWS: u64 = 0x5555_5555_5555_5555;
/// Bits per word of the active-unit mask.
const MASK_BITS: usize = u64::BITS as usize;
/// Words in the active-unit mask.
const MASK_WORDS: usize = H1.div_ceil(MASK_BITS);

/// A SIMD vector of `LANES` f32 values.
///
/// # Safety
/// Implementors wrap one ISA's intrinsics. Every method may be called only
/// where that ISA's target features are enabled (inside the ISA's
/// `#[target_feature]` wrappers); pointer arguments must be valid for
/// `LANES` elements.
pub(super) unsafe trait Lanes: Copy {
    /// f32 lanes per vector.
    const LANES: usize;
    /// Layer 2's two parts side by side in two accumulator sets (2), or one
    /// after the other in one (1); see the module docs. Either way the sums
    /// are the canonical ones.
    const L2_SETS: usize;
    /// All lanes zero.
    unsafe fn zero() -> Self;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self;
    /// Unaligned load of `LANES` f32.
    unsafe fn load(p: *const f32) -> Self;
    /// Unaligned load of `LANES` stored weights, widened to f32.
    unsafe fn load_w(p: *const W) -> Self;
    /// Unaligned store.
    unsafe fn store(self, p: *mut f32);
    /// `self + a * b`, fused.
    unsafe fn mul_add(self, a: Self, b: Self) -> Self;
    /// `self + b`.
    unsafe fn add(self, b: Self) -> Self;
    /// `max(self, 0)` per lane; NaN lanes become 0, as `f32::max` does.
    unsafe fn relu(self) -> Self;
    /// Bit `k` set iff lane `k` is `> 0` (false for NaN).
    unsafe fn positive_mask(self) -> u64;
    /// The output's 16 partial sums, held in `parts` (`16 / LANES`
    /// vectors; lane `l` of `parts[a]` is partial `a * LANES + l`), added
    /// in the tree of `kernels::sum_parts`, bit for bit.
    unsafe fn sum16(parts: &[Self]) -> f32;
}

/// `h1 = relu(W1 · x + b1)` on the prepared (clamped) inputs, running only
/// the rows of the non-zero inputs (`inputs.rs` says why that is exact).
///
/// # Safety
/// `V`'s target features must be enabled.
#[inline(always)]
pub(super) unsafe fn layer1<V: Lanes>(m: &Mlp, x: &Inputs, h1: &mut [f32; H1]) {
    // A tile is L1_ACC vectors, or all of H1 when it is narrower.
    let n_acc = const { l1_acc(V::LANES) };
    let tile = n_acc * V::LANES;
    let (xs, nz) = (x.values(), x.nonzero_mask());
    for t in (0..H1).step_by(tile) {
        let mut acc = [
            // SAFETY: features per this fn's contract (all `unsafe` below too).
            unsafe { V::zero() };
            L1_ACC
        ];
        let acc = &mut acc[..n_acc];
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: t + (k + 1) * LANES <= H1 by the tile assertion.
            *a = unsafe { V::load(m.b1.as_ptr().add(t + k * V::LANES)) };
        }
        let mut bits = nz;
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            // SAFETY: features only.
            let xv = unsafe { V::splat(xs[i]) };
            let row = &m.w1[i];
            for (k, a) in acc.iter_mut().enumerate() {
                // SAFETY: the row has H1 weights; t + (k + 1) * LANES <= H1.
                *a = unsafe { a.mul_add(xv, V::load_w(row.as_ptr().add(t + k * V::LANES))) };
            }
        }
        for (k, a) in acc.iter().enumerate() {
            // SAFETY: t + (k + 1) * LANES <= H1.
            unsafe { a.relu().store(h1.as_mut_ptr().add(t + k * V::LANES)) };
        }
    }
}

/// Accumulator vectors per layer-1 tile for `lanes`-wide vectors:
/// [`L1_ACC`], or fewer when `H1` is narrower than that many vectors.
const fn l1_acc(lanes: usize) -> usize {
    let n = if H1 / lanes < L1_ACC {
        H1 / lanes
    } else {
        L1_ACC
    };
    assert!(n > 0 && H1.is_multiple_of(n * lanes));
    n
}

/// A walk over the set bits of the active-unit mask, lowest first.
#[derive(Clone, Copy)]
struct Active<'a> {
    mask: &'a [u64; MASK_WORDS],
    word: usize,
    bits: u64,
}

impl<'a> Active<'a> {
    #[inline(always)]
    fn new(mask: &'a [u64; MASK_WORDS]) -> Self {
        Active {
            mask,
            word: 0,
            bits: mask[0],
        }
    }

    /// The next active unit. Mask bits are only set for units below `H1`.
    #[inline(always)]
    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.word += 1;
            self.bits = *self.mask.get(self.word)?;
        }
        let i = self.word * MASK_BITS + self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(i)
    }
}

/// `h2 = relu(W2 · relu(h1) + b2)`, running only the rows of positive `h1`,
/// in the canonical two parts (even rows from the bias, odd rows from 0).
///
/// # Safety
/// `V`'s target features must be enabled.
#[inline(always)]
pub(super) unsafe fn layer2<V: Lanes>(m: &Mlp, h1: &[f32; H1], h2: &mut [f32; H2]) {
    const {
        assert!(H1.is_multiple_of(V::LANES) && H2.is_multiple_of(V::LANES));
        assert!(H2 / V::LANES <= L2_MAX_ACC);
        assert!(MASK_BITS.is_multiple_of(V::LANES));
        assert!(V::L2_SETS == 1 || V::L2_SETS == 2);
        assert!(L2_PARTS == 2 && MASK_BITS.is_multiple_of(L2_PARTS));
    };
    let nv = H2 / V::LANES;

    let mut mask = [0u64; MASK_WORDS];
    for c in (0..H1).step_by(V::LANES) {
        // SAFETY: c + LANES <= H1.
        let bits = unsafe { V::load(h1.as_ptr().add(c)).positive_mask() };
        mask[c / MASK_BITS] |= bits << (c % MASK_BITS);
    }
    // Bit i of a word is row word * 64 + i, so the parity of the row is the
    // parity of the bit.
    let even = mask.map(|w| w & EVEN_ROWS);
    let odd = mask.map(|w| w & !EVEN_ROWS);

    // SAFETY: features only.
    let zero = unsafe { V::zero() };
    let mut a = [zero; L2_MAX_ACC];
    let mut b = [zero; L2_MAX_ACC];
    for (k, acc) in a.iter_mut().enumerate().take(nv) {
        // SAFETY: (k + 1) * LANES <= H2.
        *acc = unsafe { V::load(m.b2.as_ptr().add(k * V::LANES)) };
    }

    // One row of w2 into an accumulator set. `i` comes from a mask bit, and
    // mask bits are only set for lanes c + k < H1, so indexing cannot fail.
    #[inline(always)]
    unsafe fn row<V: Lanes>(acc: &mut [V; L2_MAX_ACC], nv: usize, hi: f32, w: &[W; H2]) {
        // SAFETY: features per the caller's contract.
        let hv = unsafe { V::splat(hi) };
        for (k, a) in acc.iter_mut().enumerate().take(nv) {
            // SAFETY: (k + 1) * LANES <= H2 = the row length.
            *a = unsafe { a.mul_add(hv, V::load_w(w.as_ptr().add(k * V::LANES))) };
        }
    }

    let mut ev = Active::new(&even);
    let mut od = Active::new(&odd);
    if V::L2_SETS == 2 {
        // Both parts side by side while both have rows, then the rest.
        loop {
            match (ev.next(), od.next()) {
                (Some(i), Some(k)) => {
                    // SAFETY: features per this fn's contract.
                    unsafe {
                        row::<V>(&mut a, nv, h1[i], &m.w2[i]);
                        row::<V>(&mut b, nv, h1[k], &m.w2[k]);
                    }
                }
                (Some(i), None) => {
                    // SAFETY: as above.
                    unsafe { row::<V>(&mut a, nv, h1[i], &m.w2[i]) };
                    while let Some(i) = ev.next() {
                        // SAFETY: as above.
                        unsafe { row::<V>(&mut a, nv, h1[i], &m.w2[i]) };
                    }
                    break;
                }
                (None, Some(k)) => {
                    // SAFETY: as above.
                    unsafe { row::<V>(&mut b, nv, h1[k], &m.w2[k]) };
                    while let Some(k) = od.next() {
                        // SAFETY: as above.
                        unsafe { row::<V>(&mut b, nv, h1[k], &m.w2[k]) };
                    }
                    break;
                }
                (None, None) => break,
            }
        }
    } else {
        // The even part, parked in the output buffer; then the odd part.
        while let Some(i) = ev.next() {
            // SAFETY: features per this fn's contract.
            unsafe { row::<V>(&mut a, nv, h1[i], &m.w2[i]) };
        }
        for (k, acc) in a.iter().enumerate().take(nv) {
            // SAFETY: (k + 1) * LANES <= H2.
            unsafe { acc.store(h2.as_mut_ptr().add(k * V::LANES)) };
        }
        while let Some(k) = od.next() {
            // SAFETY: as above.
            unsafe { row::<V>(&mut b, nv, h1[k], &m.w2[k]) };
        }
        for (k, acc) in a.iter_mut().enumerate().take(nv) {
            // SAFETY: (k + 1) * LANES <= H2.
            *acc = unsafe { V::load(h2.as_ptr().add(k * V::LANES)) };
        }
    }

    for (k, (acc, other)) in a.iter().zip(b.iter()).enumerate().take(nv) {
        // SAFETY: (k + 1) * LANES <= H2; features per contract.
        unsafe {
            acc.add(*other)
                .relu()
                .store(h2.as_mut_ptr().add(k * V::LANES))
        };
    }
}

/// `w3 · h2 + b3`: 16 partial sums (vector `k` into set `k mod 16/LANES`,
/// so lane `l` of set `a` is partial `a * LANES + l`), the fixed tree, the
/// bias.
///
/// # Safety
/// `V`'s target features must be enabled.
#[inline(always)]
pub(super) unsafe fn output<V: Lanes>(m: &Mlp, h2: &[f32; H2]) -> f32 {
    const {
        assert!(H2.is_multiple_of(V::LANES) && OUT_PARTS.is_multiple_of(V::LANES));
        assert!(H2.is_multiple_of(OUT_PARTS) && OUT_PARTS / V::LANES <= OUT_MAX_VECS);
    };
    let sets = OUT_PARTS / V::LANES;
    // SAFETY: features only.
    let mut s = [unsafe { V::zero() }; OUT_MAX_VECS];
    for k in 0..H2 / V::LANES {
        let off = k * V::LANES;
        // SAFETY: off + LANES <= H2 for both arrays.
        s[k % sets] = unsafe {
            s[k % sets].mul_add(
                V::load(h2.as_ptr().add(off)),
                V::load(m.w3.as_ptr().add(off)),
            )
        };
    }
    // SAFETY: features only; `sets` vectors as `sum16` wants.
    unsafe { V::sum16(&s[..sets]) + m.b3 }
}

/// The whole network, layer by layer on stack buffers.
///
/// # Safety
/// `V`'s target features must be enabled.
#[inline(always)]
pub(super) unsafe fn forward<V: Lanes>(m: &Mlp, x: &Inputs) -> f32 {
    let mut h1 = [0.0; H1];
    let mut h2 = [0.0; H2];
    // SAFETY: features per this fn's contract.
    unsafe {
        layer1::<V>(m, x, &mut h1);
        layer2::<V>(m, &h1, &mut h2);
        output::<V>(m, &h2)
    }
}

/// Defines one ISA's kernel: a module named for its weight storage and ISA
/// (`dense_f16w_avx2_fma_f16c` holds the AVX2 + FMA + F16C code for f16
/// weights), with the four `#[target_feature]` entry points dispatch calls,
/// each a thin wrapper that instantiates the `#[inline(always)]` body above
/// with the ISA's vector type, so the body is compiled once per ISA with
/// that ISA's instructions. The module for the build's storage is also
/// reachable as `kernel`, the name dispatch uses.
///
/// `f16:` and `f32:` name the module for each storage, `features:` is the
/// `target_feature` list, `lanes:` the ISA file's [`Lanes`] type.
macro_rules! isa_kernel {
    (f16: $f16:ident, f32: $f32:ident, features: $features:literal, lanes: $lanes:ident $(,)?) => {
        #[cfg(feature = "f16-weights")]
        $crate::kernels::body::isa_kernel!(@module $f16, $features, $lanes);
        #[cfg(not(feature = "f16-weights"))]
        $crate::kernels::body::isa_kernel!(@module $f32, $features, $lanes);
    };
    (@module $name:ident, $features:literal, $lanes:ident) => {
        pub(super) use $name as kernel;

        #[doc = concat!("Entry points compiled with `", $features, "` for this build's weight storage.")]
        pub(super) mod $name {
            use super::$lanes as V;
            use $crate::kernels::{body, Inputs, Mlp};
            use $crate::schema::{H1, H2};

            /// Whole network.
            ///
            /// # Safety
            #[doc = concat!("The CPU must support `", $features, "` (this ISA's token).")]
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn forward(m: &Mlp, x: &Inputs) -> f32 {
                // SAFETY: this function enables exactly V's features.
                unsafe { body::forward::<V>(m, x) }
            }

            /// Layer 1.
            ///
            /// # Safety
            /// As [`forward`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn layer1(m: &Mlp, x: &Inputs) -> [f32; H1] {
                let mut h1 = [0.0; H1];
                // SAFETY: this function enables exactly V's features.
                unsafe { body::layer1::<V>(m, x, &mut h1) };
                h1
            }

            /// Layer 2.
            ///
            /// # Safety
            /// As [`forward`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn layer2(m: &Mlp, h1: &[f32; H1]) -> [f32; H2] {
                let mut h2 = [0.0; H2];
                // SAFETY: this function enables exactly V's features.
                unsafe { body::layer2::<V>(m, h1, &mut h2) };
                h2
            }

            /// Output layer.
            ///
            /// # Safety
            /// As [`forward`].
            #[target_feature(enable = $features)]
            pub(crate) unsafe fn output(m: &Mlp, h2: &[f32; H2]) -> f32 {
                // SAFETY: this function enables exactly V's features.
                unsafe { body::output::<V>(m, h2) }
            }
        }
    };
}
pub(super) use isa_kernel;
