//! A labelled conversation, and the seeded sets of them that `gen --seed S`
//! writes, `eval --seed S` scores and `probe --seed S` sends: one function,
//! so the three always mean the same conversations by the same seed.

use crate::gen;
use crate::oracle;
use crate::rng::Rng;
use cm_core::schema::N_FEATURES;

/// A labelled raw row.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub raw: [f64; N_FEATURES],
    pub label: u8,
    pub time: f64,
}

/// One labelled generated conversation.
pub fn generated(rng: &mut Rng) -> Sample {
    let raw = gen::conversation(rng);
    let (label, time) = oracle::truth(&raw);
    Sample { raw, label, time }
}

/// The conversations `gen --seed S` writes and `eval --seed S` scores.
pub fn test_set(seed: u64, n: usize) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| generated(&mut rng)).collect()
}
