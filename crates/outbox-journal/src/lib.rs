//! The journal of the persistent MQTT outbox, sans IO: a QoS 1 message (MQTT 3.1.1 §4.3.2)
//! that the session queues while the device is offline is also written to flash, one record
//! per outbox slot, so that a reboot before the broker's PUBACK does not lose it. This crate
//! holds the two halves of that which need no flash:
//! - [`record`]: the record codec, what a slot's bytes in flash mean;
//! - [`Journal`]: the slot bookkeeping, which record slot a new message takes, which message id
//!   each record belongs to, which record to delete on a PUBACK, and what to do with each
//!   record found at boot.
//!
//! The firmware does the IO: it stores record `n` as the Zephyr settings entry
//! `app/outbox/<n>` (NVS), and drives a [`Journal`] sized like the session's outbox.
//!
//! # Record format
//!
//! ```text
//! byte 0        retain flag: 0 or 1
//! byte 1        topic length T in bytes, 0..=255
//! bytes 2..2+T  topic, UTF-8
//! bytes 2+T..   payload: the rest of the record
//! ```
//!
//! The QoS is not stored: only QoS 1 messages are journaled. This format is byte for byte the
//! one the firmware wrote before this crate existed (devices in the field have such records in
//! flash): keep it so, or give new records a format of their own that old ones cannot be
//! mistaken for. The test `records_are_byte_for_byte_those_of_the_firmware_before_this_crate`
//! holds the old firmware's code as the reference.
//!
//! # Sizing
//!
//! The slot count is the const parameter of [`Journal`]; the record buffer is the caller's.
//! Both follow the core's outbox (`mqtt_core::Session`'s `SLOTS` and `SLOT_BYTES`): one record
//! per outbox slot, and a buffer of `SLOT_BYTES` holds the record of any message an outbox
//! slot holds, since a record ([`Message::record_len`]) is at least 4 bytes shorter than the
//! PUBLISH packet that carries the same message (fixed header of 2 or more bytes, topic
//! length 2, packet identifier 2, against a record header of 2).
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod journal;
pub mod record;

pub use journal::{Journal, Reservation, Restore, Slot};
pub use record::{DecodeError, EncodeError, Message};
