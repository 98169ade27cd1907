//! Keepalive (MQTT 3.1.1 §3.1.2.10, §3.12, §3.13): a PINGREQ when the client has sent nothing
//! for the keepalive interval, and a bound on how long its PINGRESP may take.
//!
//! The deadlines are state, not timers: [`Keepalive`] remembers when the last packet went out
//! and whether a PINGREQ is due or awaiting its answer; [`Session::poll_timeout`] reads the
//! next deadline from it and [`Session::handle_timeout`] moves it on.
//!
//! [`Session::poll_timeout`]: super::Session::poll_timeout
//! [`Session::handle_timeout`]: super::Session::handle_timeout

use super::{encode_bodyless, SessionConfig, PINGREQ};
use crate::error::{Error, TimeoutKind};
use crate::Instant;
use log::debug;

/// Keepalive timing of one connection.
pub(super) struct Keepalive {
    last_transmit: Instant,
    ping: Ping,
}

/// Where the ping stands; at most one is outstanding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ping {
    /// None due, none outstanding: the next is due a keepalive interval after the last
    /// packet written.
    Idle,
    /// PINGREQ to be written with the next [`Session::poll_transmit`].
    ///
    /// [`Session::poll_transmit`]: super::Session::poll_transmit
    Due,
    /// PINGREQ written; PINGRESP expected by this deadline.
    AwaitingResponse(Instant),
}

impl Keepalive {
    pub(super) const fn new() -> Self {
        Self {
            last_transmit: Instant(0),
            ping: Ping::Idle,
        }
    }

    /// A new transport is open at `now`: no ping outstanding, the interval counts from here.
    pub(super) fn restart(&mut self, now: Instant) {
        self.ping = Ping::Idle;
        self.last_transmit = now;
    }

    /// CONNACK accepted: no ping is due or outstanding.
    pub(super) fn handle_connack(&mut self) {
        self.ping = Ping::Idle;
    }

    /// A packet was written at `now`.
    pub(super) fn handle_transmit(&mut self, now: Instant) {
        self.last_transmit = now;
    }

    /// PINGRESP: the broker answered the outstanding ping, if any.
    pub(super) fn handle_pingresp(&mut self) {
        if let Ping::AwaitingResponse(_) = self.ping {
            self.ping = Ping::Idle;
        }
    }

    /// Time has passed: a ping timeout, or a PINGREQ becomes due.
    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        config: &SessionConfig<'_>,
    ) -> Result<(), Error> {
        match self.ping {
            Ping::AwaitingResponse(deadline) if now >= deadline => {
                Err(Error::Timeout(TimeoutKind::Ping))
            }
            Ping::AwaitingResponse(_) => Ok(()),
            Ping::Idle | Ping::Due => {
                if self
                    .keepalive_deadline(config)
                    .is_some_and(|ping_at| now >= ping_at)
                {
                    self.ping = Ping::Due;
                }
                Ok(())
            }
        }
    }

    /// The next keepalive deadline while connected: the PINGRESP timeout, or when a PINGREQ
    /// becomes due (none while one is due and not yet written).
    pub(super) fn poll_timeout(&self, config: &SessionConfig<'_>) -> Option<Instant> {
        match self.ping {
            Ping::Idle => self.keepalive_deadline(config),
            Ping::Due => None,
            Ping::AwaitingResponse(deadline) => Some(deadline),
        }
    }

    /// Writes PINGREQ into `buf` if one is due.
    pub(super) fn transmit_pingreq(
        &mut self,
        now: Instant,
        config: &SessionConfig<'_>,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        if self.ping != Ping::Due {
            return Ok(None);
        }
        let n = encode_bodyless(PINGREQ, buf)?;
        self.ping = Ping::AwaitingResponse(now.plus_ms(u64::from(config.ping_timeout_ms)));
        debug!("sending PINGREQ");
        Ok(Some(n))
    }

    fn keepalive_deadline(&self, config: &SessionConfig<'_>) -> Option<Instant> {
        match config.connect.keep_alive_s {
            0 => None,
            seconds => Some(self.last_transmit.plus_ms(u64::from(seconds) * 1000)),
        }
    }
}
