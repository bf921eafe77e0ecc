//! The model's input transform: 40 raw features to 47 network inputs.
//!
//! Inputs 0..40 are the raw features unchanged (standardisation is folded
//! into each network's first layer at build time, so it costs nothing here).
//! The 7 engineered inputs follow the seed miner: agent/user message ratio,
//! agent/user message-length ratio, question density, and hour of day and day
//! of week as points on a circle. The trigonometry runs in f64 through `libm`
//! (core has no `sin`), then rounds once, so the f32 inputs agree with the f64
//! reference (`cm_modelfile::transform`) to within one rounding.

use crate::schema::{idx, N_FEATURES, N_INPUTS};

/// Index of the first engineered input.
pub const ENGINEERED_START: usize = N_FEATURES;
/// Hours per day, the period of `hour_of_day`.
pub const HOURS_PER_DAY: f64 = 24.0;
/// Days per week, the period of `day_of_week`.
pub const DAYS_PER_WEEK: f64 = 7.0;

/// Raw features (canonical order, missing ones already filled) to network inputs.
#[inline]
pub fn inputs(raw: &[f32; N_FEATURES]) -> [f32; N_INPUTS] {
    let mut out = [0.0f32; N_INPUTS];
    let (head, tail) = out.split_at_mut(N_FEATURES);
    head.copy_from_slice(raw);
    let agent = raw[idx::AGENT_MESSAGES_COUNT];
    let user = raw[idx::USER_MESSAGES_COUNT];
    let len_agent = raw[idx::AVG_MESSAGE_LENGTH_AGENT];
    let len_user = raw[idx::AVG_MESSAGE_LENGTH_USER];
    let q_agent = raw[idx::QUESTION_COUNT_AGENT];
    let h = core::f64::consts::TAU * f64::from(raw[idx::HOUR_OF_DAY]) / HOURS_PER_DAY;
    let d = core::f64::consts::TAU * f64::from(raw[idx::DAY_OF_WEEK]) / DAYS_PER_WEEK;
    // One range reduction per angle for both values (libm's `sincos` runs
    // the same kernels as `sin` and `cos`, so the bits are the same; a test
    // checks it).
    let (sin_h, cos_h) = libm::sincos(h);
    let (sin_d, cos_d) = libm::sincos(d);
    let engineered = [
        agent / user.max(1.0),
        len_agent / len_user.max(1.0),
        q_agent / agent.max(1.0),
        sin_h as f32,
        cos_h as f32,
        sin_d as f32,
        cos_d as f32,
    ];
    tail.copy_from_slice(&engineered);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engineered_values() {
        let mut raw = [0.0f32; N_FEATURES];
        raw[idx::AGENT_MESSAGES_COUNT] = 6.0;
        raw[idx::USER_MESSAGES_COUNT] = 4.0;
        raw[idx::AVG_MESSAGE_LENGTH_AGENT] = 90.0;
        raw[idx::AVG_MESSAGE_LENGTH_USER] = 0.5; // max(1, .) applies
        raw[idx::QUESTION_COUNT_AGENT] = 3.0;
        raw[idx::HOUR_OF_DAY] = 6.0;
        raw[idx::DAY_OF_WEEK] = 0.0;
        let x = inputs(&raw);
        assert_eq!(&x[..N_FEATURES], &raw[..]);
        assert_eq!(x[40], 1.5);
        assert_eq!(x[41], 90.0);
        assert_eq!(x[42], 0.5);
        assert!((x[43] - 1.0).abs() < 1e-7 && x[44].abs() < 1e-7);
        assert!(x[45].abs() < 1e-7 && (x[46] - 1.0).abs() < 1e-7);
    }

    #[test]
    fn sincos_gives_the_bits_of_sin_and_cos() {
        // Every whole hour and day, then a spread of other values (hour and
        // day may arrive fractional or out of range; the transform takes them).
        let whole = (0..48).map(f64::from);
        let spread = (-2000..2000).map(|k| f64::from(k) * 0.0137);
        for v in whole.chain(spread) {
            for period in [HOURS_PER_DAY, DAYS_PER_WEEK] {
                let a = core::f64::consts::TAU * v / period;
                let (s, c) = libm::sincos(a);
                assert_eq!(s.to_bits(), libm::sin(a).to_bits(), "sin {a}");
                assert_eq!(c.to_bits(), libm::cos(a).to_bits(), "cos {a}");
            }
        }
    }

    #[test]
    fn zero_counts_do_not_divide_by_zero() {
        let x = inputs(&[0.0; N_FEATURES]);
        assert!(x.iter().all(|v| v.is_finite()));
    }
}
