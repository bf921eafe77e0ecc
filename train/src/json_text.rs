//! Byte walks over JSON text that only need to know where strings are.
//!
//! Two tools edit JSON as text rather than through a parser: `restat`
//! replaces one value of a model file and leaves every other byte alone, and
//! the benches re-space compact JSON the way Python writes it. Both only ask,
//! byte by byte, whether a byte is structure or string content; this is that
//! one question, escapes included.

/// Tracks whether a walk over JSON text is inside a string.
#[derive(Clone, Copy, Debug, Default)]
pub struct Strings {
    inside: bool,
    escaped: bool,
}

impl Strings {
    /// Feeds the next byte: true if it is structure (outside every string
    /// and not a quote), false for a string's quotes and content.
    pub fn structural(&mut self, c: u8) -> bool {
        if self.inside {
            match c {
                _ if self.escaped => self.escaped = false,
                b'\\' => self.escaped = true,
                b'"' => self.inside = false,
                _ => {}
            }
            false
        } else if c == b'"' {
            self.inside = true;
            false
        } else {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Strings;

    #[test]
    fn quotes_escapes_and_structure() {
        let text = br#"{"a\"b,": [1, "\\"], "c": 2}"#;
        let mut s = Strings::default();
        let marks: String = text
            .iter()
            .map(|&c| if s.structural(c) { '^' } else { '.' })
            .collect();
        // Structure: the braces, colons, brackets, commas, spaces and digits.
        assert_eq!(marks, "^.......^^^^^^....^^^...^^^^");
    }
}
