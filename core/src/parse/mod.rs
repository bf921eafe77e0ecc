//! Request bodies to fixed-size [`Features`] and a [`Layout`] of the
//! synapse, in one forward pass over the bytes, without allocating.
//!
//! A validator sends the whole synapse (`{"name":..., "dendrite":{...},
//! "features":{...}, ...}`); the `predict` CLI may also get a bare features
//! object. A small JSON reader written for this shape reads the top-level
//! object member by member: a `features` object into one accumulator,
//! feature-named keys at the top level into another (the nested one wins if
//! a `features` member was seen), the spans of the synapse fields the answer
//! rewrites into the [`Layout`], the values of the synapse's other known
//! fields (`prediction`, `miner_uid`, `timeout`, the `dendrite` and `axon`
//! members, ...) checked against what the synapse takes (`fields.rs`), and
//! everything else (keys added by later validator versions) checked for
//! well-formedness and skipped, never converted. `respond.rs` then writes
//! the answer from the body and the layout alone.
//!
//! The meaning is the one the validator's side gives the same text: Python's
//! `json.loads` followed by the subnet's pydantic `ConversionSynapse`. So a
//! repeated member counts once, the last one (as in a Python dict), keys
//! are compared by decoded value (`"\u0073ession_id"` is `session_id`),
//! `NaN`/`Infinity` are numbers, a lone surrogate escape is a valid string,
//! and a feature's value is read as pydantic's lax mode reads it for the
//! synapse's `int` or `float` field (`true` is 1, `"14"` is 14, a float
//! feature may be NaN; `number.rs` and `lax.rs` give the rules), and the
//! other fields as the synapse and bittensor's `TerminalInfo` read them
//! (`fields.rs`: `"1.0"` is no `axon.port`, `1.7` is). Because
//! of the last-wins rule, a member's bad value is an error only if no later
//! member of the same name replaces it: such errors are recorded and
//! reported by [`Body::features`] (a ping reads no features and never sees
//! them); only errors of the JSON text itself stop the pass.
//!
//! Hand-written rather than serde-driven because this is the hot path: a
//! general deserializer spent about 5.5 µs on a 2 KB synapse, more than the
//! five networks together. The files: `scan.rs` (cursor, strings, literals,
//! skipping values), `sse2.rs` (its x86_64 block compares), `keys.rs` (what
//! a key names, and the learned feature order), `number.rs` (numbers and
//! the feature value rules), `lax.rs` (numeric strings, read off the hot
//! path), `fields.rs` (the synapse's other fields). The string, number, literal and skip routines are
//! `#[inline(always)]`: as separate calls they cost 13% of the parse of a
//! 2.2 KB synapse (`predict/stage/parse` 1.57 -> 1.31 µs once inlined,
//! 2026-11-26).
//!
//! Inlining everything into one member loop has a limit, though: past it
//! the loop has more live values than registers and spends its time
//! reloading them from the stack. So two rarer paths stay out of line
//! (skipping an object or array, `Reader::skip_any`; the `axon` block,
//! `read_axon`), and the common member of a features object (the feature
//! the [`KeyOrder`] expects, with a value that starts with a digit) is read
//! by a small loop of its own, `feature_run`, which hands anything else
//! back to the general loop. Measured on the bench's 256 synapse bodies
//! (2.2 KB, 40 features; a loop timing `parse_body` + `features` by thread
//! CPU time, alternating with the previous build, Xeon 2.3 GHz shared with
//! other builds, 2026-12-07): skipping strings, `null` and numbers inline
//! and containers out of line, 1.59 -> 1.41 µs; `feature_run`, 1.45 -> 1.36
//! µs; `read_axon` out of line, about 1%. Tried and dropped: classifying
//! every key (features, synapse fields, terminal keys) by one hash probe
//! instead of the hash plus a few compares (no change: the compares were
//! not the cost), keeping escaped-key decoding out of line (no change), and
//! a local copy of the cursor inside `feature_run` (4% slower).
//!
//! Checking the other fields costs the dendrite block most: it is now read
//! member by member instead of skipped whole. To keep that small the checks
//! run out of line (`check_field`, `read_terminal`, `read_prediction`), and
//! an integer literal for an `int()` field (the 19-digit nonce) is never
//! converted to a number. It still costs about 7%: `predict/stage/parse`
//! 1.49 -> 1.60 µs on the bench's bodies (`cargo bench --bench predict --
//! stage/parse`, runs alternating without and with the checks, load
//! average 1.6-1.7 on a shared 2-core Xeon, 2026-12-07).
//!
//! A later round (2026-12-07) took the parse of the bench's bodies from
//! about 1.6 to about 1.12 µs without changing what any body means. Most
//! of a member's cost was not its value but the bytes around it: scanning
//! and looking up keys whose order never changes, and stepping over the
//! `", "` and `": "` Python writes. What changed, with `predict/stage/parse`
//! before -> after each step (the 10th percentile of criterion's per-sample
//! times, the median over 4 runs alternating the two bench executables;
//! criterion's own mean swung by up to 20% with other builds running on
//! the same 2 vCPUs, the percentile by about 1%; Xeon with AVX-512, load
//! average 1.3-5):
//! - `dendrite`/`axon` keys compared in place against the learned order
//!   (`keys.rs`), and an `int()` field's integer literal never scanned a
//!   second time: 1.58 -> 1.45 µs;
//! - a fast-path feature value skips the value rules: 1.46 -> 1.37 µs;
//! - top-level synapse keys compared in place against the learned order:
//!   1.37 -> 1.29 µs;
//! - an `int()` field's integer stepped over by shape (`number.rs`), and
//!   no copy of an empty accumulator before the first `features`: 1.30 ->
//!   1.28 µs;
//! - `", "` and `": "` taken in one compare (`scan.rs`): 1.28 -> 1.18 µs;
//! - `feature_run` reads a `session_id` among the features itself and
//!   keeps its counters in locals: 1.185 -> 1.15 µs;
//! - the `prediction` keys compared in place: 1.16 -> 1.14 µs;
//! - `feature_run` looks for the key's quote and the value's first digit
//!   before it skips whitespace: 1.14 -> 1.11 µs. (The same look before
//!   the loop in `next_token`, used by every other reader, measured slower,
//!   1.11 -> 1.14 µs, and was dropped.)
//!
//! All of it, the bench built before the round against the one after, 6
//! runs each alternating: `predict/stage/parse` 1.60 -> 1.12 µs and
//! `predict/full/avx512f` 4.16 -> 3.50 µs (p10; the medians of criterion's
//! own estimates 1.79 -> 1.28 and 5.11 -> 4.15 µs), `cargo bench --bench
//! predict -- 'predict/stage/parse$'` and `'predict/full/avx512f$'`.
//!
//! Looked at and left, not tried: the f64 division in a decimal's fast path
//! collects samples (they land just after `divsd`), but the only exact
//! replacement found is another division (with at most 8 fraction digits
//! and a mantissa below 2^52, m / 10^k cannot come within an f64 half-ulp
//! of an f32 rounding midpoint, so an f32 division would round the same as
//! Python's f64-then-f32; it is still a division). The copies of the
//! `Body` out of [`parse_body`] and of the `Features` out of
//! [`Body::features`] (about 2% together) come with the API.

use core::fmt;

use crate::schema::{FEATURE_NAMES, N_FEATURES, REQUIRED};

mod fields;
mod keys;
mod lax;
mod number;
mod scan;
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2;

use fields::{F_AXON, F_CONFIDENCE, F_DENDRITE, F_RESPONSE_TIME, F_TOP};
use keys::{classify, is_quoted_name, is_quoted_session_id, quoted_top, top_name, Member, N_TOP};
pub use keys::{
    KeyOrder, FEATURES_KEY, N_SLOTS, N_STATUS, N_TERMINAL, SESSION_ID, SLOT_AXON, SLOT_CONFIDENCE,
    SLOT_DENDRITE, SLOT_KEYS, SLOT_NAME, SLOT_PREDICTION, SLOT_RESPONSE_TIME, TERMINAL_KEYS,
};
pub use lax::MAX_NUMERIC_TEXT;
use number::check_value;
pub use number::MAX_INT_DIGITS;
use scan::Reader;

/// Deepest nesting of objects and arrays a body may have. A synapse body
/// needs 2 (`{"features": {...}}`); the margin admits richer future bodies.
pub const MAX_DEPTH: usize = 32;

/// One parsed conversation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features<'a> {
    /// Raw feature values in canonical order; 0.0 where not present. A
    /// float feature may be NaN or infinite, an int infinite (beyond f32),
    /// as the synapse allows: the kernels clamp them.
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

/// What was wrong with the JSON text itself, in a few kinds that mean
/// something to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonError {
    /// The body ended in the middle of a value.
    UnexpectedEnd,
    /// A character that cannot appear where it does.
    UnexpectedChar,
    /// A malformed literal (`true`, `false`, `null`, `NaN`, `Infinity`) or number.
    BadLiteral,
    /// A string with a bad escape or invalid UTF-8.
    BadString,
    /// Non-whitespace after the top-level value.
    TrailingCharacters,
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A feature's integer literal of more than [`MAX_INT_DIGITS`] digits,
    /// which Python's `json.loads` refuses.
    LongInteger,
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
            JsonError::LongInteger => {
                "an integer literal of more than 4300 digits (Python's json refuses it)"
            }
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
    /// An integer feature is NaN or infinite.
    NonFinite(&'static str),
    /// An integer feature has a fractional part.
    NotWhole(&'static str),
    /// An integer feature is a float outside (-2^63, 2^63), or a float
    /// feature an integer beyond the f64 range.
    OutOfRange(&'static str),
    /// A feature is a string that does not read as its kind of number.
    BadNumericString(&'static str),
    /// A feature is a string longer than [`MAX_NUMERIC_TEXT`].
    NumericStringTooLong(&'static str),
    /// A field has the wrong JSON type (a feature that is `null`, an array
    /// or an object, a `session_id` that is not a string, a `features`
    /// that is not an object).
    WrongType(&'static str),
}

impl ParseError {
    /// The field this error is about, if it is about one.
    pub fn field(&self) -> Option<&'static str> {
        match *self {
            ParseError::MissingRequired(f)
            | ParseError::NonFinite(f)
            | ParseError::NotWhole(f)
            | ParseError::OutOfRange(f)
            | ParseError::BadNumericString(f)
            | ParseError::NumericStringTooLong(f)
            | ParseError::WrongType(f) => Some(f),
            ParseError::Json(_) | ParseError::NotAnObject | ParseError::NoFeatures => None,
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((n, field)) = self.field().and_then(|n| Some((n, fields::by_name(n)?))) {
            let what = match *self {
                ParseError::MissingRequired(_) => "required field is missing",
                ParseError::NonFinite(_) => "not a finite number",
                ParseError::NotWhole(_) => "not a whole number",
                ParseError::OutOfRange(_) => "out of range",
                ParseError::BadNumericString(_) => "a string that does not read as one",
                ParseError::NumericStringTooLong(_) => "a numeric string that is too long",
                _ => "wrong JSON type",
            };
            return write!(f, "{n}: {what}; expected {}", fields::expected(field));
        }
        match *self {
            ParseError::Json(k) => write!(f, "invalid JSON: {k}"),
            ParseError::NotAnObject => f.write_str("the body is not a JSON object"),
            ParseError::NoFeatures => f.write_str(
                "no features: expected a synapse body with a \"features\" object or a bare features object",
            ),
            ParseError::MissingRequired(n) => write!(f, "{n}: required field is missing"),
            ParseError::NonFinite(n) => {
                write!(f, "{n}: not a finite number (an integer feature takes no NaN or infinity)")
            }
            ParseError::NotWhole(n) => {
                write!(f, "{n}: must be a whole number (an integer feature)")
            }
            ParseError::OutOfRange(n) => {
                if is_int_name(n) {
                    write!(f, "{n}: a float outside the 64-bit integer range (an integer feature)")
                } else {
                    write!(f, "{n}: an integer too large for a float")
                }
            }
            ParseError::BadNumericString(n) => {
                let want = if is_int_name(n) { "an integer" } else { "a number" };
                write!(f, "{n}: a string that is not {want}")
            }
            ParseError::NumericStringTooLong(n) => write!(
                f,
                "{n}: a numeric string longer than {MAX_NUMERIC_TEXT} bytes (after escapes and surrounding whitespace)"
            ),
            ParseError::WrongType(n) => {
                let want = if n == SESSION_ID {
                    "a string"
                } else if n == FEATURES_KEY {
                    "an object"
                } else {
                    "a number, a numeric string or a boolean"
                };
                write!(f, "{n}: wrong JSON type, expected {want}")
            }
        }
    }
}

/// What is wrong with one feature's value (the field is known by position).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldError {
    WrongType,
    NonFinite,
    NotWhole,
    OutOfRange,
    BadString,
    StringTooLong,
    /// A required key of a nested model is missing.
    Missing,
}

impl FieldError {
    fn named(self, field: &'static str) -> ParseError {
        match self {
            FieldError::WrongType => ParseError::WrongType(field),
            FieldError::NonFinite => ParseError::NonFinite(field),
            FieldError::NotWhole => ParseError::NotWhole(field),
            FieldError::OutOfRange => ParseError::OutOfRange(field),
            FieldError::BadString => ParseError::BadNumericString(field),
            FieldError::StringTooLong => ParseError::NumericStringTooLong(field),
            FieldError::Missing => ParseError::MissingRequired(field),
        }
    }
}

/// Whether the feature named `n` is an int.
fn is_int_name(n: &str) -> bool {
    FEATURE_NAMES
        .iter()
        .position(|f| *f == n)
        .is_some_and(number::is_int)
}

fn json(e: JsonError) -> ParseError {
    ParseError::Json(e)
}

fn name(i: usize) -> &'static str {
    FEATURE_NAMES.get(i).copied().unwrap_or("?")
}

/// Where a value lies in the body: `body[start..end]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// The `axon` member's object, as far as the answer needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AxonLayout {
    /// Whether the (last) `axon` value is an object; the rest is only
    /// meaningful if it is.
    pub object: bool,
    /// Members in that object.
    pub members: usize,
    /// Values of its (last) `status_code`, `status_message`, `process_time`.
    pub status: [Option<Span>; N_STATUS],
    /// Bit `k` set iff [`TERMINAL_KEYS`]`[k]` is one of its keys.
    pub present: u16,
}

/// Where the top-level members the answer rewrites lie in the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// Index of the top-level object's closing `}`.
    pub close: usize,
    /// Members in the top-level object.
    pub members: usize,
    /// Value of the last member named [`SLOT_KEYS`]`[k]`, if any.
    pub slots: [Option<Span>; N_SLOTS],
    /// Whether the last `dendrite` value is an object.
    pub dendrite_object: bool,
    /// The last `axon` value.
    pub axon: AxonLayout,
}

/// Features of one object as they are read, with the errors a later
/// member of the same name may still undo.
#[derive(Clone, Copy, Debug)]
struct Acc<'a> {
    f: Features<'a>,
    /// Bit `i`: the last value of feature `i` was refused (`errs[i]` says why).
    bad: u64,
    errs: [Option<FieldError>; N_FEATURES],
    /// The last `session_id` was not a string.
    session_bad: bool,
}

impl<'a> Acc<'a> {
    const EMPTY: Acc<'static> = Acc {
        f: Features::EMPTY,
        bad: 0,
        errs: [None; N_FEATURES],
        session_bad: false,
    };

    #[inline(always)]
    fn set(&mut self, fi: usize, v: Result<f32, FieldError>) {
        let bit = 1u64 << fi;
        match v {
            Ok(x) => {
                if let Some(slot) = self.f.values.get_mut(fi) {
                    *slot = x;
                }
                self.f.present |= bit;
                self.bad &= !bit;
            }
            Err(e) => {
                if let Some(slot) = self.f.values.get_mut(fi) {
                    *slot = 0.0;
                }
                if let Some(slot) = self.errs.get_mut(fi) {
                    *slot = Some(e);
                }
                self.f.present &= !bit;
                self.bad |= bit;
            }
        }
    }

    /// The features, or the first reason (in this order: the session id,
    /// features in schema order, missing required fields) to refuse them.
    fn finish(&self) -> Result<Features<'a>, ParseError> {
        if self.f.present == 0 && self.f.session_id.is_none() && !self.session_bad && self.bad == 0
        {
            return Err(ParseError::NoFeatures);
        }
        if self.session_bad {
            return Err(ParseError::WrongType(SESSION_ID));
        }
        if self.bad != 0 {
            let i = self.bad.trailing_zeros() as usize;
            let e = self.errs.get(i).copied().flatten();
            return Err(e.unwrap_or(FieldError::WrongType).named(name(i)));
        }
        if self.f.session_id.is_none() {
            return Err(ParseError::MissingRequired(SESSION_ID));
        }
        for &i in REQUIRED.iter() {
            if self.f.present & (1u64 << i) == 0 {
                return Err(ParseError::MissingRequired(name(i)));
            }
        }
        Ok(self.f)
    }
}

/// What the last `features` member was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FeaturesMember {
    Absent,
    Object,
    NotAnObject,
}

/// A well-formed JSON object body, read: its [`Layout`] and its features
/// (checked when asked for, by [`Body::features`]).
#[derive(Clone, Copy, Debug)]
pub struct Body<'a> {
    /// Where the members the answer rewrites lie.
    pub layout: Layout,
    top: Acc<'a>,
    nested: Acc<'a>,
    features: FeaturesMember,
    checks: fields::Checks,
}

impl<'a> Body<'a> {
    /// The conversation: the `features` object of a synapse body (the last
    /// one), or the top level of a bare features object. Requires the
    /// five fields the validator requires (`session_id` and [`REQUIRED`]);
    /// optional features may be missing (their `present` bit is clear).
    /// In a synapse body, also refuses a value of another synapse field
    /// that the synapse refuses (`miner_uid`, `axon.port`, ...).
    pub fn features(&self) -> Result<Features<'a>, ParseError> {
        match self.features {
            FeaturesMember::Absent => self.top.finish(),
            FeaturesMember::Object => {
                let f = self.nested.finish()?;
                // The rest of the synapse, checked only in a synapse body.
                match self.checks.first() {
                    Some((field, e)) => Err(e.named(field)),
                    None => Ok(f),
                }
            }
            FeaturesMember::NotAnObject => Err(ParseError::WrongType(FEATURES_KEY)),
        }
    }
}

/// Read a body that must be one JSON object. Fails only on the JSON text
/// itself (or a top-level value that is not an object); what the features
/// say is checked by [`Body::features`]. Never panics.
pub fn parse_body<'a>(body: &'a [u8], order: &mut KeyOrder) -> Result<Body<'a>, ParseError> {
    let mut r = Reader { b: body, i: 0 };
    match r.next_token()? {
        b'{' => {}
        b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' | b'N' | b'I' => {
            return Err(ParseError::NotAnObject)
        }
        _ => return Err(json(JsonError::UnexpectedChar)),
    }
    let mut out = Body {
        layout: Layout::default(),
        top: Acc::EMPTY,
        nested: Acc::EMPTY,
        features: FeaturesMember::Absent,
        checks: fields::Checks::EMPTY,
    };
    r.read_object(&mut out, order, true)?;
    r.skip_ws();
    if r.i < body.len() {
        return Err(json(JsonError::TrailingCharacters));
    }
    Ok(out)
}

/// Whether `name` is one of the synapse's fields (other than `features`)
/// whose value is checked, in the dotted form errors use (`axon.port`).
pub fn is_synapse_field(name: &str) -> bool {
    fields::by_name(name).is_some()
}

/// Parse a synapse body or a bare features object into its features
/// ([`parse_body`] then [`Body::features`], with a fresh [`KeyOrder`]).
pub fn parse_request(body: &[u8]) -> Result<Features<'_>, ParseError> {
    parse_body(body, &mut KeyOrder::new())?.features()
}

impl<'a> Reader<'a> {
    /// Read the object whose `{` is at `i`: the top level (`top`), or the
    /// synapse's `features`.
    fn read_object(
        &mut self,
        out: &mut Body<'a>,
        order: &mut KeyOrder,
        top: bool,
    ) -> Result<(), ParseError> {
        self.i += 1;
        let mut members = 0usize;
        let result = self.members(out, order, top, &mut members);
        if top {
            // `after_member` stepped past the closing `}`.
            out.layout.close = self.i.saturating_sub(1);
            out.layout.members = members;
        }
        result
    }

    fn members(
        &mut self,
        out: &mut Body<'a>,
        order: &mut KeyOrder,
        top: bool,
        members: &mut usize,
    ) -> Result<(), ParseError> {
        if self.next_token()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        // The value of a member of this object sits one level below it.
        let depth = if top { 1 } else { 2 };
        // The feature read last in this object (`N_FEATURES`: none yet).
        let mut prev = N_FEATURES;
        // The top-level synapse field read last (`N_TOP`: none yet).
        let mut prev_top = N_TOP;
        loop {
            // A synapse's top level holds no features: guess there only
            // once one was seen (a bare features object).
            let guessing = !top || prev != N_FEATURES;
            if guessing {
                let acc = if top { &mut out.top } else { &mut out.nested };
                if !self.feature_run(acc, order, &mut prev, members)? {
                    return Ok(());
                }
            }
            *members += 1;
            let guess = order.guess(prev);
            let quoted = self.next_token()? == b'"';
            let text = self.b.get(self.i + 1..).unwrap_or_default();
            // A synapse's top level: the field `order` expects after the
            // last one, compared in place as a feature name is.
            let expected_top = if quoted && !guessing {
                quoted_top(text, order.top_guess(prev_top))
            } else {
                None
            };
            let member = if quoted && guessing && is_quoted_name(text, guess) {
                self.matched_key(name(guess).len())?;
                Member::Feature(guess)
            } else if let Some((len, m)) = expected_top {
                self.matched_key(len)?;
                m
            } else {
                let m = classify(self.key()?, top);
                if let Member::Feature(fi) = m {
                    order.learn(prev, fi);
                }
                if let (false, Some(k)) = (guessing, top_name(m)) {
                    order.learn_top(prev_top, k);
                }
                m
            };
            if let (false, Some(k)) = (guessing, top_name(member)) {
                prev_top = k;
            }
            match member {
                Member::Feature(fi) => {
                    prev = fi;
                    let v = self.feature_value(fi, depth)?;
                    let acc = if top { &mut out.top } else { &mut out.nested };
                    acc.set(fi, v);
                }
                // Its own arm and loop exit: folding both kinds of member
                // into one tail measured 4-9% slower in the parse.
                Member::SessionId => {
                    let acc = if top { &mut out.top } else { &mut out.nested };
                    if self.peek() == Some(b'"') {
                        self.i += 1;
                        let s = self.string_body()?;
                        // The scan checked the UTF-8 already.
                        acc.f.session_id = core::str::from_utf8(s.raw).ok();
                        acc.session_bad = false;
                    } else {
                        self.skip_value(depth)?;
                        acc.f.session_id = None;
                        acc.session_bad = true;
                    }
                }
                Member::Features => {
                    if self.peek() == Some(b'{') {
                        // Only a `features` object fills `nested`: before
                        // the first one it is still empty (no 240-byte copy).
                        if out.features == FeaturesMember::Object {
                            out.nested = Acc::EMPTY;
                        }
                        out.features = FeaturesMember::Object;
                        self.read_object(out, order, false)?;
                    } else {
                        out.features = FeaturesMember::NotAnObject;
                        self.skip_value(depth)?;
                    }
                }
                Member::Slot(s) => {
                    let start = self.i;
                    let is_object = self.peek() == Some(b'{');
                    let checks = &mut out.checks;
                    match s {
                        SLOT_AXON => out.layout.axon = self.read_terminal(F_AXON, checks, order)?,
                        SLOT_DENDRITE => {
                            out.layout.dendrite_object = is_object;
                            self.read_terminal(F_DENDRITE, checks, order)?;
                        }
                        SLOT_PREDICTION => self.read_prediction(checks)?,
                        SLOT_CONFIDENCE => self.check_field(F_CONFIDENCE, checks)?,
                        SLOT_RESPONSE_TIME => self.check_field(F_RESPONSE_TIME, checks)?,
                        // `name`: anything (the synapse overwrites it).
                        _ => self.skip_value(depth)?,
                    }
                    if let Some(slot) = out.layout.slots.get_mut(s) {
                        *slot = Some(Span { start, end: self.i });
                    }
                }
                Member::Checked(c) => self.check_field(F_TOP + c, &mut out.checks)?,
                Member::Other => self.skip_value(depth)?,
            }
            if !self.after_member()? {
                return Ok(());
            }
        }
    }

    /// Read members of a features object from `i` (where a member starts)
    /// for as long as each is the feature `order` expects next with a
    /// value that starts with a digit: the common case, in a loop small
    /// enough to keep its state in registers (inside [`Reader::members`]
    /// it shared them with every other kind of member). Stops at the first
    /// member it does not take, with `i` where that member starts, and
    /// answers true; false once it has read the object's closing `}`. A
    /// member it takes is read exactly as `members` reads it. It also
    /// takes a plain `session_id` key with a string value, which a client
    /// puts among the features (the bench's sorted bodies, mid-object), so
    /// the run goes on past it.
    #[inline(never)]
    fn feature_run(
        &mut self,
        acc: &mut Acc<'a>,
        order: &KeyOrder,
        prev: &mut usize,
        members: &mut usize,
    ) -> Result<bool, ParseError> {
        // Counted here and stored once on the way out (on an error the
        // whole parse fails and neither is read).
        let mut run = 0usize;
        let mut last = *prev;
        let more = loop {
            let start = self.i;
            let g = order.guess(last);
            // Usually the quote is right here (`after_member` took `", "`).
            if self.peek() != Some(b'"') {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    self.i = start;
                    break true;
                }
            }
            let text = self.b.get(self.i + 1..).unwrap_or_default();
            if !is_quoted_name(text, g) {
                // A features object's `session_id` with a string value
                // (what `members` makes of it), read without leaving.
                if is_quoted_session_id(text) {
                    self.matched_key(SESSION_ID.len())?;
                    if self.peek() == Some(b'"') {
                        self.i += 1;
                        let s = self.string_body()?;
                        // The scan checked the UTF-8 already.
                        acc.f.session_id = core::str::from_utf8(s.raw).ok();
                        acc.session_bad = false;
                        run += 1;
                        if !self.after_member()? {
                            break false;
                        }
                        continue;
                    }
                }
                self.i = start;
                break true;
            }
            self.i += 2 + name(g).len();
            // What `colon` reads, handing a missing `:` back instead.
            if self.b.get(self.i..self.i + 2) == Some(b": ") {
                self.i += 2;
            } else {
                self.skip_ws();
                if self.peek() != Some(b':') {
                    self.i = start;
                    break true;
                }
                self.i += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                self.skip_ws();
                if !matches!(self.peek(), Some(b'0'..=b'9')) {
                    self.i = start;
                    break true;
                }
            }
            run += 1;
            let s = self.number().map_err(json)?;
            acc.set(g, check_value(g, &s, self.value(&s)));
            last = g;
            if !self.after_member()? {
                break false;
            }
        };
        *members += run;
        *prev = last;
        Ok(more)
    }

    /// The value of feature `fi`: a number (checked by the value rules), a
    /// numeric string or boolean (read as pydantic's lax mode reads them),
    /// or a refusal of its type or value. `Err` only for a JSON error.
    #[inline(always)]
    fn feature_value(
        &mut self,
        fi: usize,
        depth: usize,
    ) -> Result<Result<f32, FieldError>, ParseError> {
        match self.peek() {
            Some(b'0'..=b'9') => {
                let s = self.number().map_err(json)?;
                Ok(check_value(fi, &s, self.value(&s)))
            }
            Some(b'-') => {
                if self.minus_infinity()? {
                    return Ok(number::non_finite(fi, f64::NEG_INFINITY));
                }
                let s = self.number().map_err(json)?;
                Ok(check_value(fi, &s, self.value(&s)))
            }
            Some(b'"') => {
                self.i += 1;
                let s = self.string_body()?;
                let v = lax::numeric_string(number::is_int(fi), s.raw, s.escaped);
                Ok(v.map(|v| number::lax_value(fi, v)))
            }
            Some(b't') => {
                self.literal(b"true")?;
                Ok(Ok(1.0))
            }
            Some(b'f') => {
                self.literal(b"false")?;
                Ok(Ok(0.0))
            }
            Some(b'N') => {
                self.literal(scan::NAN)?;
                Ok(number::non_finite(fi, f64::NAN))
            }
            Some(b'I') => {
                self.literal(scan::INFINITY)?;
                Ok(number::non_finite(fi, f64::INFINITY))
            }
            Some(_) => {
                // `null`, an array or an object (or malformed text, which
                // the skip reports).
                self.skip_value(depth)?;
                Ok(Err(FieldError::WrongType))
            }
            None => Err(json(JsonError::UnexpectedEnd)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{idx, IS_INTEGER};

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

    /// What an int and a float feature make of each kind of value, with
    /// the answers pydantic 2.11.4 and 2.14 gave after `json.loads`.
    #[test]
    fn lax_values_as_the_synapse_reads_them() {
        let int = "hour_of_day";
        let float = "response_gap_max";
        let value = |field: &str, v: &str| {
            let b = bare(&std::format!(r#""{field}":{v}"#));
            let i = FEATURE_NAMES.iter().position(|n| *n == field).unwrap();
            parse_request(b.as_bytes()).map(|f| f.values[i].to_bits())
        };
        let ok = |x: f32| Ok(x.to_bits());
        for (v, want) in [
            ("14", 14.0),
            ("-3", -3.0),
            ("true", 1.0),
            ("false", 0.0),
            (r#""14""#, 14.0),
            (r#"" 14 ""#, 14.0),
            (r#""14.0""#, 14.0),
            (r#""1_000""#, 1000.0),
            (r#""-0""#, 0.0),
            (r#""\u00a014\u3000""#, 14.0),
            (r#""\u0031\u0034""#, 14.0),
            (r#""1180591620717411303424""#, 1.1805916e21),
            ("1180591620717411303424", 1.1805916e21),
        ] {
            assert_eq!(value(int, v), ok(want), "int {v}");
        }
        for (v, want) in [
            ("-0.5", -0.5),
            ("true", 1.0),
            ("false", 0.0),
            ("1e20", 1e20),
            ("1e300", f32::INFINITY),
            ("1e400", f32::INFINITY),
            ("Infinity", f32::INFINITY),
            ("-Infinity", f32::NEG_INFINITY),
            (r#""1e1""#, 10.0),
            (r#""-inf""#, f32::NEG_INFINITY),
            (r#""1_000""#, 1000.0),
            (r#"".5""#, 0.5),
        ] {
            assert_eq!(value(float, v), ok(want), "float {v}");
        }
        for v in ["NaN", r#""nan""#, r#"" NaN ""#] {
            let got = value(float, v).map(f32::from_bits);
            assert!(got.is_ok_and(f32::is_nan), "float {v}: {got:?}");
        }
        for (v, e) in [
            ("NaN", ParseError::NonFinite(int)),
            ("Infinity", ParseError::NonFinite(int)),
            ("-Infinity", ParseError::NonFinite(int)),
            ("1e400", ParseError::NonFinite(int)),
            ("-0.5", ParseError::NotWhole(int)),
            ("1e20", ParseError::OutOfRange(int)),
            ("null", ParseError::WrongType(int)),
            ("[1]", ParseError::WrongType(int)),
            ("{}", ParseError::WrongType(int)),
            (r#""1e1""#, ParseError::BadNumericString(int)),
            (r#""0x10""#, ParseError::BadNumericString(int)),
            (r#""""#, ParseError::BadNumericString(int)),
            (r#""\ud800""#, ParseError::BadNumericString(int)),
        ] {
            assert_eq!(value(int, v), Err(e), "int {v}");
            let msg = std::format!("{e}");
            assert!(msg.starts_with("hour_of_day: "), "{msg}");
        }
        let nines = "9".repeat(400);
        for (v, e) in [
            ("null", ParseError::WrongType(float)),
            (r#""0x10""#, ParseError::BadNumericString(float)),
            (r#"" 1_0""#, ParseError::BadNumericString(float)),
            (nines.as_str(), ParseError::OutOfRange(float)),
        ] {
            assert_eq!(value(float, v), Err(e), "float {v}");
        }
        let long = std::format!("\"{}\"", "1".repeat(MAX_NUMERIC_TEXT + 1));
        assert_eq!(
            value(int, &long),
            Err(ParseError::NumericStringTooLong(int))
        );
        // Python's json refuses the whole body: a JSON error, even if a
        // later member would replace the value.
        let digits = "1".repeat(MAX_INT_DIGITS + 1);
        // Anywhere in the body, as Python's `json.loads` refuses it anywhere;
        // one digit fewer, or the same digits with a fraction, is fine.
        for member in [
            std::format!(r#""unknown":{digits}"#),
            std::format!(r#""unknown":[1,{{"a":-{digits}}}]"#),
        ] {
            assert_eq!(
                parse_request(bare(&member).as_bytes()),
                Err(ParseError::Json(JsonError::LongInteger)),
                "{}",
                &member[..20]
            );
        }
        let ok = "1".repeat(MAX_INT_DIGITS);
        for member in [
            std::format!(r#""unknown":{ok}"#),
            std::format!(r#""unknown":{digits}.5"#),
            std::format!(r#""unknown":{digits}e1"#),
        ] {
            assert!(
                parse_request(bare(&member).as_bytes()).is_ok(),
                "{}",
                &member[..20]
            );
        }
        for field in [int, float] {
            let b = bare(&std::format!(r#""{field}":{digits},"{field}":1"#));
            assert_eq!(
                parse_request(b.as_bytes()),
                Err(ParseError::Json(JsonError::LongInteger))
            );
        }
        // The messages say what kind of number was wanted.
        let m = |e: ParseError| std::format!("{e}");
        assert_eq!(
            m(ParseError::BadNumericString(int)),
            "hour_of_day: a string that is not an integer"
        );
        assert_eq!(
            m(ParseError::BadNumericString(float)),
            "response_gap_max: a string that is not a number"
        );
        assert!(m(ParseError::OutOfRange(int)).contains("64-bit integer range"));
        assert!(m(ParseError::OutOfRange(float)).contains("too large for a float"));
        assert!(m(ParseError::NumericStringTooLong(int)).contains("longer than 256 bytes"));
        // A required feature's bad value is reported as such, not as missing.
        let b = r#"{"features":{"session_id":"s","conversation_duration_seconds":null,"has_target_entity":0,"entities_collected_count":0,"message_ratio":0}}"#;
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::WrongType("conversation_duration_seconds"))
        );
    }

    #[test]
    fn wrong_types_name_the_field() {
        for (extra, field) in [
            (r#""hour_of_day":null"#, "hour_of_day"),
            (r#""hour_of_day":[1]"#, "hour_of_day"),
            (r#""hour_of_day":{}"#, "hour_of_day"),
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

    /// A bare body with every feature, in the order `order`, feature `i`
    /// worth `i + 0.25` (integers: `i`).
    fn all_features(order: &[usize], session: &str) -> std::string::String {
        let mut b = std::format!("{{\"session_id\": \"{session}\"");
        for &i in order {
            if IS_INTEGER[i] {
                b += &std::format!(", \"{}\": {i}", FEATURE_NAMES[i]);
            } else {
                b += &std::format!(", \"{}\": {i}.25", FEATURE_NAMES[i]);
            }
        }
        b + "}"
    }

    fn check_all_features(f: &Features<'_>) {
        assert_eq!(f.present, (1u64 << N_FEATURES) - 1);
        for (i, v) in f.values.iter().enumerate() {
            let want = if IS_INTEGER[i] {
                i as f32
            } else {
                i as f32 + 0.25
            };
            assert_eq!(*v, want, "{}", FEATURE_NAMES[i]);
        }
    }

    /// Parse with a key order kept across calls (so the hints are learned).
    fn with<'a>(hints: &mut KeyOrder, b: &'a [u8]) -> Result<Features<'a>, ParseError> {
        parse_body(b, hints)?.features()
    }

    #[test]
    fn key_order_hints_never_change_the_answer() {
        // Orders that make the learned hint right, wrong, and half right,
        // each parsed twice in a row and interleaved with the others.
        let schema: std::vec::Vec<usize> = (0..N_FEATURES).collect();
        let reversed: std::vec::Vec<usize> = schema.iter().rev().copied().collect();
        let mut rotated = schema.clone();
        rotated.rotate_left(17);
        let mut swapped = schema.clone();
        for pair in swapped.chunks_mut(2) {
            pair.reverse();
        }
        let mut hints = KeyOrder::new();
        for round in 0..3 {
            for order in [&schema, &reversed, &rotated, &swapped] {
                for _ in 0..2 {
                    let b = all_features(order, "k");
                    let f = with(&mut hints, b.as_bytes()).unwrap();
                    check_all_features(&f);
                    assert_eq!(f.session_id, Some("k"), "round {round}");
                }
            }
        }
    }

    #[test]
    fn keys_near_the_expected_name_are_not_taken_for_it() {
        let t = FEATURE_NAMES
            .iter()
            .position(|n| *n == "total_messages")
            .unwrap();
        let name = FEATURE_NAMES[t];
        // Every other feature (so the required ones are there), then the key.
        let before: std::vec::Vec<usize> = (0..N_FEATURES).filter(|&i| i != t).collect();
        let prime = all_features(&before, "p");
        // Each near miss takes the place of the expected name; none of them
        // is the feature, so it must be skipped as an unknown key.
        let near = [
            std::format!("{}x", name),
            std::string::String::from(&name[..name.len() - 1]),
            std::format!("{}\\u0041", name),
            std::format!("{}\\\"", name),
            std::format!("X{}", &name[1..]),
        ];
        let mut hints = KeyOrder::new();
        for key in &near {
            // Teach the hint that `name` follows feature t - 1.
            let mut order = before.clone();
            order.push(t);
            check_all_features(&with(&mut hints, all_features(&order, "p").as_bytes()).unwrap());
            let b = std::format!("{}, \"{key}\": 5}}", &prime[..prime.len() - 1]);
            let f = with(&mut hints, b.as_bytes()).unwrap_or_else(|e| panic!("{b}: {e}"));
            assert!(!f.is_present(t), "{key} was read as {name}");
            assert_eq!(f.present, ((1u64 << N_FEATURES) - 1) & !(1u64 << t));
        }
        // The expected name with fewer than 32 bytes left in the body: the
        // general path reads it (and then finds the body cut short).
        let mut order = before.clone();
        order.push(t);
        let full = all_features(&order, "p");
        let cut = &full[..full.len() - 4];
        assert_eq!(
            with(&mut hints, cut.as_bytes()),
            Err(ParseError::Json(JsonError::UnexpectedEnd))
        );
        assert!(with(&mut hints, full.as_bytes()).unwrap().is_present(t));
    }

    #[test]
    fn repeated_members_the_last_wins() {
        // Two `features` objects: the last one, not a merge (a Python dict).
        let b = std::format!(
            r#"{{"features":{{{MIN},"hour_of_day":3}},"features":{{{MIN},"day_of_week":2}}}}"#
        );
        let f = parse_request(b.as_bytes()).unwrap();
        assert!(!f.is_present(idx::HOUR_OF_DAY) && f.is_present(idx::DAY_OF_WEEK));
        // A feature twice: the last value, whether the first was good or bad.
        let b = bare(r#""hour_of_day":3,"hour_of_day":5"#);
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.values[idx::HOUR_OF_DAY], 5.0);
        let b = bare(r#""hour_of_day":"x","hour_of_day":5"#);
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.values[idx::HOUR_OF_DAY], 5.0);
        assert_eq!(
            parse_request(bare(r#""hour_of_day":5,"hour_of_day":null"#).as_bytes()),
            Err(ParseError::WrongType("hour_of_day"))
        );
        // The same for `features` and `session_id` themselves.
        let b = std::format!(r#"{{"features":null,"features":{{{MIN}}}}}"#);
        assert!(parse_request(b.as_bytes()).is_ok());
        let b = std::format!(r#"{{"features":{{{MIN}}},"features":[]}}"#);
        assert_eq!(
            parse_request(b.as_bytes()),
            Err(ParseError::WrongType(FEATURES_KEY))
        );
        let b = bare(r#""session_id":5,"session_id":"t""#);
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.session_id, Some("t"));
        assert_eq!(
            parse_request(bare(r#""session_id":5"#).as_bytes()),
            Err(ParseError::WrongType(SESSION_ID))
        );
    }

    #[test]
    fn escaped_keys_mean_their_decoded_names() {
        let b = r#"{"fe\u0061tures":{"\u0073ession_id":"s","conversation_duration_seconds":1,"has_target_entity":1,"entities_collected\u005fcount":2,"message_ratio":1.5}}"#;
        let f = parse_request(b.as_bytes()).unwrap();
        assert_eq!(f.session_id, Some("s"));
        assert_eq!(f.values[idx::ENTITIES_COLLECTED_COUNT], 2.0);
        // After the order hint has learned the plain spelling, too.
        let mut hints = KeyOrder::new();
        let plain = all_features(&(0..N_FEATURES).collect::<std::vec::Vec<_>>(), "p");
        check_all_features(&with(&mut hints, plain.as_bytes()).unwrap());
        let escaped = plain.replace("\"hour_of_day\"", "\"hour\\u005fof_day\"");
        assert_ne!(escaped, plain);
        check_all_features(&with(&mut hints, escaped.as_bytes()).unwrap());
    }

    #[test]
    fn lone_surrogates_are_strings_everywhere() {
        // As Python's json.loads and the synapse's pydantic `str`: accepted.
        let b = bare(r#""x":"\udc00abc","\ud800":1,"y":["\ud83d"]"#);
        assert!(parse_request(b.as_bytes()).is_ok());
        let b = r#"{"session_id":"\ud800","conversation_duration_seconds":1,"has_target_entity":1,"entities_collected_count":2,"message_ratio":1.5}"#;
        assert_eq!(
            parse_request(b.as_bytes()).unwrap().session_id,
            Some(r"\ud800")
        );
    }

    #[test]
    fn python_number_literals() {
        for v in ["NaN", "Infinity", "-Infinity"] {
            let b = bare(&std::format!(r#""total_messages":{v}"#));
            assert_eq!(
                parse_request(b.as_bytes()),
                Err(ParseError::NonFinite("total_messages")),
                "{v}"
            );
            let b = bare(&std::format!(r#""response_gap_max":{v}"#));
            assert!(parse_request(b.as_bytes()).is_ok(), "{v}");
            let b = bare(&std::format!(r#""unknown":[{v}]"#));
            assert!(parse_request(b.as_bytes()).is_ok(), "{v}");
        }
        for v in [
            "Nan",
            "-Inf",
            "Infinite",
            "-",
            "-x",
            "tru",
            "fals",
            "True",
            "5Infinity",
            "0Infinity",
        ] {
            // As an unknown member's value and as a feature's: not JSON.
            for key in ["unknown", "response_gap_max"] {
                let b = bare(&std::format!(r#""{key}":{v}"#));
                assert!(
                    matches!(parse_request(b.as_bytes()), Err(ParseError::Json(_))),
                    "{v}"
                );
            }
        }
    }

    #[test]
    fn terminal_key_hints_never_change_the_answer() {
        // The same blocks in several key orders (declaration, sorted,
        // reversed), with near misses of the expected keys, parsed with one
        // KeyOrder in turn: the layout and the checks must be those of a
        // fresh parse every time.
        let members = [
            r#""status_code": null"#,
            r#""status_message": "ok""#,
            r#""process_time": 1.5"#,
            r#""ip": "10.0.0.1""#,
            r#""port": 8091"#,
            r#""version": 7"#,
            r#""nonce": 1795626734383137861"#,
            r#""uuid": "u""#,
            r#""hotkey": "h""#,
            r#""signature": "s""#,
        ];
        let declared: std::vec::Vec<usize> = (0..N_TERMINAL).collect();
        let mut sorted = declared.clone();
        sorted.sort_by_key(|&k| TERMINAL_KEYS[k]);
        let reversed: std::vec::Vec<usize> = declared.iter().rev().copied().collect();
        let block = |order: &[usize], swap: Option<(&str, &str)>| {
            let mut m: std::vec::Vec<std::string::String> =
                order.iter().map(|&k| members[k].into()).collect();
            if let Some((from, to)) = swap {
                for x in m.iter_mut() {
                    *x = x.replace(from, to);
                }
            }
            std::format!("{{{}}}", m.join(", "))
        };
        let mut hints = KeyOrder::new();
        for round in 0..2 {
            for order in [&declared, &sorted, &reversed] {
                for swap in [
                    None,
                    Some(("\"ip\"", "\"ipx\"")),
                    Some(("\"port\"", "\"p\\u006frt\"")),
                    Some(("\"port\": 8091", "\"port\": \"1.0\"")),
                    Some(("\"uuid\"", "\"uui\"")),
                    Some(("\"status_code\"", "\"status_cod\"")),
                ] {
                    let b = std::format!(
                        r#"{{"axon": {a}, "dendrite": {a}, "features": {{{MIN}}}}}"#,
                        a = block(order, swap)
                    );
                    let fresh = parse_body(b.as_bytes(), &mut KeyOrder::new()).unwrap();
                    for _ in 0..2 {
                        let got = parse_body(b.as_bytes(), &mut hints).unwrap();
                        assert_eq!(got.layout, fresh.layout, "round {round}: {b}");
                        assert_eq!(got.features(), fresh.features(), "round {round}: {b}");
                    }
                }
            }
        }
        // The near misses really are what they look like.
        let b = std::format!(r#"{{"axon": {{"port": "1.0"}}, "features": {{{MIN}}}}}"#);
        assert_eq!(
            parse_body(b.as_bytes(), &mut hints).unwrap().features(),
            Err(ParseError::BadNumericString("axon.port"))
        );
    }

    #[test]
    fn top_level_key_hints_never_change_the_answer() {
        // A synapse's top-level members in several orders, with near misses
        // of the expected keys, parsed with one KeyOrder in turn: the same
        // layout and the same answer as a fresh parse every time.
        let members = [
            r#""name": "ConversionSynapse""#,
            r#""axon": {"port": 8091, "ip": "127.0.0.1"}"#,
            r#""dendrite": {"nonce": 1795626734383137861}"#,
            r#""prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}"#,
            r#""confidence": null"#,
            r#""response_time": 0.0"#,
            r#""miner_uid": 7"#,
            r#""timeout": 12.0"#,
            r#""total_size": 0"#,
            r#""header_size": 0"#,
            r#""computed_body_hash": "h""#,
            r#""unknown": [1, {"name": 2}]"#,
        ];
        let features = std::format!(r#""features": {{{MIN}}}"#);
        let n = members.len() + 1;
        let pick = |k: usize| -> std::string::String {
            if k == members.len() {
                features.clone()
            } else {
                members[k].into()
            }
        };
        let forward: std::vec::Vec<usize> = (0..n).collect();
        let backward: std::vec::Vec<usize> = forward.iter().rev().copied().collect();
        let mut sorted = forward.clone();
        sorted.sort_by_key(|&k| pick(k));
        let mut hints = KeyOrder::new();
        for round in 0..2 {
            for order in [&forward, &backward, &sorted] {
                for swap in [
                    None,
                    Some((r#""name""#, r#""names""#)),
                    Some((r#""timeout""#, r#""timeou""#)),
                    Some((r#""axon""#, r#""\u0061xon""#)),
                    Some((r#""miner_uid": 7"#, r#""miner_uid": 7.5"#)),
                    Some((r#""features""#, r#""featuresx""#)),
                ] {
                    let mut m: std::vec::Vec<std::string::String> =
                        order.iter().map(|&k| pick(k)).collect();
                    if let Some((from, to)) = swap {
                        for x in m.iter_mut() {
                            *x = x.replacen(from, to, 1);
                        }
                    }
                    let b = std::format!("{{{}}}", m.join(", "));
                    let fresh = parse_body(b.as_bytes(), &mut KeyOrder::new()).unwrap();
                    for _ in 0..2 {
                        let got = parse_body(b.as_bytes(), &mut hints).unwrap();
                        assert_eq!(got.layout, fresh.layout, "round {round}: {b}");
                        assert_eq!(got.features(), fresh.features(), "round {round}: {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn session_id_among_the_features_reads_as_anywhere() {
        // `session_id` in the middle of a features object, in the forms the
        // feature loop takes and those it hands back, with a learned order.
        let order: std::vec::Vec<usize> = (0..N_FEATURES).collect();
        let plain = all_features(&order, "p");
        let (head, tail) = plain.split_at(plain.find("\"hour_of_day\"").unwrap());
        let head = head.replacen("\"session_id\": \"p\", ", "", 1);
        let mut hints = KeyOrder::new();
        for member in [
            r#""session_id": "mid", "#,
            r#""session_id" : "mid", "#,
            r#""session_id":"mid","#,
            r#""session_id": 5, "#,
            r#""session_id": null, "session_id": "mid", "#,
            r#""session_id": "x", "session_id": 5, "#,
            r#""s\u0065ssion_id": "mid", "#,
            r#""session_idx": "mid", "session_id": "mid", "#,
            r#""session_id": "\u00e9", "#,
        ] {
            let b = std::format!("{head}{member}{tail}");
            let fresh = parse_request(b.as_bytes());
            for _ in 0..3 {
                let got = parse_body(b.as_bytes(), &mut hints).and_then(|body| body.features());
                assert_eq!(got, fresh, "{b}");
            }
            if let Ok(f) = fresh {
                check_all_features(&f);
            }
        }
        let b = std::format!(r#"{head}"session_id": "mid", {tail}"#);
        assert_eq!(
            with(&mut hints, b.as_bytes()).unwrap().session_id,
            Some("mid")
        );
    }

    #[test]
    fn layout_records_the_members_the_answer_rewrites() {
        let b = br#"{"name": "x", "axon": {"port": 1, "st\u0061tus_code": null, "status_code": 7}, "dendrite": null, "z": 1, "name": "y" }"#;
        let body = parse_body(b, &mut KeyOrder::new()).unwrap();
        let l = body.layout;
        let text = |s: Option<Span>| {
            let s = s.unwrap();
            core::str::from_utf8(&b[s.start..s.end]).unwrap()
        };
        assert_eq!(text(l.slots[SLOT_NAME]), "\"y\"");
        assert!(text(l.slots[SLOT_AXON]).starts_with("{\"port\"") && l.axon.object);
        assert_eq!(text(l.axon.status[0]), "7");
        assert_eq!(l.axon.status[1], None);
        assert_eq!(l.axon.present, 1 | 1 << 4);
        assert_eq!(l.axon.members, 3);
        assert_eq!(text(l.slots[SLOT_DENDRITE]), "null");
        assert!(!l.dendrite_object);
        assert_eq!(l.slots[SLOT_PREDICTION], None);
        assert_eq!((l.close, l.members), (b.len() - 1, 5));
        // A ping's body reads fine; only asking for features fails.
        assert_eq!(body.features(), Err(ParseError::NoFeatures));
    }
}
