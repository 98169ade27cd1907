//! An outbox that survives a reboot (`CONFIG_APP_PERSISTENT_OUTBOX`): a QoS 1 message queued
//! while the device is not connected is also written to flash (one settings record per outbox
//! slot, `app/outbox/<n>`), deleted when the broker acknowledges it, and queued again at boot.
//!
//! Wear: only messages queued while offline are written (these are the ones a power cut
//! would lose before they left); a connected device's messages are acknowledged within a
//! round trip and are not written, so a high publish rate does not wear the flash. NVS
//! spreads the writes over the storage partition's sectors.
//!
//! Only the MQTT thread calls this module.

use crate::ffi;
use crate::sync::lock;
use core::ffi::c_int;
use heapless::Vec;
use log::{info, warn};
use mqtt_core::session::ConnectionState;
use mqtt_core::{Error, MessageId, QoS, Session};
use zephyr::sync::Mutex;

/// As many records as the session has outbox slots.
const SLOTS: usize = 8;
/// Retain flag, topic length, topic (at most 255 bytes), payload.
const RECORD_MAX: usize = 512;

struct Journal {
    /// The message id each record belongs to; `None`: the record slot is free.
    ids: [Option<u32>; SLOTS],
    record: Vec<u8, RECORD_MAX>,
}

static JOURNAL: Mutex<Journal> = Mutex::new(Journal {
    ids: [None; SLOTS],
    record: Vec::new(),
});

fn slot_number(slot: usize) -> c_int {
    c_int::try_from(slot).unwrap_or(c_int::MAX)
}

fn save(slot: usize, record: &[u8]) -> Result<(), c_int> {
    // SAFETY: record is a live slice; settings copies it to flash before returning.
    let ret = unsafe { ffi::app_outbox_save(slot_number(slot), record.as_ptr(), record.len()) };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(())
    }
}

fn delete(slot: usize) {
    // SAFETY: plain call; deleting a record that is not there is harmless.
    let ret = unsafe { ffi::app_outbox_delete(slot_number(slot)) };
    if ret < 0 {
        warn!(
            "outbox: record {slot} not deleted from flash (errno {})",
            ret.saturating_neg()
        );
    }
}

fn encode(
    record: &mut Vec<u8, RECORD_MAX>,
    topic: &str,
    payload: &[u8],
    retain: bool,
) -> Option<()> {
    record.clear();
    record.push(u8::from(retain)).ok()?;
    record.push(u8::try_from(topic.len()).ok()?).ok()?;
    record.extend_from_slice(topic.as_bytes()).ok()?;
    record.extend_from_slice(payload).ok()
}

fn decode(record: &[u8]) -> Option<(&str, &[u8], bool)> {
    let (&retain, rest) = record.split_first()?;
    let (&topic_len, rest) = rest.split_first()?;
    let topic = rest.get(..usize::from(topic_len))?;
    let payload = rest.get(usize::from(topic_len)..)?;
    Some((core::str::from_utf8(topic).ok()?, payload, retain == 1))
}

/// Publishes through `session`; a QoS 1 message queued while not connected is journaled.
pub fn publish(
    session: &mut Session<'_>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> Result<MessageId, Error> {
    let offline = session.state() != ConnectionState::Connected;
    if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) || qos != QoS::AtLeastOnce || !offline {
        return session.publish(topic, payload, qos, retain);
    }
    let mut journal = lock(&JOURNAL);
    let Journal { ids, record } = &mut *journal;
    let Some(slot) = ids.iter().position(Option::is_none) else {
        // Every record is taken, so the outbox is full too: the session refuses it.
        return session.publish(topic, payload, qos, retain);
    };
    // Written before it is queued: once the caller hears "queued", a reboot cannot lose it.
    let journaled = match encode(record, topic, payload, retain) {
        None => {
            warn!("outbox: message on {topic} too large to journal; kept in RAM only");
            false
        }
        Some(()) => match save(slot, record) {
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
    match session.publish(topic, payload, qos, retain) {
        Ok(id) => {
            if journaled {
                if let Some(entry) = ids.get_mut(slot) {
                    *entry = Some(id.0);
                }
            }
            Ok(id)
        }
        Err(cause) => {
            if journaled {
                delete(slot);
            }
            Err(cause)
        }
    }
}

/// The broker acknowledged `id`: its record, if any, is no longer needed.
pub fn acknowledged(id: MessageId) {
    if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) {
        return;
    }
    let mut journal = lock(&JOURNAL);
    if let Some(slot) = journal.ids.iter().position(|entry| *entry == Some(id.0)) {
        delete(slot);
        if let Some(entry) = journal.ids.get_mut(slot) {
            *entry = None;
        }
    }
}

/// Boot: queues the journaled messages again (before the first connection).
pub fn restore(session: &mut Session<'_>) {
    if !cfg!(CONFIG_APP_PERSISTENT_OUTBOX) {
        return;
    }
    let mut journal = lock(&JOURNAL);
    let Journal { ids, record } = &mut *journal;
    let mut restored = 0;
    for slot in 0..SLOTS {
        record.clear();
        let _ = record.resize_default(RECORD_MAX);
        // SAFETY: record has RECORD_MAX initialized bytes; the shim writes at most that many.
        let len =
            unsafe { ffi::app_outbox_load(slot_number(slot), record.as_mut_ptr(), record.len()) };
        let Ok(len) = usize::try_from(len) else {
            warn!(
                "outbox: record {slot} unreadable (errno {}); dropped",
                len.saturating_neg()
            );
            delete(slot);
            continue;
        };
        if len == 0 {
            continue;
        }
        record.truncate(len);
        let queued = match decode(record) {
            Some((topic, payload, retain)) => session
                .publish(topic, payload, QoS::AtLeastOnce, retain)
                .ok(),
            None => None,
        };
        match (queued, ids.get_mut(slot)) {
            (Some(id), Some(entry)) => {
                *entry = Some(id.0);
                restored += 1;
            }
            _ => {
                warn!("outbox: record {slot} could not be queued again; dropped");
                delete(slot);
            }
        }
    }
    if restored > 0 {
        info!("outbox: {restored} message(s) from before the reboot queued again");
    }
}
