//! Numeric strings: what the subnet's pydantic synapse makes of a JSON
//! string given for an `int` or `float` feature, without allocating.
//!
//! The validator side is `json.loads` and then pydantic v2 in lax Python
//! mode, which takes `"14"` for an int and `"1e1"` or `"nan"` for a float.
//! Its rules, mapped out against pydantic 2.11.4 (core 2.33.2) and 2.14
//! (both give the same answers; `tests/interop/pydantic_meaning.py` checks
//! the miner against them):
//! - Both kinds first trim Unicode whitespace (`char::is_whitespace`: ASCII
//!   space, `\t\n\v\f\r`, U+0085, U+00A0, U+3000, ...; not U+001C..U+001F,
//!   not U+200B or U+FEFF). Whitespace left inside, or any other non-ASCII
//!   character, makes the string no number.
//! - A float is Rust's `f64` parser on the trimmed text: an optional sign,
//!   digits with an optional `.` (`.5`, `5.`), an optional exponent, or
//!   `inf`, `infinity`, `nan` in any case. If that fails and the string has
//!   no surrounding whitespace, `_` separators are dropped (none at either
//!   end, never two in a row) and it is parsed again, so `1_000.5` and
//!   `1_e1` are numbers but ` 1_0` is not.
//! - An int takes an optional `+` (not before `-`) and `-` (not before a
//!   sign), drops leading zeros (and `_` among them), then a `.` followed
//!   only by zeros, then `_` separators (same placement rule), and the rest
//!   must be a JSON integer (`-?(0|[1-9][0-9]*)`). So `007`, `1_000`,
//!   `14.00` and even `0-5` (-5) are ints, and `1e1`, `0x10`, `1.0_0`, `.0`
//!   are not. Its size is unbounded (`2**70` is fine).
//!
//! The text is decoded from the body into a stack buffer of
//! [`MAX_NUMERIC_TEXT`] bytes (escapes and surrounding whitespace do not
//! count against it). pydantic takes longer strings (to 4,300 digits for an
//! int); the miner refuses them with their own error: no real value comes
//! within an order of magnitude of the limit, and a fixed buffer keeps the
//! core free of allocation.

use super::FieldError;

/// Longest numeric string taken, in bytes, once its JSON escapes are
/// decoded and its surrounding whitespace trimmed.
pub const MAX_NUMERIC_TEXT: usize = 256;

/// The value of the JSON string `raw` (the bytes between its quotes,
/// already checked to be a valid JSON string; `escaped` says whether it
/// holds a `\` escape) for an int (`int`) or float feature. Never
/// inlined: its buffer stays out of the caller's frame, the hot path of
/// ordinary JSON numbers.
#[inline(never)]
pub(super) fn numeric_string(int: bool, raw: &[u8], escaped: bool) -> Result<f64, FieldError> {
    let mut buf = [0u8; MAX_NUMERIC_TEXT];
    let (len, padded) = decoded_trimmed(raw, escaped, &mut buf)?;
    let text = buf.get_mut(..len).ok_or(FieldError::BadString)?;
    if int {
        int_text(text)
    } else {
        float_text(text, padded)
    }
}

/// Whether Python's `int(s)` (`int`) or `float(s)` reads the JSON string
/// `raw`: what bittensor's `cast_int`/`cast_float` validators do with a
/// string given for a synapse or terminal field. Trimmed as above; then
/// an optional sign and digits with single `_` between them (an int), or
/// the same with an optional `.` part and exponent, or `inf`, `infinity`,
/// `nan` in any case (a float). Non-ASCII digits, which Python also reads,
/// are refused; so is text past [`MAX_NUMERIC_TEXT`].
#[inline(never)]
pub(super) fn python_string(int: bool, raw: &[u8], escaped: bool) -> Result<(), FieldError> {
    let mut buf = [0u8; MAX_NUMERIC_TEXT];
    let (len, _) = decoded_trimmed(raw, escaped, &mut buf)?;
    let text = buf.get(..len).ok_or(FieldError::BadString)?;
    let ok = if int {
        python_int(text)
    } else {
        python_float(text)
    };
    if ok {
        Ok(())
    } else {
        Err(FieldError::BadString)
    }
}

/// Digits with single `_` between them, from the start of `s`: the bytes
/// taken (0 if `s` does not start with a digit). A `_` not followed by a
/// digit is left, so the caller sees it.
fn digit_part(s: &[u8]) -> usize {
    let mut n = 0;
    while let Some(&c) = s.get(n) {
        if c.is_ascii_digit() {
            n += 1;
        } else if c == b'_' && n > 0 && s.get(n + 1).is_some_and(u8::is_ascii_digit) {
            n += 2;
        } else {
            break;
        }
    }
    n
}

fn without_sign(s: &[u8]) -> &[u8] {
    match s {
        [b'+' | b'-', rest @ ..] => rest,
        _ => s,
    }
}

/// Python's `int()` grammar on trimmed ASCII text, base 10.
fn python_int(s: &[u8]) -> bool {
    let s = without_sign(s);
    !s.is_empty() && digit_part(s) == s.len()
}

/// Python's `float()` grammar on trimmed ASCII text.
fn python_float(s: &[u8]) -> bool {
    let s = without_sign(s);
    for word in [&b"inf"[..], b"infinity", b"nan"] {
        if s.eq_ignore_ascii_case(word) {
            return true;
        }
    }
    let int = digit_part(s);
    let mut i = int;
    let mut frac = 0;
    if s.get(i) == Some(&b'.') {
        frac = digit_part(s.get(i + 1..).unwrap_or_default());
        i += 1 + frac;
    }
    if int == 0 && frac == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let exp = without_sign(s.get(i + 1..).unwrap_or_default());
        let n = digit_part(exp);
        return n > 0 && n == exp.len();
    }
    i == s.len()
}

/// Copy the chars of a string into `buf` with surrounding whitespace
/// trimmed: the length stored, and whether there was whitespace. Refuses
/// whitespace inside and any non-ASCII character (neither can be part of a
/// number), and text longer than the buffer.
/// The JSON string `raw` (with `\` escapes when `escaped`) decoded and
/// [`trimmed`] into `buf`.
fn decoded_trimmed(raw: &[u8], escaped: bool, buf: &mut [u8]) -> Result<(usize, bool), FieldError> {
    if escaped {
        trimmed(Decoded { raw, i: 0 }, buf)
    } else {
        let s = core::str::from_utf8(raw).map_err(|_| FieldError::BadString)?;
        trimmed(s.chars().map(Some), buf)
    }
}

fn trimmed(
    chars: impl Iterator<Item = Option<char>>,
    buf: &mut [u8],
) -> Result<(usize, bool), FieldError> {
    let mut len = 0;
    let mut padded = false;
    let mut gap = false;
    for c in chars {
        let c = c.ok_or(FieldError::BadString)?;
        if c.is_whitespace() {
            padded = true;
            gap = len > 0;
            continue;
        }
        if gap || !c.is_ascii() {
            return Err(FieldError::BadString);
        }
        let slot = buf.get_mut(len).ok_or(FieldError::StringTooLong)?;
        *slot = c as u8;
        len += 1;
    }
    Ok((len, padded))
}

/// The chars of a string with escapes, decoded; `None` for a surrogate
/// escape (a lone one is not text pydantic can read, and a pair is a
/// character outside the BMP: neither is part of a number).
struct Decoded<'a> {
    raw: &'a [u8],
    i: usize,
}

impl Iterator for Decoded<'_> {
    type Item = Option<char>;

    /// `None` at the end; `Some(None)` for a char that is no text (the
    /// caller stops there).
    fn next(&mut self) -> Option<Option<char>> {
        if self.i >= self.raw.len() {
            return None;
        }
        Some(self.decode())
    }
}

impl Decoded<'_> {
    /// The char at `i`, stepping past it.
    fn decode(&mut self) -> Option<char> {
        let rest = self.raw.get(self.i..)?;
        let (&first, tail) = rest.split_first()?;
        if first != b'\\' {
            // The string was checked to be UTF-8: this byte starts a char
            // whose length it gives.
            let len = match first {
                0..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            self.i += len;
            return core::str::from_utf8(rest.get(..len)?).ok()?.chars().next();
        }
        let (&letter, hex) = tail.split_first()?;
        self.i += 2;
        Some(match letter {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                self.i += 4;
                let digits = core::str::from_utf8(hex.get(..4)?).ok()?;
                return char::from_u32(u32::from_str_radix(digits, 16).ok()?);
            }
            // `"`, `\`, `/` stand for themselves.
            other => char::from(other),
        })
    }
}

/// An int's text (trimmed ASCII), cleaned as pydantic cleans it.
fn int_text(text: &mut [u8]) -> Result<f64, FieldError> {
    let mut s: &mut [u8] = text;
    if let [b'+', rest @ ..] = s {
        if rest.first() == Some(&b'-') {
            return Err(FieldError::BadString);
        }
        s = rest;
    }
    let mut negative = false;
    if let [b'-', rest @ ..] = s {
        if let Some(b'-' | b'+') = rest.first() {
            return Err(FieldError::BadString);
        }
        negative = true;
        s = rest;
    }
    let start = leading_zeros(s).ok_or(FieldError::BadString)?;
    let mut s = s.get_mut(start..).ok_or(FieldError::BadString)?;
    if let Some(dot) = s.iter().position(|&c| c == b'.') {
        let frac = s.get(dot + 1..).unwrap_or_default();
        if !frac.is_empty() && frac.iter().all(|&c| c == b'0') {
            s = s.get_mut(..dot).ok_or(FieldError::BadString)?;
        }
    }
    let n = without_underscores(s).unwrap_or(s.len());
    let mut digits = s.get(..n).ok_or(FieldError::BadString)?;
    // What is left may start with `-` (pydantic reads `0-5` as -5), but
    // only if no sign was taken off before.
    if let [b'-', rest @ ..] = digits {
        if negative {
            return Err(FieldError::BadString);
        }
        negative = true;
        digits = rest;
    }
    // A JSON integer's digits: `0`, or no leading zero.
    let well_formed = match digits {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if !well_formed {
        return Err(FieldError::BadString);
    }
    let v = parse_f64(digits).ok_or(FieldError::BadString)?;
    // An int has no -0.
    Ok(if negative { -v } else { v } + 0.0)
}

/// Where an int's text starts once its leading zeros are dropped, as
/// pydantic drops them: `_` among them goes too; the last zero stays when
/// the zeros are all there is or a `.` follows; a `-` or any other digit
/// ends the run. `None` if the text does not start with a digit or `-`.
fn leading_zeros(s: &[u8]) -> Option<usize> {
    match s.first()? {
        b'0' => {}
        b'1'..=b'9' | b'-' => return Some(0),
        _ => return None,
    }
    for (i, &c) in s.iter().enumerate().skip(1) {
        match c {
            b'0' | b'_' => {}
            b'1'..=b'9' | b'-' => return Some(i),
            b'.' => return Some(i - 1),
            _ => return None,
        }
    }
    Some(s.len() - 1)
}

/// Drop the `_` separators of `s` in place, if they are placed as Python
/// allows (none first or last, never two in a row, at least one): the new
/// length, or `None` (and `s` untouched) if there is nothing to drop.
fn without_underscores(s: &mut [u8]) -> Option<usize> {
    let ok = s.contains(&b'_')
        && s.first() != Some(&b'_')
        && s.last() != Some(&b'_')
        && !s.windows(2).any(|w| w == b"__");
    if !ok {
        return None;
    }
    let mut n = 0;
    for i in 0..s.len() {
        let c = s[i];
        if c != b'_' {
            s[n] = c;
            n += 1;
        }
    }
    Some(n)
}

/// A float's text (trimmed ASCII; `padded` if whitespace was trimmed).
fn float_text(text: &mut [u8], padded: bool) -> Result<f64, FieldError> {
    if let Some(v) = parse_f64(text) {
        return Ok(v);
    }
    // pydantic drops the separators from the untrimmed string, so with
    // whitespace around the retry can never parse.
    if padded {
        return Err(FieldError::BadString);
    }
    let n = without_underscores(text).ok_or(FieldError::BadString)?;
    text.get(..n)
        .and_then(parse_f64)
        .ok_or(FieldError::BadString)
}

/// Rust's own `f64` parser (the one pydantic-core runs) on ASCII text.
fn parse_f64(text: &[u8]) -> Option<f64> {
    core::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    const INT: bool = true;
    const FLOAT: bool = false;

    /// `json.dumps`-style JSON string text of `s` (non-ASCII escaped).
    fn escaped(s: &str) -> std::string::String {
        let mut out = std::string::String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                c => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out += &std::format!("\\u{u:04x}");
                    }
                }
            }
        }
        out
    }

    /// The value of `s` sent as a JSON string, raw and with every
    /// non-ASCII or control character escaped: both must agree.
    fn value(int: bool, s: &str) -> Result<f64, FieldError> {
        let plain = s.chars().all(|c| !c.is_control() || c == '\u{85}') && !s.contains(['"', '\\']);
        let esc = escaped(s);
        let got = numeric_string(int, esc.as_bytes(), esc.contains('\\'));
        if plain {
            let direct = numeric_string(int, s.as_bytes(), false);
            assert_eq!(
                direct.map(f64::to_bits),
                got.map(f64::to_bits),
                "{s:?} raw and escaped"
            );
        }
        got
    }

    fn ok(int: bool, s: &str, want: f64) {
        let got = value(int, s);
        assert_eq!(
            got.map(f64::to_bits),
            Ok(want.to_bits()),
            "{s:?} (int: {int})"
        );
    }

    fn bad(int: bool, s: &str) {
        assert_eq!(
            value(int, s),
            Err(FieldError::BadString),
            "{s:?} (int: {int})"
        );
    }

    // Each expected value below is what pydantic 2.11.4 and 2.14 gave for
    // the same string in a TypedDict int or float field.

    #[test]
    fn int_strings_pydantic_takes() {
        for (s, v) in [
            ("14", 14.0),
            (" 14 ", 14.0),
            ("\t14\n", 14.0),
            ("\u{b}14\u{c}", 14.0),
            ("\u{a0}14\u{a0}", 14.0),
            ("\u{2009}14", 14.0),
            ("\u{3000} 14", 14.0),
            ("\u{85}14", 14.0),
            ("\u{2028}1", 1.0),
            ("\u{1680}1", 1.0),
            ("\u{202f}1", 1.0),
            ("\u{205f}1", 1.0),
            ("14.0", 14.0),
            ("14.000", 14.0),
            ("1_000", 1000.0),
            ("1_0.0", 10.0),
            (" 1_0", 10.0),
            ("1_0 ", 10.0),
            ("+14", 14.0),
            ("-14", -14.0),
            ("+0", 0.0),
            ("-0", 0.0),
            ("-0.0", 0.0),
            ("-00", 0.0),
            ("-00.00", 0.0),
            ("00", 0.0),
            ("007", 7.0),
            ("0_7", 7.0),
            ("0_0", 0.0),
            ("0__1", 1.0),
            ("00_1", 1.0),
            ("-0_1", -1.0),
            ("0-5", -5.0),
            ("9223372036854775807", 9223372036854775807.0),
            ("9223372036854775808", 9223372036854775808.0),
            ("-9223372036854775809", -9223372036854775809.0),
            ("1180591620717411303424", 1180591620717411303424.0),
            ("99999999999999999999.0", 1e20),
        ] {
            ok(INT, s, v);
        }
    }

    #[test]
    fn int_strings_pydantic_refuses() {
        for s in [
            "",
            "  ",
            "1e1",
            "1E1",
            "0x10",
            "0o7",
            "0b1",
            ".5",
            "5.",
            "0.",
            "1.5",
            "-0.5",
            "1.0_0",
            "1_0.0_0",
            "1.0e0",
            "5.0e0",
            "0.5e1",
            "1__0",
            "_1",
            "1_",
            "_",
            "0_",
            "0_.0",
            "1_.5",
            "+_1",
            "-_1",
            "- 14",
            "+-1",
            "-+1",
            "--1",
            "++1",
            "-",
            "+",
            "-0-5",
            "1 2",
            "1,5",
            "14\u{0}",
            "\u{1c}14",
            "\u{200b}1",
            "\u{180e}1",
            "\u{feff}1",
            "\u{661}\u{664}",
            "\u{ff11}\u{ff14}",
            "inf",
            "nan",
            "Infinity",
            "True",
            "true",
            "0.0.0",
            "14.000000000000001",
            "0x",
        ] {
            bad(INT, s);
        }
    }

    #[test]
    fn float_strings_pydantic_takes() {
        for (s, v) in [
            ("14", 14.0),
            (" 14 ", 14.0),
            ("\u{3000} 14", 14.0),
            ("14.0", 14.0),
            ("1.5", 1.5),
            ("-0.5", -0.5),
            ("-0.0", -0.0),
            ("-0", -0.0),
            ("-00.00", -0.0),
            (".5", 0.5),
            ("-.5", -0.5),
            ("+.5", 0.5),
            ("5.", 5.0),
            ("0.", 0.0),
            ("1.e1", 10.0),
            ("5.e1", 50.0),
            ("1e1", 10.0),
            ("1E1", 10.0),
            ("1e+1", 10.0),
            ("1.0e-1", 0.1),
            ("100e-2", 1.0),
            ("1e-400", 0.0),
            ("1e400", f64::INFINITY),
            ("inf", f64::INFINITY),
            ("INF", f64::INFINITY),
            ("iNf", f64::INFINITY),
            ("+inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("infinity", f64::INFINITY),
            ("Infinity", f64::INFINITY),
            ("1_000", 1000.0),
            ("1_000.5", 1000.5),
            ("1.0_0", 1.0),
            ("1_0.0_0", 10.0),
            ("-1_0.0_0", -10.0),
            ("1_e1", 10.0),
            ("1e1_0", 1e10),
            ("1_.5", 1.5),
            ("1._5", 1.5),
            ("+_1", 1.0),
            ("-_1", -1.0),
            ("0_.0", 0.0),
            ("00_1", 1.0),
            ("inf_inity", f64::INFINITY),
            ("14.000000000000001", 14.000000000000002),
            ("9223372036854775808", 9.223372036854776e18),
        ] {
            ok(FLOAT, s, v);
        }
        for s in ["nan", "NaN", "+nan", "-nan", "n_an"] {
            assert!(value(FLOAT, s).is_ok_and(f64::is_nan), "{s}");
        }
    }

    #[test]
    fn float_strings_pydantic_refuses() {
        for s in [
            "",
            "  ",
            "0x10",
            "0o7",
            "e1",
            "1e",
            ".e1",
            ".",
            "1.5.",
            "1e1_",
            "_1.5",
            "1.5_",
            "1.0_",
            "5.00_",
            "1__0",
            " 1_0",
            "1_0 ",
            "  +1_0.0_0  ",
            "0__1",
            "- 14",
            "+-1",
            "--1",
            "0-5",
            "1 2",
            "1,5",
            "True",
            "true",
            "14\u{0}",
            "\u{1c}14",
            "\u{200b}1",
            "\u{661}\u{664}",
            "\u{ff11}\u{ff14}",
            "0x",
            "infinit",
            "nana",
        ] {
            bad(FLOAT, s);
        }
    }

    #[test]
    fn surrogate_escapes_are_no_number() {
        // pydantic: `string_unicode` for a lone surrogate; a pair is a
        // character outside the BMP, never part of a number.
        for raw in [r"\ud800", r"1\udc00", r"\ud83d\ude00 1", r"1\ud83d\ude00"] {
            for int in [INT, FLOAT] {
                assert_eq!(
                    numeric_string(int, raw.as_bytes(), true),
                    Err(FieldError::BadString),
                    "{raw}"
                );
            }
        }
    }

    #[test]
    fn escapes_decode_to_their_characters() {
        for (raw, v) in [
            (r"\u0031\u0034", 14.0),
            (r"\t14\n", 14.0),
            (r"\r\f14\b", f64::NAN),
            (r"\u00a014\u3000", 14.0),
            (r"1\/2", f64::NAN),
            (r"1\u005f000", 1000.0),
        ] {
            let got = numeric_string(INT, raw.as_bytes(), true);
            if v.is_nan() {
                assert_eq!(got, Err(FieldError::BadString), "{raw}");
            } else {
                assert_eq!(got, Ok(v), "{raw}");
            }
        }
    }

    #[test]
    fn the_length_limit_has_its_own_error() {
        let pad = " ".repeat(1000);
        let at = "1".repeat(MAX_NUMERIC_TEXT);
        let over = "1".repeat(MAX_NUMERIC_TEXT + 1);
        for int in [INT, FLOAT] {
            // Whitespace around does not count; the text itself does.
            let s = std::format!("{pad}{at}{pad}");
            assert!(numeric_string(int, s.as_bytes(), false).is_ok());
            assert_eq!(
                numeric_string(int, over.as_bytes(), false),
                Err(FieldError::StringTooLong)
            );
            let esc = "\\u0031".repeat(MAX_NUMERIC_TEXT + 1);
            assert_eq!(
                numeric_string(int, esc.as_bytes(), true),
                Err(FieldError::StringTooLong)
            );
        }
        // 256 digits: a finite f64 (1.1e255), which the f32 feature holds
        // as infinity and the kernels clamp.
        assert_eq!(
            numeric_string(INT, at.as_bytes(), false),
            at.parse::<f64>().map_err(|_| FieldError::BadString)
        );
    }
}
