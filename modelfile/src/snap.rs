//! Making a model's two big matrices exact in f16, so the storage type of
//! the build no longer changes a single answer.
//!
//! The kernels store `W1` and `W2` *after folding* (scaler and BatchNorm
//! into layer 1, see [`crate::fold`]), either as f32 or as f16. A trained
//! file rounded to f16 answers slightly differently from the same file in
//! f32; measured on the first shipped model, only the regressors' times
//! moved (time MAE 0.0098 s to 0.0100 s, same confusion matrix). Snapping
//! fixes the folded values on the f16 grid *in the file itself*: each folded
//! weight is rounded to f16 and the file's weight rewritten so that folding
//! gives that value back. Since every f16 value is also an f32 value, the
//! f32 and f16 builds then store identical numbers and compute identical
//! answers; whatever accuracy the rounding costs is paid once, visibly, by
//! the file (where the trainer can refit the regressors' last layer to win
//! it back), not silently by one build.
//!
//! Folding a snapped weight back is `s * ((q * std / s) / std)` in f64: `q`
//! times a factor within a few f64 ulps of 1, which rounds to `q` in both
//! f16 and f32 (a rounding tie would need an error of 2^-12, not 2^-52).
//! [`inexact_folded_weights`] checks this on the folded result rather than
//! trusting the argument.

use cm_core::kernels::f16_bits_from_f64;
use half::f16;

use crate::fold::{bn_scale, fold_all, FoldedMlp};
use crate::types::{Layer, ModelFile, Network};
use crate::validate::ModelError;

/// `v` rounded to the nearest f16 (ties to even), as f64, the rounding an
/// f16 build applies ([`cm_core::kernels::f16_bits_from_f64`]). Values
/// beyond the f16 range become infinite, which validation then refuses.
pub fn round_f16(v: f64) -> f64 {
    f16::from_bits(f16_bits_from_f64(v)).to_f64()
}

/// Whether `v` survives rounding to f16 and to f32 unchanged as an f32:
/// what "identical in both builds" needs of a folded f64 weight.
pub fn stores_identically(v: f64) -> bool {
    f16::from_bits(f16_bits_from_f64(v)).to_f32() == v as f32
}

/// Snap one network's `W1` (through the fold) and `W2` to the f16 grid.
/// The layout must be the validated one (Linear, BatchNorm, ReLU, Linear,
/// ...); anything else is an error naming `at`.
pub fn snap_network(at: &str, net: &mut Network, scaler_std: &[f64]) -> Result<(), ModelError> {
    let bad = || ModelError::new(at, "layer layout differs from the validated one");
    let [l1, bn, _, l2, ..] = net.layers.as_mut_slice() else {
        return Err(bad());
    };
    let scale: Vec<f64> = match bn {
        Layer::Batchnorm {
            var, gamma, eps, ..
        } => gamma
            .iter()
            .zip(var.iter())
            .map(|(g, v)| bn_scale(*g, *v, *eps))
            .collect(),
        _ => return Err(bad()),
    };
    let Layer::Linear { weight: w1, .. } = l1 else {
        return Err(bad());
    };
    for (row, s) in w1.iter_mut().zip(&scale) {
        if *s == 0.0 || !s.is_finite() {
            // A unit BatchNorm switches off has a folded column of zeros
            // whatever its weights; there is nothing to round.
            continue;
        }
        for (w, std) in row.iter_mut().zip(scaler_std) {
            // The same expression `fold_network` evaluates, then back.
            let folded = s * (*w / std);
            *w = round_f16(folded) * std / s;
        }
    }
    let Layer::Linear { weight: w2, .. } = l2 else {
        return Err(bad());
    };
    for w in w2.iter_mut().flatten() {
        *w = round_f16(*w);
    }
    Ok(())
}

/// Snap every network of `m` (classifiers and regressors).
pub fn snap_model(m: &mut ModelFile) -> Result<(), ModelError> {
    let std = m.scaler.std.clone();
    for (i, n) in m.classifiers.iter_mut().enumerate() {
        snap_network(&format!("classifiers[{i}]"), n, &std)?;
    }
    for (i, n) in m.regressors.iter_mut().enumerate() {
        snap_network(&format!("regressors[{i}]"), n, &std)?;
    }
    Ok(())
}

/// How many folded `W1`/`W2` weights of `m` would be stored differently by
/// an f16 and an f32 build (0 for a snapped file).
pub fn inexact_folded_weights(m: &ModelFile) -> Result<usize, ModelError> {
    let (cls, regs) = fold_all(m)?;
    let count = |f: &FoldedMlp| {
        f.w1.iter()
            .flatten()
            .chain(f.w2.iter().flatten())
            .filter(|v| !stores_identically(**v))
            .count()
    };
    Ok(cls.iter().chain(&regs).map(count).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> ModelFile {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../weights/model.json"
        ))
        .unwrap();
        crate::parse_model_file(&text).unwrap()
    }

    #[test]
    fn rounding_helpers_agree_with_half() {
        assert_eq!(round_f16(1.0 + 1.0 / 4096.0), 1.0); // a tie goes to even
        assert_eq!(round_f16(1.0 + 3.0 / 4096.0), 1.0 + 4.0 / 4096.0);
        // Just above a midpoint (1478.5005 steps of 2^-11) rounds up, by
        // the full f64 value and not a truncated one.
        assert_eq!(
            round_f16(0.721_924_066_543_579_1),
            0.721_679_687_5 + 2f64.powi(-11)
        );
        assert!(stores_identically(0.333_251_953_125)); // an f16 value
        assert!(!stores_identically(0.1));
        assert!(round_f16(1.0e6).is_infinite());
    }

    /// The shipped file with every hidden weight nudged off the f16 grid,
    /// as a freshly trained file is.
    fn unsnapped() -> ModelFile {
        let mut m = shipped();
        for net in m.classifiers.iter_mut().chain(m.regressors.iter_mut()) {
            for layer in [0, 3] {
                if let Layer::Linear { weight, .. } = &mut net.layers[layer] {
                    for (k, w) in weight.iter_mut().flatten().enumerate() {
                        *w *= 1.0 + 1e-5 * ((k % 7) as f64 - 3.0);
                    }
                }
            }
        }
        m
    }

    /// `f16_bits_from_f64` against exact expectations: every finite f16
    /// value, each midpoint between neighbours (ties to even), and the
    /// midpoint nudged by one f64 ulp and by 2^-30 relative either way
    /// (`half`'s own f64 conversion gets the upward nudges wrong).
    #[test]
    fn f64_to_f16_is_correctly_rounded() {
        let value = |b: u16| f16::from_bits(b).to_f64();
        for b in 0u16..0x7c00 {
            let lo = value(b);
            for s in [0u16, 0x8000] {
                let sgn = if s == 0 { 1.0 } else { -1.0 };
                assert_eq!(f16_bits_from_f64(sgn * lo), b | s, "exact {lo}");
                let hi = if b == 0x7bff { 65536.0 } else { value(b + 1) };
                let mid = (lo + hi) / 2.0; // exact in f64
                let even = if b & 1 == 0 { b } else { b + 1 };
                assert_eq!(f16_bits_from_f64(sgn * mid), even | s, "midpoint {mid}");
                for up in [
                    f64::from_bits(mid.to_bits() + 1),
                    mid * (1.0 + 2f64.powi(-30)),
                ] {
                    assert_eq!(f16_bits_from_f64(sgn * up), (b + 1) | s, "above {mid}");
                }
                if mid > 0.0 {
                    for down in [
                        f64::from_bits(mid.to_bits() - 1),
                        mid * (1.0 - 2f64.powi(-30)),
                    ] {
                        assert_eq!(f16_bits_from_f64(sgn * down), b | s, "below {mid}");
                    }
                }
            }
        }
        assert_eq!(f16_bits_from_f64(f64::INFINITY), 0x7c00);
        assert_eq!(f16_bits_from_f64(-1e300), 0xfc00);
        assert_eq!(f16_bits_from_f64(1e-300), 0);
        assert_eq!(f16_bits_from_f64(f64::from_bits(1)), 0);
        assert!(f16::from_bits(f16_bits_from_f64(f64::NAN)).is_nan());
        // Random f32 values agree with half's f32 conversion, which keeps
        // every bit of its input.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..1_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f32::from_bits(s as u32);
            if x.is_nan() {
                continue;
            }
            assert_eq!(
                f16_bits_from_f64(x as f64),
                f16::from_f32(x).to_bits(),
                "{x}"
            );
        }
    }

    /// Snapping a file that was not snapped leaves no weight that the two
    /// builds would store differently, and moves none of them by more than
    /// half an f16 step of its folded value.
    #[test]
    fn snapping_makes_every_folded_weight_f16_exact() {
        let mut m = unsnapped();
        assert!(inexact_folded_weights(&m).unwrap() > 10_000);
        let (before, _) = fold_all(&m).unwrap();
        snap_model(&mut m).unwrap();
        assert_eq!(inexact_folded_weights(&m).unwrap(), 0);
        let (after, _) = fold_all(&m).unwrap();
        for (b, a) in before.iter().zip(&after) {
            for (x, y) in b.w1.iter().flatten().zip(a.w1.iter().flatten()) {
                // Half a step of f16 is 2^-11 relative for normal numbers,
                // 2^-25 absolute in the subnormal range.
                assert!((x - y).abs() <= (x.abs() * 2f64.powi(-11)).max(2f64.powi(-25)));
            }
        }
        // Snapping is idempotent.
        let once = m.clone();
        snap_model(&mut m).unwrap();
        assert_eq!(m, once);
    }

    /// The count sees an inexact weight (so a zero is not a vacuous answer).
    #[test]
    fn an_unsnapped_weight_is_counted() {
        let mut m = shipped();
        snap_model(&mut m).unwrap();
        if let Layer::Linear { weight, .. } = &mut m.regressors[1].layers[3] {
            weight[2][7] += 1e-6;
        }
        assert_eq!(inexact_folded_weights(&m).unwrap(), 1);
    }
}
