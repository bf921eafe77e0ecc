//! Request bodies to fixed-size [`Features`], without allocating.
//!
//! A validator sends the whole synapse (`{"name":..., "dendrite":{...},
//! "features":{...}, ...}`); the `predict` CLI may also get a bare features
//! object. Both go through one serde-json-core pass: the top-level object is
//! read key by key, a `features` object is read into one accumulator and
//! feature-named keys at the top level into another, and at the end the
//! nested one wins if a `features` key was seen. Everything else (the
//! `dendrite` block with its 19-digit nonce, `prediction`, keys added by later
//! validator versions) is skipped as `IgnoredAny`, never converted to a number.
//!
//! serde-json-core reports a type error without saying where, and turns
//! `null` into NaN and `1e999` into infinity, so the visitors keep their own
//! record of which field they were reading and what was wrong with it; the
//! final [`ParseError`] always names the field. Its recursion over skipped
//! values has no depth limit, so a cheap byte scan ([`MAX_DEPTH`]) runs first:
//! a hostile `[[[[...` body is refused before the parser can exhaust the stack.

use core::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::schema::{FEATURE_NAMES, IS_INTEGER, N_FEATURES, REQUIRED};

/// Deepest nesting of objects and arrays a body may have. A synapse body
/// needs 2 (`{"features": {...}}`); the margin admits richer future bodies.
pub const MAX_DEPTH: usize = 32;

/// Name of the session identifier key (a string, not a model input).
pub const SESSION_ID: &str = "session_id";
/// Name of the key holding the features inside a synapse body.
pub const FEATURES_KEY: &str = "features";

/// One parsed conversation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features<'a> {
    /// Raw feature values in canonical order; 0.0 where not present.
    pub values: [f32; N_FEATURES],
    /// Bit `i` set iff feature `i` was present in the request.
    pub present: u64,
    /// The session id as it appears between the quotes in the body (JSON
    /// escapes, if any, are left as they are). [`parse_request`] always
    /// sets it; it is an `Option` so features built by other means can lack it.
    pub session_id: Option<&'a str>,
}

impl Features<'_> {
    /// All features absent, no session id.
    pub const EMPTY: Features<'static> = Features {
        values: [0.0; N_FEATURES],
        present: 0,
        session_id: None,
    };

    /// Whether feature `i` was present.
    #[inline]
    pub fn is_present(&self, i: usize) -> bool {
        i < N_FEATURES && self.present & (1u64 << i) != 0
    }
}

/// What was wrong with the JSON text itself (serde-json-core's error kinds,
/// folded into a few that mean something to a client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The body ended in the middle of a value.
    UnexpectedEnd,
    /// A character that cannot appear where it does.
    UnexpectedChar,
    /// A malformed literal (`true`, `false`, `null`) or number.
    BadLiteral,
    /// A string with a bad escape or invalid UTF-8.
    BadString,
    /// Non-whitespace after the top-level value.
    TrailingCharacters,
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonError::UnexpectedEnd => "unexpected end of input",
            JsonError::UnexpectedChar => "unexpected character",
            JsonError::BadLiteral => "malformed number or literal",
            JsonError::BadString => "malformed string (bad escape or invalid UTF-8)",
            JsonError::TrailingCharacters => "trailing characters after the JSON value",
            JsonError::TooDeep => "objects/arrays nested too deeply",
        })
    }
}

/// Why a request body was refused. Every variant about a field names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not well-formed JSON.
    Json(JsonError),
    /// The top-level value is not an object.
    NotAnObject,
    /// Neither a `features` object nor any feature key was found.
    NoFeatures,
    /// A field the validator requires is missing.
    MissingRequired(&'static str),
    /// A feature is `null`, NaN, infinite, or too large for an `f32`.
    NonFinite(&'static str),
    /// An integer feature is negative.
    Negative(&'static str),
    /// A field has the wrong JSON type (a feature that is not a number,
    /// a `session_id` that is not a string, a `features` that is not an object).
    WrongType(&'static str),
}

impl ParseError {
    /// The field this error is about, if it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match *self {
            ParseError::MissingRequired(f)
            | ParseError::NonFinite(f)
            | ParseError::Negative(f)
            | ParseError::WrongType(f) => Some(f),
            ParseError::Json(_) | ParseError::NotAnObject | ParseError::NoFeatures => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::Json(k) => write!(f, "invalid JSON: {k}"),
            ParseError::NotAnObject => f.write_str("the body is not a JSON object"),
            ParseError::NoFeatures => f.write_str(
                "no features: expected a synapse body with a \"features\" object or a bare features object",
            ),
            ParseError::MissingRequired(n) => write!(f, "{n}: required field is missing"),
            ParseError::NonFinite(n) => {
                write!(f, "{n}: not a finite number (null, NaN, infinity or beyond f32 range)")
            }
            ParseError::Negative(n) => write!(f, "{n}: must not be negative"),
            ParseError::WrongType(n) => {
                let want = if n == SESSION_ID {
                    "a string"
                } else if n == FEATURES_KEY {
                    "an object"
                } else {
                    "a number"
                };
                write!(f, "{n}: wrong JSON type, expected {want}")
            }
        }
    }
}

/// Parse a synapse body or a bare features object.
///
/// Requires the five fields the validator requires (`session_id` and
/// [`REQUIRED`]); optional features may be missing (their `present` bit is
/// clear). Never panics.
pub fn parse_request(body: &[u8]) -> Result<Features<'_>, ParseError> {
    check_depth(body)?;
    let mut ctx = Ctx::default();
    let mut de = serde_json_core::de::Deserializer::new(body, None);
    let parsed = TopSeed { ctx: &mut ctx }
        .deserialize(&mut de)
        .and_then(|()| de.end().map(|_| ()));
    if let Err(e) = parsed {
        use serde_json_core::de::Error as E;
        let type_error = matches!(e, E::InvalidType | E::InvalidNumber);
        return Err(ctx.error.unwrap_or(match ctx.reading {
            Some(field) if type_error => ParseError::WrongType(field),
            None if ctx.depth == 0 && e == E::InvalidType => ParseError::NotAnObject,
            _ => ParseError::Json(json_kind(e)),
        }));
    }
    let acc = if ctx.saw_features {
        ctx.nested
    } else {
        ctx.top
    };
    if acc.present == 0 && acc.session_id.is_none() {
        return Err(ParseError::NoFeatures);
    }
    if acc.session_id.is_none() {
        return Err(ParseError::MissingRequired(SESSION_ID));
    }
    for &i in REQUIRED.iter() {
        if acc.present & (1u64 << i) == 0 {
            return Err(ParseError::MissingRequired(name(i)));
        }
    }
    Ok(acc)
}

fn name(i: usize) -> &'static str {
    FEATURE_NAMES.get(i).copied().unwrap_or("?")
}

fn json_kind(e: serde_json_core::de::Error) -> JsonError {
    use serde_json_core::de::Error as E;
    match e {
        E::EofWhileParsingList
        | E::EofWhileParsingObject
        | E::EofWhileParsingString
        | E::EofWhileParsingNumber
        | E::EofWhileParsingValue => JsonError::UnexpectedEnd,
        E::ExpectedSomeIdent | E::InvalidNumber => JsonError::BadLiteral,
        E::InvalidUnicodeCodePoint | E::InvalidEscapeSequence | E::EscapedStringIsTooLong => {
            JsonError::BadString
        }
        E::TrailingCharacters => JsonError::TrailingCharacters,
        _ => JsonError::UnexpectedChar,
    }
}

/// Refuse bodies whose objects/arrays nest deeper than [`MAX_DEPTH`]
/// (brackets inside strings do not count).
fn check_depth(body: &[u8]) -> Result<(), ParseError> {
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    for &b in body {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ParseError::Json(JsonError::TooDeep));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parse state shared by the visitors.
#[derive(Default)]
struct Ctx<'a> {
    /// Feature keys at the top level (bare features object).
    top: Features<'a>,
    /// Keys inside `features` (synapse body).
    nested: Features<'a>,
    saw_features: bool,
    /// The field whose value is being read, for errors serde-json-core
    /// reports without a location.
    reading: Option<&'static str>,
    /// A detailed error found by our own checks.
    error: Option<ParseError>,
    /// Object depth the visitors have entered (0 = not yet in the top object).
    depth: u8,
}

impl Default for Features<'_> {
    fn default() -> Self {
        Features::EMPTY
    }
}

/// A custom error for serde; the detail lives in `Ctx::error`.
fn fail<E: de::Error>() -> E {
    E::custom("")
}

struct TopSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ObjVisitor {
            ctx: self.ctx,
            nested: false,
        })
    }
}

/// Reads one object: the top level (`nested == false`) or `features`.
struct ObjVisitor<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    nested: bool,
}

impl<'de> Visitor<'de> for ObjVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(mut self, mut map: M) -> Result<(), M::Error> {
        self.ctx.depth = self.ctx.depth.saturating_add(1);
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == SESSION_ID {
                self.ctx.reading = Some(SESSION_ID);
                let s: &'de str = map.next_value()?;
                self.ctx.reading = None;
                self.acc().session_id = Some(s);
            } else if !self.nested && key == FEATURES_KEY {
                self.ctx.saw_features = true;
                self.ctx.reading = Some(FEATURES_KEY);
                map.next_value_seed(FeaturesSeed { ctx: self.ctx })?;
            } else if let Some(i) = FEATURE_NAMES.iter().position(|n| *n == key) {
                let field = name(i);
                self.ctx.reading = Some(field);
                let v = map.next_value_seed(NumberSeed)?;
                self.ctx.reading = None;
                match check_value(i, field, v) {
                    Ok(x) => {
                        let acc = self.acc();
                        if let Some(slot) = acc.values.get_mut(i) {
                            *slot = x;
                        }
                        acc.present |= 1u64 << i;
                    }
                    Err(e) => {
                        self.ctx.error = Some(e);
                        return Err(fail());
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

impl<'a> ObjVisitor<'_, 'a> {
    fn acc(&mut self) -> &mut Features<'a> {
        if self.nested {
            &mut self.ctx.nested
        } else {
            &mut self.ctx.top
        }
    }
}

struct FeaturesSeed<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(ObjVisitor {
            ctx: &mut *self.ctx,
            nested: true,
        })?;
        self.ctx.reading = None;
        Ok(())
    }
}

/// Reads a JSON number as f64 (serde-json-core gives NaN for `null`).
struct NumberSeed;

impl<'de> DeserializeSeed<'de> for NumberSeed {
    type Value = f64;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_f64(NumberVisitor)
    }
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<f64, E> {
        Ok(f64::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

/// Check one feature value and narrow it to f32.
fn check_value(i: usize, field: &'static str, v: f64) -> Result<f32, ParseError> {
    if !v.is_finite() {
        return Err(ParseError::NonFinite(field));
    }
    let integer = IS_INTEGER.get(i).copied().unwrap_or(false);
    if integer {
        if v < 0.0 {
            return Err(ParseError::Negative(field));
        }
    }
    // An integer feature with a fractional part is truncated toward zero, as
    // the subnet's own `ConversionSynapse.__post_init__` does with `int()`:
    // a validator that skips its final `int()` pass sends fractional
    // `min_message_length_*`, and refusing those would score 0.
    let v = if integer { libm::trunc(v) } else { v };
    let x = v as f32;
    if !x.is_finite() {
        return Err(ParseError::NonFinite(field));
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::idx;

    const MIN: &str = r#""session_id":"s1","conversation_duration_seconds":120.5,"has_target_entity":1,"entities_collected_count":3,"message_ratio":1.2"#;

    fn bare(extra: &str) -> std::string::String {
        if extra.is_empty() {
            std::format!("{{{MIN}}}")
        } else {
            std::format!("{{{MIN},{extra}}}")
        }
    }

    extern crate std;

    #[test]
    fn bare_minimal() {
        let b = bare("");
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.session_id, Some("s1"));
        assert_eq!(f.values[idx::CONVERSATION_DURATION_SECONDS], 120.5);
        assert_eq!(f.values[idx::HAS_TARGET_ENTITY], 1.0);
        assert_eq!(f.values[idx::ENTITIES_COLLECTED_COUNT], 3.0);
        assert_eq!(f.values[idx::MESSAGE_RATIO], 1.2);
        let want = (1u64 << idx::CONVERSATION_DURATION_SECONDS)
            | (1 << idx::HAS_TARGET_ENTITY)
            | (1 << idx::ENTITIES_COLLECTED_COUNT)
            | (1 << idx::MESSAGE_RATIO);
        assert_eq!(f.present, want);
        assert!(f.is_present(idx::MESSAGE_RATIO) && !f.is_present(idx::HOUR_OF_DAY));
    }

    #[test]
    fn full_synapse_body() {
        let body = std::format!(
            r#"{{"name": "ConversionSynapse", "timeout": 12.0, "total_size": 3701, "header_size": 0,
            "dendrite": {{"status_code": null, "ip": "10.9.9.9", "port": null, "version": 10005000,
              "nonce": 1795626734383137861, "uuid": "5c06965a", "hotkey": "5Grw", "signature": "0x6c"}},
            "axon": {{"status_code": null, "port": 18393, "nonce": null}},
            "computed_body_hash": "",
            "features": {{{MIN}, "hour_of_day": 14.0, "test_pk": "x\"}}y", "time_to_conversion_seconds": 9.5,
                          "nested_unknown": {{"a": [1, {{"b": [[], {{}}]}}, "c"], "d": null}}}},
            "prediction": {{"conversion_happened": 0, "time_to_conversion_seconds": -1.0}},
            "confidence": null, "response_time": 0.0, "miner_uid": 0}}"#
        );
        let f = parse_request(body.as_bytes()).unwrap();
        assert_eq!(f.session_id, Some("s1"));
        assert_eq!(f.values[idx::HOUR_OF_DAY], 14.0);
        assert_eq!(f.present.count_ones(), 5);
    }

    #[test]
    fn nested_features_win_over_top_level_keys() {
        let body = std::format!(r#"{{"message_ratio": 9.0, "features": {{{MIN}}}}}"#);
        let f = parse_request(body.as_bytes()).unwrap();
        assert_eq!(f.values[idx::MESSAGE_RATIO], 1.2);
    }

    #[test]
    fn big_numbers_outside_features_are_skipped() {
        let body = std::format!(
            r#"{{"dendrite":{{"nonce":179562673438313786117956267343831378611795626734383137861}},"x":-1e999,"features":{{{MIN}}}}}"#
        );
        assert!(parse_request(body.as_bytes()).is_ok());
    }

    #[test]
    fn integers_as_floats_and_exponents() {
        let b = bare(r#""total_messages":12.0,"user_messages_count":1e1,"hour_of_day":0"#);
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.values[15], 12.0);
        assert_eq!(f.values[idx::USER_MESSAGES_COUNT], 10.0);
        assert!(f.is_present(idx::HOUR_OF_DAY));
    }

    #[test]
    fn escapes_in_strings() {
        let b = r#"{"session_id":"a\"b\\","conversation_duration_seconds":1,"has_target_entity":0,"entities_collected_count":0,"message_ratio":0,"note":"\u00e9\n\"}"}"#;
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.session_id, Some(r#"a\"b\\"#));
    }

    #[test]
    fn missing_required_names_the_field() {
        for (i, field) in [
            "conversation_duration_seconds",
            "has_target_entity",
            "entities_collected_count",
            "message_ratio",
        ]
        .iter()
        .enumerate()
        {
            let mut parts: std::vec::Vec<std::string::String> =
                std::vec![r#""session_id":"s""#.into()];
            for (j, g) in [
                "conversation_duration_seconds",
                "has_target_entity",
                "entities_collected_count",
                "message_ratio",
            ]
            .iter()
            .enumerate()
            {
                if i != j {
                    parts.push(std::format!(r#""{g}":1"#));
                }
            }
            let b = std::format!("{{{}}}", parts.join(","));
            let e = parse_request(b.as_bytes()).unwrap_err();
            assert_eq!(e, ParseError::MissingRequired(field));
            assert!(std::format!("{e}").contains(field));
        }
        let b = r#"{"conversation_duration_seconds":1,"has_target_entity":0,"entities_collected_count":0,"message_ratio":0}"#;
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::MissingRequired("session_id"))
        );
    }

    #[test]
    fn non_finite_refused() {
        for v in ["null", "1e999", "-1e999", "1e308", "-3.5e38"] {
            let b = bare(&std::format!(r#""response_gap_max":{v}"#));
            let e = parse_request(b.as_bytes()).unwrap_err();
            assert_eq!(e, ParseError::NonFinite("response_gap_max"), "{v}");
            assert!(std::format!("{e}").contains("response_gap_max"));
        }
        let b = r#"{"features":{"session_id":"s","conversation_duration_seconds":null,"has_target_entity":0,"entities_collected_count":0,"message_ratio":0}}"#;
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::NonFinite("conversation_duration_seconds"))
        );
    }

    #[test]
    fn integer_rules() {
        // Fractional integers are truncated toward zero, like Python's int().
        let b = bare(r#""total_messages":12.9"#);
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.values[15], 12.0);
        let b = bare(r#""question_count_user":-1"#);
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::Negative("question_count_user"))
        );
        // Negative floats are fine for float features.
        let b = bare(r#""avg_entity_confidence":-0.5"#);
        assert!(parse_request(b.as_bytes()).is_ok());
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (extra, field) in [
            (r#""hour_of_day":"14""#, "hour_of_day"),
            (r#""hour_of_day":true"#, "hour_of_day"),
            (r#""hour_of_day":[1]"#, "hour_of_day"),
            (r#""hour_of_day":{}"#, "hour_of_day"),
            (r#""hour_of_day":NaN"#, "hour_of_day"),
        ] {
            let b = bare(extra);
            let e = parse_request(b.as_bytes()).unwrap_err();
            assert_eq!(e, ParseError::WrongType(field), "{extra}");
            assert!(std::format!("{e}").contains("expected a number"));
        }
        let b = r#"{"session_id":5,"conversation_duration_seconds":1}"#;
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::WrongType("session_id"))
        );
        for v in ["null", "[]", "3", "\"x\""] {
            let b = std::format!(r#"{{"features":{v}}}"#);
            assert_eq!(
                parse_request(b.as_bytes()),
                Err(ParseError::WrongType("features")),
                "{v}"
            );
        }
    }

    #[test]
    fn structural_errors() {
        assert_eq!(parse_request(b"[1,2]"), Err(ParseError::NotAnObject));
        assert_eq!(parse_request(b"42"), Err(ParseError::NotAnObject));
        assert_eq!(parse_request(b"{}"), Err(ParseError::NoFeatures));
        assert_eq!(parse_request(br#"{"a":1}"#), Err(ParseError::NoFeatures));
        assert_eq!(
            parse_request(b""),
            Err(ParseError::Json(JsonError::UnexpectedEnd))
        );
        assert_eq!(
            parse_request(br#"{"a":1"#),
            Err(ParseError::Json(JsonError::UnexpectedEnd))
        );
        let b = bare("");
        let trailing = std::format!("{b} x");
        assert_eq!(
            parse_request(trailing.as_bytes()),
            Err(ParseError::Json(JsonError::TrailingCharacters))
        );
        assert!(matches!(
            parse_request(br#"{"a" 1}"#),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_request(br#"{"a":1,}"#),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            parse_request(b"{\"session_id\":\"\xff\xfe\"}"),
            Err(ParseError::Json(JsonError::BadString))
        ));
        let deep = std::format!(r#"{{"x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_request(deep.as_bytes()),
            Err(ParseError::Json(JsonError::TooDeep))
        );
        // Brackets inside strings do not count towards the depth.
        let b = bare(&std::format!(r#""note":"{}""#, "[".repeat(1000)));
        assert!(parse_request(b.as_bytes()).is_ok());
    }

    #[test]
    fn never_panics_on_truncations_and_mutations() {
        let body = std::format!(
            r#"{{"dendrite":{{"nonce":1795626734383137861,"s":"a\"b"}},"features":{{{MIN},"hour_of_day":3.0,"x":[1,{{"y":null}}]}}}}"#
        );
        let bytes = body.as_bytes();
        for cut in 0..=bytes.len() {
            let _ = parse_request(&bytes[..cut]);
        }
        let mut m = bytes.to_vec();
        for i in 0..m.len() {
            for b in [
                b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'-', b'e', 0xff, b'n',
            ] {
                let old = m[i];
                m[i] = b;
                let _ = parse_request(&m);
                m[i] = old;
            }
        }
    }
}
