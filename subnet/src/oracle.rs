//! The subnet's ground-truth rule (SUBNET.md, "The ground truth").
//!
//! Used for labels and for evaluation only. The shipped predictor never sees
//! it: it lives in this crate, which neither `cm-core` nor the server
//! depends on.

use crate::gen::f;
use cm_core::schema::N_FEATURES;

/// The validator's label: (converted, seconds or exactly -1.0).
pub fn truth(v: &[f64; N_FEATURES]) -> (u8, f64) {
    let has_target = v[f::HAS_TARGET] == 1.0;
    let entities = v[f::ENTITIES];
    let ratio = v[f::MESSAGE_RATIO];
    let duration = v[f::DURATION_S];
    let converted = (has_target && entities >= 4.0) || (ratio > 1.2 && duration > 90.0);
    if !converted {
        return (0, -1.0);
    }
    let mut t = duration * 0.7;
    let mut adj = if has_target { 10.0 } else { 0.0 };
    adj -= 5.0 * (entities - 3.0).max(0.0);
    adj += 5.0 * (1.0 - (ratio / 2.0).min(1.0));
    t += adj;
    (1, t.max(30.0))
}
