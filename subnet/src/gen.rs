//! The validator's conversation generator, re-stated in Rust (SUBNET.md,
//! "How the validator makes a conversation").
//!
//! One function makes one conversation as 40 raw values in canonical order,
//! each exactly as the validator would send it: normal draws clipped then
//! rounded like Python's `round(x, n)` (correctly rounded decimals), integers
//! truncated toward zero after clipping, derived fields recomputed from the
//! drawn ones, and the min/avg/max length fix-up. The validator's `forward`
//! then passes every integer field through `int()` once more, so a fixed-up
//! `min_message_length_*` (which may have become a 2dp average) is truncated
//! again: the subnet's code does this and SUBNET.md does not say it, so it is
//! spelled out here. The draw table is data ([`DRAWS`]) so tests can check
//! ranges against it.

use crate::rng::Rng;
use cm_core::schema::N_FEATURES;

/// Feature indices used below (canonical order, SUBNET.md).
pub mod f {
    pub const DURATION_S: usize = 0;
    pub const DURATION_MIN: usize = 1;
    pub const HOUR: usize = 2;
    pub const DAY: usize = 3;
    pub const BUSINESS_HOURS: usize = 4;
    pub const WEEKEND: usize = 5;
    pub const MESSAGES_PER_MINUTE: usize = 14;
    pub const TOTAL_MESSAGES: usize = 15;
    pub const USER_MESSAGES: usize = 16;
    pub const AGENT_MESSAGES: usize = 17;
    pub const MESSAGE_RATIO: usize = 18;
    pub const AVG_LEN_USER: usize = 19;
    pub const MAX_LEN_USER: usize = 20;
    pub const MIN_LEN_USER: usize = 21;
    pub const CHARS_USER: usize = 22;
    pub const AVG_LEN_AGENT: usize = 23;
    pub const MAX_LEN_AGENT: usize = 24;
    pub const MIN_LEN_AGENT: usize = 25;
    pub const CHARS_AGENT: usize = 26;
    pub const Q_AGENT: usize = 27;
    pub const Q_PER_AGENT_MSG: usize = 28;
    pub const Q_USER: usize = 29;
    pub const Q_PER_USER_MSG: usize = 30;
    pub const SEQ_AGENT: usize = 32;
    pub const ENTITIES: usize = 33;
    pub const HAS_TARGET: usize = 34;
    pub const ENTITY_RATE: usize = 37;
    pub const REPEATED_Q: usize = 38;
}

/// How a drawn value is finished after clipping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// Rounded to this many decimals.
    Round(u8),
    /// Truncated toward zero.
    Int,
}

/// One normal draw of the validator's table: feature, mean, std, lo, hi, finish.
#[derive(Clone, Copy, Debug)]
pub struct Draw {
    pub feature: usize,
    pub mean: f64,
    pub std: f64,
    pub lo: f64,
    pub hi: f64,
    pub finish: Finish,
}

const fn d(feature: usize, mean: f64, std: f64, lo: f64, hi: f64, finish: Finish) -> Draw {
    Draw {
        feature,
        mean,
        std,
        lo,
        hi,
        finish,
    }
}
use Finish::{Int, Round};

/// The validator's normal draws (SUBNET.md table), in its draw order.
pub const DRAWS: [Draw; 24] = [
    d(0, 100.0, 20.0, 60.0, 150.0, Round(2)),
    d(6, 10.0, 3.0, 5.0, 20.0, Round(2)),
    d(7, 15.0, 2.0, 10.0, 20.0, Round(2)),
    d(8, 18.0, 2.5, 15.0, 25.0, Round(2)),
    d(9, 10.0, 2.0, 5.0, 15.0, Round(2)),
    d(10, 15.0, 2.0, 10.0, 20.0, Round(2)),
    d(11, 15.0, 2.0, 10.0, 20.0, Round(2)),
    d(12, 3.0, 1.0, 0.0, 5.0, Round(2)),
    d(13, 18.0, 2.5, 15.0, 25.0, Round(2)),
    d(15, 8.0, 2.0, 4.0, 20.0, Int),
    d(18, 1.3, 0.3, 1.0, 2.0, Round(2)),
    d(19, 40.0, 5.0, 20.0, 60.0, Round(2)),
    d(20, 50.0, 5.0, 30.0, 70.0, Int),
    d(21, 30.0, 5.0, 15.0, 45.0, Int),
    d(23, 75.0, 10.0, 50.0, 100.0, Round(2)),
    d(24, 100.0, 15.0, 70.0, 130.0, Int),
    d(25, 50.0, 10.0, 30.0, 80.0, Int),
    d(27, 3.0, 1.0, 1.0, 5.0, Int),
    d(29, 1.0, 0.5, 0.0, 3.0, Int),
    d(31, 2.0, 1.0, 1.0, 4.0, Int),
    d(33, 4.0, 1.5, 1.0, 6.0, Int),
    d(35, 0.9, 0.02, 0.8, 0.95, Round(3)),
    d(36, 0.85, 0.03, 0.8, 0.9, Round(3)),
    d(39, 0.9, 0.1, 0.7, 1.0, Round(3)),
];

const POW10: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];

/// Python's `round(x, n)`: the double nearest to the correctly rounded
/// decimal. The fast path is exact unless `x * 10^n` lies within float noise
/// of a half, where the decimal formatter (exact) decides.
pub fn py_round(x: f64, n: u8) -> f64 {
    let p = POW10[n as usize];
    let y = x * p;
    let frac = y - y.floor();
    if (frac - 0.5).abs() < 1e-6 {
        return format!("{:.*}", n as usize, x)
            .parse()
            .unwrap_or(y.round() / p);
    }
    y.round() / p
}

/// One conversation: 40 raw values, canonical order, as the validator sends them.
pub fn conversation(rng: &mut Rng) -> [f64; N_FEATURES] {
    let mut v = [0.0f64; N_FEATURES];
    for dr in DRAWS.iter() {
        let x = rng.normal(dr.mean, dr.std).clamp(dr.lo, dr.hi);
        v[dr.feature] = match dr.finish {
            Round(n) => py_round(x, n),
            Int => x.trunc(),
        };
    }
    v[f::HOUR] = rng.int_inclusive(8, 19) as f64;
    v[f::DAY] = rng.int_inclusive(0, 6) as f64;
    v[f::SEQ_AGENT] = 1.0;
    v[f::HAS_TARGET] = rng.int_inclusive(0, 1) as f64;
    v[f::ENTITY_RATE] = 0.0;
    v[f::REPEATED_Q] = rng.int_inclusive(0, 1) as f64;
    derive(&mut v);
    v
}

/// Recompute the derived fields from the drawn ones (the validator's
/// `validate_features`, then its final `int()` pass over integer fields).
pub fn derive(v: &mut [f64; N_FEATURES]) {
    v[f::DURATION_MIN] = py_round(v[f::DURATION_S] / 60.0, 4);
    let total = v[f::TOTAL_MESSAGES];
    let user = (total / (1.0 + 1.0 / v[f::MESSAGE_RATIO])).trunc();
    let agent = total - user;
    v[f::USER_MESSAGES] = user;
    v[f::AGENT_MESSAGES] = agent;
    v[f::CHARS_USER] = (user * v[f::AVG_LEN_USER]).trunc();
    v[f::CHARS_AGENT] = (agent * v[f::AVG_LEN_AGENT]).trunc();
    let hour = v[f::HOUR];
    v[f::BUSINESS_HOURS] = if (9.0..=17.0).contains(&hour) {
        1.0
    } else {
        0.0
    };
    let day = v[f::DAY];
    v[f::WEEKEND] = if day == 0.0 || day == 6.0 { 1.0 } else { 0.0 };
    v[f::Q_PER_AGENT_MSG] = if agent > 0.0 {
        py_round(v[f::Q_AGENT] / agent, 4)
    } else {
        0.0
    };
    v[f::Q_PER_USER_MSG] = if user > 0.0 {
        py_round(v[f::Q_USER] / user, 4)
    } else {
        0.0
    };
    let minutes = v[f::DURATION_MIN];
    v[f::MESSAGES_PER_MINUTE] = if minutes > 0.0 {
        py_round(total / minutes, 4)
    } else {
        0.0
    };
    for (min_i, avg_i, max_i) in [
        (f::MIN_LEN_USER, f::AVG_LEN_USER, f::MAX_LEN_USER),
        (f::MIN_LEN_AGENT, f::AVG_LEN_AGENT, f::MAX_LEN_AGENT),
    ] {
        let (mn, avg, mx) = (v[min_i], v[avg_i], v[max_i]);
        if mn > avg || avg > mx {
            // The fix-up leaves a float here; the validator's `forward`
            // truncates it with `int()` before sending.
            v[min_i] = mn.min(avg).trunc();
            v[max_i] = mx.max(avg).trunc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn py_round_matches_decimal_rounding() {
        assert_eq!(py_round(90.004999, 2), 90.0);
        assert_eq!(py_round(90.005001, 2), 90.01);
        assert_eq!(py_round(1.2049, 2), 1.2);
        assert_eq!(py_round(-1.2051, 2), -1.21);
        assert_eq!(py_round(0.87654, 3), 0.877);
        assert_eq!(py_round(1.5333333, 4), 1.5333);
        for i in 0..10_000 {
            let x = i as f64 * 0.0137 + 0.003;
            let s: f64 = format!("{x:.2}").parse().unwrap();
            assert_eq!(py_round(x, 2), s, "{x}");
        }
    }
}
