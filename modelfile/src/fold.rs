//! Folding a trained network into three dense layers, in f64.
//!
//! The file keeps the input scaler and BatchNorm separate (that is how the
//! trainer saw them and how the f64 reference runs them); inference wants
//! `w3·relu(W2·relu(W1·x + b1) + b2) + b3` on raw inputs. The algebra, with
//! `s = gamma / sqrt(var + eps)`:
//! - scaler into layer 1: `W1[o][i] /= std[i]`, `b1[o] -= Σ_i W1[o][i]·mean[i]/std[i]`;
//! - BatchNorm into layer 1: `W1[o][·] *= s[o]`, `b1[o] = s[o]·(b1[o] - mean[o]) + beta[o]`;
//! - regressor target scale into layer 3: `w3 *= t_std`, `b3 = b3·t_std + t_mean`.
//!
//! Everything is f64 until the very end, and the result is stored
//! input-major (the core's layout) so conversion to `cm_core` types is a copy
//! with one rounding per number.

use cm_core::kernels::weight_from_f64;
use cm_core::kernels::Mlp;
use cm_core::schema::{H1, H2, N_INPUTS};

use crate::types::{Layer, ModelFile, Network};
use crate::validate::{check_finite, check_storable, ModelError};

/// A folded network in f64, input-major (`w1[i][o]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedMlp {
    pub w1: Vec<[f64; H1]>,
    pub b1: [f64; H1],
    pub w2: Vec<[f64; H2]>,
    pub b2: [f64; H2],
    pub w3: [f64; H2],
    pub b3: f64,
}

/// Fold one network. `target` is `Some((mean, std))` for a regressor.
/// The network must have passed [`crate::validate::validate`]; a layout it
/// does not expect is reported as an error, never a panic.
pub fn fold_network(
    at: &str,
    net: &Network,
    scaler_mean: &[f64],
    scaler_std: &[f64],
    target: Option<(f64, f64)>,
) -> Result<FoldedMlp, ModelError> {
    let bad = || ModelError::new(at, "layer layout differs from the validated one");
    let (l1, bn, l2, l3) = match net.layers.as_slice() {
        [l1, bn, Layer::Relu, l2, Layer::Relu, l3, rest @ ..]
            if rest.is_empty() || rest == [Layer::Sigmoid] =>
        {
            (l1, bn, l2, l3)
        }
        _ => return Err(bad()),
    };
    let (
        Layer::Linear {
            weight: w1,
            bias: b1,
            ..
        },
        Layer::Batchnorm {
            mean,
            var,
            gamma,
            beta,
            eps,
            ..
        },
    ) = (l1, bn)
    else {
        return Err(bad());
    };
    let Layer::Linear {
        weight: w2,
        bias: b2,
        ..
    } = l2
    else {
        return Err(bad());
    };
    let Layer::Linear {
        weight: w3,
        bias: b3,
        ..
    } = l3
    else {
        return Err(bad());
    };
    let rows_ok = |w: &[Vec<f64>], rows: usize, cols: usize| {
        w.len() == rows && w.iter().all(|r| r.len() == cols)
    };
    let shapes_ok = rows_ok(w1, H1, N_INPUTS)
        && rows_ok(w2, H2, H1)
        && rows_ok(w3, 1, H2)
        && b1.len() == H1
        && b2.len() == H2
        && b3.len() == 1
        && [mean, var, gamma, beta].iter().all(|v| v.len() == H1)
        && scaler_mean.len() == N_INPUTS
        && scaler_std.len() == N_INPUTS;
    if !shapes_ok {
        return Err(bad());
    }

    let mut f = FoldedMlp {
        w1: vec![[0.0; H1]; N_INPUTS],
        b1: [0.0; H1],
        w2: vec![[0.0; H2]; H1],
        b2: [0.0; H2],
        w3: [0.0; H2],
        b3: 0.0,
    };
    for o in 0..H1 {
        let s = bn_scale(gamma[o], var[o], *eps);
        let mut b = b1[o];
        for i in 0..N_INPUTS {
            let w = w1[o][i] / scaler_std[i];
            b -= w * scaler_mean[i];
            f.w1[i][o] = s * w;
        }
        f.b1[o] = s * (b - mean[o]) + beta[o];
    }
    for (o, (row, b)) in w2.iter().zip(b2).enumerate() {
        for (dst, w) in f.w2.iter_mut().zip(row) {
            dst[o] = *w;
        }
        f.b2[o] = *b;
    }
    let (t_mean, t_std) = target.unwrap_or((0.0, 1.0));
    for (dst, w) in f.w3.iter_mut().zip(&w3[0]) {
        *dst = w * t_std;
    }
    f.b3 = if target.is_some() {
        b3[0] * t_std + t_mean
    } else {
        b3[0]
    };
    check_folded(at, &f)?;
    Ok(f)
}

/// The factor BatchNorm multiplies a unit by, `gamma / sqrt(var + eps)`:
/// one expression for folding and for `crate::snap`, whose exactness
/// argument needs the very same rounding.
pub fn bn_scale(gamma: f64, var: f64, eps: f64) -> f64 {
    gamma / (var + eps).sqrt()
}

/// Every folded number must be finite and fit its storage type.
fn check_folded(at: &str, f: &FoldedMlp) -> Result<(), ModelError> {
    for (i, row) in f.w1.iter().enumerate() {
        for (o, w) in row.iter().enumerate() {
            check_storable(&format!("{at} folded w1[{i}][{o}]"), *w)?;
        }
    }
    for (i, row) in f.w2.iter().enumerate() {
        for (o, w) in row.iter().enumerate() {
            check_storable(&format!("{at} folded w2[{i}][{o}]"), *w)?;
        }
    }
    let f32_ok = |name: &str, i: usize, v: f64| {
        check_finite(&format!("{at} folded {name}[{i}]"), v)?;
        if (v as f32).is_finite() {
            Ok(())
        } else {
            Err(ModelError::new(
                format!("{at} folded {name}[{i}]"),
                format!("{v} overflows f32"),
            ))
        }
    };
    for (i, v) in f.b1.iter().enumerate() {
        f32_ok("b1", i, *v)?;
    }
    for (i, v) in f.b2.iter().enumerate() {
        f32_ok("b2", i, *v)?;
    }
    for (i, v) in f.w3.iter().enumerate() {
        f32_ok("w3", i, *v)?;
    }
    f32_ok("b3", 0, f.b3)
}

/// All networks of a validated file, folded: (classifiers, regressors).
pub fn fold_all(m: &ModelFile) -> Result<(Vec<FoldedMlp>, Vec<FoldedMlp>), ModelError> {
    let classifiers = m
        .classifiers
        .iter()
        .enumerate()
        .map(|(i, n)| {
            fold_network(
                &format!("classifiers[{i}]"),
                n,
                &m.scaler.mean,
                &m.scaler.std,
                None,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let target = Some((m.target.mean, m.target.std));
    let regressors = m
        .regressors
        .iter()
        .enumerate()
        .map(|(i, n)| {
            fold_network(
                &format!("regressors[{i}]"),
                n,
                &m.scaler.mean,
                &m.scaler.std,
                target,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((classifiers, regressors))
}

/// Round a folded network into the core's storage, in place.
pub fn store(f: &FoldedMlp, out: &mut Mlp) {
    for (dst, src) in out.w1.iter_mut().zip(f.w1.iter()) {
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = weight_from_f64(*s);
        }
    }
    for (d, s) in out.b1.iter_mut().zip(f.b1.iter()) {
        *d = *s as f32;
    }
    for (dst, src) in out.w2.iter_mut().zip(f.w2.iter()) {
        for (d, s) in dst.iter_mut().zip(src.iter()) {
            *d = weight_from_f64(*s);
        }
    }
    for (d, s) in out.b2.iter_mut().zip(f.b2.iter()) {
        *d = *s as f32;
    }
    for (d, s) in out.w3.iter_mut().zip(f.w3.iter()) {
        *d = *s as f32;
    }
    out.b3 = f.b3 as f32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{network_f64, scaled_inputs};
    use crate::transform::inputs_f64;

    /// The folded network in f64, on raw (unscaled) inputs.
    fn folded_forward(f: &FoldedMlp, x: &[f64]) -> f64 {
        let mut h1 = f.b1;
        for (xi, row) in x.iter().zip(&f.w1) {
            for (h, w) in h1.iter_mut().zip(row) {
                *h += xi * w;
            }
        }
        let mut h2 = f.b2;
        for (hi, row) in h1.iter().zip(&f.w2) {
            for (h, w) in h2.iter_mut().zip(row) {
                *h += hi.max(0.0) * w;
            }
        }
        f.b3 + h2
            .iter()
            .zip(&f.w3)
            .map(|(h, w)| h.max(0.0) * w)
            .sum::<f64>()
    }

    /// Folding is exact algebra: in f64 it must agree with the layer-by-layer
    /// forward pass to rounding noise (relative 1e-9).
    #[test]
    fn folding_preserves_the_function() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../weights/model.json"
        ))
        .unwrap();
        let m = crate::parse_model_file(&text).unwrap();
        crate::validate(&m).unwrap();
        let (cls, regs) = fold_all(&m).unwrap();
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..50 {
            let mut raw = [0.0; crate::transform::N_RAW];
            for (i, r) in raw.iter_mut().enumerate() {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
                *r = m.training_stats[i].min
                    + u * (m.training_stats[i].max - m.training_stats[i].min);
            }
            let x = inputs_f64(&raw);
            let z = scaled_inputs(&m, &raw);
            for (f, n) in cls.iter().zip(&m.classifiers) {
                let logit = folded_forward(f, &x);
                let p = 1.0 / (1.0 + (-logit).exp());
                let want = network_f64(n, &z)[0];
                assert!((p - want).abs() <= 1e-9, "{p} vs {want}");
            }
            for (f, n) in regs.iter().zip(&m.regressors) {
                let secs = folded_forward(f, &x);
                let want = network_f64(n, &z)[0] * m.target.std + m.target.mean;
                assert!(
                    (secs - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{secs} vs {want}"
                );
            }
        }
    }
}
