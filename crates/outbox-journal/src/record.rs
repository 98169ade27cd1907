//! The record codec: one journaled message as the bytes of one flash record (format in the
//! crate documentation). Encoding writes into the caller's buffer; decoding borrows topic and
//! payload from the record.

use core::fmt;

/// The record's header: retain flag and topic length.
pub const HEADER_BYTES: usize = 2;
/// The longest topic a record holds: its length is one byte.
pub const MAX_TOPIC: usize = 255;

const RETAIN_NO: u8 = 0;
const RETAIN_YES: u8 = 1;

/// One journaled QoS 1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The topic it is published on.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// Whether the broker is asked to retain it.
    pub retain: bool,
}

/// Why a message has no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The topic is longer than the one length byte of the record can say.
    TopicTooLong {
        /// The topic's length in bytes.
        len: usize,
    },
    /// The record does not fit the buffer.
    TooLarge {
        /// The record's length in bytes.
        needed: usize,
        /// The buffer's length in bytes.
        capacity: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TopicTooLong { len } => {
                write!(f, "topic of {len} bytes is longer than {MAX_TOPIC} bytes")
            }
            Self::TooLarge { needed, capacity } => {
                write!(
                    f,
                    "record of {needed} bytes is larger than its {capacity}-byte buffer"
                )
            }
        }
    }
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The record ends before its header, or before the topic its header announces.
    TooShort {
        /// The record's length in bytes.
        len: usize,
        /// The length its header requires, at least.
        needed: usize,
    },
    /// The topic is not UTF-8.
    TopicNotUtf8,
    /// The retain byte is neither 0 nor 1.
    UnknownRetain(u8),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len, needed } => {
                write!(f, "record too short: {needed} bytes needed, {len} present")
            }
            Self::TopicNotUtf8 => f.write_str("topic not UTF-8"),
            Self::UnknownRetain(byte) => write!(f, "unknown retain byte {byte} (0 or 1 expected)"),
        }
    }
}

impl<'a> Message<'a> {
    /// The length of its record in bytes.
    pub fn record_len(&self) -> usize {
        HEADER_BYTES
            .saturating_add(self.topic.len())
            .saturating_add(self.payload.len())
    }

    /// Writes its record to the start of `buf`; returns the record, borrowed from `buf`.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], EncodeError> {
        let topic_len = u8::try_from(self.topic.len()).map_err(|_| EncodeError::TopicTooLong {
            len: self.topic.len(),
        })?;
        let needed = self.record_len();
        let too_large = EncodeError::TooLarge {
            needed,
            capacity: buf.len(),
        };
        let record = buf.get_mut(..needed).ok_or(too_large)?;
        let (header, body) = record.split_at_mut(HEADER_BYTES);
        let (topic, payload) = body.split_at_mut(self.topic.len());
        header.copy_from_slice(&[if self.retain { RETAIN_YES } else { RETAIN_NO }, topic_len]);
        topic.copy_from_slice(self.topic.as_bytes());
        payload.copy_from_slice(self.payload);
        Ok(record)
    }

    /// Reads a record; topic and payload are borrowed from it.
    pub fn decode(record: &'a [u8]) -> Result<Self, DecodeError> {
        let Some((&[retain, topic_len], body)) = record.split_first_chunk::<HEADER_BYTES>() else {
            return Err(DecodeError::TooShort {
                len: record.len(),
                needed: HEADER_BYTES,
            });
        };
        let retain = match retain {
            RETAIN_NO => false,
            RETAIN_YES => true,
            other => return Err(DecodeError::UnknownRetain(other)),
        };
        let topic_len = usize::from(topic_len);
        if body.len() < topic_len {
            return Err(DecodeError::TooShort {
                len: record.len(),
                needed: HEADER_BYTES.saturating_add(topic_len),
            });
        }
        let (topic, payload) = body.split_at(topic_len);
        let topic = core::str::from_utf8(topic).map_err(|_| DecodeError::TopicNotUtf8)?;
        Ok(Self {
            topic,
            payload,
            retain,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the firmware has written it since the persistent outbox exists: retain
    /// byte, topic length, topic, payload.
    const GOLDEN: &[u8] = b"\x01\x0bdevice/seqs42";

    #[test]
    fn decodes_a_record_written_by_the_firmware() {
        let message = Message::decode(GOLDEN).unwrap();
        assert_eq!(
            message,
            Message {
                topic: "device/seqs",
                payload: b"42",
                retain: true
            }
        );
    }

    #[test]
    fn encodes_the_record_the_firmware_writes() {
        let mut buf = [0u8; 64];
        let message = Message {
            topic: "device/seqs",
            payload: b"42",
            retain: true,
        };
        assert_eq!(message.encode(&mut buf).unwrap(), GOLDEN);
        assert_eq!(message.record_len(), GOLDEN.len());
    }

    #[test]
    fn encodes_retain_off_as_zero() {
        let mut buf = [0u8; 8];
        let message = Message {
            topic: "t",
            payload: b"",
            retain: false,
        };
        assert_eq!(message.encode(&mut buf).unwrap(), b"\x00\x01t");
    }

    #[test]
    fn empty_payload_round_trips() {
        let mut buf = [0u8; 8];
        let message = Message {
            topic: "a/b",
            payload: b"",
            retain: false,
        };
        let record = message.encode(&mut buf).unwrap();
        assert_eq!(Message::decode(record).unwrap(), message);
    }

    #[test]
    fn fills_a_buffer_of_exactly_the_record_length() {
        let message = Message {
            topic: "a",
            payload: b"xyz",
            retain: false,
        };
        let mut buf = [0u8; 6];
        assert_eq!(message.encode(&mut buf).unwrap().len(), 6);
        let mut short = [0u8; 5];
        assert_eq!(
            message.encode(&mut short),
            Err(EncodeError::TooLarge {
                needed: 6,
                capacity: 5
            })
        );
    }

    #[test]
    fn refuses_a_topic_longer_than_255_bytes() {
        let topic = "t".repeat(256);
        let mut buf = [0u8; 512];
        let message = Message {
            topic: &topic,
            payload: b"",
            retain: false,
        };
        assert_eq!(
            message.encode(&mut buf),
            Err(EncodeError::TopicTooLong { len: 256 })
        );
    }

    #[test]
    fn takes_a_topic_of_255_bytes() {
        let topic = "t".repeat(255);
        let mut buf = [0u8; 512];
        let message = Message {
            topic: &topic,
            payload: b"p",
            retain: true,
        };
        let record = message.encode(&mut buf).unwrap();
        assert_eq!(record.get(1), Some(&255));
        assert_eq!(Message::decode(record).unwrap(), message);
    }

    #[test]
    fn rejects_a_record_shorter_than_its_header() {
        assert_eq!(
            Message::decode(b""),
            Err(DecodeError::TooShort { len: 0, needed: 2 })
        );
        assert_eq!(
            Message::decode(b"\x00"),
            Err(DecodeError::TooShort { len: 1, needed: 2 })
        );
    }

    #[test]
    fn rejects_a_record_that_ends_inside_its_topic() {
        assert_eq!(
            Message::decode(b"\x00\x05abc"),
            Err(DecodeError::TooShort { len: 5, needed: 7 })
        );
    }

    #[test]
    fn rejects_a_topic_that_is_not_utf8() {
        assert_eq!(
            Message::decode(b"\x00\x02\xc3\x28payload"),
            Err(DecodeError::TopicNotUtf8)
        );
    }

    #[test]
    fn rejects_a_retain_byte_other_than_zero_or_one() {
        assert_eq!(
            Message::decode(b"\x02\x01tp"),
            Err(DecodeError::UnknownRetain(2))
        );
    }

    #[test]
    fn errors_read_as_words() {
        extern crate std;
        use std::string::ToString;
        assert_eq!(
            EncodeError::TopicTooLong { len: 300 }.to_string(),
            "topic of 300 bytes is longer than 255 bytes"
        );
        assert_eq!(
            EncodeError::TooLarge {
                needed: 600,
                capacity: 512
            }
            .to_string(),
            "record of 600 bytes is larger than its 512-byte buffer"
        );
        assert_eq!(
            DecodeError::TooShort { len: 1, needed: 2 }.to_string(),
            "record too short: 2 bytes needed, 1 present"
        );
        assert_eq!(DecodeError::TopicNotUtf8.to_string(), "topic not UTF-8");
        assert_eq!(
            DecodeError::UnknownRetain(7).to_string(),
            "unknown retain byte 7 (0 or 1 expected)"
        );
    }
}
