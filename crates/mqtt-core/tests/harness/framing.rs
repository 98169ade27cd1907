//! Framing harness: a byte stream is cut into chunks, pushed through a [`FrameReader`] and
//! every frame it hands out is decoded. Checked against [`super::reference_header`]:
//! the reader yields exactly the frames of the stream, stops at the first broken header with
//! the right error, never takes more than it has room for and never stalls with a full
//! buffer. Every frame `decode` accepts re-encodes (with `mqttrs`) to the same bytes.
//!
//! Input layout: `[chunk seed, max packet size seed, stream ...]`.

use super::{reference_header, RefHeader, Rng};
use mqtt_core::framing::{self, FrameReader, MIN_MAX_PACKET_SIZE};
use mqtt_core::ProtocolError;
use mqttrs::Packet;

/// Receive buffer of the reader under test.
pub const READER_BYTES: usize = 256;

/// What one run saw, for tests that want more than "did not panic".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every frame the reader handed out, in order.
    pub frames: Vec<Vec<u8>>,
    /// How many of them `decode` accepted.
    pub decoded: usize,
    /// The error that ended the stream, if any.
    pub error: Option<ProtocolError>,
}

/// Maximum packet size selected by one seed byte: 16..=256.
pub fn max_packet_size(seed: u8) -> usize {
    MIN_MAX_PACKET_SIZE + usize::from(seed) % (READER_BYTES - MIN_MAX_PACKET_SIZE + 1)
}

/// The fuzz entry point.
pub fn run(data: &[u8]) {
    let [chunk_seed, size_seed, stream @ ..] = data else {
        return;
    };
    let max = max_packet_size(*size_seed);
    // Seed 0: the stream in one piece; otherwise chunks of 1..=seed bytes.
    let mut rng = Rng::new(u64::from(*chunk_seed));
    let largest = usize::from(*chunk_seed).max(1);
    let chunks = core::iter::from_fn(|| {
        Some(if *chunk_seed == 0 {
            usize::MAX
        } else {
            rng.range(1, largest)
        })
    });
    split_and_check(stream, max, chunks);
    // `decode` must also survive being handed anything at all as "one frame".
    check_decode(stream, max);
}

/// Feeds `stream` in pieces of the sizes `chunks` yields, checks every invariant, and returns
/// what the reader produced.
pub fn split_and_check(
    stream: &[u8],
    max: usize,
    chunks: impl IntoIterator<Item = usize>,
) -> Outcome {
    let mut reader = FrameReader::<READER_BYTES>::new();
    let mut outcome = Outcome::default();
    let mut offered = 0;
    let mut chunks = chunks.into_iter();
    while offered < stream.len() && outcome.error.is_none() {
        let size = chunks.next().unwrap_or(usize::MAX).max(1);
        let end = offered.saturating_add(size).min(stream.len());
        let room = READER_BYTES - reader.buffered();
        let taken = reader.push(&stream[offered..end]);
        assert!(
            taken <= end - offered,
            "push took {taken} of {} bytes",
            end - offered
        );
        assert!(taken <= room, "push took {taken} with room for {room}");
        assert!(reader.buffered() <= READER_BYTES);
        offered += taken;
        let mut progressed = taken > 0;
        loop {
            match reader.next_frame(max) {
                Ok(Some(frame)) => {
                    progressed = true;
                    if check_decode(frame, max) {
                        outcome.decoded += 1;
                    }
                    outcome.frames.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error);
                    break;
                }
            }
        }
        assert!(
            progressed || outcome.error.is_some(),
            "reader stalled: {} bytes buffered, no frame, no error",
            reader.buffered()
        );
    }
    compare_with_reference(stream, max, &outcome, reader.buffered());
    outcome
}

fn compare_with_reference(stream: &[u8], max: usize, outcome: &Outcome, buffered: usize) {
    let limit = max.min(READER_BYTES);
    let mut at = 0;
    let mut expected_frames = 0;
    loop {
        let rest = &stream[at..];
        match reference_header(rest, limit) {
            RefHeader::Frame(len) if len <= rest.len() => {
                let frame = outcome.frames.get(expected_frames);
                assert_eq!(
                    frame.map(Vec::as_slice),
                    Some(&rest[..len]),
                    "frame {expected_frames}"
                );
                expected_frames += 1;
                at += len;
            }
            RefHeader::Frame(_) | RefHeader::Incomplete => {
                assert_eq!(outcome.error, None);
                assert_eq!(outcome.frames.len(), expected_frames, "extra frames");
                assert_eq!(buffered, rest.len(), "bytes of the incomplete frame");
                return;
            }
            RefHeader::TooLong => {
                assert_eq!(outcome.error, Some(ProtocolError::PacketTooLarge));
                assert_eq!(outcome.frames.len(), expected_frames, "extra frames");
                return;
            }
            RefHeader::Malformed => {
                assert_eq!(outcome.error, Some(ProtocolError::MalformedRemainingLength));
                assert_eq!(outcome.frames.len(), expected_frames, "extra frames");
                return;
            }
        }
    }
}

/// Decodes one frame; whatever is accepted must be a packet a server sends, and must encode
/// back to the same bytes. Returns whether it was accepted.
pub fn check_decode(frame: &[u8], max: usize) -> bool {
    let Ok(packet) = framing::decode(frame, max) else {
        return false;
    };
    assert!(frame.len() <= max, "decoded a frame over the maximum");
    let from_server = matches!(
        packet,
        Packet::Connack(_)
            | Packet::Publish(_)
            | Packet::Puback(_)
            | Packet::Pubrec(_)
            | Packet::Pubrel(_)
            | Packet::Pubcomp(_)
            | Packet::Suback(_)
            | Packet::Unsuback(_)
            | Packet::Pingresp
    );
    assert!(
        from_server,
        "accepted a packet a server never sends: {packet:?}"
    );
    if let Packet::Publish(publish) = &packet {
        assert!(mqtt_core::topic::validate_name(publish.topic_name).is_ok());
    }
    let mut encoded = [0u8; READER_BYTES + 8];
    let n = mqttrs::encode_slice(&packet, &mut encoded).expect("re-encode an accepted frame");
    let header = framing::parse_fixed_header(frame, usize::MAX)
        .ok()
        .flatten()
        .expect("header");
    let encoded_header = framing::parse_fixed_header(&encoded[..n], usize::MAX)
        .ok()
        .flatten()
        .expect("header");
    // The remaining length may have been sent in more bytes than needed (§2.2.3 does not
    // forbid it); everything else must be byte for byte the same.
    assert_eq!(encoded[0], frame[0], "first byte of {frame:02x?}");
    assert_eq!(
        &encoded[encoded_header.header_len..n],
        &frame[header.header_len..],
        "body of {frame:02x?}"
    );
    true
}
