//! Properties of the incremental base64 decoder and of the stored record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use proptest::prelude::*;
use provisioning::base64::{Decoder, FeedError};
use provisioning::{
    CredentialSet, Entry, Index, Kind, Provisioner, Slot, Source, MAX_CERTIFICATE, MAX_KEY,
    MAX_RECORD,
};

fn decode_in_pieces(text: &[u8], cuts: &[usize]) -> Option<Vec<u8>> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    points.sort_unstable();
    points.push(text.len());
    for end in points {
        let piece = &text[start..end.max(start)];
        let fed = decoder.feed(piece, &mut |b| {
            out.push(b);
            Ok::<(), ()>(())
        });
        match fed {
            Ok(()) => {}
            Err(FeedError::Base64(_)) => return None,
            Err(FeedError::Sink(())) => unreachable!(),
        }
        start = end.max(start);
    }
    decoder.finish().ok()?;
    Some(out)
}

fn source() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (0u8..3, proptest::collection::vec(any::<u8>(), 1..MAX_KEY))
}

proptest! {
    /// Whatever the line breaks, our decoder gives what the `base64` crate gives.
    #[test]
    fn decodes_like_the_reference_wherever_the_lines_break(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let text = base64::engine::general_purpose::STANDARD.encode(&data);
        prop_assert_eq!(decode_in_pieces(text.as_bytes(), &cuts), Some(data));
    }

    /// On any text, our decoder accepts exactly what the reference accepts, with its bytes.
    #[test]
    fn accepts_exactly_what_the_reference_accepts(
        text in "[A-Za-z0-9+/=]{0,24}",
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let reference = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).ok();
        prop_assert_eq!(decode_in_pieces(text.as_bytes(), &cuts), reference);
    }

    /// A record written by encode loads back to the same set.
    #[test]
    fn records_round_trip(ca in source(), cert in source(), key in source()) {
        let mut set = CredentialSet::image();
        for (kind, (origin, der)) in [(Kind::Ca, ca), (Kind::DeviceCertificate, cert), (Kind::DeviceKey, key)] {
            let source = match origin {
                0 => Source::Image,
                1 => Source::Provisioned(&der),
                _ => Source::Removed,
            };
            set.set(kind, source).unwrap();
        }
        let mut record = [0u8; MAX_RECORD];
        let n = set.encode(&mut record).unwrap();
        let mut loaded = CredentialSet::image();
        loaded.load(&record[..n]).unwrap();
        prop_assert_eq!(loaded, set);
    }

    /// Arbitrary bytes as a record of the former format never panic; a refused one leaves
    /// the set as it was.
    #[test]
    fn arbitrary_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..(2 * MAX_CERTIFICATE))) {
        let mut set = CredentialSet::image();
        let _ = set.load(&bytes);
    }

    /// An index encodes and decodes to itself.
    #[test]
    fn indexes_round_trip(entries in proptest::collection::vec((0u8..3, any::<bool>(), 1u16..1280, any::<u32>()), 3)) {
        let mut index = Index::IMAGE;
        for (kind, (source, b, len, crc)) in Kind::ALL.into_iter().zip(entries) {
            let slot = if b { Slot::B } else { Slot::A };
            index.set(kind, match source {
                0 => Entry::Image,
                1 => Entry::Provisioned { slot, len, crc },
                _ => Entry::Removed,
            });
        }
        prop_assert_eq!(Index::decode(&index.encode()), Ok(index));
    }

    /// Arbitrary bytes as a stored index never panic: refused, or an index that encodes back
    /// to the same bytes.
    #[test]
    fn arbitrary_indexes_decode_to_themselves_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(index) = Index::decode(&bytes) {
            prop_assert_eq!(&index.encode()[..], &bytes[..]);
        }
    }

    /// Arbitrary shell lines never panic and never change the staged set without an `end`.
    #[test]
    fn arbitrary_lines_change_nothing_until_end(lines in proptest::collection::vec(".{0,80}", 0..12)) {
        let mut p = Provisioner::new();
        p.begin(Kind::Ca).unwrap();
        for line in &lines {
            let _ = p.data(line);
        }
        prop_assert_eq!(p.staged(), &Index::IMAGE);
        prop_assert!(!p.has_changes());
    }
}
