//! The feature transform in f64: the reference the core's f32 transform
//! (`cm_core::features`) is tested against, and what training uses.
//!
//! Inputs 0..40 are the raw features unchanged; then, in order:
//! `agent_user_message_ratio = agent_messages_count / max(1, user_messages_count)`,
//! `message_length_ratio = avg_message_length_agent / max(1, avg_message_length_user)`,
//! `question_density = question_count_agent / max(1, agent_messages_count)`,
//! `hour_sin, hour_cos = sin, cos(2π·hour/24)`, `day_sin, day_cos = sin, cos(2π·day/7)`.

pub const N_RAW: usize = 40;
pub const N_INPUTS: usize = 47;

const HOUR: usize = 2;
const DAY: usize = 3;
const USER_MSGS: usize = 16;
const AGENT_MSGS: usize = 17;
const AVG_LEN_USER: usize = 19;
const AVG_LEN_AGENT: usize = 23;
const Q_AGENT: usize = 27;

/// Raw features (canonical order) to network inputs, before standardisation.
pub fn inputs_f64(raw: &[f64; N_RAW]) -> [f64; N_INPUTS] {
    use std::f64::consts::TAU;
    let mut out = [0.0; N_INPUTS];
    out[..N_RAW].copy_from_slice(raw);
    out[40] = raw[AGENT_MSGS] / raw[USER_MSGS].max(1.0);
    out[41] = raw[AVG_LEN_AGENT] / raw[AVG_LEN_USER].max(1.0);
    out[42] = raw[Q_AGENT] / raw[AGENT_MSGS].max(1.0);
    let h = TAU * raw[HOUR] / 24.0;
    let d = TAU * raw[DAY] / 7.0;
    out[43] = h.sin();
    out[44] = h.cos();
    out[45] = d.sin();
    out[46] = d.cos();
    out
}
