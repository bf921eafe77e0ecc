//! Request bodies to fixed-size [`Features`], without allocating.
//!
//! A validator sends the whole synapse (`{"name":..., "dendrite":{...},
//! "features":{...}, ...}`); the `predict` CLI may also get a bare features
//! object. Both go through one forward pass over the bytes by a small
//! JSON reader written for this shape: the top-level object is read key by
//! key, a `features` object into one accumulator and feature-named keys at
//! the top level into another, and at the end the nested one wins if a
//! `features` key was seen. Everything else (the `dendrite` block with its
//! 19-digit nonce, `prediction`, keys added by later validator versions) is
//! checked for well-formedness and skipped, never converted to a number.
//!
//! It is hand-written rather than serde-driven because this is the hot path:
//! a general deserializer spent about 5.5 µs on a 2 KB synapse, more than
//! the five networks together. Four things make this one cheap: strings
//! (most of the bytes: keys, hotkeys, signatures) are scanned 16 bytes (SSE2)
//! or eight bytes at a time for the only bytes that need attention; a
//! feature key is first checked against the name that followed the previous
//! feature last time (clients keep one order), and only if that fails is it
//! looked up in a table built at compile time; and ordinary decimals are
//! converted exactly with one multiply or divide, falling back to `core`'s
//! correctly rounded parser only for long or extreme ones.
//!
//! Skipped values are walked with an explicit stack, not recursion, so a
//! hostile `[[[[...` body costs no stack and is refused at [`MAX_DEPTH`].
//! The string, number, literal and skip routines are `#[inline(always)]`:
//! as separate calls they cost 13% of the parse of a 2.2 KB synapse
//! (`predict/stage/parse` 1.57 -> 1.31 µs once inlined, 2026-11-26).
//! All strings are checked as JSON strings (escapes, surrogate pairs, no raw
//! control characters) and as UTF-8. Every error about a field names it.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

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

/// What was wrong with the JSON text itself, in a few kinds that mean
/// something to a client.
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
    let mut r = Reader { b: body, i: 0 };
    match r.next_token()? {
        b'{' => {}
        b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
            return Err(ParseError::NotAnObject)
        }
        _ => return Err(json(JsonError::UnexpectedChar)),
    }
    let mut accs = Accs {
        top: Features::EMPTY,
        nested: Features::EMPTY,
        saw_features: false,
    };
    r.read_object(&mut accs, false)?;
    r.skip_ws();
    if r.i < body.len() {
        return Err(json(JsonError::TrailingCharacters));
    }
    let acc = if accs.saw_features {
        accs.nested
    } else {
        accs.top
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

fn json(e: JsonError) -> ParseError {
    ParseError::Json(e)
}

/// The two accumulators: feature keys at the top level (a bare features
/// object) and inside `features` (a synapse body).
struct Accs<'a> {
    top: Features<'a>,
    nested: Features<'a>,
    saw_features: bool,
}

impl<'a> Accs<'a> {
    fn get(&mut self, nested: bool) -> &mut Features<'a> {
        if nested {
            &mut self.nested
        } else {
            &mut self.top
        }
    }
}

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
/// Bytes per word in the string scan.
const WORD: usize = 8;

/// High bit set in the byte(s) of `v` that are zero. Bytes above the first
/// zero byte may be flagged falsely (a borrow runs upward), the lowest flag
/// is always right, and the scan only ever uses the lowest.
#[inline(always)]
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(ONES) & !v & HIGH
}

/// Flags (lowest one exact) on the bytes a string scan must stop at: `"`,
/// `\`, control characters, and, while `high` is [`HIGH`], non-ASCII bytes.
#[inline(always)]
const fn string_stops(w: u64, high: u64) -> u64 {
    let quote = zero_bytes(w ^ (ONES * b'"' as u64));
    let backslash = zero_bytes(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control | (w & high)
}

/// Powers of ten that are exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];
/// Largest integer every f64 below it represents exactly.
const EXACT_INT: u64 = 1 << 53;
/// Most decimal digits a u64 mantissa accumulates without overflow.
const MAX_DIGITS: u32 = 19;
/// Exponent digits beyond this magnitude all mean "overflow or zero".
const EXP_CAP: i32 = 100_000;

/// Slots in the feature-name table (a power of two, over twice [`N_FEATURES`]).
const KEY_SLOTS: usize = 128;
/// Shortest feature name; shorter keys are not looked up.
const MIN_NAME: usize = WORD;

/// Eight bytes of `k` from `at`, little-endian. The caller keeps
/// `at + 8 <= k.len()`; a `const fn` so the key table and the lookup hash
/// with the very same code.
#[inline(always)]
const fn load8(k: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        k[at],
        k[at + 1],
        k[at + 2],
        k[at + 3],
        k[at + 4],
        k[at + 5],
        k[at + 6],
        k[at + 7],
    ])
}

/// [`load8`] for the lookup path: one unaligned load where the
/// `const` version assembles bytes. Same value for the same bytes.
#[inline(always)]
fn word_at(k: &[u8], at: usize) -> u64 {
    let mut w = [0u8; WORD];
    if let Some(s) = k.get(at..at + WORD) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// Byte equality of two keys of at least [`WORD`] bytes, a word at a time
/// (the last word overlaps the one before it). Inline, where `==` on
/// slices calls `memcmp`, which cost more than the comparing.
#[inline(always)]
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() || n < WORD {
        return n == b.len() && a == b;
    }
    let mut at = 0;
    while at + WORD < n {
        if word_at(a, at) != word_at(b, at) {
            return false;
        }
        at += WORD;
    }
    word_at(a, n - WORD) == word_at(b, n - WORD)
}

/// Hash of a key of at least [`MIN_NAME`] bytes from its first and last
/// eight bytes and its length, mixed by one multiply; the top bits index
/// the table.
#[inline(always)]
const fn mix(first: u64, last: u64, n: usize) -> usize {
    let mixed = (first ^ last.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - KEY_SLOTS.trailing_zeros())) as usize
}

/// [`mix`] of a key, at compile time.
const fn key_hash_const(k: &[u8]) -> usize {
    mix(load8(k, 0), load8(k, k.len() - WORD), k.len())
}

/// [`mix`] of a key, at run time (the caller checked `k.len() >= WORD`).
#[inline(always)]
fn key_hash(k: &[u8]) -> usize {
    mix(word_at(k, 0), word_at(k, k.len() - WORD), k.len())
}

/// Feature index + 1 by hash slot (0 = empty), with linear probing.
static KEY_TABLE: [u8; KEY_SLOTS] = build_key_table();

const fn build_key_table() -> [u8; KEY_SLOTS] {
    assert!(KEY_SLOTS.is_power_of_two() && KEY_SLOTS >= 2 * N_FEATURES);
    let mut t = [0u8; KEY_SLOTS];
    let mut i = 0;
    while i < N_FEATURES {
        let k = FEATURE_NAMES[i].as_bytes();
        assert!(k.len() >= MIN_NAME);
        let mut h = key_hash_const(k);
        while t[h] != 0 {
            h = (h + 1) & (KEY_SLOTS - 1);
        }
        t[h] = (i + 1) as u8;
        i += 1;
    }
    t
}

/// The schema index of a feature name, if `key` is one.
#[inline]
fn feature_index(key: &[u8]) -> Option<usize> {
    if key.len() < MIN_NAME {
        return None;
    }
    let mut h = key_hash(key);
    loop {
        let slot = *KEY_TABLE.get(h)?;
        let i = usize::from(slot).checked_sub(1)?;
        if same_key(FEATURE_NAMES.get(i)?.as_bytes(), key) {
            return Some(i);
        }
        h = (h + 1) & (KEY_SLOTS - 1);
    }
}

/// Bytes compared when checking a key against an expected feature name:
/// the longest name and its closing quote fit.
const NAME_PAD: usize = 32;

/// Each feature name followed by `"` and zero padding, for [`Reader::key_is`].
static QUOTED_NAMES: [[u8; NAME_PAD]; N_FEATURES] = {
    let mut t = [[0u8; NAME_PAD]; N_FEATURES];
    let mut i = 0;
    while i < N_FEATURES {
        let k = FEATURE_NAMES[i].as_bytes();
        assert!(k.len() < NAME_PAD);
        let mut j = 0;
        while j < k.len() {
            t[i][j] = k[j];
            j += 1;
        }
        t[i][k.len()] = b'"';
        i += 1;
    }
    t
};

/// Which feature key to expect after feature `i` (index `N_FEATURES`: at
/// the start of an object): the one that followed it last time. A client
/// sends its features in one fixed order, so after the first request almost
/// every key is the expected one, and [`Reader::key_is`] confirms it with
/// two 16-byte compares where the general path scans the string, hashes it
/// and compares it with a table entry (`predict/stage/parse` of a 2.2 KB
/// synapse went from 1.85 to 1.56 µs, `cargo bench --bench predict`,
/// 2026-11-26). It starts out as the schema
/// order. A hint only: a stale or torn value costs a few nanoseconds, never
/// a different result, so relaxed atomics (plain loads and stores) suffice
/// across the server's threads.
static NEXT_KEY: [AtomicU8; N_FEATURES + 1] = {
    let mut t = [const { AtomicU8::new(0) }; N_FEATURES + 1];
    let mut i = 0;
    while i < N_FEATURES {
        t[i] = AtomicU8::new((i + 1) as u8);
        i += 1;
    }
    t
};

/// Whether the first `n` (at most [`NAME_PAD`]) bytes of `a` and `b` agree;
/// both hold at least [`NAME_PAD`] bytes.
#[inline(always)]
fn equal_prefix(a: &[u8], b: &[u8; NAME_PAD], n: usize) -> bool {
    let need = if n >= NAME_PAD {
        u32::MAX
    } else {
        (1u32 << n) - 1
    };
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8};
        const { assert!(NAME_PAD == 32) };
        if let Some(a) = a.get(..NAME_PAD) {
            // SAFETY: SSE2 is enabled on all of x86_64; both sides hold 32
            // readable bytes, read as two unaligned 16-byte loads each.
            let same = unsafe {
                let (pa, pb) = (a.as_ptr().cast::<__m128i>(), b.as_ptr().cast::<__m128i>());
                let lo = _mm_cmpeq_epi8(_mm_loadu_si128(pa), _mm_loadu_si128(pb));
                let hi = _mm_cmpeq_epi8(_mm_loadu_si128(pa.add(1)), _mm_loadu_si128(pb.add(1)));
                (_mm_movemask_epi8(lo) as u32 & 0xFFFF) | ((_mm_movemask_epi8(hi) as u32) << 16)
            };
            return same & need == need;
        }
        false
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
    {
        // A word at a time, the last word masked to the bytes still wanted.
        let _ = need;
        if a.len() < NAME_PAD {
            return false;
        }
        let mut at = 0;
        while at < n {
            let left = n - at;
            let mask = if left >= WORD {
                u64::MAX
            } else {
                (1u64 << (8 * left)) - 1
            };
            if (word_at(a, at) ^ word_at(b, at)) & mask != 0 {
                return false;
            }
            at += WORD;
        }
        true
    }
}

/// A number's text, scanned: where it is, and its value when the scan
/// could compute it exactly on the way.
struct Scanned {
    start: usize,
    end: usize,
    fast: Option<f64>,
}

/// A cursor over the body. Every method leaves `i` just past what it read.
struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline(always)]
    fn next_token(&mut self) -> Result<u8, ParseError> {
        self.skip_ws();
        self.peek().ok_or(json(JsonError::UnexpectedEnd))
    }

    #[inline(always)]
    fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.next_token()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(json(JsonError::UnexpectedChar))
        }
    }

    /// A member's key and the `:` after it; the raw bytes between the quotes.
    #[inline(always)]
    fn key(&mut self) -> Result<&'a [u8], ParseError> {
        self.expect(b'"')?;
        let k = self.string_body()?;
        self.expect(b':')?;
        Ok(k)
    }

    /// Past the `,` (true) or `}` (false) after an object member.
    #[inline(always)]
    fn after_member(&mut self) -> Result<bool, ParseError> {
        let more = match self.next_token()? {
            b',' => true,
            b'}' => false,
            _ => return Err(json(JsonError::UnexpectedChar)),
        };
        self.i += 1;
        Ok(more)
    }

    /// Read the object whose `{` is at `i`: the top level, or (`nested`)
    /// the synapse's `features`.
    fn read_object(&mut self, accs: &mut Accs<'a>, nested: bool) -> Result<(), ParseError> {
        self.i += 1;
        if self.next_token()? == b'}' {
            self.i += 1;
            return Ok(());
        }
        // The feature read last in this object (`N_FEATURES`: none yet).
        let mut prev = N_FEATURES;
        loop {
            let guess = NEXT_KEY
                .get(prev)
                .map_or(N_FEATURES, |g| usize::from(g.load(Relaxed)));
            // A synapse's top level holds no features: guess there only
            // once one was seen (a bare features object).
            let guessing = nested || prev != N_FEATURES;
            let fi = if self.next_token()? == b'"' && guessing && self.key_is(guess) {
                self.expect(b':')?;
                guess
            } else {
                let key = self.key()?;
                self.skip_ws();
                match feature_index(key) {
                    Some(fi) => {
                        if let Some(hint) = NEXT_KEY.get(prev) {
                            hint.store(fi as u8, Relaxed);
                        }
                        fi
                    }
                    None => {
                        // Its own loop exit: folding both kinds of member
                        // into one tail (an `Option` of the feature, one
                        // `after_member`) measured 4-9% slower in the parse.
                        self.other_member(key, accs, nested)?;
                        if !self.after_member()? {
                            return Ok(());
                        }
                        continue;
                    }
                }
            };
            self.skip_ws();
            prev = fi;
            let field = name(fi);
            let v = self.feature_value(field)?;
            let x = check_value(fi, field, v)?;
            let acc = accs.get(nested);
            if let Some(slot) = acc.values.get_mut(fi) {
                *slot = x;
            }
            acc.present |= 1u64 << fi;
            if !self.after_member()? {
                return Ok(());
            }
        }
    }

    /// The value of a member whose key is not a feature name: the session
    /// id, the synapse's `features`, or anything else (checked and skipped).
    #[inline(always)]
    fn other_member(
        &mut self,
        key: &[u8],
        accs: &mut Accs<'a>,
        nested: bool,
    ) -> Result<(), ParseError> {
        if key == SESSION_ID.as_bytes() {
            accs.get(nested).session_id = Some(self.session_id()?);
        } else if !nested && key == FEATURES_KEY.as_bytes() {
            accs.saw_features = true;
            match self.peek() {
                Some(b'{') => self.read_object(accs, true)?,
                Some(_) => return Err(ParseError::WrongType(FEATURES_KEY)),
                None => return Err(json(JsonError::UnexpectedEnd)),
            }
        } else {
            // The member's value sits one level below this object.
            self.skip_value(if nested { 2 } else { 1 })?;
        }
        Ok(())
    }

    /// Whether the string whose opening quote is at `i` is exactly the
    /// name of feature `g`; if it is, steps past its closing quote. Any
    /// doubt (an unknown `g`, fewer than [`NAME_PAD`] bytes left, a longer
    /// key, an escape) answers false, and the caller reads the key the
    /// general way: this is a shortcut, never a different answer.
    #[inline(always)]
    fn key_is(&mut self, g: usize) -> bool {
        let (Some(want), Some(len)) = (QUOTED_NAMES.get(g), FEATURE_NAMES.get(g)) else {
            return false;
        };
        // The name and its closing quote.
        let n = len.len() + 1;
        let Some(text) = self.b.get(self.i + 1..self.i + 1 + NAME_PAD) else {
            return false;
        };
        if equal_prefix(text, want, n) {
            self.i += 1 + n;
            true
        } else {
            false
        }
    }

    /// The value of a feature key: a number, or `null` (refused as not finite).
    #[inline(always)]
    fn feature_value(&mut self, field: &'static str) -> Result<f64, ParseError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => {
                let s = self.number().map_err(|e| match e {
                    JsonError::UnexpectedEnd => json(e),
                    _ => ParseError::WrongType(field),
                })?;
                match s.fast {
                    Some(v) => Ok(v),
                    None => self.slow_number(&s).ok_or(ParseError::WrongType(field)),
                }
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Err(ParseError::NonFinite(field))
            }
            Some(_) => Err(ParseError::WrongType(field)),
            None => Err(json(JsonError::UnexpectedEnd)),
        }
    }

    /// The value of `session_id`: a string, kept as the text between the quotes.
    fn session_id(&mut self) -> Result<&'a str, ParseError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                let s = self.string_body()?;
                core::str::from_utf8(s).map_err(|_| json(JsonError::BadString))
            }
            Some(_) => Err(ParseError::WrongType(SESSION_ID)),
            None => Err(json(JsonError::UnexpectedEnd)),
        }
    }

    /// The rest of a string whose opening quote is just behind `i`: checked
    /// (escapes, no raw control characters, UTF-8) and returned raw.
    #[inline(always)]
    fn string_body(&mut self) -> Result<&'a [u8], ParseError> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // Until a non-ASCII byte is seen the scan stops at those too; after
        // one it stops only for the other bytes, and UTF-8 is checked once
        // at the end.
        let mut ascii = true;
        loop {
            i = skip_plain(b, i, ascii);
            match b.get(i) {
                None => return Err(json(JsonError::UnexpectedEnd)),
                Some(b'"') => {
                    let s = b.get(start..i).unwrap_or_default();
                    self.i = i + 1;
                    if !ascii && core::str::from_utf8(s).is_err() {
                        return Err(json(JsonError::BadString));
                    }
                    return Ok(s);
                }
                Some(b'\\') => i = escape_end(b, i + 1)?,
                Some(0..=0x1f) => return Err(json(JsonError::BadString)),
                Some(0x80..=0xff) => {
                    ascii = false;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
    }

    /// Exactly `lit` (`true`, `false`, `null`).
    #[inline(always)]
    fn literal(&mut self, lit: &[u8]) -> Result<(), ParseError> {
        if self.b.get(self.i..self.i + lit.len()) == Some(lit) {
            self.i += lit.len();
            return Ok(());
        }
        // Not the literal: find the first wrong byte to say which error.
        for (k, &c) in lit.iter().enumerate() {
            match self.b.get(self.i + k) {
                None => return Err(json(JsonError::UnexpectedEnd)),
                Some(&x) if x == c => {}
                Some(_) => return Err(json(JsonError::BadLiteral)),
            }
        }
        self.i += lit.len();
        Ok(())
    }

    /// A JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
    /// with its value when at most 19 digits and a power of ten up to 22
    /// make it exact: an integer below 2^53 times or divided by an exact
    /// power of ten is one correctly rounded operation.
    #[inline(always)]
    fn number(&mut self) -> Result<Scanned, JsonError> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut mant = 0u64;
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = digits(b, i, &mut mant),
            Some(_) => return Err(JsonError::BadLiteral),
            None => return Err(JsonError::UnexpectedEnd),
        }
        let mut n_digits = i - int_start;
        let mut scale = 0i32;
        if b.get(i) == Some(&b'.') {
            let frac_start = i + 1;
            i = digits(b, frac_start, &mut mant);
            let n_frac = i - frac_start;
            if n_frac == 0 {
                return Err(end_or(b, i, JsonError::BadLiteral));
            }
            n_digits += n_frac;
            scale = -(n_frac.min(EXP_CAP as usize) as i32);
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            let eneg = b.get(i) == Some(&b'-');
            if let Some(b'-' | b'+') = b.get(i) {
                i += 1;
            }
            let exp_start = i;
            let mut e = 0i32;
            while let Some(&c @ b'0'..=b'9') = b.get(i) {
                e = (e * 10 + i32::from(c - b'0')).min(EXP_CAP);
                i += 1;
            }
            if i == exp_start {
                return Err(end_or(b, i, JsonError::BadLiteral));
            }
            scale = scale.saturating_add(if eneg { -e } else { e });
        }
        self.i = i;
        // Past MAX_DIGITS the mantissa has wrapped; leave it to the slow path.
        let fast = if n_digits as u32 <= MAX_DIGITS && mant < EXACT_INT {
            let m = mant as f64;
            let v = if scale >= 0 {
                POW10.get(scale as usize).map(|p| m * p)
            } else {
                POW10.get(scale.unsigned_abs() as usize).map(|p| m / p)
            };
            v.map(|v| if neg { -v } else { v })
        } else {
            None
        };
        Ok(Scanned {
            start,
            end: i,
            fast,
        })
    }

    /// A number the fast path could not take, by `core`'s correctly
    /// rounded parser (huge exponents give infinity or zero).
    fn slow_number(&self, s: &Scanned) -> Option<f64> {
        let text = core::str::from_utf8(self.b.get(s.start..s.end)?).ok()?;
        text.parse::<f64>().ok()
    }

    /// Check and step over one value of any kind. `depth` is the nesting
    /// level of the object or array holding it (the top object is 1).
    #[inline(always)]
    fn skip_value(&mut self, depth: usize) -> Result<(), ParseError> {
        // Bit k: whether the k-th open container (innermost = bit 0) is an object.
        let mut objects: u64 = 0;
        let mut open = 0usize;
        loop {
            // A value starts here.
            match self.next_token()? {
                b'"' => {
                    self.i += 1;
                    self.string_body()?;
                }
                b'-' | b'0'..=b'9' => {
                    self.number().map_err(json)?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                c @ (b'{' | b'[') => {
                    if depth + open >= MAX_DEPTH {
                        return Err(json(JsonError::TooDeep));
                    }
                    self.i += 1;
                    let is_object = c == b'{';
                    let close = if is_object { b'}' } else { b']' };
                    if self.next_token()? == close {
                        self.i += 1;
                    } else {
                        objects = (objects << 1) | u64::from(is_object);
                        open += 1;
                        if is_object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => return Err(json(JsonError::UnexpectedChar)),
            }
            // A value ended: close containers until one has a next element.
            loop {
                if open == 0 {
                    return Ok(());
                }
                let is_object = objects & 1 == 1;
                match self.next_token()? {
                    b',' => {
                        self.i += 1;
                        if is_object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if is_object => self.i += 1,
                    b']' if !is_object => self.i += 1,
                    _ => return Err(json(JsonError::UnexpectedChar)),
                }
                objects >>= 1;
                open -= 1;
            }
        }
    }
}

/// Where the escape whose letter is at `i` (just past a `\`) ends. `\u`
/// takes four hex digits; like Python's `json`, a lone surrogate is let
/// through (the text is never decoded here).
fn escape_end(b: &[u8], i: usize) -> Result<usize, ParseError> {
    match b.get(i) {
        None => Err(json(JsonError::UnexpectedEnd)),
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
        Some(b'u') => {
            for k in 1..=4 {
                match b.get(i + k) {
                    None => return Err(json(JsonError::UnexpectedEnd)),
                    Some(c) if c.is_ascii_hexdigit() => {}
                    Some(_) => return Err(json(JsonError::BadString)),
                }
            }
            Ok(i + 5)
        }
        Some(_) => Err(json(JsonError::BadString)),
    }
}

/// The first index from `i` that may need attention inside a string (see
/// [`string_stops`]), or where fewer than a block's bytes are left (the
/// caller then goes byte by byte). x86_64 looks at 16 bytes per step with
/// SSE2, which every x86_64 CPU has; elsewhere a word at a time.
#[inline(always)]
fn skip_plain(b: &[u8], mut i: usize, ascii: bool) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        const BLOCK: usize = 16;
        while let Some(chunk) = b.get(i..i + BLOCK) {
            // SAFETY: this block is compiled only where SSE2 is enabled
            // (all of x86_64); `chunk` is 16 readable bytes and the load
            // has no alignment requirement.
            let stops = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                // Unsigned v <= 0x1f exactly when max(v, 0x1f) == 0x1f.
                let low = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
                let special = _mm_or_si128(_mm_or_si128(quote, backslash), control);
                let non_ascii = if ascii { _mm_movemask_epi8(v) } else { 0 };
                (_mm_movemask_epi8(special) | non_ascii) as u32
            };
            if stops != 0 {
                return i + stops.trailing_zeros() as usize;
            }
            i += BLOCK;
        }
    }
    let high = if ascii { HIGH } else { 0 };
    while let Some(chunk) = b.get(i..i + WORD) {
        let mut w = [0u8; WORD];
        w.copy_from_slice(chunk);
        let stops = string_stops(u64::from_le_bytes(w), high);
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += WORD;
    }
    i
}

/// Past the run of decimal digits at `i`, folding them into `mant`
/// (wrapping: the caller counts digits and distrusts more than 19).
#[inline(always)]
fn digits(b: &[u8], mut i: usize, mant: &mut u64) -> usize {
    while let Some(&c @ b'0'..=b'9') = b.get(i) {
        *mant = mant.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// `UnexpectedEnd` if `i` is past the body, else `e`.
fn end_or(b: &[u8], i: usize, e: JsonError) -> JsonError {
    if i >= b.len() {
        JsonError::UnexpectedEnd
    } else {
        e
    }
}

/// Check one feature value and narrow it to f32.
fn check_value(i: usize, field: &'static str, v: f64) -> Result<f32, ParseError> {
    if !v.is_finite() {
        return Err(ParseError::NonFinite(field));
    }
    let integer = IS_INTEGER.get(i).copied().unwrap_or(false);
    if integer && v < 0.0 {
        return Err(ParseError::Negative(field));
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

    #[test]
    fn every_feature_name_is_found_and_nothing_near_it() {
        for (i, n) in FEATURE_NAMES.iter().enumerate() {
            let n = n.as_bytes();
            assert_eq!(feature_index(n), Some(i));
            let mut k = n.to_vec();
            for j in 0..k.len() {
                let old = k[j];
                k[j] = b'#';
                assert_eq!(feature_index(&k), None);
                k[j] = old;
            }
            k.push(b's');
            assert_eq!(feature_index(&k), None);
            assert_eq!(feature_index(&n[..n.len() - 1]), None);
        }
        for k in [&b"session_id"[..], b"features", b"", b"x", b"hour"] {
            assert_eq!(feature_index(k), None);
        }
    }

    /// The fast path gives the same bits as core's correctly rounded
    /// parser, across integers, fractions and exponents on both sides of
    /// its limits (2^53, 19 digits, 10^22).
    #[test]
    fn number_values_match_the_core_parser() {
        let mantissas = [
            "0",
            "1",
            "7",
            "12",
            "999",
            "123456789",
            "9007199254740991",
            "9007199254740993",
            "1234567890123456789",
            "12345678901234567890",
        ];
        let mut texts: std::vec::Vec<std::string::String> = std::vec::Vec::new();
        for m in mantissas {
            for sign in ["", "-"] {
                for e in -30i32..=30 {
                    texts.push(std::format!("{sign}{m}e{e}"));
                    texts.push(std::format!("{sign}{m}E+{}", e.abs()));
                }
                for dot in 1..m.len() {
                    let (a, b) = m.split_at(dot);
                    if a.len() > 1 && a.starts_with('0') {
                        continue;
                    }
                    texts.push(std::format!("{sign}{a}.{b}"));
                    texts.push(std::format!("{sign}0.{}{m}", "0".repeat(dot)));
                }
                texts.push(std::format!("{sign}{m}"));
            }
        }
        texts.extend(
            [
                "0.1",
                "0.3",
                "1e400",
                "-1e400",
                "1e-400",
                "2.2250738585072014e-308",
            ]
            .map(Into::into),
        );
        let mut fast = 0;
        for t in &texts {
            let mut r = Reader {
                b: t.as_bytes(),
                i: 0,
            };
            let s = r.number().unwrap();
            assert_eq!(r.i, t.len(), "{t}");
            fast += usize::from(s.fast.is_some());
            let got = s.fast.or_else(|| r.slow_number(&s)).unwrap();
            let want: f64 = t.parse().unwrap();
            assert_eq!(got.to_bits(), want.to_bits(), "{t}");
        }
        assert!(
            fast > texts.len() / 4,
            "fast path taken {fast} of {}",
            texts.len()
        );
    }

    #[test]
    fn digits_reads_a_run_and_its_value() {
        for text in [
            "0",
            "7",
            "12",
            "123",
            "99999999",
            "12345678",
            "123456789012",
            "1x",
            "x",
            "4.5",
            "100e3",
            "987654321,",
        ] {
            let mut padded = std::vec::Vec::from(text.as_bytes());
            let want_len = text.bytes().take_while(u8::is_ascii_digit).count();
            let want: u64 = text[..want_len].parse().unwrap_or(0);
            for pad in [0, 1, 8, 16] {
                padded.resize(text.len() + pad, b' ');
                let mut mant = 0;
                let end = digits(&padded, 0, &mut mant);
                assert_eq!((end, mant), (want_len, want), "{text} + {pad}");
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
        for round in 0..3 {
            for order in [&schema, &reversed, &rotated, &swapped] {
                for _ in 0..2 {
                    let b = all_features(order, "k");
                    let f = parse_request(b.as_bytes()).unwrap();
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
        for key in &near {
            // Teach the hint that `name` follows feature t - 1.
            let mut order = before.clone();
            order.push(t);
            check_all_features(&parse_request(all_features(&order, "p").as_bytes()).unwrap());
            let b = std::format!("{}, \"{key}\": 5}}", &prime[..prime.len() - 1]);
            let f = parse_request(b.as_bytes()).unwrap_or_else(|e| panic!("{b}: {e}"));
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
            parse_request(cut.as_bytes()),
            Err(ParseError::Json(JsonError::UnexpectedEnd))
        );
        assert!(parse_request(full.as_bytes()).unwrap().is_present(t));
    }

    #[test]
    fn equal_prefix_matches_a_byte_compare() {
        let a: [u8; NAME_PAD] = core::array::from_fn(|k| b'a' + k as u8);
        for n in 0..=NAME_PAD {
            assert!(equal_prefix(&a, &a, n), "n {n}");
            for at in 0..NAME_PAD {
                let mut b = a;
                b[at] ^= 0x20;
                assert_eq!(equal_prefix(&a, &b, n), at >= n, "n {n}, differs at {at}");
            }
        }
        // Fewer than NAME_PAD bytes on the text side: never equal.
        assert!(!equal_prefix(&a[..NAME_PAD - 1], &a, 3));
    }
}
