//! A sans-IO MQTT 3.1.1 client core.
//!
//! The core never reads a clock and never touches a socket. It takes bytes and the current
//! [`Instant`], and gives back bytes to send, [`Event`]s for the application and the next
//! deadline, in the deterministic style of quinn-proto's `Connection`. The firmware (Zephyr TLS
//! sockets) and the host tests (Mosquitto over TCP/TLS) drive the same [`Session`], either
//! directly or through the blocking [`driver::Client`].
//!
//! Layers, outside in:
//! - [`framing`]: fixed header and remaining length (MQTT 3.1.1 §2.2), per-type length and flag
//!   checks, maximum packet size. Only a frame that passed these checks reaches `mqttrs`, whose
//!   0.4.1 decoder indexes without bounds checks.
//! - [`session`]: CONNECT/CONNACK, keepalive, QoS 1/2 flows in both directions, resend with DUP
//!   after a reconnect, re-subscribe, the bounded outbox.
//! - [`backoff`]: reconnect delays with full jitter.
//! - [`driver`]: a blocking loop over a [`driver::Transport`].
//!
//! No heap: every buffer is a fixed-size array sized by const generics.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod backoff;
pub mod driver;
mod error;
pub mod framing;
pub mod session;
pub mod topic;

pub use error::{
    ConfigError, ConnectRefusal, Error, ProtocolError, Recovery, ResourceError, TimeoutKind,
    TransportError,
};
pub use mqttrs::QoS;
pub use session::{
    ConnectOptions, Event, LastWill, Message, MessageId, Password, Session, SessionConfig,
    SubscribeResult, DEFAULT_MAX_DROPPED_PUBLISH_SIZE, OUTBOX_SLOTS, OUTBOX_SLOT_BYTES,
};

/// A point in time, in milliseconds from an arbitrary origin chosen by the caller.
///
/// The firmware passes `k_uptime_get()`, tests pass whatever they like: the core only compares
/// and adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(pub u64);

impl Instant {
    /// This instant plus `ms` milliseconds (saturating: a deadline never wraps into the past).
    pub fn plus_ms(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn ms_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}
