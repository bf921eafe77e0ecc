//! Trained f32 networks -> `weights/model.json` (cm-modelfile types), and an
//! f64 forward pass of that file.
//!
//! The file keeps the networks as trained (Linear, BatchNorm with its
//! statistics, ReLU) and the scaler separate; folding is the reader's job.
//! The f64 forward here is the trainer's own check of what it wrote: the
//! report's held-out figures are computed from the exported file, not from
//! the training-time f32 networks.

use crate::data::{self, Sample};
use crate::nn::{self, Net};
use cm_core::schema::{CALIB_KNOTS, ENGINEERED_NAMES, FEATURE_NAMES, H1, H2, N_FEATURES};
use cm_modelfile::{
    drift_shares, Calibration, FeatureStats, Layer, ModelFile, Network, Scaler, TargetScale,
    FORMAT_NAME, FORMAT_VERSION,
};

fn linear(w: &nalgebra::DMatrix<f32>, b: &[f64]) -> Layer {
    // Training stores W as in x out; the file wants out rows of in columns.
    let (n_in, n_out) = (w.nrows(), w.ncols());
    Layer::Linear {
        n_in,
        n_out,
        weight: (0..n_out)
            .map(|o| (0..n_in).map(|i| w[(i, o)] as f64).collect())
            .collect(),
        bias: b.to_vec(),
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// One trained network as file layers; `last` overrides the output layer
/// (f64 refit). Classifiers end in a Sigmoid layer, as the format requires.
pub fn network(net: &Net, last: Option<&(Vec<f64>, f64)>, classifier: bool) -> Network {
    let mut layers = vec![
        linear(&net.p[nn::W1], &f64s(net.p[nn::B1].as_slice())),
        Layer::Batchnorm {
            dim: H1,
            mean: f64s(&net.run_mean),
            var: f64s(&net.run_var),
            gamma: f64s(net.p[nn::GAMMA].as_slice()),
            beta: f64s(net.p[nn::BETA].as_slice()),
            eps: nn::BN_EPS as f64,
        },
        Layer::Relu,
        linear(&net.p[nn::W2], &f64s(net.p[nn::B2].as_slice())),
        Layer::Relu,
    ];
    match last {
        Some((w, b)) => layers.push(Layer::Linear {
            n_in: H2,
            n_out: 1,
            weight: vec![w.clone()],
            bias: vec![*b],
        }),
        None => layers.push(linear(&net.p[nn::W3], &[net.p[nn::B3][0] as f64])),
    }
    if classifier {
        layers.push(Layer::Sigmoid);
    }
    Network { layers }
}

/// f64 forward of one network on scaled inputs: the single output of the
/// model file's own reference forward pass.
pub fn forward_f64(net: &Network, x: &[f64]) -> f64 {
    cm_modelfile::reference::network_f64(net, x)
        .first()
        .copied()
        .unwrap_or(f64::NAN)
}

/// The piecewise-linear calibration map.
pub fn calibrate(c: &Calibration, p: f64) -> f64 {
    let (x, y) = (&c.x, &c.y);
    if p <= x[0] {
        return y[0];
    }
    for k in 1..x.len() {
        if p <= x[k] {
            let t = (p - x[k - 1]) / (x[k] - x[k - 1]);
            return (y[k - 1] + t * (y[k] - y[k - 1])).clamp(0.0, 1.0);
        }
    }
    y[y.len() - 1]
}

/// The model semantics (CONTEXT.md) in f64: (class, seconds, mean probability, confidence).
pub fn predict_f64(m: &ModelFile, raw: &[f64; N_FEATURES]) -> (u8, f64, f64, f64) {
    let x = cm_modelfile::reference::scaled_inputs(m, raw);
    let p = m
        .classifiers
        .iter()
        .map(|n| forward_f64(n, &x))
        .sum::<f64>()
        / m.classifiers.len() as f64;
    let conf = calibrate(&m.calibration, p);
    if p < 0.5 {
        return (0, -1.0, p, conf);
    }
    let t =
        m.regressors.iter().map(|n| forward_f64(n, &x)).sum::<f64>() / m.regressors.len() as f64;
    let t = (t * m.target.std + m.target.mean).clamp(m.time_clamp[0], m.time_clamp[1]);
    (1, t, p, conf)
}

/// Fit the 17-knot calibration on held-out (probability, label) pairs:
/// triangular-kernel label frequency around each knot, shrunk toward the
/// identity where data is thin, then made non-decreasing (pool adjacent
/// violators) and pinned to [0, 1].
pub fn fit_calibration(pairs: &[(f64, u8)]) -> Calibration {
    let k = CALIB_KNOTS;
    let h = 1.0 / (k - 1) as f64;
    let x: Vec<f64> = (0..k).map(|i| i as f64 * h).collect();
    const PRIOR: f64 = 20.0;
    let mut y = vec![0.0; k];
    let mut w = vec![0.0; k];
    for i in 0..k {
        let (mut sw, mut sy) = (0.0, 0.0);
        for &(p, l) in pairs {
            let d = (p - x[i]).abs();
            if d < h {
                let kw = 1.0 - d / h;
                sw += kw;
                sy += kw * l as f64;
            }
        }
        y[i] = (sy + PRIOR * x[i]) / (sw + PRIOR);
        w[i] = sw + PRIOR;
    }
    // Pool adjacent violators (weighted) for a non-decreasing map.
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for i in 0..k {
        blocks.push((y[i], w[i], 1));
        while blocks.len() > 1 && blocks[blocks.len() - 2].0 > blocks[blocks.len() - 1].0 {
            let (v2, w2, n2) = blocks.pop().unwrap_or((0.0, 0.0, 0));
            let last = blocks.len() - 1;
            let (v1, w1, n1) = blocks[last];
            blocks[last] = ((v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2);
        }
    }
    let mut out = Vec::with_capacity(k);
    for (v, _, n) in blocks {
        out.extend(std::iter::repeat_n(v.clamp(0.0, 1.0), n));
    }
    Calibration { x, y: out }
}

/// Everything besides the networks that goes into the file.
pub struct Extras {
    pub scaler: crate::data::Scaler,
    pub fill: Vec<f64>,
    pub stats: Vec<FeatureStats>,
    pub target: (f64, f64),
    pub time_clamp: [f64; 2],
}

/// `training_stats` of the file from the statistics rows: mean, std, min,
/// max, the deciles, and the share of the rows in each drift bin those
/// deciles cut (binned by [`cm_modelfile::drift_bin`], the rule the server's
/// drift monitor counts live values with).
pub fn training_stats(rows: &[Sample]) -> Vec<FeatureStats> {
    FEATURE_NAMES
        .iter()
        .zip(data::feature_stats(rows))
        .enumerate()
        .map(|(k, (n, s))| {
            let deciles = s[4..13].to_vec();
            let values: Vec<f64> = rows.iter().map(|r| r.raw[k]).collect();
            FeatureStats {
                name: n.to_string(),
                mean: s[0],
                std: s[1],
                min: s[2],
                max: s[3],
                shares: drift_shares(&deciles, &values),
                deciles,
            }
        })
        .collect()
}

pub fn model_file(
    classifiers: Vec<Network>,
    regressors: Vec<Network>,
    e: &Extras,
    calibration: Calibration,
    report: serde_json::Value,
) -> ModelFile {
    ModelFile {
        format: FORMAT_NAME.to_string(),
        version: FORMAT_VERSION,
        features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        inputs: FEATURE_NAMES
            .iter()
            .chain(ENGINEERED_NAMES.iter())
            .map(|s| s.to_string())
            .collect(),
        fill: e.fill.clone(),
        scaler: Scaler {
            mean: e.scaler.mean.to_vec(),
            std: e.scaler.std.to_vec(),
        },
        classifiers,
        regressors,
        target: TargetScale {
            mean: e.target.0,
            std: e.target.1,
        },
        calibration,
        time_clamp: e.time_clamp,
        training_stats: e.stats.clone(),
        report,
    }
}
