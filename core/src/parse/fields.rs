//! The synapse's fields other than `features`: what each takes, and the
//! record of which ones a body gave a value the synapse refuses.
//!
//! The validator's side builds the whole `ConversionSynapse` from the body,
//! so a body whose `miner_uid` or `axon.port` the model refuses is refused
//! there (and an answer echoing it is refused by the validator's dendrite),
//! however good its features. The fields come in five kinds, found by
//! asking the real classes (bittensor 9.4 and 10.5 agree, pydantic 2.11 and
//! 2.14): the subnet's own `int`/`float` fields are read by pydantic's lax
//! mode, exactly like the features (`number.rs`, `lax.rs`); bittensor's
//! integer and float fields (`timeout`, `total_size`, `header_size` and the
//! `TerminalInfo` numbers) first go through its `mode="before"` validators
//! `cast_int`/`cast_float`, which are Python's `int(x)`/`float(x)` (so
//! `1.7` is an int, `"1.0"` is not, `NaN` is no int); `str` fields take
//! only strings. Every bittensor field is `Optional` (`null` is `None`);
//! the subnet's are not, except `confidence`. `name` takes anything (a
//! model validator overwrites it) and is not checked.
//!
//! Checking happens in the same pass that reads the features (the reader
//! visits each value once anyway), and errors wait in [`Checks`] until the
//! end, because a later member of the same name replaces an earlier one's
//! value, as in Python's dict. They are reported only for a synapse body
//! (one with a `features` object): a bare features object is not a synapse.

use super::keys::{
    is_quoted_terminal, name_index, quoted_padded, starts_with_padded, terminal_index, KeyOrder,
    NAME_PAD, N_TERMINAL, TERMINAL_KEYS,
};
use super::scan::{self, Reader};
use super::{json, lax, number, AxonLayout, FieldError, JsonError, ParseError, Span};

/// How a field reads a JSON value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// pydantic lax `int` (the features' rules).
    Int,
    /// pydantic lax `float`.
    Float,
    /// bittensor's `cast_int`: Python's `int(x)`, then `Optional[int]`.
    CastInt,
    /// bittensor's `cast_float`: Python's `float(x)`, then `Optional[float]`.
    CastFloat,
    /// `str`: strings only.
    Str,
    /// A model (`TerminalInfo`, the prediction's TypedDict): an object.
    Object,
}

/// One checked field: its dotted name, kind, and whether `null` is taken.
#[derive(Clone, Copy, Debug)]
pub(super) struct Field {
    pub name: &'static str,
    pub kind: Kind,
    pub optional: bool,
}

const fn f(name: &'static str, kind: Kind, optional: bool) -> Field {
    Field {
        name,
        kind,
        optional,
    }
}

/// Index of `confidence` in [`FIELDS`].
pub(super) const F_CONFIDENCE: usize = 0;
/// Index of `response_time`.
pub(super) const F_RESPONSE_TIME: usize = 1;
/// Index of the first of [`TOP_KEYS`]' fields.
pub(super) const F_TOP: usize = 2;
/// Index of the `prediction` object; its two keys follow it.
pub(super) const F_PREDICTION: usize = 7;
/// Index of the `dendrite` object; its [`N_TERMINAL`] keys follow it.
pub(super) const F_DENDRITE: usize = 10;
/// Index of the `axon` object; its keys follow it.
pub(super) const F_AXON: usize = F_DENDRITE + 1 + N_TERMINAL;
/// Number of [`FIELDS`].
pub(super) const N_FIELDS: usize = F_AXON + 1 + N_TERMINAL;

/// Top-level keys checked here that the answer does not rewrite (the
/// others are slots), in [`FIELDS`] order from [`F_TOP`].
pub(super) const TOP_KEYS: [&str; 5] = [
    "miner_uid",
    "timeout",
    "total_size",
    "header_size",
    "computed_body_hash",
];

/// Keys of the `prediction` TypedDict (both required).
pub(super) const PREDICTION_KEYS: [&str; 2] = ["conversion_happened", "time_to_conversion_seconds"];

/// [`PREDICTION_KEYS`] quoted and padded, for comparing in place.
static QUOTED_PREDICTION: [[u8; NAME_PAD]; 2] = quoted_padded(PREDICTION_KEYS);

/// How each [`TERMINAL_KEYS`] member reads (all are `Optional`).
const TERMINAL_KINDS: [Kind; N_TERMINAL] = [
    Kind::CastInt,   // status_code
    Kind::Str,       // status_message
    Kind::CastFloat, // process_time
    Kind::Str,       // ip
    Kind::CastInt,   // port
    Kind::CastInt,   // version
    Kind::CastInt,   // nonce
    Kind::Str,       // uuid
    Kind::Str,       // hotkey
    Kind::Str,       // signature
];

/// Every checked field, by index.
pub(super) const FIELDS: [Field; N_FIELDS] = {
    let mut t = [f("", Kind::Str, true); N_FIELDS];
    t[F_CONFIDENCE] = f("confidence", Kind::Float, true);
    t[F_RESPONSE_TIME] = f("response_time", Kind::Float, false);
    t[F_TOP] = f("miner_uid", Kind::Int, false);
    t[F_TOP + 1] = f("timeout", Kind::CastFloat, true);
    t[F_TOP + 2] = f("total_size", Kind::CastInt, true);
    t[F_TOP + 3] = f("header_size", Kind::CastInt, true);
    t[F_TOP + 4] = f("computed_body_hash", Kind::Str, true);
    t[F_PREDICTION] = f("prediction", Kind::Object, false);
    t[F_PREDICTION + 1] = f("prediction.conversion_happened", Kind::Int, false);
    t[F_PREDICTION + 2] = f("prediction.time_to_conversion_seconds", Kind::Float, false);
    t[F_DENDRITE] = f("dendrite", Kind::Object, true);
    t[F_AXON] = f("axon", Kind::Object, true);
    let mut k = 0;
    while k < N_TERMINAL {
        t[F_DENDRITE + 1 + k] = f(DENDRITE_NAMES[k], TERMINAL_KINDS[k], true);
        t[F_AXON + 1 + k] = f(AXON_NAMES[k], TERMINAL_KINDS[k], true);
        k += 1;
    }
    t
};

const DENDRITE_NAMES: [&str; N_TERMINAL] = [
    "dendrite.status_code",
    "dendrite.status_message",
    "dendrite.process_time",
    "dendrite.ip",
    "dendrite.port",
    "dendrite.version",
    "dendrite.nonce",
    "dendrite.uuid",
    "dendrite.hotkey",
    "dendrite.signature",
];

const AXON_NAMES: [&str; N_TERMINAL] = [
    "axon.status_code",
    "axon.status_message",
    "axon.process_time",
    "axon.ip",
    "axon.port",
    "axon.version",
    "axon.nonce",
    "axon.uuid",
    "axon.hotkey",
    "axon.signature",
];

// The names above must be the terminal keys, in order.
const _: () = {
    let mut k = 0;
    while k < N_TERMINAL {
        let (d, a, t) = (
            DENDRITE_NAMES[k].as_bytes(),
            AXON_NAMES[k].as_bytes(),
            TERMINAL_KEYS[k].as_bytes(),
        );
        assert!(d.len() == t.len() + 9 && a.len() == t.len() + 5);
        let mut j = 0;
        while j < t.len() {
            assert!(d[j + 9] == t[j] && a[j + 5] == t[j]);
            j += 1;
        }
        k += 1;
    }
};

/// The checked field named `name`, if any.
pub(super) fn by_name(name: &str) -> Option<Field> {
    FIELDS.iter().find(|f| f.name == name).copied()
}

/// What a field of kind `k` takes, for error messages.
pub(super) fn expected(field: Field) -> &'static str {
    match (field.kind, field.optional) {
        (Kind::Int, false) => "an integer (a number, numeric string or boolean)",
        (Kind::Float, false) => "a number (a number, numeric string or boolean)",
        (Kind::Float, true) => "a number (a number, numeric string or boolean) or null",
        (Kind::Int, true) | (Kind::CastInt, _) => "an integer as Python's int() reads it, or null",
        (Kind::CastFloat, _) => "a number as Python's float() reads it, or null",
        (Kind::Str, _) => "a string or null",
        (Kind::Object, false) => "an object",
        (Kind::Object, true) => "an object or null",
    }
}

/// Which checked fields hold a value the synapse refuses (the last value
/// of each), and why.
#[derive(Clone, Copy, Debug)]
pub(super) struct Checks {
    bad: u64,
    errs: [Option<FieldError>; N_FIELDS],
}

impl Checks {
    pub const EMPTY: Checks = Checks {
        bad: 0,
        errs: [None; N_FIELDS],
    };

    /// Record the outcome of field `id`'s (latest) value.
    #[inline(always)]
    pub fn set(&mut self, id: usize, r: Result<(), FieldError>) {
        let bit = 1u64 << id;
        match r {
            Ok(()) => self.bad &= !bit,
            Err(e) => {
                self.bad |= bit;
                if let Some(slot) = self.errs.get_mut(id) {
                    *slot = Some(e);
                }
            }
        }
    }

    /// Forget fields `id..id + n` (a new value of the object holding them).
    #[inline(always)]
    pub fn clear(&mut self, id: usize, n: usize) {
        self.bad &= !(((1u64 << n) - 1) << id);
    }

    /// The first refused field (in [`FIELDS`] order) and why.
    pub fn first(&self) -> Option<(&'static str, FieldError)> {
        if self.bad == 0 {
            return None;
        }
        let id = self.bad.trailing_zeros() as usize;
        let e = self.errs.get(id).copied().flatten()?;
        Some((FIELDS.get(id)?.name, e))
    }
}

impl Reader<'_> {
    /// Read the value at `i` for a field of kind `field`, a member of an
    /// object at level `depth`: whether the synapse takes it. `Err` only for
    /// a JSON error.
    #[inline(always)]
    pub(super) fn field_value(
        &mut self,
        field: Field,
        depth: usize,
    ) -> Result<Result<(), FieldError>, ParseError> {
        let kind = field.kind;
        let numeric = !matches!(kind, Kind::Str | Kind::Object);
        let nan_ok = matches!(kind, Kind::Float | Kind::CastFloat);
        Ok(match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let s = self.string_body()?;
                match kind {
                    Kind::Str => Ok(()),
                    Kind::Int | Kind::Float => {
                        lax::numeric_string(kind == Kind::Int, s.raw, s.escaped).map(|_| ())
                    }
                    Kind::CastInt | Kind::CastFloat => {
                        lax::python_string(kind == Kind::CastInt, s.raw, s.escaped)
                    }
                    Kind::Object => Err(FieldError::WrongType),
                }
            }
            Some(b'-') if self.minus_infinity()? => non_finite(kind, nan_ok),
            // Python's `int()` takes any integer literal: an int field's
            // integer (the 19-digit nonce) needs its shape, not its value.
            Some(b'0'..=b'9' | b'-') if kind == Kind::CastInt && self.integer_ahead() => Ok(()),
            Some(b'0'..=b'9' | b'-') => {
                let s = self.number().map_err(json)?;
                match kind {
                    // Python's `int(float)` truncates: only NaN and
                    // infinity (a float literal past f64::MAX) fail. An
                    // integer literal (the dendrite's 19-digit nonce) is
                    // never converted, nor scanned again: the number scan
                    // knows it is one (and has refused one too long).
                    Kind::CastInt => {
                        if s.fast.is_some() || s.integer || self.value(&s).is_finite() {
                            Ok(())
                        } else {
                            Err(FieldError::NonFinite)
                        }
                    }
                    Kind::Int | Kind::Float | Kind::CastFloat => {
                        number::check_number(kind == Kind::Int, self.value(&s), s.integer)
                            .map(|_| ())
                    }
                    Kind::Str | Kind::Object => Err(FieldError::WrongType),
                }
            }
            Some(c @ (b't' | b'f')) => {
                self.literal(if c == b't' { b"true" } else { b"false" })?;
                if numeric {
                    Ok(())
                } else {
                    Err(FieldError::WrongType)
                }
            }
            Some(b'N') => {
                self.literal(scan::NAN)?;
                non_finite(kind, nan_ok)
            }
            Some(b'I') => {
                self.literal(scan::INFINITY)?;
                non_finite(kind, nan_ok)
            }
            Some(b'n') => {
                self.literal(b"null")?;
                if field.optional {
                    Ok(())
                } else {
                    Err(FieldError::WrongType)
                }
            }
            Some(_) => {
                // An array or an object (or malformed text, which the skip
                // reports).
                self.skip_value(depth)?;
                Err(FieldError::WrongType)
            }
            None => return Err(json(JsonError::UnexpectedEnd)),
        })
    }

    /// Check the value at `i` as field `id` (a member of the top level) and
    /// record the outcome: [`Reader::field_value`] out of line, so the
    /// top-level member loop stays small.
    #[inline(never)]
    pub(super) fn check_field(&mut self, id: usize, checks: &mut Checks) -> Result<(), ParseError> {
        let field = FIELDS.get(id).copied().unwrap_or(FIELDS[F_PREDICTION]);
        let r = self.field_value(field, 1)?;
        checks.set(id, r);
        Ok(())
    }

    /// The top-level `prediction` value at `i`: an object with both keys.
    #[inline(never)]
    pub(super) fn read_prediction(&mut self, checks: &mut Checks) -> Result<(), ParseError> {
        checks.clear(F_PREDICTION, 3);
        if self.peek() != Some(b'{') {
            self.skip_value(1)?;
            checks.set(F_PREDICTION, Err(FieldError::WrongType));
            return Ok(());
        }
        self.i += 1;
        let mut seen = 0u8;
        if self.next_token()? == b'}' {
            self.i += 1;
        } else {
            // The keys are expected in their declared order: the next one is
            // compared in place before any key is scanned and looked up.
            let mut next = 0;
            loop {
                let expected = match (self.next_token()?, QUOTED_PREDICTION.get(next)) {
                    (b'"', Some(want)) => {
                        let len = PREDICTION_KEYS.get(next).map_or(0, |k| k.len());
                        let text = self.b.get(self.i + 1..).unwrap_or_default();
                        starts_with_padded(text, want, len).then_some((next, len))
                    }
                    _ => None,
                };
                let p = match expected {
                    Some((p, len)) => {
                        self.matched_key(len)?;
                        Some(p)
                    }
                    None => name_index(self.key()?, &PREDICTION_KEYS),
                };
                next = p.map_or(next, |p| p + 1);
                match p {
                    Some(p) => {
                        let id = F_PREDICTION + 1 + p;
                        let field = FIELDS.get(id).copied().unwrap_or(FIELDS[F_PREDICTION]);
                        let r = self.field_value(field, 2)?;
                        checks.set(id, r);
                        seen |= 1 << p;
                    }
                    None => self.skip_value(2)?,
                }
                if !self.after_member()? {
                    break;
                }
            }
        }
        for p in 0..PREDICTION_KEYS.len() {
            if seen & (1 << p) == 0 {
                checks.set(F_PREDICTION + 1 + p, Err(FieldError::Missing));
            }
        }
        Ok(())
    }

    /// A top-level `dendrite` or `axon` value at `i` (`base`: [`F_DENDRITE`]
    /// or [`F_AXON`]): an object whose terminal keys are checked, or
    /// `null`. Answers the layout the answer needs of an `axon`.
    #[inline(never)]
    pub(super) fn read_terminal(
        &mut self,
        base: usize,
        checks: &mut Checks,
        order: &mut KeyOrder,
    ) -> Result<AxonLayout, ParseError> {
        checks.clear(base, 1 + N_TERMINAL);
        let mut a = AxonLayout::default();
        match self.peek() {
            Some(b'{') => {}
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(a);
            }
            _ => {
                self.skip_value(1)?;
                checks.set(base, Err(FieldError::WrongType));
                return Ok(a);
            }
        }
        a.object = true;
        self.i += 1;
        if self.next_token()? == b'}' {
            self.i += 1;
            return Ok(a);
        }
        // Clients write the terminal keys in one order: the key `order`
        // expects after the last one is compared in place (its text and
        // closing quote) before any key is scanned and looked up.
        let mut prev = N_TERMINAL;
        loop {
            let guess = order.terminal_guess(prev);
            let t = if self.next_token()? == b'"'
                && is_quoted_terminal(self.b.get(self.i + 1..).unwrap_or_default(), guess)
            {
                self.matched_key(TERMINAL_KEYS.get(guess).map_or(0, |k| k.len()))?;
                Some(guess)
            } else {
                let t = terminal_index(self.key()?);
                if let Some(t) = t {
                    order.learn_terminal(prev, t);
                }
                t
            };
            a.members += 1;
            let start = self.i;
            if let Some(t) = t {
                prev = t;
                let id = base + 1 + t;
                let field = FIELDS.get(id).copied().unwrap_or(FIELDS[base]);
                // A member of the block (level 2) holds level-3 values.
                let r = self.field_value(field, 2)?;
                checks.set(id, r);
                a.present |= 1 << t;
                if let Some(slot) = a.status.get_mut(t) {
                    *slot = Some(Span { start, end: self.i });
                }
            } else {
                self.skip_value(2)?;
            }
            if !self.after_member()? {
                return Ok(a);
            }
        }
    }
}

/// `NaN` or an infinity for a field of kind `kind`.
fn non_finite(kind: Kind, nan_ok: bool) -> Result<(), FieldError> {
    if nan_ok {
        Ok(())
    } else if matches!(kind, Kind::Str | Kind::Object) {
        Err(FieldError::WrongType)
    } else {
        Err(FieldError::NonFinite)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::{parse_request, ParseError};
    use std::format;

    const FEATURES: &str = r#""features": {"session_id": "s1", "conversation_duration_seconds": 120.5, "has_target_entity": 1, "entities_collected_count": 3, "message_ratio": 1.2}"#;

    /// Each line: `ok` or `refused`, `|`, then members added to a synapse
    /// body. The answers were taken from a `bt.Synapse` subclass declaring
    /// `ConversionSynapse`'s fields, built by `S(**json.loads(body))` under
    /// bittensor 9.4.0 (pydantic 2.11.4) and 10.5.0 (pydantic 2.14.4), which
    /// agree on every line.
    const CASES: &str = include_str!("fields_cases.txt");

    #[test]
    fn synapse_fields_take_what_the_synapse_takes() {
        let mut n = 0;
        for line in CASES.lines() {
            let (want, members) = line.split_once('|').unwrap();
            for body in [
                format!("{{{FEATURES}, {members}}}"),
                format!("{{{members}, {FEATURES}}}"),
            ] {
                let got = parse_request(body.as_bytes());
                assert_eq!(got.is_ok(), want == "ok", "{body}: {got:?}");
                n += 1;
            }
        }
        assert!(n > 150);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                r#""axon": {"port": "12.0"}"#,
                ParseError::BadNumericString("axon.port"),
            ),
            (r#""dendrite": 5"#, ParseError::WrongType("dendrite")),
            (
                r#""dendrite": {"ip": 5}"#,
                ParseError::WrongType("dendrite.ip"),
            ),
            (
                r#""dendrite": {"nonce": NaN}"#,
                ParseError::NonFinite("dendrite.nonce"),
            ),
            (r#""miner_uid": 1.5"#, ParseError::NotWhole("miner_uid")),
            (r#""miner_uid": null"#, ParseError::WrongType("miner_uid")),
            (
                r#""prediction": {"conversion_happened": 1}"#,
                ParseError::MissingRequired("prediction.time_to_conversion_seconds"),
            ),
            (r#""prediction": null"#, ParseError::WrongType("prediction")),
            (
                r#""computed_body_hash": 0"#,
                ParseError::WrongType("computed_body_hash"),
            ),
        ];
        for (members, want) in cases {
            let body = format!("{{{FEATURES}, {members}}}");
            assert_eq!(parse_request(body.as_bytes()), Err(want), "{body}");
        }
        let e = ParseError::BadNumericString("axon.port");
        assert_eq!(
            format!("{e}"),
            "axon.port: a string that does not read as one; expected an integer as Python's int() reads it, or null"
        );
    }

    #[test]
    fn prediction_keys_in_any_order_and_spelling() {
        let ok = [
            r#""prediction": {"conversion_happened": 0, "time_to_conversion_seconds": -1.0}"#,
            r#""prediction": {"time_to_conversion_seconds": -1.0, "conversion_happened": 0}"#,
            r#""prediction": {"conversion_happened":0,"time_to_conversion_seconds":-1.0}"#,
            r#""prediction": {"conversion_happened": 0, "x": 1, "time_to_conversion_seconds": 2}"#,
            r#""prediction": {"conversion_happened": "x", "conversion_happened": 1, "time_to_conversion_seconds": 2}"#,
        ];
        for members in ok {
            let body = format!("{{{FEATURES}, {members}}}");
            assert!(parse_request(body.as_bytes()).is_ok(), "{body}");
        }
        let refused = [
            (
                r#""prediction": {"conversion_happenedx": 0, "time_to_conversion_seconds": 1}"#,
                ParseError::MissingRequired("prediction.conversion_happened"),
            ),
            (
                r#""prediction": {"conversion_happened": 0, "time_to_conversion_second": 1}"#,
                ParseError::MissingRequired("prediction.time_to_conversion_seconds"),
            ),
            (
                r#""prediction": {"conversion_happened": 0.5, "time_to_conversion_seconds": 1}"#,
                ParseError::NotWhole("prediction.conversion_happened"),
            ),
        ];
        for (members, want) in refused {
            let body = format!("{{{FEATURES}, {members}}}");
            assert_eq!(parse_request(body.as_bytes()), Err(want), "{body}");
        }
    }

    #[test]
    fn a_bare_features_object_is_not_a_synapse() {
        // ConversationFeatures ignores keys it does not declare.
        let body = r#"{"session_id": "s1", "conversation_duration_seconds": 120.5, "has_target_entity": 1, "entities_collected_count": 3, "message_ratio": 1.2, "miner_uid": "x", "axon": 5}"#;
        assert!(parse_request(body.as_bytes()).is_ok());
    }
}
