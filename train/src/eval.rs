//! Scoring a predictor against the oracle on generated conversations, with
//! the subnet's reward.
//!
//! Any predictor is a closure from 40 raw values to (class, seconds), so the
//! embedded f32 model, a model file in f64 and the oracle itself all go
//! through the same counting code.

use crate::data::Sample;
use crate::reward::reward;
use cm_core::schema::N_FEATURES;
pub use cm_subnet::sample::test_set;

/// Counts and means of one evaluation.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Metrics {
    pub n: usize,
    pub tp: usize,
    pub fp: usize,
    pub tn: usize,
    pub fn_: usize,
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
    /// Mean |t_pred - t_true| over true positives, seconds.
    pub mae_tp: f64,
    pub max_err_tp: f64,
    pub mean_reward: f64,
    pub oracle_mean_reward: f64,
    pub reward_ratio: f64,
    /// Predictions the validator would refuse outright (bad class/time shape).
    pub invalid: usize,
    /// Rows where the class was wrong (first few, for diagnosis).
    #[serde(skip)]
    pub wrong: Vec<(Sample, u8, f64)>,
}

/// Score `predict` on `rows`; response_time is taken as 0 for model and oracle alike.
pub fn score<F: FnMut(&[f64; N_FEATURES]) -> (u8, f64)>(
    rows: &[Sample],
    mut predict: F,
) -> Metrics {
    let mut m = Metrics {
        n: rows.len(),
        ..Default::default()
    };
    let (mut r_sum, mut o_sum, mut err_sum) = (0.0, 0.0, 0.0);
    for s in rows {
        let (c, t) = predict(&s.raw);
        if !crate::reward::valid(c, t) {
            m.invalid += 1;
        }
        r_sum += reward(c, t, s.label, s.time, 0.0).total;
        o_sum += reward(s.label, s.time, s.label, s.time, 0.0).total;
        match (c, s.label) {
            (1, 1) => {
                m.tp += 1;
                let e = (t - s.time).abs();
                err_sum += e;
                m.max_err_tp = m.max_err_tp.max(e);
            }
            (1, _) => m.fp += 1,
            (_, 1) => m.fn_ += 1,
            _ => m.tn += 1,
        }
        if c != s.label && m.wrong.len() < 20 {
            m.wrong.push((*s, c, t));
        }
    }
    let n = rows.len().max(1) as f64;
    m.accuracy = (m.tp + m.tn) as f64 / n;
    m.precision = m.tp as f64 / (m.tp + m.fp).max(1) as f64;
    m.recall = m.tp as f64 / (m.tp + m.fn_).max(1) as f64;
    m.mae_tp = err_sum / m.tp.max(1) as f64;
    m.mean_reward = r_sum / n;
    m.oracle_mean_reward = o_sum / n;
    m.reward_ratio = m.mean_reward / m.oracle_mean_reward;
    m
}

impl Metrics {
    /// Human-readable table.
    pub fn table(&self, label: &str) -> String {
        format!(
            "{label}: n={n}\n  mean reward   model {mr:.8}  oracle {or:.8}  ratio {ra:.6}\n  accuracy      {acc:.4}%  precision {p:.4}%  recall {r:.4}%\n  time on TP    MAE {mae:.5} s  max {mx:.4} s\n  confusion     TP {tp}  FP {fp}  TN {tn}  FN {fnn}  invalid {inv}\n  (response_time = 0 for both model and oracle: accuracy terms only)",
            n = self.n,
            mr = self.mean_reward,
            or = self.oracle_mean_reward,
            ra = self.reward_ratio,
            acc = 100.0 * self.accuracy,
            p = 100.0 * self.precision,
            r = 100.0 * self.recall,
            mae = self.mae_tp,
            mx = self.max_err_tp,
            tp = self.tp,
            fp = self.fp,
            tn = self.tn,
            fnn = self.fn_,
            inv = self.invalid,
        )
    }
}
