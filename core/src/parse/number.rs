//! JSON numbers to f64, and the rules a feature value must meet.
//!
//! Ordinary decimals (at most 19 digits, a power of ten up to 22) are
//! converted exactly on the way through the digits: an integer below 2^53
//! times or divided by an exact power of ten is one correctly rounded
//! operation. Anything longer or more extreme goes to `core`'s correctly
//! rounded parser, so every number gets the f64 Python's `float()` gives.
//! The digits are read one byte at a time on purpose: an eight-digits-at-
//! once (SWAR) reader measured 10% slower on a features object (993 -> 1106
//! ns for 40 features, 2026-12-07). A feature's number is 1 to 6 digits, the
//! CPU predicts the byte loop's exit well, and the SWAR reader puts three
//! dependent multiplies between one number and the next key.
//!
//! Only the value's shape matters for an integer literal in a bittensor
//! `int()` field (the dendrite's 19-digit nonce, its version, a port), so
//! those are stepped over without accumulating anything
//! ([`Reader::integer_ahead`]), eight digits per step while a whole word
//! is digits (a compare, no multiply, unlike the SWAR reader above). The
//! scan also records whether a literal is an integer, so nothing looks at
//! its text twice, and a feature whose value the fast path computed skips
//! the value rules it meets by construction (finite, and whole when the
//! literal is an integer).
//!
//! The value rules are the subnet's: Python's `json.loads`, then pydantic v2
//! in lax mode on the synapse's `int` and `float` fields (mapped out with
//! pydantic 2.11.4 and 2.14; `tests/interop/pydantic_meaning.py` checks the
//! miner against the real thing). For a JSON number:
//! - an int feature takes any integer literal (negative, or beyond i64:
//!   Python's int has no bound), and a float literal only when it is whole
//!   and strictly inside (-2^63, 2^63) (`5.0`, `-0.0`, `1e1`; not `0.5`,
//!   not `1e20`, not `1e400`, which is infinite);
//! - a float feature takes any float literal, `1e400` (infinity), `NaN`,
//!   `Infinity` and `-Infinity` included, and an integer literal that a
//!   float can hold (not one of 309 digits or more, which rounds past
//!   f64::MAX: Python's `float(int)` overflows);
//! - an integer literal of more than 4,300 digits is no JSON for Python
//!   (`json.loads` refuses it), so it refuses the body.
//!
//! `true` and `false` are 1 and 0 for both kinds, and numeric strings are
//! read by `lax.rs`. The value the model gets is the f64 narrowed to f32 (an
//! int's -0 as 0): beyond f32 it is infinite, and a NaN stays NaN. Nothing
//! here bounds it further: the kernels clamp every network input into
//! +-`INPUT_LIMIT` and take NaN as 0 (`kernels::clamp_input`), one rule for
//! every value, and the answer obeys the output rules whatever the input.

use super::scan::Reader;
use super::{FieldError, JsonError};
use crate::schema::IS_INTEGER;

/// 2^63: a float literal is an int only strictly inside (-2^63, 2^63), the
/// range pydantic's float-to-int conversion takes (`i64::MIN as f64 < v <
/// i64::MAX as f64`).
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
/// Most digits Python's `int()` (so `json.loads`) reads in an integer
/// literal (`sys.get_int_max_str_digits()`, 4300 by default).
pub const MAX_INT_DIGITS: usize = 4300;

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

/// A number's text, scanned: where it is, and its value when the scan
/// could compute it exactly on the way.
pub(super) struct Scanned {
    pub start: usize,
    pub end: usize,
    pub fast: Option<f64>,
    /// Whether the text is an integer literal (no fraction, no exponent).
    /// One of more than [`MAX_INT_DIGITS`] digits never gets this far.
    pub integer: bool,
}

impl Reader<'_> {
    /// A JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`),
    /// with its value when the fast path can compute it exactly.
    #[inline(always)]
    pub fn number(&mut self) -> Result<Scanned, JsonError> {
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
        let int_end = i;
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
        // Python's `json` reads an integer literal with `int()`, which
        // refuses more than MAX_INT_DIGITS digits: the whole body fails,
        // wherever the literal is (a feature, a skipped member, an array).
        if i == int_end && int_end - int_start > MAX_INT_DIGITS {
            return Err(JsonError::LongInteger);
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
            integer: i == int_end,
        })
    }

    /// Step over an integer literal at `i` (`-?(0|[1-9][0-9]*)` with no
    /// fraction or exponent after it) and answer true, without computing its
    /// value. Anything else (a fraction, an exponent, malformed text, more
    /// than [`MAX_INT_DIGITS`] digits) answers false with `i` unchanged, for
    /// [`Reader::number`] to read (and report) the general way.
    #[inline(always)]
    pub fn integer_ahead(&mut self) -> bool {
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = skip_digits(b, i),
            _ => return false,
        }
        if matches!(b.get(i), Some(b'.' | b'e' | b'E')) || i - int_start > MAX_INT_DIGITS {
            return false;
        }
        self.i = i;
        true
    }

    /// The value of a scanned number: the fast path's, or `core`'s
    /// correctly rounded parser's (huge exponents give infinity or zero).
    #[inline(always)]
    pub fn value(&self, s: &Scanned) -> f64 {
        match s.fast {
            Some(v) => v,
            None => self.slow_number(s),
        }
    }

    fn slow_number(&self, s: &Scanned) -> f64 {
        // The scan admitted only ASCII digits, signs, `.` and exponents.
        let text = self
            .b
            .get(s.start..s.end)
            .and_then(|t| core::str::from_utf8(t).ok());
        text.and_then(|t| t.parse::<f64>().ok()).unwrap_or(f64::NAN)
    }
}

/// Past the run of decimal digits at `i`, folding them into `mant`
/// (wrapping: the caller counts digits and distrusts more than 19).
#[inline(always)]
pub(super) fn digits(b: &[u8], mut i: usize, mant: &mut u64) -> usize {
    while let Some(&c @ b'0'..=b'9') = b.get(i) {
        *mant = mant.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        i += 1;
    }
    i
}

/// Past the run of decimal digits at `i`, eight at a time while a whole
/// word is digits (the 19-digit nonce, the 8-digit version), then a byte at
/// a time. A byte is a digit iff its high nibble is 3 and adding 6 leaves
/// it 3; a carry out of a byte needs a byte >= 0xFA, whose own high nibble
/// already fails, so the whole-word test is exact.
#[inline(always)]
pub(super) fn skip_digits(b: &[u8], mut i: usize) -> usize {
    const HIGH_NIBBLES: u64 = u64::from_le_bytes([0xF0; 8]);
    const SIX: u64 = u64::from_le_bytes([0x06; 8]);
    const THREES: u64 = u64::from_le_bytes([0x33; 8]);
    while let Some(chunk) = b.get(i..i + 8) {
        let w = super::scan::word_at(chunk, 0);
        let digits = (w & HIGH_NIBBLES) | ((w.wrapping_add(SIX) & HIGH_NIBBLES) >> 4);
        if digits != THREES {
            break;
        }
        i += 8;
    }
    while let Some(b'0'..=b'9') = b.get(i) {
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

/// Whether feature `i` is an int.
#[inline(always)]
pub(super) fn is_int(i: usize) -> bool {
    IS_INTEGER.get(i).copied().unwrap_or(false)
}

/// The value of feature `i` given as the scanned JSON number `s` (whose
/// f64 is `v`), narrowed to f32.
#[inline(always)]
pub(super) fn check_value(i: usize, s: &Scanned, v: f64) -> Result<f32, FieldError> {
    match s.fast {
        // The fast path's value is finite, below 2^53 * 10^22, and whole
        // when the literal is an integer: the rules below would take it,
        // so only the narrowing is left.
        Some(v) if s.integer || !is_int(i) => Ok(lax_value(i, v)),
        _ => check_number(is_int(i), v, s.integer),
    }
}

/// [`check_value`] for a pydantic `int` (`int`) or `float` field of any
/// model (the features and the synapse's own lax numeric fields), given the
/// number's f64 `v` and whether its literal is an integer ([`Scanned`]).
#[inline(always)]
pub(super) fn check_number(int: bool, v: f64, integer: bool) -> Result<f32, FieldError> {
    // The common cases, decided from the value alone.
    if int {
        if libm::trunc(v) == v && v.abs() < I64_BOUND {
            return Ok(int_f32(v));
        }
    } else if v.is_finite() {
        return Ok(v as f32);
    }
    beyond(int, v, integer)
}

/// [`check_number`] for a value that is no whole number inside the i64
/// range (ints) or infinite (floats): the answer depends on whether the
/// literal is an integer.
#[cold]
#[inline(never)]
fn beyond(int: bool, v: f64, integer: bool) -> Result<f32, FieldError> {
    if integer {
        return if int {
            Ok(int_f32(v))
        } else {
            // Python's `float(int)` overflows.
            Err(FieldError::OutOfRange)
        };
    }
    if int {
        if !v.is_finite() {
            Err(FieldError::NonFinite)
        } else if libm::trunc(v) != v {
            Err(FieldError::NotWhole)
        } else {
            Err(FieldError::OutOfRange)
        }
    } else {
        // A float literal past f64::MAX is infinity to Python.
        Ok(v as f32)
    }
}

/// `NaN`, `Infinity` or `-Infinity` (as `v`) for feature `i`: a float
/// takes it, an int does not.
pub(super) fn non_finite(i: usize, v: f64) -> Result<f32, FieldError> {
    if is_int(i) {
        Err(FieldError::NonFinite)
    } else {
        Ok(v as f32)
    }
}

/// A value from a numeric string, or `true`/`false` (1/0), for feature `i`.
pub(super) fn lax_value(i: usize, v: f64) -> f32 {
    if is_int(i) {
        int_f32(v)
    } else {
        v as f32
    }
}

/// An int's f32: `-0` is 0 (an int has no sign of zero).
#[inline(always)]
fn int_f32(v: f64) -> f32 {
    (v + 0.0) as f32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

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
            let got = r.value(&s);
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
    fn skip_digits_stops_where_digits_does() {
        // Every byte value at every place of a run, with runs of each length.
        for len in 0..20 {
            for at in 0..=len {
                for c in 0..=255u8 {
                    let mut text = std::vec![b'7'; len];
                    text.extend_from_slice(b"12345678901234567890");
                    text[at] = c;
                    let mut mant = 0;
                    let want = digits(&text, 0, &mut mant);
                    assert_eq!(skip_digits(&text, 0), want, "len {len} at {at} byte {c}");
                    // And cut right after the changed byte.
                    let cut = &text[..=at];
                    assert_eq!(
                        skip_digits(cut, 0),
                        digits(cut, 0, &mut mant),
                        "{len} {at} {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn integer_ahead_agrees_with_number() {
        let long = "1".repeat(MAX_INT_DIGITS);
        let longer = "1".repeat(MAX_INT_DIGITS + 1);
        for t in [
            "0",
            "7",
            "-0",
            "-7",
            "01",
            "1795626734383137861",
            "10005000",
            "8091,",
            "1.5",
            "1e3",
            "1E3",
            "-",
            "-x",
            "",
            "x",
            "0.",
            "00",
            "12345678901234567890123",
            long.as_str(),
            longer.as_str(),
            "-1.0e5",
        ] {
            let mut a = Reader {
                b: t.as_bytes(),
                i: 0,
            };
            let mut n = Reader {
                b: t.as_bytes(),
                i: 0,
            };
            let scanned = n.number();
            if a.integer_ahead() {
                // Only where the general scan reads the same integer.
                let s = scanned.as_ref().unwrap_or_else(|e| panic!("{t}: {e:?}"));
                assert!(s.integer, "{t}");
                assert_eq!(a.i, n.i, "{t}");
            } else {
                assert_eq!(a.i, 0, "{t}");
                assert!(scanned.map_or(true, |s| !s.integer), "{t}");
            }
        }
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

    /// The value rules for JSON numbers, with what pydantic 2.11.4 and 2.14
    /// gave for the same literal after `json.loads`.
    #[test]
    fn value_rules() {
        use crate::schema::idx;
        let count = idx::USER_MESSAGES_COUNT;
        let ratio = idx::MESSAGE_RATIO;
        // Through the scan, as the parser reads a feature; the general
        // rules (`check_number`, no fast-path shortcut) must agree.
        let check = |i: usize, text: &str| {
            let mut r = Reader {
                b: text.as_bytes(),
                i: 0,
            };
            let s = r.number()?;
            assert_eq!(r.i, text.len(), "{text}");
            let v = r.value(&s);
            assert_eq!(
                v.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
            let got = check_value(i, &s, v).map(f32::to_bits);
            let general = check_number(is_int(i), v, s.integer).map(f32::to_bits);
            assert_eq!(got, general, "{text}");
            Ok(got)
        };
        let ok = |x: f32| Ok(Ok(x.to_bits()));
        // Int features: whole numbers in any spelling, negatives too.
        assert_eq!(check(count, "5"), ok(5.0));
        assert_eq!(check(count, "5.0"), ok(5.0));
        assert_eq!(check(count, "5e0"), ok(5.0));
        assert_eq!(check(count, "1e1"), ok(10.0));
        assert_eq!(check(count, "-0.0"), ok(0.0));
        assert_eq!(check(count, "-0"), ok(0.0));
        assert_eq!(check(count, "-3"), ok(-3.0));
        assert_eq!(check(count, "-1.0"), ok(-1.0));
        assert_eq!(check(count, "9.2e18"), ok(9.2e18));
        // 2^63 - 1024, the largest f64 below 2^63.
        assert_eq!(
            check(count, "9223372036854774784.0"),
            ok(9223372036854774784.0)
        );
        // An integer literal has no bound (Python's int).
        assert_eq!(
            check(count, "9223372036854775808"),
            ok(9223372036854775808.0)
        );
        assert_eq!(
            check(count, "-9223372036854775809"),
            ok(-9223372036854775808.0)
        );
        assert_eq!(check(count, "1180591620717411303424"), ok(1.1805916e21));
        let huge = "1".repeat(MAX_INT_DIGITS);
        assert_eq!(check(count, &huge), ok(f32::INFINITY));
        assert_eq!(
            check(count, &std::format!("-{huge}")),
            ok(f32::NEG_INFINITY)
        );
        // Fractions (int_from_float), floats outside (-2^63, 2^63)
        // (int_parsing_size), infinite floats (finite_number).
        assert_eq!(check(count, "5.5"), Ok(Err(FieldError::NotWhole)));
        assert_eq!(check(count, "-0.5"), Ok(Err(FieldError::NotWhole)));
        assert_eq!(check(count, "1e-1"), Ok(Err(FieldError::NotWhole)));
        assert_eq!(check(count, "1e20"), Ok(Err(FieldError::OutOfRange)));
        assert_eq!(check(count, "9.3e18"), Ok(Err(FieldError::OutOfRange)));
        assert_eq!(
            check(count, "-9223372036854775808.0"),
            Ok(Err(FieldError::OutOfRange))
        );
        assert_eq!(
            check(count, "9223372036854775807.0"),
            Ok(Err(FieldError::OutOfRange))
        );
        assert_eq!(check(count, "1e308"), Ok(Err(FieldError::OutOfRange)));
        assert_eq!(check(count, "1e400"), Ok(Err(FieldError::NonFinite)));
        assert_eq!(check(count, "-1e400"), Ok(Err(FieldError::NonFinite)));
        assert_eq!(non_finite(count, f64::NAN), Err(FieldError::NonFinite));
        assert_eq!(non_finite(count, f64::INFINITY), Err(FieldError::NonFinite));
        // Float features: any float literal, past f64 too; integer
        // literals that a float holds.
        assert_eq!(check(ratio, "-0.5"), ok(-0.5));
        assert_eq!(check(ratio, "-0.0"), ok(-0.0));
        assert_eq!(check(ratio, "1e20"), ok(1e20));
        assert_eq!(check(ratio, "1e300"), ok(f32::INFINITY));
        assert_eq!(check(ratio, "3.5e38"), ok(f32::INFINITY));
        assert_eq!(check(ratio, "1e400"), ok(f32::INFINITY));
        assert_eq!(check(ratio, "-1e400"), ok(f32::NEG_INFINITY));
        assert_eq!(check(ratio, "1e-400"), ok(0.0));
        let max = "179769313486231570814527423731704356798070567525844996598917476803157260780028538760589558632766878171540458953514382464234321326889464182768467546703537516986049910576551282076245490090389328944075868508455133942304583236903222948165808559332123348274797826204144723168738177180919299881250404026184124858368";
        assert_eq!(check(ratio, max), ok(f32::INFINITY));
        // 2^1024 - 2^970 rounds to 2^1024: `float(int)` overflows (float_type).
        let over = "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
        assert_eq!(check(ratio, over), Ok(Err(FieldError::OutOfRange)));
        assert_eq!(non_finite(ratio, f64::NAN).map(f32::is_nan), Ok(true));
        assert_eq!(non_finite(ratio, f64::NEG_INFINITY), Ok(f32::NEG_INFINITY));
        // Past 4,300 digits Python's json refuses the body, for either kind.
        let long = "1".repeat(MAX_INT_DIGITS + 1);
        for i in [count, ratio] {
            assert_eq!(check(i, &long), Err(JsonError::LongInteger));
            assert_eq!(
                check(i, &std::format!("-{long}")),
                Err(JsonError::LongInteger)
            );
            // A float literal has no such limit.
            assert!(check(i, &std::format!("{long}.0")).is_ok());
        }
        // Lax values: ints lose the sign of zero.
        assert_eq!(lax_value(count, -0.0).to_bits(), 0);
        assert_eq!(lax_value(ratio, -0.0).to_bits(), (-0.0f32).to_bits());
    }
}
