//! Answers as JSON, written into a caller's buffer.
//!
//! Two shapes: the bare prediction line the `predict` CLI prints
//! ([`write_prediction`]), and the success body of a synapse route
//! ([`write_synapse`]): the request body echoed byte for byte, with the
//! values the answer owns written over the spans the parser recorded
//! ([`Layout`]) and the members it lacks appended before its closing `}`.
//! Both go straight into a `&mut [u8]` and never allocate. Floats are in
//! shortest round-trip form (`zmij`), which always has a decimal point or
//! exponent (`-1.0`, `63.2`, `1e-7`), so it parses back to the same value
//! and is valid JSON. The seconds (`response_time` and the axon's
//! `process_time`) are formatted once, and a string needing no escape is
//! copied in one piece (`predict/stage/respond` 222 -> 188 ns in a loop over
//! the bench's bodies, 2026-12-07; the two f32 values are now the largest
//! part left). Copying short pieces as fixed-size moves instead of
//! `memcpy` calls was tried and dropped: 2%, inside the noise.
//!
//! Why an echo and not a fresh object: the dendrite overwrites every field
//! of its synapse with ours, so anything we did not send back would be
//! reset on the validator's side (AXON.md section 7); echoing the bytes
//! also keeps 19-digit nonces exact without ever converting them. Where a
//! member appears twice, the last one is the one Python keeps, so the last
//! one is the one replaced.

use core::fmt::{self, Write};

use crate::model::Prediction;
use crate::parse::{
    AxonLayout, Layout, Span, N_SLOTS, N_STATUS, SLOT_AXON, SLOT_CONFIDENCE, SLOT_DENDRITE,
    SLOT_KEYS, SLOT_NAME, SLOT_PREDICTION, SLOT_RESPONSE_TIME, TERMINAL_KEYS,
};

/// Longest possible [`write_prediction`] output: the fixed text plus two
/// f32 values in shortest form (at most 16 bytes each).
pub const MAX_PREDICTION_LEN: usize = 128;

/// The output buffer was too small for the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferTooSmall;

impl fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "output buffer too small (need at most {MAX_PREDICTION_LEN} bytes)"
        )
    }
}

/// A `fmt::Write` over a byte slice that fails instead of truncating.
pub struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceWriter<'a> {
    /// Start writing at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceWriter { buf, len: 0 }
    }
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }
    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Write `{"conversion_happened":1,"time_to_conversion_seconds":63.2,"confidence":0.998}`
/// into `out`; returns the number of bytes written.
///
/// The floats go through `zmij` (shortest round-trip text) straight into
/// the buffer; through `core::fmt` this took 190 ns, most of the answer's
/// cost after the networks.
pub fn write_prediction(p: &Prediction, out: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let mut w = SliceWriter::new(out);
    let class = if p.conversion_happened == 0 { "0" } else { "1" };
    let mut time = zmij::Buffer::new();
    let mut conf = zmij::Buffer::new();
    let parts = [
        "{\"conversion_happened\":",
        class,
        ",\"time_to_conversion_seconds\":",
        json_f32(&mut time, p.time_to_conversion_seconds),
        ",\"confidence\":",
        json_f32(&mut conf, p.confidence),
        "}",
    ];
    for part in parts {
        w.write_str(part).map_err(|_| BufferTooSmall)?;
    }
    Ok(w.len())
}

/// A float as JSON text: shortest round-trip form with a `.0` added to
/// whole numbers (as `{:?}` writes them), `null` if not finite.
fn json_f32(buf: &mut zmij::Buffer, x: f32) -> &str {
    if x.is_finite() {
        buf.format_finite(x)
    } else {
        "null"
    }
}

/// [`json_f32`] for an f64.
fn json_f64(buf: &mut zmij::Buffer, x: f64) -> &str {
    if x.is_finite() {
        buf.format_finite(x)
    } else {
        "null"
    }
}

/// Our identity as the axon, written into an `axon` block the request
/// did not carry as an object.
#[derive(Clone, Copy, Debug)]
pub struct AxonId<'a> {
    pub hotkey: &'a str,
    pub ip: &'a str,
    pub port: u16,
}

/// What the success body says besides the echo.
#[derive(Clone, Copy, Debug)]
pub struct Filled<'a> {
    /// The synapse's class name (`name` is forced to it, as the Python
    /// axon forces it from the route).
    pub name: &'a str,
    /// The model's answer; `None` for a ping, which carries no prediction.
    pub prediction: Option<&'a Prediction>,
    /// Our own processing time in seconds: `response_time` and the axon
    /// block's `process_time`.
    pub seconds: f64,
    /// Written into `axon` when the request has no `axon` object.
    pub me: AxonId<'a>,
}

/// The most bytes [`write_synapse`] adds to a body, besides the strings
/// of [`Filled`] (see [`max_synapse_len`]): every member appended or
/// rewritten at its longest (a test writes the worst cases).
pub const SYNAPSE_OVERHEAD: usize = 1024;
/// Most bytes one byte of a string becomes in JSON (`\u00XX`).
const MAX_ESCAPE: usize = 6;

/// A buffer size that always holds the success body for a request body of
/// `body_len` bytes: the caller sizes its buffer with this, so the answer
/// never needs to grow.
pub fn max_synapse_len(body_len: usize, f: &Filled<'_>) -> usize {
    let strings = f.name.len() + f.me.hotkey.len() + f.me.ip.len();
    body_len
        .saturating_add(SYNAPSE_OVERHEAD)
        .saturating_add(strings.saturating_mul(MAX_ESCAPE))
}

/// Bytes appended to a caller's buffer, failing instead of truncating.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Out<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) -> Result<(), BufferTooSmall> {
        let end = self.len.checked_add(bytes.len()).ok_or(BufferTooSmall)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(BufferTooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// `s` as a JSON string: quotes, and `"`, `\` and control characters
    /// escaped (our own strings never hold them; this keeps the output JSON
    /// whatever they hold).
    fn string(&mut self, s: &str) -> Result<(), BufferTooSmall> {
        let b = s.as_bytes();
        // One pass without early exit to see whether anything needs an
        // escape (the compiler vectorises it); the byte loop below only
        // runs for a string that does.
        let plain = !b.iter().fold(false, |bad, &c| {
            bad | (c == b'"') | (c == b'\\') | (c < 0x20)
        });
        if plain {
            self.put(b"\"")?;
            self.put(b)?;
            return self.put(b"\"");
        }
        self.put(b"\"")?;
        let mut at = 0;
        for (i, &c) in b.iter().enumerate() {
            if c == b'"' || c == b'\\' || c < 0x20 {
                self.put(b.get(at..i).unwrap_or_default())?;
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let esc = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 0xf)],
                ];
                self.put(&esc)?;
                at = i + 1;
            }
        }
        self.put(b.get(at..).unwrap_or_default())?;
        self.put(b"\"")
    }

    /// `,"key":` (no comma when `first`).
    fn key(&mut self, key: &str, first: bool) -> Result<(), BufferTooSmall> {
        if !first {
            self.put(b",")?;
        }
        self.string(key)?;
        self.put(b":")
    }
}

/// Write the success body of a synapse route for request `body` (read by
/// [`crate::parse::parse_body`] into `layout`) into `out`; returns the
/// number of bytes written. Every member is echoed as received except:
/// `name` (set to `f.name`); the `axon` block's `status_code` (200),
/// `status_message` ("Success") and `process_time` (`f.seconds`), with any
/// of its ten `TerminalInfo` keys it lacks added as null (the whole block
/// is written from `f.me` if `axon` is not an object); `dendrite`, written
/// as ten nulls if it is not an object (a Python dendrite crashes on a
/// null one); and, when there is a prediction, `prediction`,
/// `confidence` and `response_time` (`f.seconds`). Members missing from
/// the body are appended before its closing `}`.
///
/// `out` of [`max_synapse_len`] bytes always suffices; a shorter one may
/// give [`BufferTooSmall`], never a truncated body.
pub fn write_synapse(
    body: &[u8],
    layout: &Layout,
    f: &Filled<'_>,
    out: &mut [u8],
) -> Result<usize, BufferTooSmall> {
    let mut o = Out { buf: out, len: 0 };
    // `response_time` and the axon's `process_time` carry the same
    // seconds: formatted once.
    let mut num = zmij::Buffer::new();
    let seconds = json_f64(&mut num, f.seconds).as_bytes();
    // The members to write: replaced where the body has them (sorted by
    // position), appended where it does not.
    let mut replace = [(Span::default(), 0usize); N_SLOTS];
    let mut n_replace = 0;
    let mut append = [0usize; N_SLOTS];
    let mut n_append = 0;
    for (s, span) in layout.slots.iter().enumerate() {
        let wanted = match s {
            SLOT_DENDRITE => !layout.dendrite_object,
            SLOT_PREDICTION | SLOT_CONFIDENCE | SLOT_RESPONSE_TIME => f.prediction.is_some(),
            _ => true,
        };
        if !wanted {
            continue;
        }
        match span {
            Some(sp) => {
                replace[n_replace] = (*sp, s);
                n_replace += 1;
            }
            None => {
                append[n_append] = s;
                n_append += 1;
            }
        }
    }
    let replace = &mut replace[..n_replace];
    replace.sort_unstable_by_key(|(sp, _)| sp.start);
    let mut at = 0;
    for &(sp, s) in replace.iter() {
        o.put(body.get(at..sp.start).ok_or(BufferTooSmall)?)?;
        write_slot(&mut o, s, body, layout, f, seconds, Some(sp))?;
        at = sp.end;
    }
    o.put(body.get(at..layout.close).ok_or(BufferTooSmall)?)?;
    let mut first = layout.members == 0;
    for &s in &append[..n_append] {
        o.key(SLOT_KEYS[s], first)?;
        first = false;
        write_slot(&mut o, s, body, layout, f, seconds, None)?;
    }
    o.put(body.get(layout.close..).ok_or(BufferTooSmall)?)?;
    Ok(o.len)
}

/// The value of synapse member `s`. `span`: where the body has it;
/// `seconds`: `f.seconds` as JSON text.
fn write_slot(
    o: &mut Out<'_>,
    s: usize,
    body: &[u8],
    layout: &Layout,
    f: &Filled<'_>,
    seconds: &[u8],
    span: Option<Span>,
) -> Result<(), BufferTooSmall> {
    let mut num = zmij::Buffer::new();
    match s {
        SLOT_NAME => o.string(f.name),
        SLOT_AXON => match span {
            Some(sp) if layout.axon.object => write_axon_edit(o, body, sp, &layout.axon, seconds),
            _ => write_axon_fresh(o, f, seconds),
        },
        SLOT_DENDRITE => {
            for (k, key) in TERMINAL_KEYS.iter().enumerate() {
                o.put(if k == 0 { b"{" } else { b"," })?;
                o.string(key)?;
                o.put(b":null")?;
            }
            o.put(b"}")
        }
        SLOT_PREDICTION => {
            let p = f.prediction.ok_or(BufferTooSmall)?;
            o.put(b"{\"conversion_happened\":")?;
            o.put(if p.conversion_happened == 0 {
                b"0"
            } else {
                b"1"
            })?;
            o.put(b",\"time_to_conversion_seconds\":")?;
            o.put(json_f32(&mut num, p.time_to_conversion_seconds).as_bytes())?;
            o.put(b"}")
        }
        SLOT_CONFIDENCE => {
            let p = f.prediction.ok_or(BufferTooSmall)?;
            o.put(json_f32(&mut num, p.confidence).as_bytes())
        }
        _ => o.put(seconds),
    }
}

/// The value of terminal key `k` in our `axon` block: the three status
/// values (`seconds` already as text), null for the rest.
fn status_value(o: &mut Out<'_>, k: usize, seconds: &[u8]) -> Result<(), BufferTooSmall> {
    match k {
        0 => o.put(b"200"),
        1 => o.put(b"\"Success\""),
        2 => o.put(seconds),
        _ => o.put(b"null"),
    }
}

/// The request's `axon` object with the status values written over its
/// own and the terminal keys it lacks added before its `}`.
fn write_axon_edit(
    o: &mut Out<'_>,
    body: &[u8],
    sp: Span,
    a: &AxonLayout,
    seconds: &[u8],
) -> Result<(), BufferTooSmall> {
    let mut status = [(Span::default(), 0usize); N_STATUS];
    let mut n = 0;
    for (k, s) in a.status.iter().enumerate() {
        if let Some(s) = s {
            status[n] = (*s, k);
            n += 1;
        }
    }
    let status = &mut status[..n];
    status.sort_unstable_by_key(|(s, _)| s.start);
    // The object's closing `}` is its last byte.
    let close = sp.end.checked_sub(1).ok_or(BufferTooSmall)?;
    let mut at = sp.start;
    for &(s, k) in status.iter() {
        o.put(body.get(at..s.start).ok_or(BufferTooSmall)?)?;
        status_value(o, k, seconds)?;
        at = s.end;
    }
    o.put(body.get(at..close).ok_or(BufferTooSmall)?)?;
    let mut first = a.members == 0;
    for (k, key) in TERMINAL_KEYS.iter().enumerate() {
        if a.present & (1 << k) == 0 {
            o.key(key, first)?;
            first = false;
            status_value(o, k, seconds)?;
        }
    }
    o.put(b"}")
}

/// A whole `axon` block: the status values and our identity.
fn write_axon_fresh(o: &mut Out<'_>, f: &Filled<'_>, seconds: &[u8]) -> Result<(), BufferTooSmall> {
    o.put(b"{")?;
    for (k, key) in TERMINAL_KEYS.iter().enumerate() {
        o.key(key, k == 0)?;
        match *key {
            "ip" => o.string(f.me.ip)?,
            "hotkey" => o.string(f.me.hotkey)?,
            "port" => {
                let mut b = [0u8; 5];
                o.put(u16_text(f.me.port, &mut b))?;
            }
            _ => status_value(o, k, seconds)?,
        }
    }
    o.put(b"}")
}

/// `v` in decimal.
fn u16_text(mut v: u16, b: &mut [u8; 5]) -> &[u8] {
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &b[i..]
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    fn written(p: &Prediction) -> std::string::String {
        let mut buf = [0u8; MAX_PREDICTION_LEN];
        let n = write_prediction(p, &mut buf).unwrap();
        std::string::String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn shapes() {
        let p = Prediction {
            conversion_happened: 1,
            time_to_conversion_seconds: 63.2,
            confidence: 0.998,
        };
        assert_eq!(
            written(&p),
            r#"{"conversion_happened":1,"time_to_conversion_seconds":63.2,"confidence":0.998}"#
        );
        let p = Prediction {
            conversion_happened: 0,
            time_to_conversion_seconds: -1.0,
            confidence: 1e-7,
        };
        assert_eq!(
            written(&p),
            r#"{"conversion_happened":0,"time_to_conversion_seconds":-1.0,"confidence":1e-7}"#
        );
        let p = Prediction {
            conversion_happened: 0,
            time_to_conversion_seconds: f32::NAN,
            confidence: f32::INFINITY,
        };
        assert_eq!(
            written(&p),
            r#"{"conversion_happened":0,"time_to_conversion_seconds":null,"confidence":null}"#
        );
    }

    #[test]
    fn longest_output_fits_and_short_buffers_fail() {
        let p = Prediction {
            conversion_happened: 1,
            time_to_conversion_seconds: -1.1754942e-38,
            confidence: -1.1754942e-38,
        };
        let s = written(&p);
        assert!(s.len() <= MAX_PREDICTION_LEN);
        for n in 0..s.len() {
            let mut buf = std::vec![0u8; n];
            assert_eq!(write_prediction(&p, &mut buf), Err(BufferTooSmall));
        }
    }
}
