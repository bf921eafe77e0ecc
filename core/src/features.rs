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
    let (sin_h, cos_h) = on_circle(raw[idx::HOUR_OF_DAY], HOURS_PER_DAY, &HOUR_CIRCLE);
    let (sin_d, cos_d) = on_circle(raw[idx::DAY_OF_WEEK], DAYS_PER_WEEK, &DAY_CIRCLE);
    let engineered = [
        agent / user.max(1.0),
        len_agent / len_user.max(1.0),
        q_agent / agent.max(1.0),
        sin_h,
        cos_h,
        sin_d,
        cos_d,
    ];
    tail.copy_from_slice(&engineered);
    out
}

/// `v` (hours or days) as a point on the circle of `period`: the sine and
/// cosine of `2π v / period`, computed in f64 and rounded once to f32.
///
/// A whole `v` within one period (what validators send: `hour_of_day` and
/// `day_of_week` are integer features) is read from `table`, which holds
/// exactly those values (`tests::circle_tables_are_libm_bit_for_bit`
/// checks every entry against `libm`); anything else runs `libm::sincos`,
/// one range reduction for both values (it runs the same kernels as `sin`
/// and `cos`, so the bits are the same; a test checks that too). The table
/// takes the whole feature transform from 39 to 26 ns (`cargo bench
/// --bench batches -- features`, minimum batch, three alternating runs,
/// Xeon 2.3 GHz, 2026-12-07).
#[inline(always)]
fn on_circle<const N: usize>(v: f32, period: f64, table: &[(f32, f32); N]) -> (f32, f32) {
    let whole = v as usize;
    if (whole as f32).to_bits() == v.to_bits() {
        if let Some(p) = table.get(whole) {
            return *p;
        }
    }
    let (s, c) = libm::sincos(core::f64::consts::TAU * f64::from(v) / period);
    (s as f32, c as f32)
}

/// [`on_circle`]'s values for the whole hours `0..24`.
const HOUR_CIRCLE: [(f32, f32); 24] = [
    (0.0, 1.0),
    (0.25881904, 0.9659258),
    (0.5, 0.8660254),
    (0.70710677, 0.70710677),
    (0.8660254, 0.5),
    (0.9659258, 0.25881904),
    (1.0, 6.123234e-17),
    (0.9659258, -0.25881904),
    (0.8660254, -0.5),
    (0.70710677, -0.70710677),
    (0.5, -0.8660254),
    (0.25881904, -0.9659258),
    (1.2246469e-16, -1.0),
    (-0.25881904, -0.9659258),
    (-0.5, -0.8660254),
    (-0.70710677, -0.70710677),
    (-0.8660254, -0.5),
    (-0.9659258, -0.25881904),
    (-1.0, -1.8369701e-16),
    (-0.9659258, 0.25881904),
    (-0.8660254, 0.5),
    (-0.70710677, 0.70710677),
    (-0.5, 0.8660254),
    (-0.25881904, 0.9659258),
];

/// [`on_circle`]'s values for the whole days `0..7`.
const DAY_CIRCLE: [(f32, f32); 7] = [
    (0.0, 1.0),
    (0.7818315, 0.6234898),
    (0.9749279, -0.22252093),
    (0.43388373, -0.90096885),
    (-0.43388373, -0.90096885),
    (-0.9749279, -0.22252093),
    (-0.7818315, 0.6234898),
];

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

    /// The f64 formula rounded to f32, as `on_circle` computes it for a
    /// value not in its table.
    fn formula(v: f64, period: f64) -> (f32, f32) {
        let (s, c) = libm::sincos(core::f64::consts::TAU * v / period);
        (s as f32, c as f32)
    }

    #[test]
    fn circle_tables_are_libm_bit_for_bit() {
        for (table, period) in [
            (&HOUR_CIRCLE[..], HOURS_PER_DAY),
            (&DAY_CIRCLE[..], DAYS_PER_WEEK),
        ] {
            let want: std::vec::Vec<(f32, f32)> = (0..table.len())
                .map(|k| formula(k as f64, period))
                .collect();
            let bits = |t: &[(f32, f32)]| {
                t.iter()
                    .map(|(s, c)| (s.to_bits(), c.to_bits()))
                    .collect::<std::vec::Vec<_>>()
            };
            assert_eq!(
                bits(table),
                bits(&want),
                "table for period {period} should be {want:?}"
            );
        }
    }

    #[test]
    fn on_circle_matches_the_formula_everywhere() {
        // In the table, beside it (fractions, one period and more, negative
        // values, NaN and infinities, which take the formula's path).
        let mut vs: std::vec::Vec<f32> = (-30..60).map(|k| k as f32 * 0.5).collect();
        vs.extend([
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -0.0,
            1e9,
            23.999_998,
        ]);
        for v in vs {
            for (period, got) in [
                (HOURS_PER_DAY, on_circle(v, HOURS_PER_DAY, &HOUR_CIRCLE)),
                (DAYS_PER_WEEK, on_circle(v, DAYS_PER_WEEK, &DAY_CIRCLE)),
            ] {
                let want = formula(f64::from(v), period);
                assert_eq!(
                    (got.0.to_bits(), got.1.to_bits()),
                    (want.0.to_bits(), want.1.to_bits()),
                    "{v} on the circle of {period}"
                );
            }
        }
    }

    #[test]
    fn zero_counts_do_not_divide_by_zero() {
        let x = inputs(&[0.0; N_FEATURES]);
        assert!(x.iter().all(|v| v.is_finite()));
    }
}
