//! The slot bookkeeping: which record slot belongs to which message of the session's outbox.
//!
//! A slot is free, reserved (its record is being written, the session has not yet accepted
//! the message), or bound to the message id the session gave the message. The caller does the
//! IO in between and tells the journal how it went:
//!
//! ```text
//! publish offline:  reserve ─ write record ─┬─ failed ───────────────── cancel
//!                                           └─ session.publish ─┬─ Ok(id) ── bind(id)
//!                                                               └─ Err ───── cancel, delete
//! PUBACK for id:    acknowledged(id) ── Some(slot): delete its record
//! boot:             for each slot: load ─ restore(slot, record) ─┬─ Requeue: publish, then
//!                                                                │  bind or cancel + delete
//!                                                                ├─ Discard: delete
//!                                                                └─ Empty, InUse: nothing
//! ```

use crate::record::{DecodeError, Message};

/// A record slot: `0..SLOTS`, the `n` of the firmware's settings key `app/outbox/<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(usize);

impl Slot {
    /// Its number.
    pub fn index(self) -> usize {
        self.0
    }
}

/// A slot set aside for one message while its record is written and the session decides.
/// Give it back with [`Journal::bind`] or [`Journal::cancel`]; until then no one else gets
/// the slot.
#[must_use = "a reservation keeps its slot taken until it is bound or cancelled"]
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation(Slot);

impl Reservation {
    /// The slot whose record to write.
    pub fn slot(&self) -> Slot {
        self.0
    }
}

/// What to do at boot with the record one slot held.
#[derive(Debug, PartialEq, Eq)]
pub enum Restore<'r> {
    /// The slot holds nothing.
    Empty,
    /// Queue the message again (QoS 1); then [`Journal::bind`] the reservation to the id the
    /// session gives it, or, if the session refuses it, [`Journal::cancel`] the reservation
    /// and delete the record.
    Requeue(Reservation, Message<'r>),
    /// The record is not one: delete it.
    Discard(Slot, DecodeError),
    /// The slot is already taken in this run (restoring is for boot, before any publish):
    /// leave its record alone.
    InUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Free,
    Reserved,
    Bound(u32),
}

/// The record slots of an outbox of `SLOTS` messages, one each. Message ids are the session's
/// (`mqtt_core::MessageId`'s number), unique among the messages in its outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal<const SLOTS: usize> {
    entries: [Entry; SLOTS],
}

impl<const SLOTS: usize> Default for Journal<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOTS: usize> Journal<SLOTS> {
    /// Every slot free (a `const fn`, so that the journal can be a `static`).
    pub const fn new() -> Self {
        Self {
            entries: [Entry::Free; SLOTS],
        }
    }

    /// Every slot, in order: the ones to load at boot.
    pub fn slots() -> impl Iterator<Item = Slot> {
        (0..SLOTS).map(Slot)
    }

    /// Takes the lowest free slot for a new record; `None` when every slot is taken (then the
    /// outbox of as many slots is full too, unless messages queued online fill it).
    pub fn reserve(&mut self) -> Option<Reservation> {
        let index = self.entries.iter().position(|e| *e == Entry::Free)?;
        self.set(index, Entry::Reserved);
        Some(Reservation(Slot(index)))
    }

    /// The session accepted the reserved slot's message as `id`: its record is kept until
    /// [`acknowledged`](Self::acknowledged)`(id)`.
    pub fn bind(&mut self, reservation: Reservation, id: u32) {
        self.set(reservation.0 .0, Entry::Bound(id));
    }

    /// The message was not journaled or not queued: frees its slot, and returns it so that
    /// the caller deletes the record if it wrote one.
    #[must_use = "a record written for the reservation must be deleted"]
    pub fn cancel(&mut self, reservation: Reservation) -> Slot {
        self.set(reservation.0 .0, Entry::Free);
        reservation.0
    }

    /// The broker acknowledged `id`: frees the slot of its record and returns it, whose record
    /// the caller deletes; `None` when `id` has no record (queued online, or not journaled).
    #[must_use = "the record of an acknowledged message must be deleted"]
    pub fn acknowledged(&mut self, id: u32) -> Option<Slot> {
        let index = self.entries.iter().position(|e| *e == Entry::Bound(id))?;
        self.set(index, Entry::Free);
        Some(Slot(index))
    }

    /// At boot: what to do with `record`, what `slot` holds (empty when it holds nothing). A
    /// record to queue again takes its slot, reserved, until bound or cancelled.
    pub fn restore<'r>(&mut self, slot: Slot, record: &'r [u8]) -> Restore<'r> {
        if self.entries.get(slot.0) != Some(&Entry::Free) {
            return Restore::InUse;
        }
        if record.is_empty() {
            return Restore::Empty;
        }
        match Message::decode(record) {
            Ok(message) => {
                self.set(slot.0, Entry::Reserved);
                Restore::Requeue(Reservation(slot), message)
            }
            Err(cause) => Restore::Discard(slot, cause),
        }
    }

    /// How many slots are taken (reserved or bound).
    pub fn in_use(&self) -> usize {
        self.entries.iter().filter(|e| **e != Entry::Free).count()
    }

    /// The slot whose record belongs to message `id`, if any.
    pub fn slot_of(&self, id: u32) -> Option<Slot> {
        self.entries
            .iter()
            .position(|e| *e == Entry::Bound(id))
            .map(Slot)
    }

    fn set(&mut self, index: usize, entry: Entry) {
        if let Some(e) = self.entries.get_mut(index) {
            *e = entry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_lowest_free_slot() {
        let mut journal = Journal::<3>::new();
        let first = journal.reserve().unwrap();
        let second = journal.reserve().unwrap();
        assert_eq!((first.slot().index(), second.slot().index()), (0, 1));
        let freed = journal.cancel(first);
        assert_eq!(freed.index(), 0);
        assert_eq!(journal.reserve().unwrap().slot().index(), 0);
    }

    #[test]
    fn refuses_a_slot_when_all_are_taken() {
        let mut journal = Journal::<2>::new();
        let a = journal.reserve().unwrap();
        journal.bind(a, 10);
        let _b = journal.reserve().unwrap();
        assert_eq!(journal.reserve(), None);
        assert_eq!(journal.in_use(), 2);
    }

    #[test]
    fn a_journal_of_no_slots_journals_nothing() {
        let mut journal = Journal::<0>::new();
        assert_eq!(journal.reserve(), None);
        assert_eq!(Journal::<0>::slots().count(), 0);
    }

    #[test]
    fn acknowledgement_frees_the_slot_of_that_message_only() {
        let mut journal = Journal::<3>::new();
        for id in [7, 8, 9] {
            let r = journal.reserve().unwrap();
            journal.bind(r, id);
        }
        assert_eq!(journal.acknowledged(8).map(Slot::index), Some(1));
        assert_eq!(journal.slot_of(7).map(Slot::index), Some(0));
        assert_eq!(journal.slot_of(8), None);
        assert_eq!(journal.slot_of(9).map(Slot::index), Some(2));
        assert_eq!(journal.in_use(), 2);
    }

    #[test]
    fn acknowledgement_of_an_unjournaled_message_deletes_nothing() {
        let mut journal = Journal::<2>::new();
        let r = journal.reserve().unwrap();
        journal.bind(r, 1);
        assert_eq!(journal.acknowledged(2), None);
        assert_eq!(journal.in_use(), 1);
    }

    #[test]
    fn second_acknowledgement_of_a_message_deletes_nothing() {
        let mut journal = Journal::<2>::new();
        let r = journal.reserve().unwrap();
        journal.bind(r, 1);
        assert!(journal.acknowledged(1).is_some());
        assert_eq!(journal.acknowledged(1), None);
    }

    #[test]
    fn reserved_slot_is_not_freed_by_an_acknowledgement() {
        let mut journal = Journal::<1>::new();
        let r = journal.reserve().unwrap();
        assert_eq!(journal.acknowledged(0), None);
        assert_eq!(journal.in_use(), 1);
        journal.bind(r, 0);
        assert_eq!(journal.acknowledged(0).map(Slot::index), Some(0));
    }

    #[test]
    fn cancelled_slot_is_returned_for_deleting_its_record() {
        let mut journal = Journal::<2>::new();
        let _ = journal.reserve().unwrap();
        let r = journal.reserve().unwrap();
        assert_eq!(journal.cancel(r).index(), 1);
        assert_eq!(journal.in_use(), 1);
    }

    #[test]
    fn boot_requeues_a_record_and_keeps_its_slot_until_bound() {
        let mut journal = Journal::<2>::new();
        let slot = Journal::<2>::slots().nth(1).unwrap();
        let Restore::Requeue(reservation, message) = journal.restore(slot, b"\x00\x01tpayload")
        else {
            panic!("not requeued");
        };
        assert_eq!(
            message,
            Message {
                topic: "t",
                payload: b"payload",
                retain: false
            }
        );
        assert_eq!(reservation.slot(), slot);
        // A publish while restoring does not take the slot being restored.
        assert_eq!(journal.reserve().unwrap().slot().index(), 0);
        journal.bind(reservation, 42);
        assert_eq!(journal.acknowledged(42), Some(slot));
    }

    #[test]
    fn boot_leaves_an_empty_slot_free() {
        let mut journal = Journal::<1>::new();
        let slot = Journal::<1>::slots().next().unwrap();
        assert_eq!(journal.restore(slot, b""), Restore::Empty);
        assert_eq!(journal.in_use(), 0);
    }

    #[test]
    fn boot_discards_a_record_that_does_not_decode() {
        let mut journal = Journal::<1>::new();
        let slot = Journal::<1>::slots().next().unwrap();
        assert_eq!(
            journal.restore(slot, b"\x05\x00"),
            Restore::Discard(slot, DecodeError::UnknownRetain(5))
        );
        assert_eq!(journal.in_use(), 0);
    }

    #[test]
    fn boot_frees_a_slot_the_session_refused() {
        let mut journal = Journal::<1>::new();
        let slot = Journal::<1>::slots().next().unwrap();
        let Restore::Requeue(reservation, _) = journal.restore(slot, b"\x01\x00") else {
            panic!("not requeued");
        };
        assert_eq!(journal.cancel(reservation), slot);
        assert_eq!(journal.in_use(), 0);
    }

    #[test]
    fn restoring_a_taken_slot_leaves_it_alone() {
        let mut journal = Journal::<1>::new();
        let r = journal.reserve().unwrap();
        let slot = r.slot();
        journal.bind(r, 3);
        assert_eq!(journal.restore(slot, b"\x00\x01t"), Restore::InUse);
        assert_eq!(journal.slot_of(3), Some(slot));
    }

    #[test]
    fn lists_every_slot_in_order() {
        let indices: [usize; 4] =
            core::array::from_fn(|i| Journal::<4>::slots().nth(i).unwrap().index());
        assert_eq!(indices, [0, 1, 2, 3]);
        assert_eq!(Journal::<4>::slots().count(), 4);
    }
}
