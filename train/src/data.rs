//! Where training rows come from and how they become network inputs.
//!
//! A [`Source`] yields labelled raw rows: either fresh draws from the
//! generator (a new stream per network, so no two networks and no two epochs
//! see the same conversation) or samples from a loaded CSV. [`Scaler`] turns
//! raw rows into the standardised f32 inputs the networks see. Its per-input
//! mean is the data mean; its std is the data std, except that the inputs
//! listed in [`SPREAD_INPUTS`] get their std divided by a spread factor, so a
//! small step in those features is a large step for the first layer. That is
//! a choice of units, the same for every value of the feature: nothing about
//! where the rule's thresholds lie.

use crate::csv::Row;
use crate::rng::Rng;
use cm_core::schema::{N_FEATURES, N_INPUTS};
use cm_modelfile::transform::inputs_f64;
pub use cm_subnet::sample::{generated, Sample};
use nalgebra::DMatrix;

/// Inputs whose scale is spread: conversation duration (seconds, minutes) and
/// the message ratio, the continuous inputs the labels depend on.
pub const SPREAD_INPUTS: [usize; 3] = [0, 1, 18];

impl From<&Row> for Sample {
    fn from(r: &Row) -> Self {
        Sample {
            raw: r.raw,
            label: r.label,
            time: r.time,
        }
    }
}

/// A stream of training rows.
pub enum Source<'a> {
    Generator(Rng),
    Rows { rows: &'a [Sample], rng: Rng },
}

impl Source<'_> {
    pub fn draw(&mut self) -> Sample {
        match self {
            Source::Generator(rng) => generated(rng),
            Source::Rows { rows, rng } => {
                rows[rng.int_inclusive(0, rows.len() as i64 - 1) as usize]
            }
        }
    }

    /// Next row that converted (regressors learn from these only).
    pub fn draw_converted(&mut self) -> Sample {
        loop {
            let s = self.draw();
            if s.label == 1 {
                return s;
            }
        }
    }
}

/// Input standardisation `(x - mean) / std`, per network input.
#[derive(Clone, Debug)]
pub struct Scaler {
    pub mean: [f64; N_INPUTS],
    pub std: [f64; N_INPUTS],
}

impl Scaler {
    /// Fit on rows: data mean and std, spread inputs' std divided by `spread`.
    /// Constant inputs get std 1 so they pass through as 0.
    pub fn fit(rows: &[Sample], spread: f64) -> Scaler {
        let n = rows.len() as f64;
        let mut mean = [0.0; N_INPUTS];
        let mut sq = [0.0; N_INPUTS];
        for r in rows {
            let x = inputs_f64(&r.raw);
            for i in 0..N_INPUTS {
                mean[i] += x[i];
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        for r in rows {
            let x = inputs_f64(&r.raw);
            for i in 0..N_INPUTS {
                sq[i] += (x[i] - mean[i]).powi(2);
            }
        }
        let mut std = [1.0; N_INPUTS];
        for i in 0..N_INPUTS {
            let s = (sq[i] / n).sqrt();
            std[i] = if s > 1e-9 { s } else { 1.0 };
        }
        for &i in SPREAD_INPUTS.iter() {
            std[i] /= spread;
        }
        Scaler { mean, std }
    }

    /// Write the scaled inputs of `raw` into row `row` of `x`.
    pub fn put(&self, raw: &[f64; N_FEATURES], x: &mut DMatrix<f32>, row: usize) {
        let v = inputs_f64(raw);
        for i in 0..N_INPUTS {
            x[(row, i)] = ((v[i] - self.mean[i]) / self.std[i]) as f32;
        }
    }

    /// A whole set as a matrix.
    pub fn matrix(&self, rows: &[Sample]) -> DMatrix<f32> {
        let mut x = DMatrix::zeros(rows.len(), N_INPUTS);
        for (i, r) in rows.iter().enumerate() {
            self.put(&r.raw, &mut x, i);
        }
        x
    }
}

/// Per raw feature: mean, std, min, max and 9 decile edges.
pub fn feature_stats(rows: &[Sample]) -> Vec<[f64; 13]> {
    let n = rows.len();
    (0..N_FEATURES)
        .map(|k| {
            let mut v: Vec<f64> = rows.iter().map(|r| r.raw[k]).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            let mut out = [0.0; 13];
            out[0] = mean;
            out[1] = std;
            out[2] = v[0];
            out[3] = v[n - 1];
            for d in 1..10 {
                out[3 + d] = v[((d * n) / 10).min(n - 1)];
            }
            out
        })
        .collect()
}
