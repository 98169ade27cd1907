//! An incremental base64 decoder (RFC 4648 standard alphabet, `=` padding) for credentials
//! pasted into the shell line by line: a line may end anywhere in a 4-character group.
//! Strict: padding only at the end, zero unused bits, nothing after the padding.
//! Not the `base64` or `base64ct` crate: neither takes input in pieces, and either costs more
//! than 2 KB of flash on frdm_k64f (docs/dependencies.md).

/// Why base64 text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base64Error {
    /// A character outside the alphabet (whitespace included: the shell trims lines).
    InvalidCharacter,
    /// `=` where it cannot be, non-zero unused bits, or text after the padding.
    BadPadding,
    /// The text ended inside a 4-character group.
    Truncated,
}

/// Decodes a base64 stream fed in pieces; bytes go to a sink as they complete.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    group: [u8; 4],
    filled: usize,
    /// The group so far ends with '='.
    in_padding: bool,
    /// A padded group ended the stream.
    padded: bool,
}

/// '=' in a group; no sextet has this value.
const PAD: u8 = 0xff;

fn sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

impl Decoder {
    pub const fn new() -> Self {
        Self {
            group: [0; 4],
            filled: 0,
            in_padding: false,
            padded: false,
        }
    }

    /// Decodes `text`, handing each byte to `sink`; the sink's error stops decoding.
    pub fn feed<E>(
        &mut self,
        text: &[u8],
        sink: &mut impl FnMut(u8) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        for &c in text {
            if self.padded {
                return Err(FeedError::Base64(Base64Error::BadPadding));
            }
            if c == b'=' {
                // "xx==" or "xxx=": padding starts at position 2 or 3 of a group.
                if self.filled < 2 {
                    return Err(FeedError::Base64(Base64Error::BadPadding));
                }
                self.store(PAD);
                self.in_padding = true;
                if self.filled == 4 {
                    self.finish_padded_group(sink)?;
                }
                continue;
            }
            if self.in_padding {
                // A data character after '=' inside the group.
                return Err(FeedError::Base64(Base64Error::BadPadding));
            }
            let value = sextet(c).ok_or(FeedError::Base64(Base64Error::InvalidCharacter))?;
            self.store(value);
            if self.filled == 4 {
                let [a, b, c, d] = self.group;
                self.filled = 0;
                sink((a << 2) | (b >> 4)).map_err(FeedError::Sink)?;
                sink((b << 4) | (c >> 2)).map_err(FeedError::Sink)?;
                sink((c << 6) | d).map_err(FeedError::Sink)?;
            }
        }
        Ok(())
    }

    fn store(&mut self, value: u8) {
        if let Some(slot) = self.group.get_mut(self.filled) {
            *slot = value;
            self.filled += 1;
        }
    }

    fn finish_padded_group<E>(
        &mut self,
        sink: &mut impl FnMut(u8) -> Result<(), E>,
    ) -> Result<(), FeedError<E>> {
        let [a, b, c, _] = self.group;
        self.filled = 0;
        self.in_padding = false;
        self.padded = true;
        if c == PAD {
            // "xx==": one byte; the low 4 bits of b are unused and must be zero.
            if b & 0x0f != 0 {
                return Err(FeedError::Base64(Base64Error::BadPadding));
            }
            sink((a << 2) | (b >> 4)).map_err(FeedError::Sink)
        } else {
            // "xxx=": two bytes; the low 2 bits of c are unused and must be zero.
            if c & 0x03 != 0 {
                return Err(FeedError::Base64(Base64Error::BadPadding));
            }
            sink((a << 2) | (b >> 4)).map_err(FeedError::Sink)?;
            sink((b << 4) | (c >> 2)).map_err(FeedError::Sink)
        }
    }

    /// Ends the stream: it must not stop inside a group.
    pub fn finish(&self) -> Result<(), Base64Error> {
        if self.filled == 0 {
            Ok(())
        } else {
            Err(Base64Error::Truncated)
        }
    }
}

/// A decoding error or the sink's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError<E> {
    Base64(Base64Error),
    Sink(E),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use heapless::Vec;

    fn decode_lines(lines: &[&str]) -> Result<Vec<u8, 64>, Base64Error> {
        let mut decoder = Decoder::new();
        let mut out: Vec<u8, 64> = Vec::new();
        for line in lines {
            decoder
                .feed(line.as_bytes(), &mut |b| out.push(b).map_err(|_| ()))
                .map_err(|e| match e {
                    FeedError::Base64(e) => e,
                    FeedError::Sink(()) => Base64Error::Truncated,
                })?;
        }
        decoder.finish()?;
        Ok(out)
    }

    #[test]
    fn decodes_groups_split_across_lines() {
        assert_eq!(
            decode_lines(&["aGVs", "bG8="]).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(
            decode_lines(&["aG", "VsbG", "8", "="]).unwrap().as_slice(),
            b"hello"
        );
        assert_eq!(decode_lines(&["aGk="]).unwrap().as_slice(), b"hi");
        assert_eq!(decode_lines(&["aA=="]).unwrap().as_slice(), b"h");
        assert_eq!(decode_lines(&[]).unwrap().as_slice(), b"");
    }

    #[test]
    fn refuses_characters_outside_the_alphabet() {
        assert_eq!(
            decode_lines(&["aGVs bG8="]),
            Err(Base64Error::InvalidCharacter)
        );
        assert_eq!(
            decode_lines(&["aGVs-G8="]),
            Err(Base64Error::InvalidCharacter)
        );
        assert_eq!(
            decode_lines(&["-----BEGIN"]),
            Err(Base64Error::InvalidCharacter)
        );
    }

    #[test]
    fn refuses_misplaced_padding_and_text_after_it() {
        assert_eq!(decode_lines(&["a==="]), Err(Base64Error::BadPadding));
        assert_eq!(decode_lines(&["=aaa"]), Err(Base64Error::BadPadding));
        assert_eq!(decode_lines(&["aa=a"]), Err(Base64Error::BadPadding));
        assert_eq!(
            decode_lines(&["aGk=", "aGk="]),
            Err(Base64Error::BadPadding)
        );
        // Non-zero unused bits: "aB==" would be 'h' with stray bits.
        assert_eq!(decode_lines(&["aB=="]), Err(Base64Error::BadPadding));
        assert_eq!(decode_lines(&["aGl="]), Err(Base64Error::BadPadding));
    }

    #[test]
    fn refuses_a_stream_that_ends_inside_a_group() {
        assert_eq!(decode_lines(&["aGVsb"]), Err(Base64Error::Truncated));
        assert_eq!(decode_lines(&["aG="]), Err(Base64Error::Truncated));
    }
}
