//! Every SIMD kernel against the scalar reference, bit for bit
//! (`f32::to_bits`), on the same weights and inputs: the canonical
//! arithmetic of the module docs (`kernels`) leaves no room for rounding
//! differences. Each test names the kernels it compared and the ones this
//! CPU cannot run (skipped, and said so on stderr).
//!
//! The scalar kernel itself is checked against an f64 evaluation with a
//! tolerance from floating-point error analysis: a dot product of `n` terms
//! plus a bias, summed in any order with or without FMA, is within
//! `γ(n+1) · (Σ|w·x| + |b|)` of the exact value, where
//! `γ(k) = k·u / (1 − k·u)` and `u = 2^-24` (Higham, Accuracy and Stability
//! of Numerical Algorithms, §3.1). Through three layers (ReLU is
//! 1-Lipschitz) the error of the whole network is at most
//! `((1+γ)^3 − 1)·A ≈ 3γ·A`, with `A` the output of the "absolute" network
//! (every weight, bias and input replaced by its magnitude). A wrong index
//! or a skipped row misses that bound by orders of magnitude; rounding
//! cannot reach it. Its [`scalar::fma`] is checked against `libm::fmaf`,
//! std's `f32::mul_add` and hand-made double-rounding traps.

extern crate std;

use std::boxed::Box;
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::dispatch::calls;
use super::*;
use crate::schema::{H1, H2, N_INPUTS};

/// Unit roundoff of f32.
const U: f64 = 1.0 / (1u64 << 24) as f64;

/// `γ(k)` of the module docs.
fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    ku / (1.0 - ku)
}

/// SplitMix64: small, deterministic, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    fn sym(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Random weights scaled like a trained layer (≈ 1/sqrt(fan_in)), with
/// every 17th weight tiny (f16 subnormal range) and some exact zeros.
fn random_mlp(seed: u64) -> Box<Mlp> {
    let mut r = Rng(seed);
    let mut m = Box::new(Mlp::ZERO);
    let weight = |r: &mut Rng, fan_in: usize, k: usize| -> W {
        let v = r.sym() * 1.7 / (fan_in as f64).sqrt();
        let v = match k % 17 {
            0 => v * 1e-5,
            5 => 0.0,
            _ => v,
        };
        weight_from_f64(v)
    };
    let mut k = 0;
    for row in m.w1.iter_mut() {
        for w in row.iter_mut() {
            *w = weight(&mut r, N_INPUTS, k);
            k += 1;
        }
    }
    for row in m.w2.iter_mut() {
        for w in row.iter_mut() {
            *w = weight(&mut r, H1, k);
            k += 1;
        }
    }
    for b in m.b1.iter_mut().chain(m.b2.iter_mut()) {
        *b = (r.sym() * 0.3) as f32;
    }
    for w in m.w3.iter_mut() {
        *w = (r.sym() / (H2 as f64).sqrt()) as f32;
    }
    m.b3 = (r.sym() * 0.5) as f32;
    m
}

/// Named input families: random, zero, all negative, large, mixed scales.
fn inputs(seed: u64) -> Vec<(String, [f32; N_INPUTS])> {
    let mut r = Rng(seed ^ 0xA5A5);
    let mut out = Vec::new();
    for n in 0..8 {
        out.push((
            format!("random#{n}"),
            core::array::from_fn(|_| (r.sym() * 2.0) as f32),
        ));
    }
    out.push(("zeros".into(), [0.0; N_INPUTS]));
    out.push((
        "negative".into(),
        core::array::from_fn(|_| (-r.sym().abs() * 3.0 - 0.01) as f32),
    ));
    out.push((
        "large".into(),
        core::array::from_fn(|_| (r.sym() * 1.0e4) as f32),
    ));
    out.push((
        "mixed-scale".into(),
        core::array::from_fn(|i| (r.sym() * 10f64.powi(i as i32 % 7 - 3)) as f32),
    ));
    out
}

/// The SIMD kernels this CPU can run (the core's run-time detection).
fn simd_kernels() -> Vec<Kernel> {
    Kernel::runnable(detected())
        .filter(|k| *k != Kernel::Scalar)
        .collect()
}

fn detected() -> CpuFeatures {
    CpuFeatures::detect()
}

fn w(x: W) -> f64 {
    f64::from(weight_to_f32(x))
}

/// `Σ|w·x| + |b|` per output of layer 1, and of layer 2 on input `h1`.
fn layer1_scale(m: &Mlp, x: &[f32; N_INPUTS]) -> [f64; H1] {
    core::array::from_fn(|j| {
        f64::from(m.b1[j].abs())
            + (0..N_INPUTS)
                .map(|i| (w(m.w1[i][j]) * f64::from(x[i])).abs())
                .sum::<f64>()
    })
}
fn layer2_scale(m: &Mlp, h1: &[f32; H1]) -> [f64; H2] {
    core::array::from_fn(|j| {
        f64::from(m.b2[j].abs())
            + (0..H1)
                .map(|i| (w(m.w2[i][j]) * f64::from(h1[i].max(0.0))).abs())
                .sum::<f64>()
    })
}

/// Output of the absolute network on `|x|` (the `A` of the module docs).
fn abs_network(m: &Mlp, x: &[f32; N_INPUTS]) -> f64 {
    let a1: [f64; H1] = core::array::from_fn(|j| {
        f64::from(m.b1[j].abs())
            + (0..N_INPUTS)
                .map(|i| w(m.w1[i][j]).abs() * f64::from(x[i].abs()))
                .sum::<f64>()
    });
    let a2: [f64; H2] = core::array::from_fn(|j| {
        f64::from(m.b2[j].abs()) + (0..H1).map(|i| w(m.w2[i][j]).abs() * a1[i]).sum::<f64>()
    });
    f64::from(m.b3.abs())
        + (0..H2)
            .map(|j| f64::from(m.w3[j].abs()) * a2[j])
            .sum::<f64>()
}

/// First element where `got` and `want` differ by more than `tol`.
fn first_mismatch(what: &str, got: &[f32], want: &[f32], tol: &[f64]) -> Result<(), String> {
    for (j, ((g, e), t)) in got.iter().zip(want).zip(tol).enumerate() {
        let d = (f64::from(*g) - f64::from(*e)).abs();
        if d.is_nan() || d > *t {
            return Err(format!(
                "{what}[{j}]: kernel {g:e} vs scalar {e:e}, |diff| {d:e} > tolerance {t:e}"
            ));
        }
    }
    Ok(())
}

/// First element whose bits differ between `got` and `want`.
fn first_bit_mismatch(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    for (j, (g, e)) in got.iter().zip(want).enumerate() {
        if g.to_bits() != e.to_bits() {
            return Err(format!(
                "{what}[{j}]: kernel {g:e} ({:#010x}) vs scalar {e:e} ({:#010x})",
                g.to_bits(),
                e.to_bits()
            ));
        }
    }
    Ok(())
}

/// Compares one kernel with scalar, bit for bit, on every layer (each fed
/// the scalar kernel's previous layer) and on the whole network.
fn compare(k: Kernel, m: &Mlp, name: &str, x: &[f32; N_INPUTS]) -> Result<(), String> {
    let ctx = |e: String| format!("kernel {}, input {name}: {e}", k.name());
    let h1 = scalar::layer1(m, x);
    first_bit_mismatch("layer1", &m.layer1(k, x), &h1).map_err(ctx)?;
    let h2 = scalar::layer2(m, &h1);
    first_bit_mismatch("layer2", &m.layer2(k, &h1), &h2).map_err(ctx)?;
    first_bit_mismatch("output", &[m.output(k, &h2)], &[scalar::output(m, &h2)]).map_err(ctx)?;
    let y = m.forward(k, x);
    first_bit_mismatch("forward", &[y], &[scalar::forward(m, x)]).map_err(ctx)?;
    // The fused forward runs the same instructions as the three layer
    // calls, so it must agree with them bit for bit.
    let composed = m.output(k, &m.layer2(k, &m.layer1(k, x)));
    if y.to_bits() != composed.to_bits() {
        return Err(ctx(format!(
            "forward {y:e} != layer1->layer2->output {composed:e}"
        )));
    }
    Ok(())
}

/// The scalar kernel against f64 arithmetic, within the error bound of the
/// module docs, layer by layer and whole.
fn scalar_within_rounding(m: &Mlp, name: &str, x: &[f32; N_INPUTS]) -> Result<(), String> {
    let x = &clamp_inputs(x);
    let ctx = |e: String| format!("scalar vs f64, input {name}: {e}");
    let h1 = scalar::layer1(m, x);
    let exact1: Vec<f32> = (0..H1)
        .map(|j| {
            let s = f64::from(m.b1[j])
                + (0..N_INPUTS)
                    .map(|i| w(m.w1[i][j]) * f64::from(x[i]))
                    .sum::<f64>();
            s.max(0.0) as f32
        })
        .collect();
    let t1: Vec<f64> = layer1_scale(m, x)
        .iter()
        .map(|s| gamma(N_INPUTS + 1) * s + f64::from(f32::EPSILON) * s)
        .collect();
    first_mismatch("layer1", &h1, &exact1, &t1).map_err(ctx)?;
    let h2 = scalar::layer2(m, &h1);
    let exact2: Vec<f32> = (0..H2)
        .map(|j| {
            let s = f64::from(m.b2[j])
                + (0..H1)
                    .map(|i| w(m.w2[i][j]) * f64::from(h1[i].max(0.0)))
                    .sum::<f64>();
            s.max(0.0) as f32
        })
        .collect();
    let t2: Vec<f64> = layer2_scale(m, &h1)
        .iter()
        .map(|s| gamma(H1 + 1) * s + f64::from(f32::EPSILON) * s)
        .collect();
    first_mismatch("layer2", &h2, &exact2, &t2).map_err(ctx)?;
    let exact_out = f64::from(m.b3)
        + h2.iter()
            .zip(&m.w3)
            .map(|(h, w)| f64::from(*h) * f64::from(*w))
            .sum::<f64>();
    let t3 = 3.01 * gamma(H1 + 1) * abs_network(m, x);
    let y = scalar::forward(m, x);
    if (f64::from(y) - exact_out).abs() > t3 + f64::from(f32::EPSILON) * exact_out.abs() {
        return Err(ctx(format!(
            "output {y:e} vs {exact_out:e}, tolerance {t3:e}"
        )));
    }
    Ok(())
}

fn check_kernel(k: Kernel) {
    for seed in [1u64, 2, 3, 0xDEAD_BEEF] {
        let m = random_mlp(seed);
        for (name, x) in inputs(seed).into_iter().chain(edge_inputs(seed)) {
            if let Err(e) = compare(k, &m, &name, &x) {
                panic!("seed {seed}: {e}");
            }
        }
    }
}

#[test]
fn scalar_matches_itself_and_is_exact_on_a_tiny_case() {
    let mut m = Box::new(Mlp::ZERO);
    // One path: x0 -> unit 3 -> unit 5 -> output.
    m.w1[0][3] = weight_from_f64(2.0);
    m.b1[3] = 1.0;
    m.w2[3][5] = weight_from_f64(-0.5);
    m.b2[5] = 10.0;
    m.w3[5] = 4.0;
    m.b3 = 0.25;
    let mut x = [0.0; N_INPUTS];
    x[0] = 3.0;
    // h1[3] = 7, h2[5] = 10 - 3.5 = 6.5, out = 26 + 0.25.
    assert_eq!(scalar::forward(&m, &x), 26.25);
    for k in simd_kernels() {
        assert_eq!(m.forward(k, &x), 26.25, "kernel {}", k.name());
    }
    // A negative pre-activation is cut by ReLU.
    x[0] = -3.0;
    assert_eq!(scalar::forward(&m, &x), 4.0 * 10.0 + 0.25);
}

/// Says on stderr which kernels a test compares and which it cannot run
/// here, and returns the SIMD ones to compare with scalar.
fn announce(test: &str) -> Vec<Kernel> {
    let ks = simd_kernels();
    let skipped: Vec<&str> = Kernel::NAMES
        .iter()
        .copied()
        .filter(|n| Kernel::from_name(n, detected()).is_err())
        .collect();
    std::eprintln!(
        "{test}: compared scalar with {:?}; skipped (this CPU or build cannot run them) {skipped:?}",
        ks.iter().map(|k| k.name()).collect::<Vec<_>>()
    );
    ks
}

#[test]
fn every_simd_kernel_matches_scalar_bit_for_bit() {
    for k in announce("every_simd_kernel_matches_scalar_bit_for_bit") {
        check_kernel(k);
    }
}

#[test]
fn scalar_is_within_rounding_of_f64() {
    for seed in [1u64, 2, 3, 0xDEAD_BEEF] {
        let m = random_mlp(seed);
        for (name, x) in inputs(seed).into_iter().chain(edge_inputs(seed)) {
            if let Err(e) = scalar_within_rounding(&m, &name, &x) {
                panic!("seed {seed}: {e}");
            }
        }
    }
}

/// Many random networks and inputs, more than `check_kernel`'s few: the
/// bits of every layer and of the whole forward agree on every kernel.
#[test]
fn random_networks_agree_bit_for_bit() {
    let ks = announce("random_networks_agree_bit_for_bit");
    let mut r = Rng(0x5EED);
    for seed in 100..140u64 {
        let m = random_mlp(seed);
        for n in 0..25 {
            // Scales from 1e-3 to 1e3, a few exact zeros, both signs.
            let scale = 10f64.powi((r.next_u64() % 7) as i32 - 3);
            let x: [f32; N_INPUTS] = core::array::from_fn(|_| {
                if r.next_u64().is_multiple_of(10) {
                    0.0
                } else {
                    (r.sym() * scale) as f32
                }
            });
            for &k in &ks {
                if let Err(e) = compare(k, &m, &format!("seed {seed} #{n}"), &x) {
                    panic!("{e}");
                }
            }
        }
    }
}

/// `scalar::fma` is one correctly rounded `a * b + c`: the same bits as
/// `libm::fmaf` and std's `f32::mul_add` (both use the FMA instruction where
/// the CPU has one), on random operands of every scale and on cases where
/// rounding the f64 sum twice would be wrong.
#[test]
fn scalar_fma_is_correctly_rounded() {
    let same = |a: f32, b: f32, c: f32| {
        let got = scalar::fma(a, b, c);
        for (want, by) in [
            (libm::fmaf(a, b, c), "libm::fmaf"),
            (a.mul_add(b, c), "f32::mul_add"),
        ] {
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "fma({a:e}, {b:e}, {c:e}) = {got:e}, {by} says {want:e}"
            );
        }
        got
    };
    // Double-rounding traps: a * b = 2^-24 - 2^-70 is exact in f64, and
    // 1 + 2^-23 + a * b rounds in f64 to the midpoint 1 + 2^-23 + 2^-24,
    // which ties to even (1 + 2^-22) in f32; the exact sum is below the
    // midpoint, so the right answer is 1 + 2^-23.
    let a = f32::from_bits(0x3980_0001); // 2^-12 (1 + 2^-23)
    let b = f32::from_bits(0x397f_fffe); // 2^-12 (1 - 2^-23)
    let one_up = f32::from_bits(0x3f80_0001); // 1 + 2^-23
    let p = f64::from(a) * f64::from(b);
    let naive = (p + f64::from(one_up)) as f32;
    let exact = same(a, b, one_up);
    assert_eq!(exact, one_up, "product {p:e}");
    assert_ne!(
        naive.to_bits(),
        exact.to_bits(),
        "the trap must trap the naive sum"
    );
    for (a, b, c) in [
        (a, b, one_up),
        (-a, b, -one_up),
        (a, -b, -one_up),
        (a, b, -1.0),
    ] {
        same(a, b, c);
    }
    // Random operands: every exponent range, both signs, exact cancellation,
    // subnormal results, zeros of both signs, infinities and NaN.
    let special = [
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        f32::INFINITY,
        f32::NAN,
    ];
    for &a in &special {
        for &b in &special {
            for &c in &special {
                same(a, b, c);
                same(-a, b, c);
                same(a, b, -c);
            }
        }
    }
    let mut r = Rng(0xF3A);
    let any = |r: &mut Rng| -> f32 {
        let e = (r.next_u64() % 120) as i32 - 60;
        (r.sym() * 2f64.powi(e)) as f32
    };
    for _ in 0..400_000 {
        let (a, b) = (any(&mut r), any(&mut r));
        let c = match r.next_u64() % 4 {
            // Cancels most of the product: the hard cases for rounding.
            0 => -(a * b),
            1 => -(a * b) * (1.0 + (r.sym() as f32) * 1e-6),
            2 => f32::from_bits((r.next_u64() as u32) & 0x807f_ffff), // subnormal
            _ => any(&mut r),
        };
        same(a, b, c);
    }
    // The row form (fast f64 path, rows with a suspect sum redone) gives
    // `fma`'s bits, on rows whose sums cancel, are tiny or are ordinary.
    for n in 0..3000 {
        let x = any(&mut r);
        let w: [W; H2] = core::array::from_fn(|_| weight_from_f64(r.sym()));
        let mut acc: [f32; H2] = core::array::from_fn(|j| match n % 3 {
            0 => -(x * weight_to_f32(w[j])),
            1 => f32::from_bits((r.next_u64() as u32) & 0x807f_ffff),
            _ => any(&mut r),
        });
        let want: [f32; H2] = core::array::from_fn(|j| scalar::fma(x, weight_to_f32(w[j]), acc[j]));
        scalar::fma_row(x, &w, &mut acc);
        first_bit_mismatch("fma_row", &acc, &want).unwrap();
    }
}

#[test]
fn layer2_treats_non_positive_and_nan_inputs_as_zero() {
    let m = random_mlp(7);
    let mut r = Rng(99);
    let mut h1: [f32; H1] = core::array::from_fn(|_| r.sym() as f32);
    h1[0] = f32::NAN;
    h1[9] = -0.0;
    h1[H1 - 1] = f32::NEG_INFINITY;
    let want = scalar::layer2(&m, &h1);
    assert!(want.iter().all(|v| v.is_finite()));
    let clean: [f32; H1] = core::array::from_fn(|i| if h1[i] > 0.0 { h1[i] } else { 0.0 });
    first_bit_mismatch("layer2 on cleaned h1", &scalar::layer2(&m, &clean), &want).unwrap();
    for k in announce("layer2_treats_non_positive_and_nan_inputs_as_zero") {
        if let Err(e) = first_bit_mismatch("layer2", &m.layer2(k, &h1), &want) {
            panic!("kernel {}: {e}", k.name());
        }
    }
}

#[test]
fn all_dead_and_all_active_relu() {
    let mut m = random_mlp(11);
    let x = [1.0; N_INPUTS];
    let ks = announce("all_dead_and_all_active_relu");
    for bias in [-1.0e6f32, 1.0e3] {
        m.b1 = [bias; H1];
        for &k in &ks {
            if let Err(e) = compare(k, &m, &format!("b1={bias}"), &x) {
                panic!("{e}");
            }
        }
    }
}

/// Fails on a CPU that has a SIMD ISA whose kernel did not run here, and on
/// any machine where `CM_REQUIRE_KERNELS` (comma-separated names, set by CI)
/// names a kernel the CPU cannot run.
#[test]
fn simd_paths_this_cpu_has_really_ran() {
    let cpu = detected();
    let required: Vec<String> = std::env::var("CM_REQUIRE_KERNELS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in &required {
        assert!(
            Kernel::from_name(name, cpu).is_ok() && name != "scalar",
            "CM_REQUIRE_KERNELS names {name}, which this CPU cannot run as SIMD: {:?}",
            Kernel::from_name(name, cpu).err().map(|e| format!("{e}"))
        );
    }
    #[cfg(target_arch = "x86_64")]
    let counters = [("avx2-fma-f16c", &calls::AVX2), ("avx512f", &calls::AVX512)];
    #[cfg(target_arch = "aarch64")]
    let counters = [("neon", &calls::NEON)];
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let counters: [(&str, &core::sync::atomic::AtomicUsize); 0] = [];
    let mut ran = Vec::new();
    for (name, counter) in counters {
        let Ok(k) = Kernel::from_name(name, cpu) else {
            std::eprintln!("kernel {name}: not on this CPU, not tested here");
            continue;
        };
        let before = counter.load(core::sync::atomic::Ordering::Relaxed);
        check_kernel(k);
        let after = counter.load(core::sync::atomic::Ordering::Relaxed);
        assert!(after > before, "CPU has {name} but its kernel never ran");
        ran.push(name);
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        assert!(
            ran.contains(&"avx2-fma-f16c"),
            "CPU has AVX2+FMA but the avx2 kernel was not exercised"
        );
    }
    std::eprintln!("SIMD kernels exercised: {ran:?}");
}

#[test]
fn kernel_names_and_errors() {
    let none = CpuFeatures::NONE;
    assert_eq!(Kernel::from_name("scalar", none), Ok(Kernel::Scalar));
    assert_eq!(Kernel::best(none), Kernel::Scalar);
    assert_eq!(Kernel::runnable(none).collect::<Vec<_>>(), [Kernel::Scalar]);
    assert_eq!(
        Kernel::from_name("AVX2", none),
        Err(KernelError::UnknownName)
    );
    assert_eq!(Kernel::from_name("", none), Err(KernelError::UnknownName));
    #[cfg(target_arch = "x86_64")]
    {
        // The name and the old alias give the same answer.
        for name in ["avx2-fma-f16c", "avx2"] {
            assert_eq!(
                Kernel::from_name(name, none),
                Err(KernelError::CpuLacks("avx2-fma-f16c"))
            );
        }
        assert_eq!(
            Kernel::from_name("neon", none),
            Err(KernelError::OtherArch("neon"))
        );
        assert_eq!(
            format!("{}", KernelError::CpuLacks("avx512f")),
            "kernel avx512f needs AVX-512F and this CPU lacks it"
        );
        // SAFETY: only names are compared below; no kernel runs.
        let both = unsafe { CpuFeatures::new_unchecked(true, true, true) };
        assert_eq!(Kernel::best(both).name(), "avx512f");
        assert_eq!(Kernel::from_name("avx512", both).unwrap().name(), "avx512f");
        assert_eq!(
            Kernel::from_name("avx2", both).unwrap().name(),
            "avx2-fma-f16c"
        );
        assert_eq!(
            Kernel::runnable(both).map(Kernel::name).collect::<Vec<_>>(),
            ["scalar", "avx2-fma-f16c", "avx512f"]
        );
        assert_eq!(
            Kernel::from_name("neon", both),
            Err(KernelError::OtherArch("neon"))
        );
        // SAFETY: as above.
        let avx2 = unsafe { CpuFeatures::new_unchecked(true, false, false) };
        assert_eq!(Kernel::best(avx2).name(), "avx2-fma-f16c");
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert_eq!(
            Kernel::from_name("avx2", none),
            Err(KernelError::OtherArch("avx2-fma-f16c"))
        );
        assert_eq!(
            Kernel::from_name("neon", none),
            Err(KernelError::CpuLacks("neon"))
        );
        assert_eq!(Kernel::best(CpuFeatures::compile_time()).name(), "neon");
    }
    for k in simd_kernels() {
        assert_eq!(Kernel::from_name(k.name(), detected()), Ok(k));
    }
    assert!(
        format!("{}", KernelError::UnknownName).contains("scalar, avx2-fma-f16c, avx512f, neon")
    );
}

#[test]
fn weight_storage_round_trip() {
    assert_eq!(weight_to_f32(weight_from_f64(0.5)), 0.5);
    assert_eq!(weight_to_f32(weight_from_f64(-3.0)), -3.0);
    assert!(weight_fits(1.0e4));
    assert!(!weight_fits(f64::NAN) && !weight_fits(f64::INFINITY));
    #[cfg(feature = "f16-weights")]
    {
        for bits in 0..=u16::MAX {
            let h = half::f16::from_bits(bits);
            let (got, want) = (weight_to_f32(h), h.to_f32());
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "f16 {bits:#06x}: {got:e} vs half's {want:e}"
            );
        }
        assert_eq!(W_BYTES, 2);
        assert!(!weight_fits(1.0e5), "beyond f16 range");
        // A subnormal f16 survives the round trip.
        let tiny = weight_to_f32(weight_from_f64(3.0e-7));
        assert!(tiny > 0.0 && (f64::from(tiny) - 3.0e-7).abs() < 6.0e-8);
    }
    #[cfg(not(feature = "f16-weights"))]
    {
        assert_eq!(W_BYTES, 4);
        assert!(weight_fits(1.0e30) && !weight_fits(1.0e39));
    }
}

/// Inputs at the edges of f32, named: the same value everywhere, one
/// extreme among ordinary values, and alternations.
fn extreme_inputs() -> Vec<(String, [f32; N_INPUTS])> {
    let pool = [
        f32::MAX,
        -f32::MAX,
        1.0e38,
        -1.0e38,
        INPUT_LIMIT * 2.0,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    let mut out = Vec::new();
    for v in pool {
        out.push((format!("all {v:e}"), [v; N_INPUTS]));
        let mut one = [0.5; N_INPUTS];
        one[N_INPUTS / 2] = v;
        out.push((format!("one {v:e}"), one));
        out.push((
            format!("alternating {v:e} / -MAX"),
            core::array::from_fn(|i| if i % 2 == 0 { v } else { -f32::MAX }),
        ));
    }
    out
}

/// Finite inputs at the edges the clamp leaves alone, named: at and near
/// `INPUT_LIMIT`, zeros, tiny values (subnormals), and mixed signs and
/// scales. The sums then sit far from ordinary magnitudes, where a
/// different order of additions shows most.
fn edge_inputs(seed: u64) -> Vec<(String, [f32; N_INPUTS])> {
    let mut r = Rng(seed ^ 0x0EDE);
    let near = f32::from_bits(INPUT_LIMIT.to_bits() - 1);
    let mut out = vec![
        ("limit".into(), [INPUT_LIMIT; N_INPUTS]),
        ("-limit".into(), [-INPUT_LIMIT; N_INPUTS]),
        ("just below limit".into(), [near; N_INPUTS]),
        ("-0".into(), [-0.0; N_INPUTS]),
        ("smallest subnormal".into(), [f32::from_bits(1); N_INPUTS]),
        ("smallest normal".into(), [-f32::MIN_POSITIVE; N_INPUTS]),
    ];
    out.push((
        "zeros of both signs among values".into(),
        core::array::from_fn(|i| match i % 3 {
            0 => 0.0,
            1 => -0.0,
            _ => (r.sym() * 2.0) as f32,
        }),
    ));
    out.push((
        "alternating ±limit".into(),
        core::array::from_fn(|i| {
            if i % 2 == 0 {
                INPUT_LIMIT
            } else {
                -INPUT_LIMIT
            }
        }),
    ));
    for n in 0..6 {
        out.push((
            format!("mixed scales and signs #{n}"),
            core::array::from_fn(|_| {
                let e = (r.next_u64() % 80) as i32 - 50; // 1e-15 .. 1e9
                let v = r.sym() * 2f64.powi(e);
                (v.clamp(-1.0e9, 1.0e9)) as f32
            }),
        ));
        out.push((
            format!("one huge among tiny #{n}"),
            core::array::from_fn(|i| {
                if i == (r.next_u64() as usize) % N_INPUTS {
                    INPUT_LIMIT * r.sym().signum() as f32
                } else {
                    (r.sym() * 1e-30) as f32
                }
            }),
        ));
    }
    out
}

/// The rule of the module docs (`kernels`): every kernel runs on the
/// clamped inputs, so extreme inputs give finite outputs, bit for bit the
/// output on the clamped inputs, and bit for bit the scalar kernel's.
#[test]
fn extreme_inputs_are_clamped_in_every_kernel() {
    assert_eq!(clamp_input(f32::MAX), INPUT_LIMIT);
    assert_eq!(clamp_input(f32::NEG_INFINITY), -INPUT_LIMIT);
    assert_eq!(clamp_input(f32::NAN).to_bits(), 0.0f32.to_bits());
    assert_eq!(clamp_input(-3.5), -3.5);
    let tiny = f32::from_bits(1);
    assert_eq!(clamp_input(tiny).to_bits(), tiny.to_bits());
    let ks = announce("extreme_inputs_are_clamped_in_every_kernel");
    for seed in [1u64, 2, 3] {
        let m = random_mlp(seed);
        let bound = m.activation_bound();
        assert!(bound < f64::from(f32::MAX) / 1e6, "bound {bound:e}");
        for (name, x) in extreme_inputs().into_iter().chain(edge_inputs(seed)) {
            let clamped = clamp_inputs(&x);
            let want = scalar::forward(&m, &x);
            assert!(want.is_finite(), "scalar on {name}: {want}");
            assert_eq!(
                want.to_bits(),
                scalar::forward(&m, &clamped).to_bits(),
                "{name}"
            );
            for &k in &ks {
                if let Err(e) = compare(k, &m, &name, &x) {
                    panic!("seed {seed}: {e}");
                }
            }
        }
    }
}

/// `relu` and `sum_parts` are the rule's: +0 for -0 and NaN, and the
/// halving tree (checked on values where any other order gives other bits).
#[test]
fn relu_and_output_tree_are_the_rule() {
    assert_eq!(relu(-0.0).to_bits(), 0);
    assert_eq!(relu(f32::NAN).to_bits(), 0);
    assert_eq!(relu(-1.0).to_bits(), 0);
    assert_eq!(relu(2.5), 2.5);
    // 1e8 + 1 - 1e8 and friends: the tree's pairs decide the result.
    let mut p = [0.0f32; OUT_PARTS];
    p[0] = 1.0e8;
    p[8] = 1.0;
    p[4] = -1.0e8;
    p[12] = 1.0;
    // (1e8 + 1) + (-1e8 + 1) = 1e8 + -1e8 = 0 in f32 (each +1 is lost).
    assert_eq!(sum_parts(&p), 0.0);
    let sequential: f32 = p.iter().sum();
    assert_eq!(sequential, 2.0, "a different order gives different bits");
}
