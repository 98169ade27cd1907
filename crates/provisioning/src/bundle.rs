//! A CA bundle: one or more DER certificates back to back, as `cat root-1.der root-2.der`
//! makes it. Each DER certificate is a SEQUENCE whose header carries its length, so the
//! bundle needs no framing of its own.

/// The most certificates a bundle holds: the device lists one security tag per trust anchor.
pub const MAX_TRUST_ANCHORS: usize = 4;

/// The certificates of `bundle`, in order. Bytes that do not start a whole DER SEQUENCE are
/// yielded as one last item, for the certificate parser to refuse with its own reason.
pub fn certificates(bundle: &[u8]) -> Certificates<'_> {
    Certificates { rest: bundle }
}

/// Iterator returned by [`certificates`].
#[derive(Debug, Clone)]
pub struct Certificates<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Certificates<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let (item, rest) = split_sequence(self.rest).unwrap_or((self.rest, &[]));
        self.rest = rest;
        Some(item)
    }
}

/// Splits one DER SEQUENCE (tag 0x30, definite length up to 64 KiB) off the front of `bytes`.
fn split_sequence(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, after_tag) = bytes.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&first, after_first) = after_tag.split_first()?;
    let (len, header) = match first {
        0..=0x7f => (usize::from(first), 2),
        0x81 => (usize::from(*after_first.first()?), 3),
        0x82 => {
            let high = usize::from(*after_first.first()?);
            let low = usize::from(*after_first.get(1)?);
            (high << 8 | low, 4)
        }
        _ => return None,
    };
    let end = header + len;
    Some((bytes.get(..end)?, bytes.get(end..)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    extern crate std;
    use super::*;

    fn sequence(body_len: usize) -> std::vec::Vec<u8> {
        let mut der = match body_len {
            0..=0x7f => std::vec![0x30, body_len as u8],
            0x80..=0xff => std::vec![0x30, 0x81, body_len as u8],
            _ => std::vec![0x30, 0x82, (body_len >> 8) as u8, body_len as u8],
        };
        der.extend(core::iter::repeat_n(0xab, body_len));
        der
    }

    #[test]
    fn certificates_back_to_back_come_out_one_by_one() {
        let (a, b, c) = (sequence(5), sequence(200), sequence(1391));
        let bundle = [a.clone(), b.clone(), c.clone()].concat();
        let split: std::vec::Vec<&[u8]> = certificates(&bundle).collect();
        assert_eq!(split, [&a[..], &b[..], &c[..]]);
    }

    #[test]
    fn bytes_that_are_not_a_whole_sequence_come_out_as_one_item_for_the_parser() {
        let a = sequence(10);
        let mut bundle = a.clone();
        bundle.extend_from_slice(b"\x30\x82\x05\x00short");
        let split: std::vec::Vec<&[u8]> = certificates(&bundle).collect();
        assert_eq!(split, [&a[..], &b"\x30\x82\x05\x00short"[..]]);
        let text: std::vec::Vec<&[u8]> = certificates(b"CERT:x").collect();
        assert_eq!(text, [&b"CERT:x"[..]]);
        assert_eq!(certificates(b"").count(), 0);
    }
}
