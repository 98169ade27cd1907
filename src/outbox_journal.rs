//! An outbox that survives a reboot (`CONFIG_APP_PERSISTENT_OUTBOX`): a QoS 1 message queued
//! while the device is not connected is also written to flash (one settings record per outbox
//! slot, `app/outbox/<n>`), deleted when the broker acknowledges it, and queued again at boot.
//!
//! Wear: only messages queued while offline are written (these are the ones a power cut
//! would lose before they left); a connected device's messages are acknowledged within a
//! round trip and are not written, so a high publish rate does not wear the flash. NVS
//! spreads the writes over the storage partition's sectors.
//!
//! The record format and the slot bookkeeping are the host-tested crate `outbox-journal`
//! (crates/outbox-journal); this module only reads, writes and deletes the records (through
//! [`crate::records`]) and logs. Its state, [`OutboxJournal`], is the MQTT thread's: its
//! supervisor owns it and lends it to each publish.

use crate::app::MqttSession;
use crate::net::Errno;
use crate::records;
use core::ffi::{c_int, CStr};
use core::fmt::Write;
use heapless::String;
use log::{info, warn};
use mqtt_core::session::ConnectionState;
use mqtt_core::{Error, MessageId, QoS, Session};
use outbox_journal::{Journal, Message, Restore, Slot};
use static_cell::ConstStaticCell;

// The journal follows the session's outbox: one record per outbox slot, and a record buffer of
// one slot's bytes (a record is shorter than the PUBLISH packet that carries its message). The
// functions below take the session as `OutboxSession`, so that the build fails here if the
// firmware's session ever has another outbox than mqtt-core's default one.
use mqtt_core::{OUTBOX_SLOTS, OUTBOX_SLOT_BYTES};

/// A session whose outbox is the one the journal is sized for.
type OutboxSession<'a, const RX: usize> = Session<'a, RX, OUTBOX_SLOTS, OUTBOX_SLOT_BYTES>;

/// Which outbox slots have a record in flash, and the record buffer: the MQTT thread's.
pub struct OutboxJournal {
    journal: Journal<OUTBOX_SLOTS>,
    /// The record being written or read: here rather than on the MQTT thread's stack.
    record: [u8; OUTBOX_SLOT_BYTES],
}

/// Made at compile time, so that the record buffer lies in `.bss`, never in a stack frame.
static JOURNAL: ConstStaticCell<OutboxJournal> = ConstStaticCell::new(OutboxJournal {
    journal: Journal::new(),
    record: [0; OUTBOX_SLOT_BYTES],
});

/// The record's key, `app/outbox/<n>`, NUL-terminated.
fn key(slot: Slot, name: &mut String<24>) -> &CStr {
    name.clear();
    // "app/outbox/" and a slot number of at most 10 digits, and the NUL: within 24 bytes.
    let _ = write!(name, "app/outbox/{}\0", slot.index());
    CStr::from_bytes_with_nul(name.as_bytes()).unwrap_or(c"app/outbox/invalid")
}

/// The record `slot` holds (empty: none), or the shim's negative errno.
fn load(slot: Slot, buf: &mut [u8]) -> Result<&[u8], c_int> {
    let mut name = String::new();
    match records::load(key(slot, &mut name), buf) {
        Ok(len) => Ok(buf.get(..len.unwrap_or(0)).unwrap_or_default()),
        Err(Errno(errno)) => Err(errno.saturating_neg()),
    }
}

fn save(slot: Slot, record: &[u8]) -> Result<(), c_int> {
    let mut name = String::new();
    records::save(key(slot, &mut name), record).map_err(|Errno(errno)| errno.saturating_neg())
}

fn delete(slot: Slot) {
    let mut name = String::new();
    if let Err(Errno(errno)) = records::delete(key(slot, &mut name)) {
        warn!(
            "outbox: record {} not deleted from flash (errno {errno})",
            slot.index()
        );
    }
}

impl OutboxJournal {
    /// The MQTT thread's journal; once only (a second call panics), at start.
    pub fn take() -> &'static mut Self {
        JOURNAL.take()
    }

    /// Publishes through `session`; a QoS 1 message queued while not connected is journaled.
    pub fn publish(
        &mut self,
        session: &mut MqttSession<'_>,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        self.publish_sized(session, topic, payload, qos, retain)
    }

    fn publish_sized<const RX: usize>(
        &mut self,
        session: &mut OutboxSession<'_, RX>,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        let offline = session.state() != ConnectionState::Connected;
        if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) || qos != QoS::AtLeastOnce || !offline {
            return session.publish(topic, payload, qos, retain);
        }
        let Self { journal, record } = self;
        let Some(reservation) = journal.reserve() else {
            // Every record is taken, so the outbox is full too: the session refuses it.
            return session.publish(topic, payload, qos, retain);
        };
        // Written before it is queued: once the caller hears "queued", a reboot cannot lose it.
        let message = Message {
            topic,
            payload,
            retain,
        };
        let written = match message.encode(record) {
            Err(cause) => {
                warn!("outbox: message on {topic} not journaled ({cause}); kept in RAM only");
                false
            }
            Ok(bytes) => match save(reservation.slot(), bytes) {
                Ok(()) => true,
                Err(errno) => {
                    warn!(
                        "outbox: not journaled (errno {}); kept in RAM only",
                        errno.saturating_neg()
                    );
                    false
                }
            },
        };
        if !written {
            // Nothing was written, so there is nothing to delete.
            let _ = journal.cancel(reservation);
            return session.publish(topic, payload, qos, retain);
        }
        match session.publish(topic, payload, qos, retain) {
            Ok(id) => {
                journal.bind(reservation, id.0);
                Ok(id)
            }
            Err(cause) => {
                delete(journal.cancel(reservation));
                Err(cause)
            }
        }
    }

    /// The broker acknowledged `id`: its record, if any, is no longer needed.
    pub fn acknowledged(&mut self, id: MessageId) {
        if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) {
            return;
        }
        let slot = self.journal.acknowledged(id.0);
        if let Some(slot) = slot {
            delete(slot);
        }
    }

    /// Boot: queues the journaled messages again (before the first connection).
    pub fn restore(&mut self, session: &mut MqttSession<'_>) {
        self.restore_sized(session);
    }

    fn restore_sized<const RX: usize>(&mut self, session: &mut OutboxSession<'_, RX>) {
        if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) {
            return;
        }
        let Self { journal, record } = self;
        let mut restored = 0u32;
        for slot in Journal::<OUTBOX_SLOTS>::slots() {
            let stored = match load(slot, record) {
                Ok(stored) => stored,
                Err(errno) => {
                    warn!(
                        "outbox: record {} unreadable (errno {}); dropped",
                        slot.index(),
                        errno.saturating_neg()
                    );
                    delete(slot);
                    continue;
                }
            };
            match journal.restore(slot, stored) {
                Restore::Empty | Restore::InUse => {}
                Restore::Discard(slot, cause) => {
                    warn!("outbox: record {} dropped: {cause}", slot.index());
                    delete(slot);
                }
                Restore::Requeue(reservation, message) => {
                    match session.publish(
                        message.topic,
                        message.payload,
                        QoS::AtLeastOnce,
                        message.retain,
                    ) {
                        Ok(id) => {
                            journal.bind(reservation, id.0);
                            restored += 1;
                        }
                        Err(cause) => {
                            warn!(
                                "outbox: record {} could not be queued again ({cause}); dropped",
                                slot.index()
                            );
                            delete(journal.cancel(reservation));
                        }
                    }
                }
            }
        }
        if restored > 0 {
            info!("outbox: {restored} message(s) from before the reboot queued again");
        }
    }
}
