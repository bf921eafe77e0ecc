//! Serde types of `model.json`, format version [`FORMAT_VERSION`].

use serde::{Deserialize, Serialize};

/// The format tag every model file carries in `"format"`.
pub const FORMAT_NAME: &str = "conversion-miner-model";
/// The only format version this build understands.
pub const FORMAT_VERSION: u32 = 1;

/// Whole file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// The 40 raw feature names in canonical order (SUBNET.md).
    pub features: Vec<String>,
    /// The names of the network inputs after the feature transform, in order.
    pub inputs: Vec<String>,
    /// Value used for a missing optional raw feature (its training mean), one per raw feature.
    pub fill: Vec<f64>,
    /// Standardisation of the network inputs: `(x - mean) / std`, one entry per input.
    pub scaler: Scaler,
    /// Classifier networks; each ends in a single logit followed by `sigmoid`.
    pub classifiers: Vec<Network>,
    /// Regressor networks; each ends in a single output, then `target` un-scaling.
    pub regressors: Vec<Network>,
    /// Regressor target scaling: seconds = output * std + mean.
    pub target: TargetScale,
    /// Monotone piecewise-linear map from the ensemble's mean probability to the
    /// reported confidence.
    pub calibration: Calibration,
    /// Output clamp for a predicted conversion time, seconds: [min, max], min > 0.
    pub time_clamp: [f64; 2],
    /// Per raw feature statistics of the training data (for drift detection).
    pub training_stats: Vec<FeatureStats>,
    /// Free-form training report: data, commands, held-out metrics.
    pub report: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scaler {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetScale {
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Knot positions in [0, 1], strictly increasing, first 0 and last 1.
    pub x: Vec<f64>,
    /// Calibrated confidence at each knot, in [0, 1], non-decreasing.
    pub y: Vec<f64>,
}

/// One network as trained: a list of layers applied in order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Layer {
    /// `y = W x + b`; `weight` is `out` rows of `in` columns.
    Linear {
        #[serde(rename = "in")]
        n_in: usize,
        #[serde(rename = "out")]
        n_out: usize,
        weight: Vec<Vec<f64>>,
        bias: Vec<f64>,
    },
    /// Inference-mode BatchNorm1d: `(x - mean) / sqrt(var + eps) * gamma + beta`.
    Batchnorm {
        dim: usize,
        mean: Vec<f64>,
        var: Vec<f64>,
        gamma: Vec<f64>,
        beta: Vec<f64>,
        eps: f64,
    },
    Relu,
    Sigmoid,
}

/// Summary of one raw feature over the training data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FeatureStats {
    pub name: String,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Decile edges (9 values) of the training distribution, for the PSI.
    pub deciles: Vec<f64>,
    /// Training share of each of the [`DRIFT_BINS`] drift bins (see
    /// [`drift_bin`]). Empty in files written before it existed; readers
    /// then estimate the shares from the deciles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<f64>,
}

/// Bins of the drift monitor: ten, cut at the nine deciles.
pub const DRIFT_BINS: usize = 10;

/// The drift bin of value `x` under decile edges `edges`: the number of
/// edges strictly below it, with value and edges both rounded through f32.
/// Live feature values are f32 (the model's precision), and a ratio such as
/// 0.4 is 0.40000000596 as an f32, above the f64 edge 0.4; rounding both
/// sides keeps a value sitting on an edge in that edge's bin. Training (the
/// stored `shares`) and serving (the live counts) both bin with this
/// function, so their shares are comparable bin by bin.
pub fn drift_bin(edges: &[f64], x: f64) -> usize {
    let x = x as f32;
    edges.iter().take_while(|e| x > **e as f32).count()
}

/// The share of `values` in each drift bin of `edges` ([`drift_bin`]);
/// all zeros for no values.
pub fn drift_shares(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0u64; edges.len() + 1];
    for x in values {
        counts[drift_bin(edges, *x)] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.iter().map(|c| *c as f64 / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_on_an_edge_stays_in_that_edge_s_bin_at_f32_precision() {
        // 0.4 and 4/3 round up as f32s; values on them stay in their bins.
        let edges = [0.1, 0.4, 0.4, 1.0 / 3.0 + 1.0, 2.0];
        for x in [0.4, f64::from(0.4f32)] {
            assert_eq!(drift_bin(&edges, x), 1);
        }
        assert_eq!(drift_bin(&edges, 0.0), 0);
        assert_eq!(drift_bin(&edges, 0.41), 3);
        assert_eq!(drift_bin(&edges, f64::from((1.0f64 / 3.0 + 1.0) as f32)), 3);
        assert_eq!(drift_bin(&edges, 3.0), 5);
        let sh = drift_shares(&edges, &[0.0, 0.4, 0.4, 3.0]);
        assert_eq!(sh, vec![0.25, 0.5, 0.0, 0.0, 0.0, 0.25]);
        assert_eq!(drift_shares(&edges, &[]), vec![0.0; 6]);
    }
}
