//! Framing in front of the decoder (MQTT 3.1.1 §2.2, §3).
//!
//! `mqttrs` 0.4.1 decodes with unchecked indexing: `20 00`, `40 00`, `32 02 00 00` or
//! `30 02 00 05 61 62 63 64 65` make it panic. So a frame is cut out of the byte stream here,
//! its remaining length is bounded by the configured maximum packet size before the body has
//! even arrived, and its type, flags and lengths are checked against what a *server* may send
//! to a client. Only then does [`decode`] hand it to `mqttrs::decode_slice`. The same shape as
//! minimq's `PacketReader`.

use crate::error::ProtocolError;
use mqttrs::{Packet, Pid, QosPid};

/// The smallest maximum packet size we accept: enough for any acknowledgement and a PUBLISH
/// with a short topic.
pub const MIN_MAX_PACKET_SIZE: usize = 16;

/// Fixed header of one packet: its first byte and how long the whole frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// Packet type (high nibble) and flags (low nibble).
    pub first_byte: u8,
    /// Bytes of fixed header: 1 + the 1..=4 bytes of remaining length.
    pub header_len: usize,
    /// The remaining length: variable header plus payload.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// The packet type, 0..=15.
    pub fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }

    /// The four flag bits.
    pub fn flags(&self) -> u8 {
        self.first_byte & 0x0F
    }

    /// A PUBLISH's QoS bits (3 is invalid).
    fn qos_bits(&self) -> u8 {
        (self.flags() >> 1) & 0b11
    }
}

/// Reads a fixed header from the start of `buf`.
///
/// `Ok(None)` means more bytes are needed. A frame longer than `max_packet_size` is refused as
/// soon as its length is known, so a peer can never make us buffer more than that.
pub fn parse_fixed_header(
    buf: &[u8],
    max_packet_size: usize,
) -> Result<Option<FixedHeader>, ProtocolError> {
    let header = parse_fixed_header_of_any_size(buf)?;
    if header.is_some_and(|header| header.frame_len() > max_packet_size) {
        return Err(ProtocolError::PacketTooLarge);
    }
    Ok(header)
}

/// [`parse_fixed_header`] without the size bound: for deciding what to do with a frame
/// too large to buffer.
fn parse_fixed_header_of_any_size(buf: &[u8]) -> Result<Option<FixedHeader>, ProtocolError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    let mut remaining_len = 0usize;
    for position in 0..4 {
        let Some(&byte) = buf.get(1 + position) else {
            return Ok(None);
        };
        remaining_len |= usize::from(byte & 0x7F) << (7 * position);
        if byte & 0x80 == 0 {
            return Ok(Some(FixedHeader {
                first_byte,
                header_len: 2 + position,
                remaining_len,
            }));
        }
    }
    Err(ProtocolError::MalformedRemainingLength)
}

/// The front of a PUBLISH too large to buffer: what is needed to acknowledge it and say
/// which message was dropped (§3.3.2: topic name, then the packet identifier at QoS 1/2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishHead {
    /// Where the topic name sits in the head.
    pub topic: core::ops::Range<usize>,
    /// The QoS and, at QoS 1/2, the packet identifier (validated nonzero).
    pub qospid: QosPid,
    /// Bytes of the whole packet, most of which are read past.
    pub frame_len: usize,
}

/// Bytes of a PUBLISH's head (fixed header, topic name, packet identifier) given the
/// fixed header and the first two bytes of its variable header; `None` until those arrived.
fn publish_head_len(header: &FixedHeader, buf: &[u8]) -> Option<usize> {
    let topic_len = usize::from(read_u16(buf, header.header_len)?);
    let id_len = if header.qos_bits() > 0 { 2 } else { 0 };
    Some(header.header_len + 2 + topic_len + id_len)
}

/// Checks the head of an oversized PUBLISH as [`validate_from_server`] checks a whole one.
pub fn validate_publish_head(
    header: &FixedHeader,
    head: &[u8],
) -> Result<PublishHead, ProtocolError> {
    let body = head.get(header.header_len..).unwrap_or(&[]);
    if header.packet_type() != 3 || body.len() > header.remaining_len {
        return Err(ProtocolError::InvalidLength(header.packet_type()));
    }
    let (topic, qospid) = check_publish(header, body)?;
    Ok(PublishHead {
        topic: header.header_len + topic.start..header.header_len + topic.end,
        qospid,
        frame_len: header.frame_len(),
    })
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let high = *bytes.get(at)?;
    let low = *bytes.get(at + 1)?;
    Some(u16::from_be_bytes([high, low]))
}

fn nonzero_packet_id(body: &[u8], at: usize) -> Result<(), ProtocolError> {
    packet_id(body, at).map(|_| ())
}

fn packet_id(body: &[u8], at: usize) -> Result<Pid, ProtocolError> {
    match read_u16(body, at) {
        Some(id) => Pid::try_from(id).map_err(|_| ProtocolError::ZeroPacketId),
        None => Err(ProtocolError::InvalidLength(0)),
    }
}

/// Checks one complete frame against what a server may send to a client (§3.2–§3.13).
pub fn validate_from_server(header: &FixedHeader, frame: &[u8]) -> Result<(), ProtocolError> {
    let packet_type = header.packet_type();
    let flags = header.flags();
    let body = frame.get(header.header_len..).unwrap_or(&[]);
    if body.len() != header.remaining_len {
        return Err(ProtocolError::InvalidLength(packet_type));
    }
    let expect_flags = |wanted: u8| {
        if flags == wanted {
            Ok(())
        } else {
            Err(ProtocolError::InvalidFlags(header.first_byte))
        }
    };
    let expect_len = |wanted: usize| {
        if body.len() == wanted {
            Ok(())
        } else {
            Err(ProtocolError::InvalidLength(packet_type))
        }
    };
    match packet_type {
        // CONNACK: acknowledge flags (only bit 0) and a return code 0..=5.
        2 => {
            expect_flags(0)?;
            expect_len(2)?;
            match body {
                [ack_flags, code] if ack_flags & 0xFE == 0 && *code <= 5 => Ok(()),
                _ => Err(ProtocolError::InvalidConnack),
            }
        }
        3 => validate_publish(header, body),
        // PUBACK, PUBREC, PUBCOMP, UNSUBACK: a packet identifier only. PUBREL has flags 0010.
        4 | 5 | 7 | 11 => {
            expect_flags(0)?;
            expect_len(2)?;
            nonzero_packet_id(body, 0)
        }
        6 => {
            expect_flags(0b0010)?;
            expect_len(2)?;
            nonzero_packet_id(body, 0)
        }
        // SUBACK: packet identifier and 1..=5 return codes (5: the most we ever ask for).
        9 => {
            expect_flags(0)?;
            if !(3..=2 + crate::session::MAX_FILTERS_PER_PACKET).contains(&body.len()) {
                return Err(ProtocolError::InvalidLength(packet_type));
            }
            nonzero_packet_id(body, 0)?;
            let codes = body.get(2..).unwrap_or(&[]);
            if codes.iter().all(|code| matches!(code, 0 | 1 | 2 | 0x80)) {
                Ok(())
            } else {
                Err(ProtocolError::InvalidQos)
            }
        }
        // PINGRESP
        13 => {
            expect_flags(0)?;
            expect_len(0)
        }
        other => Err(ProtocolError::UnexpectedPacketType(other)),
    }
}

fn validate_publish(header: &FixedHeader, body: &[u8]) -> Result<(), ProtocolError> {
    check_publish(header, body).map(|_| ())
}

/// A PUBLISH's flags and variable header checked (§3.3.1–§3.3.2) in `body`, which holds at
/// least the variable header: where its topic sits in `body`, its QoS and packet identifier.
fn check_publish(
    header: &FixedHeader,
    body: &[u8],
) -> Result<(core::ops::Range<usize>, QosPid), ProtocolError> {
    let qos = header.qos_bits();
    if qos == 3 {
        return Err(ProtocolError::InvalidQos);
    }
    if qos == 0 && header.flags() & 0b1000 != 0 {
        // §3.3.1.2: DUP must be 0 for QoS 0.
        return Err(ProtocolError::InvalidFlags(header.first_byte));
    }
    let topic_len = usize::from(read_u16(body, 0).ok_or(ProtocolError::InvalidLength(3))?);
    let id_len = if qos > 0 { 2 } else { 0 };
    if body.len() < 2 + topic_len + id_len {
        return Err(ProtocolError::InvalidLength(3));
    }
    let topic = body
        .get(2..2 + topic_len)
        .ok_or(ProtocolError::InvalidLength(3))?;
    let topic = core::str::from_utf8(topic).map_err(|_| ProtocolError::InvalidTopic)?;
    if crate::topic::validate_name(topic).is_err() {
        return Err(ProtocolError::InvalidTopic);
    }
    let qospid = match qos {
        0 => QosPid::AtMostOnce,
        1 => QosPid::AtLeastOnce(packet_id(body, 2 + topic_len)?),
        _ => QosPid::ExactlyOnce(packet_id(body, 2 + topic_len)?),
    };
    Ok((2..2 + topic_len, qospid))
}

/// Validates a frame from a server and decodes it. The frame must be exactly one packet.
pub fn decode(frame: &[u8], max_packet_size: usize) -> Result<Packet<'_>, ProtocolError> {
    let header =
        parse_fixed_header(frame, max_packet_size)?.ok_or(ProtocolError::InvalidLength(0))?;
    if header.frame_len() != frame.len() {
        return Err(ProtocolError::InvalidLength(header.packet_type()));
    }
    validate_from_server(&header, frame)?;
    match mqttrs::decode_slice(frame) {
        Ok(Some(packet)) => Ok(packet),
        Ok(None) | Err(_) => Err(ProtocolError::Decode),
    }
}

/// Accumulates stream bytes in a fixed buffer of `N` bytes and cuts complete frames out of it.
///
/// A frame handed out by [`FrameReader::next_frame`] stays valid until the next call on the
/// reader; then its bytes are discarded. Because frames over the maximum packet size (at most
/// `N`) are refused from their header, a full buffer always holds a complete frame, unless it
/// is full of frames held back ([`FrameReader::hold`]).
///
/// Holding is back-pressure inside the buffer: a frame the caller cannot take yet stays, whole
/// and in order, at the front, while the frames behind it are still cut past it;
/// [`FrameReader::release_held`] hands the held frames out later, oldest first.
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    filled: usize,
    /// Bytes at the front: whole frames held back, in the order they arrived.
    held: usize,
    /// Where the frame handed out last starts: the front for a held frame released, else
    /// right behind the held frames.
    start: usize,
    /// Bytes of the frame handed out last.
    consumed: usize,
    /// Bytes of an oversized PUBLISH still to be read past and discarded; they arrive right
    /// behind the held frames.
    skipping: usize,
}

/// What [`FrameReader::cut`] found at the front of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A whole frame of this many bytes: [`FrameReader::current_frame`].
    Frame(usize),
    /// A PUBLISH larger than the maximum packet size but within the size the caller reads
    /// past: [`FrameReader::current_frame`] is its head (fixed header, topic, packet
    /// identifier); the rest is discarded as it arrives, never buffered.
    OversizedPublish(FixedHeader),
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            filled: 0,
            held: 0,
            start: 0,
            consumed: 0,
            skipping: 0,
        }
    }

    /// Removes `n` bytes at `at`, moving what follows them forward.
    fn remove(&mut self, at: usize, n: usize) {
        if n > 0 {
            self.buf.copy_within(at + n..self.filled, at);
            self.filled -= n;
        }
    }

    /// Discards the frame handed out last and what has arrived of an oversized PUBLISH's body.
    fn compact(&mut self) {
        self.remove(self.start, self.consumed);
        self.consumed = 0;
        let skipped = self.skipping.min(self.filled - self.held);
        self.remove(self.held, skipped);
        self.skipping -= skipped;
        self.start = self.held;
    }

    /// Free space to receive into directly (e.g. from a socket); follow with [`Self::commit`].
    pub fn spare_capacity(&mut self) -> &mut [u8] {
        self.compact();
        self.buf.get_mut(self.filled..).unwrap_or(&mut [])
    }

    /// Marks `n` bytes written into [`Self::spare_capacity`] as received.
    pub fn commit(&mut self, n: usize) {
        self.filled = (self.filled + n).min(N);
    }

    /// Copies as many of `bytes` as fit; returns how many were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare_capacity();
        let n = spare.len().min(bytes.len());
        if let (Some(dst), Some(src)) = (spare.get_mut(..n), bytes.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.commit(n);
        n
    }

    /// Bytes received but not yet handed out as frames (held frames included).
    pub fn buffered(&self) -> usize {
        self.filled - self.consumed
    }

    /// Whether no byte more fits: then, if [`Self::cut`] finds no frame, the buffer is full
    /// of held frames and nothing more can be read until one is released.
    pub fn is_full(&mut self) -> bool {
        self.spare_capacity().is_empty()
    }

    /// Forgets everything buffered (the stream is gone), held frames too.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.held = 0;
        self.start = 0;
        self.consumed = 0;
        self.skipping = 0;
    }

    /// The next complete frame, if one has arrived. An error means the stream cannot be
    /// trusted any more: the caller must drop the connection.
    pub fn next_frame(&mut self, max_packet_size: usize) -> Result<Option<&[u8]>, ProtocolError> {
        Ok(match self.advance(max_packet_size)? {
            Some(_) => Some(self.current_frame()),
            None => None,
        })
    }

    /// Like [`Self::next_frame`], but returns only the frame's length; the frame itself is
    /// [`Self::current_frame`]. Lets a caller mutate other state between the two borrows.
    pub fn advance(&mut self, max_packet_size: usize) -> Result<Option<usize>, ProtocolError> {
        match self.cut(max_packet_size, 0)? {
            Some(Cut::Frame(len)) => Ok(Some(len)),
            Some(Cut::OversizedPublish(_)) | None => Ok(None),
        }
    }

    /// Like [`Self::advance`], and a PUBLISH longer than `max_packet_size` but no longer
    /// than `max_read_past` is cut as its head ([`Cut::OversizedPublish`]), its body read
    /// past as it arrives, so that the caller can acknowledge and drop it. Anything longer
    /// is [`ProtocolError::PacketTooLarge`], as is a head that does not fit the buffer.
    /// Frames are cut from behind the held ones.
    pub fn cut(
        &mut self,
        max_packet_size: usize,
        max_read_past: usize,
    ) -> Result<Option<Cut>, ProtocolError> {
        self.compact();
        if self.skipping > 0 {
            return Ok(None);
        }
        let limit = max_packet_size.min(N);
        let pending = self.buf.get(self.held..self.filled).unwrap_or(&[]);
        let Some(header) = parse_fixed_header_of_any_size(pending)? else {
            return Ok(None);
        };
        let frame_len = header.frame_len();
        if frame_len > limit {
            if header.packet_type() != 3 || frame_len > max_read_past {
                return Err(ProtocolError::PacketTooLarge);
            }
            let Some(head_len) = publish_head_len(&header, pending) else {
                return Ok(None);
            };
            if head_len > N.min(frame_len) {
                return Err(ProtocolError::PacketTooLarge);
            }
            if head_len > pending.len() {
                return Ok(None);
            }
            self.consumed = head_len;
            self.skipping = frame_len - head_len;
            return Ok(Some(Cut::OversizedPublish(header)));
        }
        if frame_len > pending.len() {
            return Ok(None);
        }
        self.consumed = frame_len;
        Ok(Some(Cut::Frame(frame_len)))
    }

    /// Keeps the whole frame [`Self::cut`] has just handed out in the buffer, behind the frames
    /// held before it, instead of discarding it at the next call. Nothing happens for the head
    /// of an oversized PUBLISH: it cannot be kept.
    pub fn hold(&mut self) {
        if self.start == self.held && self.skipping == 0 {
            self.held += self.consumed;
            self.consumed = 0;
            self.start = self.held;
        }
    }

    /// Bytes of the frames held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The oldest frame held, still held.
    pub fn oldest_held(&mut self) -> Option<&[u8]> {
        self.compact();
        let len = self.oldest_held_len()?;
        self.buf.get(..len)
    }

    /// Hands out the oldest frame held, as [`Self::cut`] hands out a frame: its length, the
    /// frame itself being [`Self::current_frame`]; it is discarded at the next call.
    pub fn release_held(&mut self) -> Option<usize> {
        self.compact();
        let len = self.oldest_held_len()?;
        self.held -= len;
        self.start = 0;
        self.consumed = len;
        Some(len)
    }

    fn oldest_held_len(&self) -> Option<usize> {
        let held = self.buf.get(..self.held)?;
        // A held frame was whole when it was cut, so its header parses again.
        let len = parse_fixed_header_of_any_size(held).ok()??.frame_len();
        (len <= self.held).then_some(len)
    }

    /// The frame returned by the last [`Self::advance`] or [`Self::release_held`] (empty if
    /// none).
    pub fn current_frame(&self) -> &[u8] {
        self.buf
            .get(self.start..self.start + self.consumed)
            .unwrap_or(&[])
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use mqttrs::{Pid, QosPid};

    const MAX: usize = 1024;

    /// Inputs that panic `mqttrs::decode_slice` 0.4.1 when handed to it unchecked.
    pub(crate) const MQTTRS_PANICS: &[&[u8]] = &[
        &[0x20, 0x00],
        &[0x40, 0x00],
        &[0x32, 0x02, 0x00, 0x00],
        &[0x30, 0x02, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65],
    ];

    #[test]
    fn rejects_each_input_that_panics_mqttrs() {
        for input in MQTTRS_PANICS {
            let mut reader = FrameReader::<64>::new();
            reader.push(input);
            let result = match reader.next_frame(MAX) {
                Ok(Some(frame)) => decode(frame, MAX).map(|_| ()),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            assert!(
                result.is_err() || reader.buffered() < input.len(),
                "{input:02x?}"
            );
        }
    }

    #[test]
    fn rejects_connack_with_short_length() {
        assert_eq!(
            decode(&[0x20, 0x00], MAX),
            Err(ProtocolError::InvalidLength(2))
        );
        assert_eq!(
            decode(&[0x20, 0x01, 0x00], MAX),
            Err(ProtocolError::InvalidLength(2))
        );
    }

    #[test]
    fn rejects_connack_with_reserved_flags_or_unknown_code() {
        assert_eq!(
            decode(&[0x20, 0x02, 0x02, 0x00], MAX),
            Err(ProtocolError::InvalidConnack)
        );
        assert_eq!(
            decode(&[0x20, 0x02, 0x00, 0x06], MAX),
            Err(ProtocolError::InvalidConnack)
        );
        assert_eq!(
            decode(&[0x21, 0x02, 0x00, 0x00], MAX),
            Err(ProtocolError::InvalidFlags(0x21))
        );
    }

    #[test]
    fn decodes_connack_captured_from_mosquitto() {
        // Mosquitto 2.0.11's answers to CONNECT, as captured in tests/golden/mosquitto.txt.
        let packet = decode(&[0x20, 0x02, 0x00, 0x00], MAX);
        assert!(matches!(packet, Ok(Packet::Connack(c)) if !c.session_present));
        let packet = decode(&[0x20, 0x02, 0x01, 0x00], MAX);
        assert!(matches!(packet, Ok(Packet::Connack(c)) if c.session_present));
    }

    #[test]
    fn rejects_publish_whose_topic_runs_past_the_frame() {
        let frame = [0x30, 0x02, 0x00, 0x05];
        assert_eq!(decode(&frame, MAX), Err(ProtocolError::InvalidLength(3)));
    }

    #[test]
    fn rejects_qos1_publish_without_packet_id() {
        assert_eq!(
            decode(&[0x32, 0x02, 0x00, 0x00], MAX),
            Err(ProtocolError::InvalidLength(3))
        );
        assert_eq!(
            decode(&[0x32, 0x05, 0x00, 0x01, b'a', 0x00, 0x00], MAX),
            Err(ProtocolError::ZeroPacketId)
        );
    }

    #[test]
    fn rejects_publish_with_qos3_dup_on_qos0_or_wildcard_topic() {
        assert_eq!(
            decode(&[0x36, 0x05, 0, 1, b'a', 0, 1], MAX),
            Err(ProtocolError::InvalidQos)
        );
        assert_eq!(
            decode(&[0x38, 0x03, 0, 1, b'a'], MAX),
            Err(ProtocolError::InvalidFlags(0x38))
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0, 1, b'#'], MAX),
            Err(ProtocolError::InvalidTopic)
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0, 1, 0], MAX),
            Err(ProtocolError::InvalidTopic)
        );
        assert_eq!(
            decode(&[0x30, 0x02, 0, 0], MAX),
            Err(ProtocolError::InvalidTopic)
        );
        assert_eq!(
            decode(&[0x30, 0x03, 0, 1, 0xFF], MAX),
            Err(ProtocolError::InvalidTopic)
        );
    }

    #[test]
    fn decodes_qos1_publish_with_payload() {
        let frame = [0x33, 0x08, 0, 3, b'a', b'/', b'b', 0x12, 0x34, b'x'];
        match decode(&frame, MAX) {
            Ok(Packet::Publish(p)) => {
                assert_eq!(p.topic_name, "a/b");
                assert_eq!(p.payload, b"x");
                assert!(p.retain);
                assert_eq!(
                    p.qospid,
                    QosPid::AtLeastOnce(Pid::try_from(0x1234).unwrap())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_acks_with_wrong_length_flags_or_zero_id() {
        assert_eq!(
            decode(&[0x40, 0x00], MAX),
            Err(ProtocolError::InvalidLength(4))
        );
        assert_eq!(
            decode(&[0x40, 0x03, 0, 1, 0], MAX),
            Err(ProtocolError::InvalidLength(4))
        );
        assert_eq!(
            decode(&[0x40, 0x02, 0, 0], MAX),
            Err(ProtocolError::ZeroPacketId)
        );
        assert_eq!(
            decode(&[0x60, 0x02, 0, 1], MAX),
            Err(ProtocolError::InvalidFlags(0x60))
        );
        assert!(matches!(
            decode(&[0x62, 0x02, 0, 1], MAX),
            Ok(Packet::Pubrel(_))
        ));
        assert_eq!(
            decode(&[0xD0, 0x01, 0], MAX),
            Err(ProtocolError::InvalidLength(13))
        );
    }

    #[test]
    fn rejects_packets_a_server_never_sends() {
        for first in [0x00, 0x10, 0x82, 0xA2, 0xC0, 0xE0, 0xF0] {
            let frame = [first, 0x00];
            assert_eq!(
                decode(&frame, MAX),
                Err(ProtocolError::UnexpectedPacketType(first >> 4)),
                "{first:02x}"
            );
        }
    }

    #[test]
    fn rejects_suback_with_bad_code_or_too_many_codes() {
        assert_eq!(
            decode(&[0x90, 0x03, 0, 1, 3], MAX),
            Err(ProtocolError::InvalidQos)
        );
        assert_eq!(
            decode(&[0x90, 0x02, 0, 1], MAX),
            Err(ProtocolError::InvalidLength(9))
        );
        let six = [0x90, 0x08, 0, 1, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&six, MAX), Err(ProtocolError::InvalidLength(9)));
        assert!(matches!(
            decode(&[0x90, 0x04, 0, 1, 1, 0x80], MAX),
            Ok(Packet::Suback(_))
        ));
    }

    #[test]
    fn refuses_a_frame_over_the_maximum_before_its_body_arrives() {
        // Remaining length 200: refused with only the header received.
        assert_eq!(
            parse_fixed_header(&[0x30, 0xC8, 0x01], 100),
            Err(ProtocolError::PacketTooLarge)
        );
    }

    #[test]
    fn rejects_remaining_length_of_five_bytes() {
        let input = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        assert_eq!(
            parse_fixed_header(&input, usize::MAX),
            Err(ProtocolError::MalformedRemainingLength)
        );
    }

    #[test]
    fn decodes_the_largest_four_byte_remaining_length() {
        let header = parse_fixed_header(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX);
        assert_eq!(
            header.map(|h| h.map(|h| h.remaining_len)),
            Ok(Some(268_435_455))
        );
    }

    #[test]
    fn reassembles_frames_split_at_every_byte() {
        let stream = [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00, 0x40, 0x02, 0x00, 0x07];
        let mut reader = FrameReader::<16>::new();
        let mut frames = std::vec::Vec::new();
        for byte in stream {
            assert_eq!(reader.push(&[byte]), 1);
            while let Some(frame) = reader.next_frame(MAX).unwrap() {
                frames.push(frame.to_vec());
            }
        }
        assert_eq!(frames, [&stream[..4], &stream[4..6], &stream[6..]]);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reader_takes_only_what_fits_and_resumes_after_a_frame_is_taken() {
        let mut reader = FrameReader::<4>::new();
        assert_eq!(reader.push(&[0x20, 0x02, 0x00, 0x00, 0xD0, 0x00]), 4);
        assert_eq!(
            reader.next_frame(MAX).unwrap(),
            Some(&[0x20, 0x02, 0x00, 0x00][..])
        );
        assert_eq!(reader.push(&[0xD0, 0x00]), 2);
        assert_eq!(reader.next_frame(MAX).unwrap(), Some(&[0xD0, 0x00][..]));
    }

    /// A QoS 1 PUBLISH of `payload` on topic `t`, packet identifier `id`.
    fn publish_frame(payload: &[u8], id: u16) -> std::vec::Vec<u8> {
        let mut frame = std::vec![0x32, 5 + payload.len() as u8, 0x00, 0x01, b't'];
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn held_frames_keep_their_order_while_the_frames_behind_them_are_cut_past_them() {
        let (a, b) = (publish_frame(b"aa", 1), publish_frame(b"b", 2));
        let puback = [0x40, 0x02, 0x00, 0x07];
        let pingresp = [0xD0, 0x00];
        let mut reader = FrameReader::<64>::new();
        for frame in [&a[..], &puback, &b, &pingresp] {
            reader.push(frame);
        }
        assert_eq!(reader.cut(MAX, 0), Ok(Some(Cut::Frame(a.len()))));
        reader.hold();
        assert_eq!(reader.cut(MAX, 0), Ok(Some(Cut::Frame(4))));
        assert_eq!(reader.current_frame(), puback);
        assert_eq!(reader.cut(MAX, 0), Ok(Some(Cut::Frame(b.len()))));
        reader.hold();
        assert_eq!(reader.next_frame(MAX), Ok(Some(&pingresp[..])));
        assert_eq!(reader.next_frame(MAX), Ok(None));
        assert_eq!(reader.held(), a.len() + b.len());

        assert_eq!(reader.oldest_held(), Some(&a[..]));
        assert_eq!(reader.release_held(), Some(a.len()));
        assert_eq!(reader.current_frame(), a);
        assert_eq!(reader.release_held(), Some(b.len()));
        assert_eq!(reader.current_frame(), b);
        assert_eq!(reader.release_held(), None);
        assert_eq!(reader.next_frame(MAX), Ok(None));
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn a_buffer_full_of_held_frames_takes_no_byte_more_until_one_is_released() {
        let (a, b) = (publish_frame(b"12345", 1), publish_frame(b"6", 2));
        let mut reader = FrameReader::<16>::new();
        assert_eq!(reader.push(&a), a.len());
        assert_eq!(reader.cut(MAX, 0), Ok(Some(Cut::Frame(a.len()))));
        reader.hold();
        // Only part of the next frame fits behind the held one.
        assert_eq!(reader.push(&b), 16 - a.len());
        assert_eq!(reader.cut(MAX, 0), Ok(None));
        assert!(reader.is_full());
        assert_eq!(reader.push(&b[16 - a.len()..]), 0);

        assert_eq!(reader.release_held(), Some(a.len()));
        assert_eq!(reader.current_frame(), a);
        assert_eq!(reader.push(&b[16 - a.len()..]), b.len() - (16 - a.len()));
        assert_eq!(reader.next_frame(MAX), Ok(Some(&b[..])));
    }

    #[test]
    fn an_oversized_publish_behind_held_frames_is_read_past_and_they_stay_whole() {
        let held = publish_frame(b"kept", 1);
        // A QoS 1 PUBLISH of 40 bytes on topic `t`: more than the 24-byte maximum.
        let mut oversized = std::vec![0x32, 38, 0x00, 0x01, b't', 0x00, 0x02];
        oversized.resize(40, b'x');
        let puback = [0x40, 0x02, 0x00, 0x03];
        let mut reader = FrameReader::<32>::new();
        reader.push(&held);
        assert_eq!(reader.cut(24, 0), Ok(Some(Cut::Frame(held.len()))));
        reader.hold();
        for chunk in oversized.chunks(9) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let taken = reader.push(rest);
                rest = &rest[taken..];
                if let Some(Cut::OversizedPublish(header)) = reader.cut(24, 64).unwrap() {
                    assert_eq!(header.frame_len(), 40);
                    assert_eq!(reader.current_frame(), &oversized[..7]);
                }
            }
        }
        reader.push(&puback);
        assert_eq!(reader.next_frame(24), Ok(Some(&puback[..])));
        assert_eq!(reader.release_held(), Some(held.len()));
        assert_eq!(reader.current_frame(), held);
        assert_eq!(reader.next_frame(24), Ok(None));
        assert_eq!(reader.buffered(), 0);
    }
}
