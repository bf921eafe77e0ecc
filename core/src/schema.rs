//! The 40 raw features in canonical model order (SUBNET.md), and the network
//! input names after the feature transform.
//!
//! Everything that indexes features uses these tables, so the order is
//! written down exactly once.

/// Raw features per conversation.
pub const N_FEATURES: usize = 40;
/// Network inputs: the 40 raw features plus 7 engineered ones.
pub const N_INPUTS: usize = 47;
/// First hidden layer width.
pub const H1: usize = 64;
/// Second hidden layer width.
pub const H2: usize = 32;
/// Classifiers in the ensemble.
pub const N_CLASSIFIERS: usize = 3;
/// Regressors in the ensemble.
pub const N_REGRESSORS: usize = 2;
/// Knots in the confidence calibration table.
pub const CALIB_KNOTS: usize = 17;

/// Raw feature names, canonical order.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "conversation_duration_seconds",
    "conversation_duration_minutes",
    "hour_of_day",
    "day_of_week",
    "is_business_hours",
    "is_weekend",
    "time_to_first_response_seconds",
    "avg_response_time_seconds",
    "max_response_time_seconds",
    "min_response_time_seconds",
    "avg_agent_response_time_seconds",
    "avg_user_response_time_seconds",
    "response_time_stddev",
    "response_gap_max",
    "messages_per_minute",
    "total_messages",
    "user_messages_count",
    "agent_messages_count",
    "message_ratio",
    "avg_message_length_user",
    "max_message_length_user",
    "min_message_length_user",
    "total_chars_from_user",
    "avg_message_length_agent",
    "max_message_length_agent",
    "min_message_length_agent",
    "total_chars_from_agent",
    "question_count_agent",
    "questions_per_agent_message",
    "question_count_user",
    "questions_per_user_message",
    "sequential_user_messages",
    "sequential_agent_messages",
    "entities_collected_count",
    "has_target_entity",
    "avg_entity_confidence",
    "min_entity_confidence",
    "entity_collection_rate",
    "repeated_questions",
    "message_alternation_rate",
];

/// Which raw features are integers (SUBNET.md marks them "(i)").
pub const IS_INTEGER: [bool; N_FEATURES] = {
    let mut t = [false; N_FEATURES];
    let ints = [
        2, 3, 4, 5, 15, 16, 17, 20, 21, 22, 24, 25, 26, 27, 29, 31, 32, 33, 34, 38,
    ];
    let mut i = 0;
    while i < ints.len() {
        t[ints[i]] = true;
        i += 1;
    }
    t
};

/// Raw features the validator itself requires (besides `session_id`).
pub const REQUIRED: [usize; 4] = [
    idx::CONVERSATION_DURATION_SECONDS,
    idx::HAS_TARGET_ENTITY,
    idx::ENTITIES_COLLECTED_COUNT,
    idx::MESSAGE_RATIO,
];

/// Names of the engineered inputs appended after the raw features.
pub const ENGINEERED_NAMES: [&str; N_INPUTS - N_FEATURES] = [
    "agent_user_message_ratio",
    "message_length_ratio",
    "question_density",
    "hour_sin",
    "hour_cos",
    "day_sin",
    "day_cos",
];

/// Indices of the raw features the transform and the rules refer to.
pub mod idx {
    pub const CONVERSATION_DURATION_SECONDS: usize = 0;
    pub const CONVERSATION_DURATION_MINUTES: usize = 1;
    pub const HOUR_OF_DAY: usize = 2;
    pub const DAY_OF_WEEK: usize = 3;
    pub const USER_MESSAGES_COUNT: usize = 16;
    pub const AGENT_MESSAGES_COUNT: usize = 17;
    pub const MESSAGE_RATIO: usize = 18;
    pub const AVG_MESSAGE_LENGTH_USER: usize = 19;
    pub const AVG_MESSAGE_LENGTH_AGENT: usize = 23;
    pub const QUESTION_COUNT_AGENT: usize = 27;
    pub const ENTITIES_COLLECTED_COUNT: usize = 33;
    pub const HAS_TARGET_ENTITY: usize = 34;
}

/// Index of a raw feature by name.
pub fn feature_index(name: &str) -> Option<usize> {
    FEATURE_NAMES.iter().position(|n| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn indices_match_names() {
        assert_eq!(FEATURE_NAMES[idx::MESSAGE_RATIO], "message_ratio");
        assert_eq!(FEATURE_NAMES[idx::HAS_TARGET_ENTITY], "has_target_entity");
        assert_eq!(
            FEATURE_NAMES[idx::ENTITIES_COLLECTED_COUNT],
            "entities_collected_count"
        );
        assert_eq!(
            FEATURE_NAMES[idx::QUESTION_COUNT_AGENT],
            "question_count_agent"
        );
        assert_eq!(
            FEATURE_NAMES[idx::AVG_MESSAGE_LENGTH_AGENT],
            "avg_message_length_agent"
        );
        assert_eq!(IS_INTEGER.iter().filter(|b| **b).count(), 20);
        assert!(IS_INTEGER[idx::HAS_TARGET_ENTITY] && !IS_INTEGER[idx::MESSAGE_RATIO]);
    }
}
