//! Record harness: the same input is read three ways.
//!
//! 1. As one flash record: `Message::decode` accepts it exactly when an independent reading of
//!    the format does, with the error that reading names; what decodes re-encodes to the same
//!    bytes, and not into a buffer one byte shorter.
//! 2. As a message to encode (`[retain, topic length, capacity, topic…, payload…]`, the topic
//!    made UTF-8 and up to 300 bytes long): encoding fails exactly for a topic over 255 bytes
//!    or a record over the buffer, and what encodes decodes back equal.
//! 3. As a script of journal operations on a `Journal<SLOTS>` against a model of its slots:
//!    `reserve`, `bind`, `cancel`, `acknowledged`, `slot_of` and `restore` of record bytes from
//!    the input on slots in and out of range. Every answer matches the model; `in_use` never
//!    exceeds `SLOTS`; no slot out of range is ever handed out; the reservations held are
//!    exactly the model's reserved slots.
//!
//! Script layout: one byte per operation (`op % 6`), then its arguments (see [`script`]).

use outbox_journal::record::{HEADER_BYTES, MAX_TOPIC};
use outbox_journal::{DecodeError, EncodeError, Journal, Message, Reservation, Restore, Slot};

/// Record slots of the journal under test.
pub const SLOTS: usize = 4;
/// Slots the script restores: twice as many, so that half are out of range.
const SCRIPT_SLOTS: usize = 2 * SLOTS;

/// The fuzz entry point.
pub fn run(data: &[u8]) {
    check_record(data);
    check_encode(data);
    script(data);
}

/// What an independent reading of the record format makes of `record`.
pub fn reference_decode(record: &[u8]) -> Result<(bool, &[u8], &[u8]), DecodeError> {
    if record.len() < 2 {
        return Err(DecodeError::TooShort {
            len: record.len(),
            needed: 2,
        });
    }
    let retain = match record[0] {
        0 => false,
        1 => true,
        other => return Err(DecodeError::UnknownRetain(other)),
    };
    let end = 2 + record[1] as usize;
    if record.len() < end {
        return Err(DecodeError::TooShort {
            len: record.len(),
            needed: end,
        });
    }
    Ok((retain, &record[2..end], &record[end..]))
}

/// Part 1: `record` as one flash record.
pub fn check_record(record: &[u8]) {
    let decoded = Message::decode(record);
    match (reference_decode(record), decoded) {
        (Ok((retain, topic, payload)), Ok(message)) => {
            assert_eq!(message.retain, retain);
            assert_eq!(message.topic.as_bytes(), topic);
            assert_eq!(message.payload, payload);
            assert_eq!(message.record_len(), record.len());
            let mut buf = vec![0u8; record.len()];
            assert_eq!(message.encode(&mut buf), Ok(record), "re-encoding differs");
            let mut short = vec![0u8; record.len() - 1];
            assert_eq!(
                message.encode(&mut short),
                Err(EncodeError::TooLarge {
                    needed: record.len(),
                    capacity: record.len() - 1
                })
            );
        }
        (Ok((_, topic, _)), Err(error)) => {
            assert!(
                std::str::from_utf8(topic).is_err(),
                "decode refused a well-formed record: {error:?}"
            );
            assert_eq!(error, DecodeError::TopicNotUtf8);
        }
        (Err(expected), found) => assert_eq!(found.err(), Some(expected)),
    }
}

/// Part 2: a message made from the input, encoded into a buffer of a size from the input.
pub fn check_encode(data: &[u8]) {
    let [retain, topic_seed, capacity_seed, rest @ ..] = data else {
        return;
    };
    // Topic lengths 0..=300 (some over the limit), cut at a character boundary.
    let wanted = usize::from(*topic_seed) * 300 / 255;
    let (topic_bytes, payload) = rest.split_at(wanted.min(rest.len()));
    let topic = String::from_utf8_lossy(topic_bytes);
    let message = Message {
        topic: &topic,
        payload,
        retain: retain & 1 == 1,
    };
    let needed = HEADER_BYTES + topic.len() + payload.len();
    assert_eq!(message.record_len(), needed);
    // Buffers around the record's length: too short by up to 8 bytes, exact, or longer.
    let capacity = (needed + usize::from(*capacity_seed % 16)).saturating_sub(8);
    let mut buf = vec![0xA5u8; capacity];
    match message.encode(&mut buf) {
        Ok(record) => {
            assert!(topic.len() <= MAX_TOPIC && needed <= capacity);
            assert_eq!(record.len(), needed);
            assert_eq!(Message::decode(record), Ok(message), "round trip");
        }
        Err(EncodeError::TopicTooLong { len }) => {
            assert!(topic.len() > MAX_TOPIC);
            assert_eq!(len, topic.len());
        }
        Err(EncodeError::TooLarge {
            needed: n,
            capacity: c,
        }) => {
            assert!(topic.len() <= MAX_TOPIC && needed > capacity);
            assert_eq!((n, c), (needed, capacity));
        }
    }
}

/// A slot of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Free,
    Reserved,
    Bound(u32),
}

/// Part 3: the input as a script of journal operations.
pub fn script(data: &[u8]) {
    let mut journal = Journal::<SLOTS>::new();
    let mut model = [Model::Free; SLOTS];
    let mut held: Vec<Reservation> = Vec::new();
    let slots: Vec<Slot> = Journal::<SCRIPT_SLOTS>::slots().collect();
    assert_eq!(slots.len(), SCRIPT_SLOTS);
    let mut input = data.iter().copied();
    while let Some(op) = input.next() {
        let arg = input.next().unwrap_or(0);
        match op % 6 {
            0 => match journal.reserve() {
                Some(reservation) => {
                    let index = reservation.slot().index();
                    let lowest = model.iter().position(|m| *m == Model::Free);
                    assert_eq!(Some(index), lowest, "reserve took slot {index}");
                    model[index] = Model::Reserved;
                    held.push(reservation);
                }
                None => assert!(!model.contains(&Model::Free), "reserve refused a free slot"),
            },
            1 if !held.is_empty() => {
                let reservation = held.remove(usize::from(arg) % held.len());
                let index = reservation.slot().index();
                let id = u32::from(input.next().unwrap_or(0) % 8);
                journal.bind(reservation, id);
                model[index] = Model::Bound(id);
            }
            2 if !held.is_empty() => {
                let reservation = held.remove(usize::from(arg) % held.len());
                let index = reservation.slot().index();
                let slot = journal.cancel(reservation);
                assert_eq!(slot.index(), index);
                model[index] = Model::Free;
            }
            3 => {
                let id = u32::from(arg % 8);
                let expected = model.iter().position(|m| *m == Model::Bound(id));
                assert_eq!(journal.acknowledged(id).map(Slot::index), expected);
                if let Some(index) = expected {
                    model[index] = Model::Free;
                }
            }
            4 => {
                let id = u32::from(arg % 8);
                let expected = model.iter().position(|m| *m == Model::Bound(id));
                assert_eq!(journal.slot_of(id).map(Slot::index), expected);
            }
            _ => {
                // restore(slot, record): the record is the next `len` bytes of the input.
                let slot = slots[usize::from(arg) % SCRIPT_SLOTS];
                let len = usize::from(input.next().unwrap_or(0) % 32);
                let record: Vec<u8> = input.by_ref().take(len).collect();
                restore(&mut journal, &mut model, &mut held, slot, &record);
            }
        }
        check(&journal, &model, &held);
    }
    // The end of the boot: whatever is still reserved is given back.
    for reservation in held.drain(..) {
        let index = reservation.slot().index();
        assert_eq!(journal.cancel(reservation).index(), index);
        model[index] = Model::Free;
    }
    check(&journal, &model, &held);
}

fn restore(
    journal: &mut Journal<SLOTS>,
    model: &mut [Model; SLOTS],
    held: &mut Vec<Reservation>,
    slot: Slot,
    record: &[u8],
) {
    let index = slot.index();
    let free = model.get(index) == Some(&Model::Free);
    match journal.restore(slot, record) {
        Restore::InUse => assert!(!free, "restore called free slot {index} in use"),
        Restore::Empty => assert!(free && record.is_empty()),
        Restore::Discard(discarded, cause) => {
            assert!(free && !record.is_empty());
            assert_eq!(discarded, slot);
            assert_eq!(Message::decode(record), Err(cause));
        }
        Restore::Requeue(reservation, message) => {
            assert!(free && !record.is_empty());
            assert!(index < SLOTS, "restore handed out slot {index} of {SLOTS}");
            assert_eq!(reservation.slot(), slot);
            assert_eq!(Message::decode(record), Ok(message));
            model[index] = Model::Reserved;
            held.push(reservation);
        }
    }
}

/// The journal agrees with the model after every step.
fn check(journal: &Journal<SLOTS>, model: &[Model; SLOTS], held: &[Reservation]) {
    let taken = model.iter().filter(|m| **m != Model::Free).count();
    assert_eq!(journal.in_use(), taken);
    assert!(journal.in_use() <= SLOTS);
    let reserved = model.iter().filter(|m| **m == Model::Reserved).count();
    assert_eq!(held.len(), reserved);
    for reservation in held {
        let index = reservation.slot().index();
        assert!(index < SLOTS, "reservation of slot {index} of {SLOTS}");
        assert_eq!(model[index], Model::Reserved);
    }
    for id in 0..8 {
        let expected = model.iter().position(|m| *m == Model::Bound(id));
        assert_eq!(journal.slot_of(id).map(Slot::index), expected);
    }
}
