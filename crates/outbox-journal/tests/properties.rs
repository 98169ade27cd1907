//! Properties of the record codec and of the slot bookkeeping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use outbox_journal::record::{HEADER_BYTES, MAX_TOPIC};
use outbox_journal::{DecodeError, EncodeError, Journal, Message, Reservation, Restore, Slot};
use proptest::prelude::*;

/// mqtt-core's default outbox: the one the firmware's journal follows.
const SLOTS: usize = mqtt_core::OUTBOX_SLOTS;
const SLOT_BYTES: usize = mqtt_core::OUTBOX_SLOT_BYTES;

/// The codec of src/outbox_journal.rs before this crate (commit ee98041), with
/// `heapless::Vec<u8, 512>` as a `Vec` checked against 512: the reference for the records
/// devices in the field have in flash.
mod firmware_before_this_crate {
    pub const RECORD_MAX: usize = 512;

    pub fn encode(record: &mut Vec<u8>, topic: &str, payload: &[u8], retain: bool) -> Option<()> {
        record.clear();
        record.push(u8::from(retain));
        record.push(u8::try_from(topic.len()).ok()?);
        record.extend_from_slice(topic.as_bytes());
        record.extend_from_slice(payload);
        (record.len() <= RECORD_MAX).then_some(())
    }

    pub fn decode(record: &[u8]) -> Option<(&str, &[u8], bool)> {
        let (&retain, rest) = record.split_first()?;
        let (&topic_len, rest) = rest.split_first()?;
        let topic = rest.get(..usize::from(topic_len))?;
        let payload = rest.get(usize::from(topic_len)..)?;
        Some((core::str::from_utf8(topic).ok()?, payload, retain == 1))
    }
}

/// Topics of up to 255 bytes, multi-byte characters included.
fn topic() -> impl Strategy<Value = String> {
    "[a-z0-9/+#é€😀 ]{0,120}".prop_filter("at most 255 bytes", |t| t.len() <= MAX_TOPIC)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..SLOT_BYTES)
}

fn publish_len(topic: &str, payload: &[u8], retain: bool) -> Option<usize> {
    let packet = mqttrs::Packet::Publish(mqttrs::Publish {
        dup: false,
        qospid: mqttrs::QosPid::AtLeastOnce(mqttrs::Pid::new()),
        retain,
        topic_name: topic,
        payload,
    });
    let mut buf = vec![0u8; SLOT_BYTES];
    mqttrs::encode_slice(&packet, &mut buf).ok()
}

proptest! {
    /// Every message within the limits comes back from its record as it went in.
    #[test]
    fn records_round_trip(topic in topic(), payload in payload(), retain in any::<bool>()) {
        let message = Message { topic: &topic, payload: &payload, retain };
        let mut buf = [0u8; HEADER_BYTES + MAX_TOPIC + SLOT_BYTES];
        let record = message.encode(&mut buf).unwrap();
        prop_assert_eq!(record.len(), message.record_len());
        prop_assert_eq!(Message::decode(record), Ok(message));
    }

    /// Encoding never writes past the buffer and fails only for the reasons it names.
    #[test]
    fn encoding_fails_only_for_a_long_topic_or_a_small_buffer(
        topic in "[a-z]{0,300}",
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        capacity in 0usize..400,
    ) {
        let message = Message { topic: &topic, payload: &payload, retain: false };
        let mut buf = vec![0xAAu8; capacity + 16];
        let result = message.encode(&mut buf[..capacity]).map(<[u8]>::len);
        if topic.len() > MAX_TOPIC {
            prop_assert_eq!(result, Err(EncodeError::TopicTooLong { len: topic.len() }));
        } else if message.record_len() > capacity {
            prop_assert_eq!(
                result,
                Err(EncodeError::TooLarge { needed: message.record_len(), capacity })
            );
        } else {
            prop_assert_eq!(result, Ok(message.record_len()));
        }
        prop_assert!(buf[capacity..].iter().all(|&b| b == 0xAA), "wrote past the buffer");
    }

    /// Arbitrary bytes never panic the decoder, and whatever decodes is canonical: it encodes
    /// back to the very same bytes (one message, one record).
    #[test]
    fn arbitrary_bytes_decode_without_panic_and_canonically(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        if let Ok(message) = Message::decode(&bytes) {
            let mut buf = vec![0u8; bytes.len()];
            prop_assert_eq!(message.encode(&mut buf), Ok(&bytes[..]));
        }
    }

    /// Records that nearly decode (a valid header) are decoded or refused, never misread.
    #[test]
    fn records_with_a_valid_header_decode_or_name_the_cause(
        retain in 0u8..3,
        topic_len in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = vec![retain, topic_len];
        bytes.extend_from_slice(&body);
        match Message::decode(&bytes) {
            Ok(message) => {
                prop_assert!(retain <= 1);
                prop_assert_eq!(message.topic.len(), usize::from(topic_len));
                prop_assert_eq!(message.payload, &body[usize::from(topic_len)..]);
            }
            Err(DecodeError::UnknownRetain(byte)) => prop_assert_eq!(byte, 2),
            Err(DecodeError::TooShort { len, needed }) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert_eq!(needed, HEADER_BYTES + usize::from(topic_len));
                prop_assert!(body.len() < usize::from(topic_len));
            }
            Err(DecodeError::TopicNotUtf8) => {
                prop_assert!(std::str::from_utf8(&body[..usize::from(topic_len)]).is_err());
            }
        }
    }

    /// Records are byte for byte those of the firmware before this crate, both ways: what it
    /// wrote, this crate reads as the same message; what this crate writes, it read alike.
    #[test]
    fn records_are_byte_for_byte_those_of_the_firmware_before_this_crate(
        topic in topic(),
        payload in payload(),
        retain in any::<bool>(),
    ) {
        let message = Message { topic: &topic, payload: &payload, retain };
        let mut old = Vec::new();
        let old_fits = firmware_before_this_crate::encode(&mut old, &topic, &payload, retain);
        let mut buf = [0u8; firmware_before_this_crate::RECORD_MAX];
        let new = message.encode(&mut buf);
        prop_assert_eq!(old_fits.is_some(), new.is_ok());
        if let Ok(record) = new {
            prop_assert_eq!(record, &old[..]);
            prop_assert_eq!(
                firmware_before_this_crate::decode(record),
                Some((topic.as_str(), &payload[..], retain))
            );
            prop_assert_eq!(Message::decode(&old), Ok(message));
        }
    }

    /// What the old firmware's decoder read from any bytes it could have written (retain 0 or
    /// 1), this crate reads alike.
    #[test]
    fn decodes_like_the_firmware_before_this_crate(
        retain in 0u8..=1,
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut record = vec![retain];
        record.extend_from_slice(&bytes);
        let old = firmware_before_this_crate::decode(&record);
        let new = Message::decode(&record).ok().map(|m| (m.topic, m.payload, m.retain));
        prop_assert_eq!(old, new);
    }

    /// A buffer of the core's SLOT_BYTES holds the record of every message an outbox slot of
    /// SLOT_BYTES holds: a record is at least 4 bytes shorter than its QoS 1 PUBLISH packet,
    /// as mqtt-core encodes it (mqttrs).
    #[test]
    fn a_slot_sized_buffer_holds_the_record_of_every_message_a_slot_holds(
        topic in topic(),
        payload in payload(),
        retain in any::<bool>(),
    ) {
        let message = Message { topic: &topic, payload: &payload, retain };
        if let Some(packet_len) = publish_len(&topic, &payload, retain) {
            prop_assert!(message.record_len() + 4 <= packet_len);
            let mut buf = [0u8; SLOT_BYTES];
            prop_assert!(message.encode(&mut buf).is_ok());
        }
    }
}

/// One step of the firmware's use of the journal.
#[derive(Debug, Clone)]
enum Op {
    /// An offline publish: reserve a slot.
    Reserve,
    /// The session accepted the message of the n-th open reservation.
    Bind(usize),
    /// Not written, or refused by the session: cancel the n-th open reservation.
    Cancel(usize),
    /// The broker acknowledged the n-th bound message (or, past the end, one with no record).
    Acknowledge(usize),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(
        prop_oneof![
            3 => Just(Op::Reserve),
            2 => any::<usize>().prop_map(Op::Bind),
            1 => any::<usize>().prop_map(Op::Cancel),
            2 => any::<usize>().prop_map(Op::Acknowledge),
        ],
        0..64,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Free,
    Reserved,
    Bound(u32),
}

proptest! {
    /// Against a model of the slots: a slot is never handed out while taken, a slot is refused
    /// only when all are taken, an acknowledgement frees exactly the slot of its message, and
    /// a cancel exactly the cancelled one.
    #[test]
    fn bookkeeping_matches_a_model_of_the_slots(ops in ops()) {
        let mut journal = Journal::<SLOTS>::new();
        let mut model = [Model::Free; SLOTS];
        let mut open: Vec<Reservation> = Vec::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Reserve => match journal.reserve() {
                    Some(reservation) => {
                        let slot = reservation.slot().index();
                        prop_assert_eq!(model[slot], Model::Free, "slot {} handed out twice", slot);
                        prop_assert!(model[..slot].iter().all(|m| *m != Model::Free));
                        model[slot] = Model::Reserved;
                        open.push(reservation);
                    }
                    None => prop_assert!(model.iter().all(|m| *m != Model::Free)),
                },
                Op::Bind(n) if !open.is_empty() => {
                    let reservation = open.remove(n % open.len());
                    let slot = reservation.slot().index();
                    journal.bind(reservation, next_id);
                    model[slot] = Model::Bound(next_id);
                    next_id += 1;
                }
                Op::Cancel(n) if !open.is_empty() => {
                    let reservation = open.remove(n % open.len());
                    let slot = reservation.slot().index();
                    prop_assert_eq!(journal.cancel(reservation).index(), slot);
                    model[slot] = Model::Free;
                }
                Op::Acknowledge(n) => {
                    let bound: Vec<(usize, u32)> = model
                        .iter()
                        .enumerate()
                        .filter_map(|(i, m)| match m {
                            Model::Bound(id) => Some((i, *id)),
                            _ => None,
                        })
                        .collect();
                    match bound.get(n % (bound.len() + 1)) {
                        Some(&(slot, id)) => {
                            prop_assert_eq!(journal.acknowledged(id).map(Slot::index), Some(slot));
                            model[slot] = Model::Free;
                        }
                        None => prop_assert_eq!(journal.acknowledged(next_id + 1), None),
                    }
                }
                Op::Bind(_) | Op::Cancel(_) => {}
            }
            let taken = model.iter().filter(|m| **m != Model::Free).count();
            prop_assert_eq!(journal.in_use(), taken);
            for (slot, m) in model.iter().enumerate() {
                if let Model::Bound(id) = m {
                    prop_assert_eq!(journal.slot_of(*id).map(Slot::index), Some(slot));
                }
            }
        }
    }

    /// At boot every slot's record is requeued if it decodes, discarded if it does not, and
    /// left alone if the slot is empty; the requeued ones are freed by their acknowledgement.
    #[test]
    fn boot_restores_every_record_that_decodes_and_discards_the_rest(
        stored in proptest::collection::vec(
            prop_oneof![
                Just(Vec::new()),
                (topic(), payload(), any::<bool>()).prop_map(|(t, p, r)| {
                    let mut record = vec![u8::from(r), t.len() as u8];
                    record.extend_from_slice(t.as_bytes());
                    record.extend_from_slice(&p);
                    record
                }),
                proptest::collection::vec(any::<u8>(), 1..8),
            ],
            SLOTS,
        ),
    ) {
        let mut journal = Journal::<SLOTS>::new();
        let mut requeued = Vec::new();
        for (slot, record) in Journal::<SLOTS>::slots().zip(&stored) {
            match journal.restore(slot, record) {
                Restore::Empty => prop_assert!(record.is_empty()),
                Restore::Requeue(reservation, message) => {
                    prop_assert_eq!(Message::decode(record), Ok(message));
                    prop_assert_eq!(reservation.slot(), slot);
                    let id = 1000 + slot.index() as u32;
                    journal.bind(reservation, id);
                    requeued.push((id, slot));
                }
                Restore::Discard(discarded, cause) => {
                    prop_assert_eq!(discarded, slot);
                    prop_assert_eq!(Message::decode(record), Err(cause));
                }
                Restore::InUse => prop_assert!(false, "a fresh journal has no slot in use"),
            }
        }
        prop_assert_eq!(journal.in_use(), requeued.len());
        for (id, slot) in requeued {
            prop_assert_eq!(journal.acknowledged(id), Some(slot));
        }
        prop_assert_eq!(journal.in_use(), 0);
    }
}
