//! The subnet's output rules (SUBNET.md, the synapse's output fields),
//! written once.
//!
//! Four readers need them: the reward (an answer that breaks the
//! prediction's shape scores 0), the probe (checking a live miner's
//! answers), and the property tests and fuzz target (checking the core's
//! own predictions). Each calls this module instead of restating the rules.
//! It lives in the core because the core owns [`Prediction`] and is the
//! one crate every reader already depends on. A model's own promise of a
//! time inside its clamp is that model's, not the subnet's, so it is
//! checked where the model is known.

use crate::model::{Prediction, NO_CONVERSION_TIME};

/// Which rule an answer breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// `conversion_happened` is neither 0 nor 1.
    Class,
    /// Class 0 with a time other than exactly -1.0.
    NoConversionTime,
    /// Class 1 with a time that is not a positive number.
    ConversionTime,
    /// A confidence outside [0, 1] (or not a number).
    Confidence,
}

impl core::fmt::Display for Broken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Broken::Class => "conversion_happened is not 0 or 1",
            Broken::NoConversionTime => "class 0 with a time other than exactly -1.0",
            Broken::ConversionTime => "class 1 with a time that is not positive",
            Broken::Confidence => "confidence outside [0, 1]",
        })
    }
}

/// The validator's rule on a prediction's shape: class 0 with time exactly
/// -1.0, or class 1 with a time above 0. The reward scores an answer that
/// breaks it as 0. Times are `f64` because that is what the validator and
/// the probe read from JSON; the core's `f32` widens exactly.
pub fn check_prediction(class: u64, time: f64) -> Result<(), Broken> {
    match class {
        0 if time == f64::from(NO_CONVERSION_TIME) => Ok(()),
        0 => Err(Broken::NoConversionTime),
        1 if time > 0.0 => Ok(()),
        1 => Err(Broken::ConversionTime),
        _ => Err(Broken::Class),
    }
}

/// The whole answer: the prediction's shape ([`check_prediction`]) and a
/// confidence that is a probability.
pub fn check_answer(class: u64, time: f64, confidence: f64) -> Result<(), Broken> {
    check_prediction(class, time)?;
    if (0.0..=1.0).contains(&confidence) {
        Ok(())
    } else {
        Err(Broken::Confidence)
    }
}

/// [`check_answer`] on the core's own answer type.
pub fn check(p: &Prediction) -> Result<(), Broken> {
    check_answer(
        u64::from(p.conversion_happened),
        f64::from(p.time_to_conversion_seconds),
        f64::from(p.confidence),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_is_told_apart() {
        assert_eq!(check_answer(0, -1.0, 0.1), Ok(()));
        assert_eq!(check_answer(1, 0.001, 1.0), Ok(()));
        assert_eq!(check_answer(1, 60.0, 0.0), Ok(()));
        assert_eq!(check_answer(2, 60.0, 0.5), Err(Broken::Class));
        assert_eq!(check_answer(0, 0.0, 0.5), Err(Broken::NoConversionTime));
        assert_eq!(check_answer(0, -1.0001, 0.5), Err(Broken::NoConversionTime));
        assert_eq!(
            check_answer(0, f64::NAN, 0.5),
            Err(Broken::NoConversionTime)
        );
        assert_eq!(check_answer(1, 0.0, 0.5), Err(Broken::ConversionTime));
        assert_eq!(check_answer(1, -1.0, 0.5), Err(Broken::ConversionTime));
        assert_eq!(check_answer(1, f64::NAN, 0.5), Err(Broken::ConversionTime));
        assert_eq!(check_answer(1, 60.0, 1.5), Err(Broken::Confidence));
        assert_eq!(check_answer(1, 60.0, -0.1), Err(Broken::Confidence));
        assert_eq!(check_answer(0, -1.0, f64::NAN), Err(Broken::Confidence));
        // The shape rule alone ignores the confidence (the reward's gate).
        assert_eq!(check_prediction(0, -1.0), Ok(()));
        assert_eq!(check_prediction(1, -1.0), Err(Broken::ConversionTime));
    }

    #[test]
    fn the_core_type_widens_exactly() {
        let p = Prediction {
            conversion_happened: 0,
            time_to_conversion_seconds: NO_CONVERSION_TIME,
            confidence: 0.25,
        };
        assert_eq!(check(&p), Ok(()));
        let q = Prediction {
            time_to_conversion_seconds: -0.999_999_9,
            ..p
        };
        assert_eq!(check(&q), Err(Broken::NoConversionTime));
    }
}
