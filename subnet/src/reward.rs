//! The subnet's per-query reward (SUBNET.md, "The reward, per query").
//!
//! Kept as separate components so an evaluation can show where reward is
//! lost: classification, regression, or latency.

/// Class weight for a correct answer whose truth is 1.
pub const CLASS_W_POSITIVE: f64 = 0.375;
/// Class weight for a correct answer whose truth is 0.
pub const CLASS_W_NEGATIVE: f64 = 0.625;
/// Seconds of absolute time error at which the regression reward reaches 0.
pub const BASELINE_MAE: f64 = 15.0;
pub const PRED_W_CLASS: f64 = 0.55;
pub const PRED_W_REG: f64 = 0.45;
pub const TOTAL_W_PRED: f64 = 0.8;
pub const TOTAL_W_TIME: f64 = 0.2;
/// Validator timeout, seconds.
pub const TIMEOUT_S: f64 = 60.0;

/// One scored answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reward {
    pub class_r: f64,
    pub reg_r: f64,
    pub pred_r: f64,
    pub time_r: f64,
    pub total: f64,
}

/// Whether the validator accepts the prediction's shape at all (the core's
/// `rules::check_prediction`: class 1 needs a positive time, class 0
/// exactly -1.0); a refused one scores 0.
pub fn valid(pred_class: u8, pred_time: f64) -> bool {
    cm_core::rules::check_prediction(u64::from(pred_class), pred_time).is_ok()
}

/// The reward of one answer against the truth.
pub fn reward(
    pred_class: u8,
    pred_time: f64,
    true_class: u8,
    true_time: f64,
    response_time: f64,
) -> Reward {
    if !valid(pred_class, pred_time) {
        return Reward {
            class_r: 0.0,
            reg_r: 0.0,
            pred_r: 0.0,
            time_r: 0.0,
            total: 0.0,
        };
    }
    let class_r = if pred_class != true_class {
        0.0
    } else if true_class == 1 {
        CLASS_W_POSITIVE
    } else {
        CLASS_W_NEGATIVE
    };
    let reg_r = if pred_class == 1 && true_class == 1 {
        (1.0 - (pred_time - true_time).abs() / BASELINE_MAE).max(0.0)
    } else {
        0.0
    };
    let pred_r = PRED_W_CLASS * class_r + PRED_W_REG * reg_r;
    let time_r = (1.0 - response_time / TIMEOUT_S).max(0.0);
    Reward {
        class_r,
        reg_r,
        pred_r,
        time_r,
        total: TOTAL_W_PRED * pred_r + TOTAL_W_TIME * time_r,
    }
}
