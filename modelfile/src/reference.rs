//! The f64 reference forward pass over the file *as trained*.
//!
//! No folding, no rounding to f32: the scaler, each layer (BatchNorm with its
//! running statistics, ReLU, sigmoid) and the target scale are applied
//! exactly as the file states them. The golden tests hold the compiled f32
//! path to this within a stated tolerance, which checks the folding, the
//! code generation and the kernels in one comparison.

use crate::transform::{inputs_f64, N_RAW};
use crate::types::{Calibration, Layer, ModelFile, Network, Scaler};

/// Apply a network's layers to a (standardised) input vector.
pub fn network_f64(net: &Network, x: &[f64]) -> Vec<f64> {
    let mut v = x.to_vec();
    for layer in &net.layers {
        v = match layer {
            Layer::Linear { weight, bias, .. } => weight
                .iter()
                .zip(bias)
                .map(|(row, b)| b + row.iter().zip(&v).map(|(w, x)| w * x).sum::<f64>())
                .collect(),
            Layer::Batchnorm {
                mean,
                var,
                gamma,
                beta,
                eps,
                ..
            } => v
                .iter()
                .enumerate()
                .map(|(i, x)| (x - mean[i]) / (var[i] + eps).sqrt() * gamma[i] + beta[i])
                .collect(),
            Layer::Relu => v.iter().map(|x| x.max(0.0)).collect(),
            Layer::Sigmoid => v.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect(),
        };
    }
    v
}

/// Standardised network inputs for raw features.
pub fn scaled_inputs(m: &ModelFile, raw: &[f64; N_RAW]) -> Vec<f64> {
    scale(&m.scaler, raw)
}

/// Raw features through the feature transform and `scaler`: what a
/// network's first layer sees (for callers holding the scaler alone).
pub fn scale(scaler: &Scaler, raw: &[f64; N_RAW]) -> Vec<f64> {
    inputs_f64(raw)
        .iter()
        .zip(scaler.mean.iter().zip(&scaler.std))
        .map(|(x, (mu, sd))| (x - mu) / sd)
        .collect()
}

/// Mean classifier probability (uncalibrated).
pub fn probability_f64(m: &ModelFile, raw: &[f64; N_RAW]) -> f64 {
    let x = scaled_inputs(m, raw);
    let sum: f64 = m.classifiers.iter().map(|n| network_f64(n, &x)[0]).sum();
    sum / m.classifiers.len() as f64
}

/// Mean regressor output in seconds (unclamped).
pub fn seconds_f64(m: &ModelFile, raw: &[f64; N_RAW]) -> f64 {
    let x = scaled_inputs(m, raw);
    let sum: f64 = m
        .regressors
        .iter()
        .map(|n| network_f64(n, &x)[0] * m.target.std + m.target.mean)
        .sum();
    sum / m.regressors.len() as f64
}

/// Piecewise-linear calibration, clamped to [0, 1].
pub fn calibrate_f64(c: &Calibration, p: f64) -> f64 {
    let (xs, ys) = (&c.x, &c.y);
    let y = if p <= xs[0] {
        ys[0]
    } else if p >= xs[xs.len() - 1] {
        ys[ys.len() - 1]
    } else {
        let j = xs
            .windows(2)
            .position(|w| p <= w[1])
            .unwrap_or(xs.len() - 2);
        let t = (p - xs[j]) / (xs[j + 1] - xs[j]);
        ys[j] + t * (ys[j + 1] - ys[j])
    };
    y.clamp(0.0, 1.0)
}

/// The full answer for complete raw features (fill missing ones first):
/// `(conversion_happened, time_to_conversion_seconds, confidence)`, with the
/// same output rules as the core (class 0 -> -1.0; class 1 -> clamped time).
/// The file must be valid ([`crate::validate::validate`]).
pub fn predict_f64(m: &ModelFile, raw: &[f64; N_RAW]) -> (u8, f64, f64) {
    let p = probability_f64(m, raw);
    let confidence = calibrate_f64(&m.calibration, p);
    if p >= 0.5 {
        let [lo, hi] = m.time_clamp;
        (1, seconds_f64(m, raw).clamp(lo, hi), confidence)
    } else {
        (0, -1.0, confidence)
    }
}
