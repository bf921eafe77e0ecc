//! The answer as JSON, written into a caller's buffer.
//!
//! The `predict` CLI prints this object as a line and the benches time it as
//! the last stage of the predict path, so it is written straight into a
//! `&mut [u8]` and never allocates. Floats are in shortest round-trip form
//! (`zmij`), which always has a decimal point or exponent (`-1.0`, `63.2`,
//! `1e-7`), so it parses back to the same f32 and is valid JSON.

use core::fmt::{self, Write};

use crate::model::Prediction;

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
