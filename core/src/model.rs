//! The ensemble and the subnet's output rules.
//!
//! A [`Model`] is plain data (every array sized by a const from
//! [`crate::schema`]), so `build.rs` can emit it as a `static` and the
//! `--weights` path can fill one on the heap; nothing here allocates.
//! The ensemble averages the classifiers' probabilities (not their logits:
//! each member was calibrated as a probability) and the regressors' seconds.
//! The output rules are applied last and unconditionally, so no model
//! weights, however bad, can produce an answer the validator scores as 0:
//! class 0 answers time exactly -1.0, class 1 a time inside
//! `[time_min, time_max]` with `time_min > 0`, and confidence is in [0, 1].

use crate::features;
use crate::kernels::{Inputs, Kernel, Mlp};
use crate::parse::Features;
use crate::schema::{idx, CALIB_KNOTS, N_CLASSIFIERS, N_FEATURES, N_INPUTS, N_REGRESSORS};

/// The time answered with a prediction of no conversion.
pub const NO_CONVERSION_TIME: f32 = -1.0;
/// Probability at and above which the answer is "converted".
pub const DECISION_THRESHOLD: f32 = 0.5;

/// Inference-ready model: scaler, BatchNorm and target scaling already folded
/// into the networks' linear layers.
#[derive(Clone, Debug)]
pub struct Model {
    /// Value used for a missing optional raw feature (its training mean).
    pub fill: [f32; N_FEATURES],
    /// Classifiers; each outputs a logit.
    pub classifiers: [Mlp; N_CLASSIFIERS],
    /// Regressors; each outputs seconds to conversion.
    pub regressors: [Mlp; N_REGRESSORS],
    /// Calibration knots: mean probability, strictly increasing from 0 to 1.
    pub calib_x: [f32; CALIB_KNOTS],
    /// Calibrated confidence at each knot, non-decreasing, in [0, 1].
    pub calib_y: [f32; CALIB_KNOTS],
    /// Smallest time answered for a conversion, seconds (> 0).
    pub time_min: f32,
    /// Largest time answered for a conversion, seconds.
    pub time_max: f32,
}

/// One answer, already obeying the output rules.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// 1 if the conversation is predicted to convert, else 0.
    pub conversion_happened: u8,
    /// Seconds to conversion; exactly -1.0 when `conversion_happened` is 0.
    pub time_to_conversion_seconds: f32,
    /// Calibrated probability of conversion, in [0, 1].
    pub confidence: f32,
}

/// Logits from which [`sigmoid`] is exactly 1.0 without computing `e^-z`:
/// there `e^-z <= e^-17 < 2^-24` (the bound is `z >= 24 ln 2 = 16.64`),
/// half an ulp of 1, so `1 + e^-z` rounds to 1. The trained classifiers are
/// that sure on most requests, and `expf` of a large negative argument is
/// its slowest path (a division to raise the underflow flag).
pub const SIGMOID_SATURATED: f32 = 17.0;

/// Logistic function `1 / (1 + e^-z)`; saturates cleanly to 0 or 1 for
/// large |z|. Gives the same bits as the plain formula everywhere (a test
/// walks the saturated range).
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= SIGMOID_SATURATED {
        return 1.0;
    }
    1.0 / (1.0 + libm::expf(-z))
}

impl Model {
    /// Predict from parsed features (missing ones filled from [`Model::fill`]).
    #[inline]
    pub fn predict(&self, f: &Features, k: Kernel) -> Prediction {
        self.predict_raw(&f.values, f.present, k)
    }

    /// Predict from raw features; bit `i` of `present` clear means feature `i`
    /// is missing and is replaced by its fill value.
    pub fn predict_raw(&self, raw: &[f32; N_FEATURES], present: u64, k: Kernel) -> Prediction {
        let x = features::inputs(&self.filled(raw, present));
        self.predict_inputs(&x, k)
    }

    /// Raw features with the missing ones replaced by the fill values.
    #[inline]
    pub fn filled(&self, raw: &[f32; N_FEATURES], present: u64) -> [f32; N_FEATURES] {
        let mut v = *raw;
        for (i, (x, fill)) in v.iter_mut().zip(self.fill.iter()).enumerate() {
            if present & (1u64 << i) == 0 {
                *x = *fill;
            }
        }
        // Minutes are seconds / 60 by definition (SUBNET.md). When only the
        // seconds were sent, the derived value keeps the input on the data's
        // manifold, where the training mean would contradict the seconds
        // (measured: a 120 s conversation's time was off by 7 s with the mean).
        let (secs, mins) = (
            idx::CONVERSATION_DURATION_SECONDS,
            idx::CONVERSATION_DURATION_MINUTES,
        );
        if present & (1u64 << mins) == 0 && present & (1u64 << secs) != 0 {
            v[mins] = v[secs] / 60.0;
        }
        v
    }

    /// Predict from network inputs (after the feature transform).
    pub fn predict_inputs(&self, x: &[f32; N_INPUTS], k: Kernel) -> Prediction {
        // Clamped and scanned for zeros once, for all the networks.
        let x = &Inputs::new(x);
        let mut p = self.probability_of(x, k);
        // The kernels clamp their inputs so that no activation overflows
        // (`kernels::INPUT_LIMIT`); a NaN could only come from weights whose
        // `Mlp::activation_bound` is not finite. Answer the class that needs
        // no time rather than garbage.
        if p.is_nan() {
            p = 0.0;
        }
        let confidence = self.calibrate(p);
        if p >= DECISION_THRESHOLD {
            Prediction {
                conversion_happened: 1,
                time_to_conversion_seconds: self.clamp_time(self.seconds_of(x, k)),
                confidence,
            }
        } else {
            Prediction {
                conversion_happened: 0,
                time_to_conversion_seconds: NO_CONVERSION_TIME,
                confidence,
            }
        }
    }

    /// Mean of the classifiers' probabilities (uncalibrated).
    pub fn probability(&self, x: &[f32; N_INPUTS], k: Kernel) -> f32 {
        self.probability_of(&Inputs::new(x), k)
    }

    fn probability_of(&self, x: &Inputs, k: Kernel) -> f32 {
        let sum: f32 = self
            .classifiers
            .iter()
            .map(|m| sigmoid(m.forward_inputs(k, x)))
            .sum();
        sum / N_CLASSIFIERS as f32
    }

    /// Mean of the regressors' outputs, seconds (unclamped).
    pub fn seconds(&self, x: &[f32; N_INPUTS], k: Kernel) -> f32 {
        self.seconds_of(&Inputs::new(x), k)
    }

    fn seconds_of(&self, x: &Inputs, k: Kernel) -> f32 {
        let sum: f32 = self.regressors.iter().map(|m| m.forward_inputs(k, x)).sum();
        sum / N_REGRESSORS as f32
    }

    /// Clamp a time into `[time_min, time_max]`; NaN maps to `time_min`.
    #[inline]
    pub fn clamp_time(&self, t: f32) -> f32 {
        if t > self.time_max {
            self.time_max
        } else if t >= self.time_min {
            t
        } else {
            self.time_min
        }
    }

    /// Piecewise-linear calibration of a mean probability, clamped to [0, 1].
    pub fn calibrate(&self, p: f32) -> f32 {
        let xs = &self.calib_x;
        let ys = &self.calib_y;
        let mut c = ys[CALIB_KNOTS - 1];
        if p <= xs[0] {
            c = ys[0];
        } else {
            for (xw, yw) in xs.windows(2).zip(ys.windows(2)) {
                if let ([x0, x1], [y0, y1]) = (xw, yw) {
                    if p <= *x1 {
                        let span = x1 - x0;
                        let t = if span > 0.0 { (p - x0) / span } else { 1.0 };
                        c = y0 + t * (y1 - y0);
                        break;
                    }
                }
            }
        }
        if c >= 1.0 {
            1.0
        } else if c > 0.0 {
            c
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::boxed::Box;

    /// A model whose classifiers output `logit` and regressors `secs`
    /// regardless of input (output biases only), with identity calibration.
    fn constant_model(logit: f32, secs: f32) -> Box<Model> {
        let mut c = Mlp::ZERO;
        c.b3 = logit;
        let mut r = Mlp::ZERO;
        r.b3 = secs;
        let mut calib_x = [0.0; CALIB_KNOTS];
        for (i, x) in calib_x.iter_mut().enumerate() {
            *x = i as f32 / (CALIB_KNOTS - 1) as f32;
        }
        Box::new(Model {
            fill: [0.0; N_FEATURES],
            classifiers: [c.clone(), c.clone(), c],
            regressors: [r.clone(), r],
            calib_x,
            calib_y: calib_x,
            time_min: 0.5,
            time_max: 300.0,
        })
    }

    #[test]
    fn saturated_sigmoid_is_the_formula_bit_for_bit() {
        let formula = |z: f32| 1.0 / (1.0 + libm::expf(-z));
        // Every 31st f32 from just below the bound to past expf's underflow
        // (z = 104), then the extremes.
        let (lo, hi) = (16.0f32.to_bits(), 110.0f32.to_bits());
        let walk = (lo..hi).step_by(31).map(f32::from_bits);
        let ends = [
            SIGMOID_SATURATED,
            f32::MAX,
            f32::INFINITY,
            f32::NAN,
            -f32::MAX,
        ];
        for z in walk.chain(ends) {
            assert_eq!(sigmoid(z).to_bits(), formula(z).to_bits(), "z = {z}");
        }
    }

    #[test]
    fn class_zero_answers_exactly_minus_one() {
        let m = constant_model(-3.0, 42.0);
        let p = m.predict_raw(&[0.0; N_FEATURES], 0, Kernel::Scalar);
        assert_eq!(p.conversion_happened, 0);
        assert_eq!(p.time_to_conversion_seconds.to_bits(), (-1.0f32).to_bits());
        assert!((p.confidence - sigmoid(-3.0)).abs() < 1e-6);
    }

    #[test]
    fn class_one_time_is_clamped() {
        for (secs, want) in [
            (42.0, 42.0),
            (-5.0, 0.5),
            (0.0, 0.5),
            (1e9, 300.0),
            (f32::NAN, 0.5),
        ] {
            let m = constant_model(4.0, secs);
            let p = m.predict_raw(&[0.0; N_FEATURES], 0, Kernel::Scalar);
            assert_eq!(p.conversion_happened, 1);
            assert_eq!(p.time_to_conversion_seconds, want, "{secs}");
        }
    }

    #[test]
    fn threshold_is_inclusive_and_nan_is_class_zero() {
        let m = constant_model(0.0, 10.0);
        assert_eq!(
            m.predict_raw(&[0.0; N_FEATURES], 0, Kernel::Scalar)
                .conversion_happened,
            1
        );
        let m = constant_model(f32::NAN, 10.0);
        let p = m.predict_raw(&[0.0; N_FEATURES], 0, Kernel::Scalar);
        assert_eq!(
            (p.conversion_happened, p.time_to_conversion_seconds),
            (0, -1.0)
        );
        assert!(p.confidence.is_finite());
    }

    #[test]
    fn calibration_interpolates_and_clamps() {
        let mut m = constant_model(0.0, 1.0);
        for (i, y) in m.calib_y.iter_mut().enumerate() {
            *y = (i as f32 / (CALIB_KNOTS - 1) as f32) * 1.2 - 0.1;
        }
        assert_eq!(m.calibrate(0.0), 0.0);
        assert_eq!(m.calibrate(1.0), 1.0);
        assert!((m.calibrate(0.5) - 0.5).abs() < 1e-6);
        assert!((m.calibrate(0.25) - 0.2).abs() < 1e-6);
        assert_eq!(m.calibrate(-3.0), 0.0);
        assert_eq!(m.calibrate(7.0), 1.0);
    }

    #[test]
    fn missing_features_take_fill_values() {
        let mut m = constant_model(0.0, 1.0);
        m.fill[3] = 5.0;
        m.fill[4] = 6.0;
        let mut raw = [1.0; N_FEATURES];
        raw[3] = 9.0;
        let present = !(1u64 << 3);
        let v = m.filled(&raw, present);
        assert_eq!((v[3], v[4], v[5]), (5.0, 1.0, 1.0));
    }

    #[test]
    fn missing_minutes_are_derived_from_seconds() {
        let mut m = constant_model(0.0, 1.0);
        m.fill[idx::CONVERSATION_DURATION_MINUTES] = 1.5;
        let mut raw = [0.0; N_FEATURES];
        raw[idx::CONVERSATION_DURATION_SECONDS] = 120.0;
        let present = 1u64 << idx::CONVERSATION_DURATION_SECONDS;
        assert_eq!(
            m.filled(&raw, present)[idx::CONVERSATION_DURATION_MINUTES],
            2.0
        );
        // A minutes value the caller sent is kept as sent.
        raw[idx::CONVERSATION_DURATION_MINUTES] = 7.0;
        let present = present | (1u64 << idx::CONVERSATION_DURATION_MINUTES);
        assert_eq!(
            m.filled(&raw, present)[idx::CONVERSATION_DURATION_MINUTES],
            7.0
        );
    }
}
