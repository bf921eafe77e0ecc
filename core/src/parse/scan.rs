//! The cursor over the body and the JSON grammar below the level of members:
//! whitespace, strings, literals, and skipping whole values.
//!
//! Strings are most of a synapse's bytes (keys, hotkeys, signatures), so the
//! string scan looks at a block of bytes per step for the only bytes that
//! need attention (`"`, `\`, control characters, and non-ASCII until the
//! first one is seen): 16 bytes with SSE2 on x86_64 (`sse2.rs`), 8 bytes as
//! a `u64` elsewhere. A skipped string, `null` or number is read inline
//! where it is met; objects and arrays go to one out-of-line routine (see
//! the parent module's docs for why) and are walked with an explicit stack, not
//! recursion, so a hostile `[[[[...` costs no stack and is refused at
//! [`MAX_DEPTH`]. Like Python's `json.loads`, `NaN`, `Infinity` and
//! `-Infinity` are values, and a lone surrogate escape (`"\ud800"`) is a
//! valid string (the subnet's pydantic synapse accepts one in a `str` too);
//! string text is checked, never decoded, here.
//!
//! Whitespace is allowed anywhere JSON allows it, but the validator's
//! bodies are written by Python's `json.dumps`, with `", "` between members
//! and `": "` after keys: [`Reader::after_member`] and [`Reader::colon`]
//! take those two bytes in one compare before falling back to the general
//! skip (about 7% of the parse, see the parent module's docs).

use super::{json, JsonError, ParseError, MAX_DEPTH};

/// Bytes per word in the portable string scan and key compares.
pub(super) const WORD: usize = 8;
/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_le_bytes([0x01; 8]);
/// `0x80` in every byte of a word.
const HIGH: u64 = u64::from_le_bytes([0x80; 8]);

/// The non-finite number literals Python's `json` reads.
pub(super) const NAN: &[u8] = b"NaN";
pub(super) const INFINITY: &[u8] = b"Infinity";

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

/// Eight bytes of `k` from `at`, little-endian, zero past the end.
#[inline(always)]
pub(super) fn word_at(k: &[u8], at: usize) -> u64 {
    let mut w = [0u8; WORD];
    if let Some(s) = k.get(at..at + WORD) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

/// A string as it appears between its quotes.
#[derive(Clone, Copy)]
pub(super) struct Str<'a> {
    /// The raw bytes, escapes not decoded.
    pub raw: &'a [u8],
    /// Whether `raw` holds a `\` escape.
    pub escaped: bool,
}

/// A cursor over the body. Every method leaves `i` just past what it read.
pub(super) struct Reader<'a> {
    pub b: &'a [u8],
    pub i: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    pub fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.i += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    #[inline(always)]
    pub fn next_token(&mut self) -> Result<u8, ParseError> {
        self.skip_ws();
        self.peek().ok_or(json(JsonError::UnexpectedEnd))
    }

    #[inline(always)]
    pub fn expect(&mut self, c: u8) -> Result<(), ParseError> {
        if self.next_token()? == c {
            self.i += 1;
            Ok(())
        } else {
            Err(json(JsonError::UnexpectedChar))
        }
    }

    /// A member's key, the `:` after it and any whitespace after that.
    #[inline(always)]
    pub fn key(&mut self) -> Result<Str<'a>, ParseError> {
        self.expect(b'"')?;
        let k = self.string_body()?;
        self.colon()?;
        Ok(k)
    }

    /// Past a key the caller matched in place, without reading it: the
    /// quoted name of `len` bytes at the cursor (what [`Self::key`] would
    /// read, a plain string), then the `:` as [`Self::colon`] reads it.
    #[inline(always)]
    pub fn matched_key(&mut self, len: usize) -> Result<(), ParseError> {
        self.i += 2 + len;
        self.colon()
    }

    /// The `:` after a key (whitespace before it allowed) and any
    /// whitespace after it. `": "`, as Python's `json.dumps` writes it, is
    /// taken in one compare.
    #[inline(always)]
    pub fn colon(&mut self) -> Result<(), ParseError> {
        if self.b.get(self.i..self.i + 2) == Some(b": ") {
            self.i += 2;
        } else {
            self.expect(b':')?;
        }
        self.skip_ws();
        Ok(())
    }

    /// Past the `,` (true) or `}` (false) after an object member. After a
    /// `,` the whitespace that follows may be consumed too (`", "`, as
    /// Python's `json.dumps` writes it, is taken in one compare); every
    /// caller skips whitespace before the next key anyway.
    #[inline(always)]
    pub fn after_member(&mut self) -> Result<bool, ParseError> {
        if self.b.get(self.i..self.i + 2) == Some(b", ") {
            self.i += 2;
            return Ok(true);
        }
        let more = match self.next_token()? {
            b',' => true,
            b'}' => false,
            _ => return Err(json(JsonError::UnexpectedChar)),
        };
        self.i += 1;
        Ok(more)
    }

    /// The rest of a string whose opening quote is just behind `i`: checked
    /// (escapes, no raw control characters, UTF-8) and returned raw.
    #[inline(always)]
    pub fn string_body(&mut self) -> Result<Str<'a>, ParseError> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        // Until a non-ASCII byte is seen the scan stops at those too; after
        // one it stops only for the other bytes, and UTF-8 is checked once
        // at the end.
        let mut ascii = true;
        let mut escaped = false;
        loop {
            i = skip_plain(b, i, ascii);
            match b.get(i) {
                None => return Err(json(JsonError::UnexpectedEnd)),
                Some(b'"') => {
                    let raw = b.get(start..i).unwrap_or_default();
                    self.i = i + 1;
                    if !ascii && core::str::from_utf8(raw).is_err() {
                        return Err(json(JsonError::BadString));
                    }
                    return Ok(Str { raw, escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    i = escape_end(b, i + 1)?;
                }
                Some(0..=0x1f) => return Err(json(JsonError::BadString)),
                Some(0x80..=0xff) => {
                    ascii = false;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
    }

    /// Exactly `lit` (`true`, `false`, `null`, `NaN`, `Infinity`).
    #[inline(always)]
    pub fn literal(&mut self, lit: &[u8]) -> Result<(), ParseError> {
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

    /// `-Infinity` if it starts at `i` (a `-` followed by `I`): consumed, true.
    #[inline(always)]
    pub fn minus_infinity(&mut self) -> Result<bool, ParseError> {
        if self.b.get(self.i) != Some(&b'-') || self.b.get(self.i + 1) != Some(&b'I') {
            return Ok(false);
        }
        self.i += 1;
        self.literal(INFINITY)?;
        Ok(true)
    }

    /// Check and step over one value of any kind. `depth` is the nesting
    /// level of the object or array holding it (the top object is 1).
    ///
    /// A string, `null` or number (most values skipped) is read inline;
    /// anything else goes to [`Reader::skip_any`], kept out of line so the
    /// member loops that call this stay small.
    #[inline(always)]
    pub fn skip_value(&mut self, depth: usize) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'"') => {
                self.i += 1;
                self.string_body().map(|_| ())
            }
            Some(b'n') => self.literal(b"null"),
            Some(b'0'..=b'9') => self.number().map(|_| ()).map_err(json),
            _ => self.skip_any(depth),
        }
    }

    /// [`Reader::skip_value`] for a value of any kind.
    #[inline(never)]
    fn skip_any(&mut self, depth: usize) -> Result<(), ParseError> {
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
                    if !self.minus_infinity()? {
                        self.number().map_err(json)?;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'N' => self.literal(NAN)?,
                b'I' => self.literal(INFINITY)?,
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
/// takes four hex digits; a lone surrogate is let through, as Python's
/// `json` does.
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
/// [`string_stops`]), or the end of the body.
#[inline(always)]
fn skip_plain(b: &[u8], i: usize, ascii: bool) -> usize {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    let i = {
        use super::sse2::{self, BLOCK};
        let mut i = i;
        while let Some(block) = b.get(i..i + BLOCK).and_then(|s| s.try_into().ok()) {
            let stops = sse2::string_stops(block, ascii);
            if stops != 0 {
                return i + stops.trailing_zeros() as usize;
            }
            i += BLOCK;
        }
        i
    };
    skip_plain_words(b, i, ascii)
}

/// [`skip_plain`] a word at a time (the whole scan off x86_64, the tail of
/// fewer than 16 bytes on it).
#[inline(always)]
fn skip_plain_words(b: &[u8], mut i: usize, ascii: bool) -> usize {
    let high = if ascii { HIGH } else { 0 };
    while let Some(chunk) = b.get(i..i + WORD) {
        let stops = string_stops(word_at(chunk, 0), high);
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += WORD;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block scan and the word scan stop at the same byte.
    #[test]
    fn block_and_word_scans_agree() {
        let mut text = [b'a'; 64];
        for at in 0..64 {
            for stop in [b'"', b'\\', 0x01, 0x1f, 0x80, 0xff] {
                for ascii in [true, false] {
                    text[at] = stop;
                    let want = if stop >= 0x80 && !ascii { 64 } else { at };
                    assert_eq!(skip_plain_words(&text, 0, ascii), want, "{at} {stop}");
                    assert_eq!(skip_plain(&text, 0, ascii), want, "{at} {stop}");
                    text[at] = b'a';
                }
            }
        }
    }
}
