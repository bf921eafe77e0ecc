//! Drift: live traffic per feature against the training distribution that
//! `model.json` stores (`training_stats`: min, max, 9 decile edges and the
//! training share of each bin they cut).
//!
//! Each present feature value is dropped into one of [`BINS`] bins cut at
//! the training deciles, by [`cm_modelfile::drift_bin`], the same rule the
//! trainer counted the stored `shares` with, so live and training shares are
//! comparable bin by bin even for features with point masses (ratios such as
//! questions_per_user_message, integers such as day_of_week). Files written
//! before `shares` existed get an estimate from the deciles alone: 10% per
//! bin for a continuous feature; for a discrete one (integer, or with tied
//! deciles) the deciles only bound the share at or below each edge and the
//! middle of the bounds is used (tied edges merge their bins; nothing is
//! expected above an edge equal to the training maximum), which can flag
//! in-distribution traffic. Counting is a few relaxed atomic adds per
//! feature, so it runs on every request; the population stability index
//! (PSI) is computed only when someone asks (metrics scrape, periodic check,
//! the offline `drift` command). The same [`Counts`] serve the live server
//! and the offline reader of the request log, so both print the same numbers.

use cm_core::schema::N_FEATURES;
use cm_modelfile::{drift_bin, FeatureStats, DRIFT_BINS};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Bins of the PSI: ten, cut at the nine training deciles.
pub const BINS: usize = DRIFT_BINS;
/// Decile edges per feature.
pub const EDGES: usize = BINS - 1;
/// Floor on a live bin share, so an empty bin gives a finite PSI.
pub const SHARE_FLOOR: f64 = 1e-4;
/// Default PSI above which a feature is reported as drifted (the usual rule of thumb).
pub const DEFAULT_PSI_WARN: f64 = 0.2;
/// Default samples before the first drift warning, and between checks.
pub const DEFAULT_MIN_SAMPLES: u64 = 1000;

/// The training side of one feature.
#[derive(Clone, Debug)]
pub struct Reference {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub edges: [f64; EDGES],
    /// Training share per bin (sums to 1).
    pub expected: [f64; BINS],
    /// Whether `expected` is the file's stored `shares` (else the estimate).
    pub stored: bool,
}

impl Reference {
    /// From model.json's stats; None if the deciles are not 9 sorted numbers.
    /// The stored `shares` are the expected shares when the file has them;
    /// otherwise `integer` features, and any with tied deciles, get the
    /// discrete estimate of the training CDF at each edge (see `edge_cdf`).
    pub fn from_stats(s: &FeatureStats, integer: bool) -> Option<Reference> {
        if s.deciles.len() != EDGES
            || s.deciles.iter().any(|x| !x.is_finite())
            || s.deciles.windows(2).any(|w| w[0] > w[1])
        {
            return None;
        }
        // Live values arrive as f32 (the model's precision), and drift_bin
        // compares at that precision; the edges are kept rounded the same
        // way for the tie test below. Rounding is monotone, so they stay
        // sorted.
        let mut edges = [0.0; EDGES];
        for (e, d) in edges.iter_mut().zip(&s.deciles) {
            *e = as_live(*d);
        }
        let mut expected = [0.0; BINS];
        let stored = s.shares.len() == BINS;
        if stored {
            expected.copy_from_slice(&s.shares);
        } else {
            // Tied deciles show point masses: treat the feature as discrete.
            let discrete = integer || edges.windows(2).any(|w| w[0] == w[1]);
            let mut below = 0.0;
            for (k, e) in expected.iter_mut().enumerate().take(EDGES) {
                let f = edge_cdf(&edges, k, s.max, discrete);
                *e = (f - below).max(0.0);
                below = below.max(f);
            }
            expected[BINS - 1] = (1.0 - below).max(0.0);
        }
        Some(Reference {
            name: s.name.clone(),
            min: as_live(s.min),
            max: as_live(s.max),
            edges,
            expected,
            stored,
        })
    }

    /// Bin of a value: the number of edges strictly below it, compared at
    /// the live precision ([`drift_bin`]).
    pub fn bin(&self, x: f64) -> usize {
        drift_bin(&self.edges, x)
    }
}

/// A value at the precision live features have (f32), back in f64.
fn as_live(x: f64) -> f64 {
    f64::from(x as f32)
}

/// Estimated training share at or below edge `k`. Edge `k` is the
/// `(k+1)/10` quantile, so the share is at least `(k+1)/10`, and below
/// `(j+2)/10` where `j` is the last edge equal to it (the next larger edge
/// would otherwise have been this value). A continuous feature sits at the
/// lower end; a discrete one (a point mass at the edge) is given the middle
/// of that interval; an edge at the training maximum has everything below it.
fn edge_cdf(edges: &[f64; EDGES], k: usize, max: f64, discrete: bool) -> f64 {
    if edges[k] >= max {
        return 1.0;
    }
    let mut j = k;
    while j + 1 < EDGES && edges[j + 1] == edges[k] {
        j += 1;
    }
    let lo = (j + 1) as f64 / BINS as f64;
    let f = if discrete { lo + 0.5 / BINS as f64 } else { lo };
    f.min(1.0)
}

/// Live counts of one feature.
#[derive(Default)]
pub struct FeatureCounts {
    pub bins: [AtomicU64; BINS],
    pub out_of_range: AtomicU64,
}

/// One feature's comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub n: u64,
    pub psi: f64,
    pub out_of_range: f64,
}

/// References and counts of all features.
pub struct Counts {
    pub refs: Vec<Reference>,
    counts: Vec<FeatureCounts>,
}

impl Counts {
    /// Needs one reference per raw feature, in schema order.
    pub fn new(stats: &[FeatureStats]) -> Result<Counts, String> {
        if stats.len() != N_FEATURES {
            return Err(format!(
                "training_stats has {} features, want {N_FEATURES}",
                stats.len()
            ));
        }
        let refs = stats
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Reference::from_stats(s, cm_core::schema::IS_INTEGER[i]).ok_or_else(|| {
                    format!(
                        "training_stats {}: deciles are not 9 sorted numbers",
                        s.name
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let counts = (0..N_FEATURES).map(|_| FeatureCounts::default()).collect();
        Ok(Counts { refs, counts })
    }

    /// Counts feature `i`'s value.
    pub fn add(&self, i: usize, x: f64) {
        let (Some(r), Some(c)) = (self.refs.get(i), self.counts.get(i)) else {
            return;
        };
        c.bins[r.bin(x)].fetch_add(1, Relaxed);
        let x = as_live(x);
        if x < r.min || x > r.max {
            c.out_of_range.fetch_add(1, Relaxed);
        }
    }

    /// Counts the present values of one request.
    pub fn add_request(&self, values: &[f32; N_FEATURES], present: u64) {
        for (i, v) in values.iter().enumerate() {
            if present & (1u64 << i) != 0 {
                self.add(i, *v as f64);
            }
        }
    }

    /// PSI and out-of-range share per feature.
    pub fn rows(&self) -> Vec<Row> {
        self.refs
            .iter()
            .zip(&self.counts)
            .map(|(r, c)| {
                let live: Vec<u64> = c.bins.iter().map(|b| b.load(Relaxed)).collect();
                let n: u64 = live.iter().sum();
                Row {
                    name: r.name.clone(),
                    n,
                    psi: psi(&r.expected, &live),
                    out_of_range: if n == 0 {
                        0.0
                    } else {
                        c.out_of_range.load(Relaxed) as f64 / n as f64
                    },
                }
            })
            .collect()
    }
}

/// Population stability index of live bin counts against expected shares
/// (0 when there is no live data).
pub fn psi(expected: &[f64; BINS], live: &[u64]) -> f64 {
    let n: u64 = live.iter().sum();
    if n == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(live)
        .filter(|(e, _)| **e > 0.0)
        .map(|(e, c)| {
            let a = (*c as f64 / n as f64).max(SHARE_FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// The live drift monitor of a server.
pub struct Drift {
    pub counts: Counts,
    pub psi_warn: f64,
    pub min_samples: u64,
    requests: AtomicU64,
}

impl Drift {
    pub fn new(stats: &[FeatureStats], psi_warn: f64, min_samples: u64) -> Result<Drift, String> {
        Ok(Drift {
            counts: Counts::new(stats)?,
            psi_warn,
            min_samples: min_samples.max(1),
            requests: AtomicU64::new(0),
        })
    }

    /// Counts one request; every `min_samples` requests, warns about drifted features.
    pub fn observe(&self, values: &[f32; N_FEATURES], present: u64) {
        self.counts.add_request(values, present);
        let n = self.requests.fetch_add(1, Relaxed) + 1;
        if n.checked_rem(self.min_samples) == Some(0) {
            for r in self.counts.rows() {
                if r.n >= self.min_samples && r.psi > self.psi_warn {
                    tracing::warn!(
                        feature = %r.name,
                        psi = r.psi,
                        out_of_range = r.out_of_range,
                        samples = r.n,
                        "live traffic drifted from the training data (PSI over {})",
                        self.psi_warn
                    );
                }
            }
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }

    /// The monitor's families on /metrics (crate::metrics).
    pub fn encode_metrics(
        &self,
        e: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        use crate::metrics::{counter, gauges};
        let rows = self.counts.rows();
        counter(
            e,
            "cm_drift_requests",
            "Requests counted by the drift monitor.",
            self.requests(),
        )?;
        gauges(
            e,
            "cm_feature_psi",
            "Population stability index of live values against the training deciles.",
            rows.iter().map(|r| ([("feature", r.name.as_str())], r.psi)),
        )?;
        gauges(
            e,
            "cm_feature_out_of_range_ratio",
            "Share of live values outside the training [min, max].",
            rows.iter()
                .map(|r| ([("feature", r.name.as_str())], r.out_of_range)),
        )
    }
}

/// The comparison as a text table.
pub fn table(rows: &[Row], psi_warn: f64) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<36} {:>9} {:>8} {:>13}  flag",
        "feature", "samples", "psi", "out_of_range"
    );
    for r in rows {
        let _ = writeln!(
            o,
            "{:<36} {:>9} {:>8.4} {:>13.4}  {}",
            r.name,
            r.n,
            r.psi,
            r.out_of_range,
            if r.psi > psi_warn { "DRIFT" } else { "" }
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(deciles: Vec<f64>) -> FeatureStats {
        FeatureStats {
            name: "f".into(),
            mean: 0.0,
            std: 1.0,
            min: 0.0,
            max: 100.0,
            deciles,
            shares: Vec::new(),
        }
    }

    #[test]
    fn tied_edges_merge_their_shares() {
        let r =
            Reference::from_stats(&stats(vec![0., 0., 0., 1., 2., 3., 4., 5., 6.]), true).unwrap();
        assert!((r.expected.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((r.expected[0] - 0.35).abs() < 1e-12);
        assert_eq!(r.expected[1], 0.0);
        assert_eq!(r.bin(0.0), 0);
        assert_eq!(r.bin(0.5), 3);
        assert_eq!(r.bin(7.0), 9);
    }

    #[test]
    fn a_binary_feature_expects_its_two_values_only() {
        // 5/7 zeros, 2/7 ones (is_weekend): deciles 0 x7, 1 x2, max 1.
        let mut st = stats(vec![0., 0., 0., 0., 0., 0., 0., 1., 1.]);
        st.max = 1.0;
        let r = Reference::from_stats(&st, true).unwrap();
        assert!((r.expected[0] - 0.75).abs() < 1e-12);
        assert!((r.expected[7] - 0.25).abs() < 1e-12);
        assert_eq!(r.expected[9], 0.0);
        let mut live = [0u64; BINS];
        live[0] = 5000;
        live[7] = 2000;
        assert!(psi(&r.expected, &live) < 0.01);
    }

    #[test]
    fn psi_is_zero_on_training_shares_and_large_when_shifted() {
        let r = Reference::from_stats(&stats((1..=9).map(|i| i as f64 * 10.0).collect()), false)
            .unwrap();
        let even: Vec<u64> = vec![100; BINS];
        assert!(psi(&r.expected, &even) < 1e-12);
        let mut shifted = vec![0u64; BINS];
        shifted[9] = 1000;
        assert!(psi(&r.expected, &shifted) > 1.0);
    }

    #[test]
    fn values_on_an_edge_count_in_that_edge_s_bin_at_f32_precision() {
        // questions_per_agent_message's training deciles: point masses at
        // ratios whose f32 is above their f64 (0.4, 0.6, 0.6667) or below it
        // (0.3333).
        let deciles = vec![0.3333, 0.4, 0.5, 0.6, 0.6667, 0.75, 1.0, 1.0, 1.25];
        let r = Reference::from_stats(&stats(deciles.clone()), false).unwrap();
        for (k, d) in deciles.iter().enumerate() {
            let live = f64::from(*d as f32);
            let want = deciles.iter().position(|e| e == d).unwrap();
            assert_eq!(r.bin(live), want, "{d} (edge {k})");
            assert_eq!(r.bin(*d), want, "{d} as f64");
        }
        assert_eq!(r.bin(0.3), 0);
        assert_eq!(r.bin(1.26), EDGES);
    }

    #[test]
    fn stored_shares_replace_the_estimate() {
        // A ratio with point masses (at 0.1, 0.3, 0.5, edges 3..6 tied):
        // shares the deciles allow but the mid-bound estimate misses.
        let deciles = vec![0.1, 0.2, 0.3, 0.5, 0.5, 0.5, 0.5, 0.8, 0.9];
        let estimate = Reference::from_stats(&stats(deciles.clone()), false).unwrap();
        assert!(!estimate.stored);
        let mut st = stats(deciles);
        st.shares = vec![0.19, 0.1, 0.01, 0.49, 0.0, 0.0, 0.0, 0.1, 0.1, 0.01];
        let r = Reference::from_stats(&st, false).unwrap();
        assert!(r.stored);
        assert_eq!(r.expected.to_vec(), st.shares);
        assert_ne!(r.expected, estimate.expected);
        // Live traffic drawn exactly like training: no drift with the
        // stored shares, a false alarm with the estimate.
        let mut live = [0u64; BINS];
        for (c, sh) in live.iter_mut().zip(&st.shares) {
            *c = (sh * 10_000.0).round() as u64;
        }
        assert!(psi(&r.expected, &live) < 1e-9);
        assert!(psi(&estimate.expected, &live) > DEFAULT_PSI_WARN);
        // A value on the tied edge counts in its first bin, as training did.
        assert_eq!(r.bin(0.5), 3);
        assert_eq!(r.bin(f64::from(0.5f32)), 3);
    }
}
