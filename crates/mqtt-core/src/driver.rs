//! A blocking driver: one loop that moves bytes between a [`Transport`] and a [`Session`].
//!
//! The transport is `embedded_io::{Read, Write}` plus [`ReadTimeout`], the contract of
//! coreMQTT's `transport_interface.h`: the driver never opens or configures a connection, it
//! writes whole packets and reads with a bound on how long a read may block, and time comes
//! from an injected [`Clock`]. The firmware implements it on a Zephyr TLS socket, the host
//! tests on `std::net::TcpStream` and on a rustls stream.

use crate::error::{Error, TransportError};
use crate::session::{ConnectionState, Event, Session};
use crate::Instant;
use embedded_io::{Error as _, ErrorKind, Read, Write};

/// What a transport needs beyond `embedded_io`: a bound on how long `read` blocks.
///
/// After `set_read_timeout(ms)`, a `read` that received nothing for `ms` milliseconds
/// returns an error whose `kind()` is [`ErrorKind::TimedOut`]; `Ok(0)` still means the peer
/// closed the stream.
pub trait ReadTimeout: embedded_io::ErrorType {
    /// Sets how long the next reads may wait.
    fn set_read_timeout(&mut self, timeout_ms: u32) -> Result<(), Self::Error>;
}

/// A reliable, ordered byte stream (TCP or TLS) the driver can run MQTT over.
pub trait Transport: Read + Write + ReadTimeout {}

impl<T: Read + Write + ReadTimeout> Transport for T {}

/// A monotonic clock.
pub trait Clock {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// Drives a [`Session`] over a [`Transport`]: `TX` bytes of transmit buffer batch the packets
/// of one round into as few writes as possible.
pub struct Client<
    'a,
    T: Transport,
    C: Clock,
    const RX: usize = 1024,
    const SLOTS: usize = 8,
    const SLOT_BYTES: usize = 512,
    const TX: usize = 1024,
> {
    session: Session<'a, RX, SLOTS, SLOT_BYTES>,
    transport: Option<T>,
    clock: C,
    tx: [u8; TX],
}

impl<
        'a,
        T: Transport,
        C: Clock,
        const RX: usize,
        const SLOTS: usize,
        const SLOT_BYTES: usize,
        const TX: usize,
    > Client<'a, T, C, RX, SLOTS, SLOT_BYTES, TX>
{
    /// A client with no transport yet. `const`, so that a client with its buffers can be a
    /// `static` made at compile time (with [`Session::unconfigured`]), never on a stack.
    pub const fn new(session: Session<'a, RX, SLOTS, SLOT_BYTES>, clock: C) -> Self {
        Self {
            session,
            transport: None,
            clock,
            tx: [0; TX],
        }
    }

    /// The session, to publish or subscribe.
    pub fn session(&mut self) -> &mut Session<'a, RX, SLOTS, SLOT_BYTES> {
        &mut self.session
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// Whether a transport is attached.
    pub fn is_attached(&self) -> bool {
        self.transport.is_some()
    }

    /// Takes a freshly opened transport; CONNECT goes out with the next [`Client::poll`].
    pub fn attach(&mut self, transport: T) {
        self.session.handle_connected(self.clock.now());
        self.transport = Some(transport);
    }

    /// Gives the transport back (for the caller to close), telling the session it is gone.
    pub fn detach(&mut self) -> Option<T> {
        self.session.handle_disconnected(TransportError::Closed);
        // The session's own ConnectionLost for this detach is the caller's doing; drop it.
        while self.session.poll_event().is_some() {}
        self.transport.take()
    }

    /// Attaches `transport` and runs until CONNACK; `Ok(session_present)` or the reason the
    /// connection failed (the transport is then dropped).
    pub fn connect(
        &mut self,
        transport: T,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<bool, Error> {
        self.attach(transport);
        let mut session_present = None;
        while session_present.is_none() {
            self.poll(u32::MAX, &mut |event| {
                if let Event::Connected {
                    session_present: present,
                } = event
                {
                    session_present = Some(present);
                }
                on_event(event)
            })?;
        }
        Ok(session_present.unwrap_or(false))
    }

    /// Ends the connection gracefully: DISCONNECT (so the broker discards the will), then the
    /// transport is handed back for closing.
    pub fn disconnect(&mut self) -> Option<T> {
        self.session.disconnect();
        if let Err(error) = self.flush() {
            log::debug!("DISCONNECT not written: {error}");
        }
        self.detach()
    }

    /// One round: handles timers, delivers events to `on_event`, writes what is pending,
    /// waits at most `max_wait_ms` (less if a deadline is nearer) for bytes and handles them.
    ///
    /// `Err` means the connection ended; the transport has been dropped, and the caller
    /// reconnects with a new one ([`crate::backoff::Backoff`] says when). Without a transport,
    /// returns `Err(Transport(Closed))` at once. While the receive buffer is full of messages
    /// the application has no room for ([`Session::receive_blocked`]) nothing is read and
    /// `poll` does not wait: the caller waits instead, until it has room or a deadline.
    pub fn poll(
        &mut self,
        max_wait_ms: u32,
        on_event: &mut impl FnMut(Event<'_>),
    ) -> Result<(), Error> {
        if self.transport.is_none() {
            return Err(Error::Transport(TransportError::Closed));
        }
        self.session.handle_timeout(self.clock.now());
        self.pump(on_event)?;

        let now = self.clock.now();
        let wait_ms = match self.session.poll_timeout() {
            Some(deadline) => deadline.ms_since(now).min(u64::from(max_wait_ms)) as u32,
            None => max_wait_ms,
        };
        let buf = self.session.receive_buffer();
        if !buf.is_empty() {
            let Some(transport) = self.transport.as_mut() else {
                return Err(Error::Transport(TransportError::Closed));
            };
            let received = match transport.set_read_timeout(wait_ms) {
                Ok(()) => transport.read(buf),
                Err(error) => Err(error),
            };
            match received {
                Ok(0) => self.session.handle_disconnected(TransportError::Closed),
                Ok(n) => self.session.handle_received(n),
                Err(error) if error.kind() == ErrorKind::TimedOut => {}
                Err(error) => self
                    .session
                    .handle_disconnected(TransportError::Read(error.kind())),
            }
        }
        self.session.handle_timeout(self.clock.now());
        self.pump(on_event)
    }

    /// Events, then transmissions, until neither makes progress.
    fn pump(&mut self, on_event: &mut impl FnMut(Event<'_>)) -> Result<(), Error> {
        loop {
            let mut lost = None;
            while let Some(event) = self.session.poll_event() {
                if let Event::ConnectionLost(cause) = event {
                    lost = Some(cause);
                }
                on_event(event);
            }
            if let Some(cause) = lost {
                self.transport = None;
                return Err(cause);
            }
            let wrote = self.flush()?;
            if self.session.state() == ConnectionState::Disconnected {
                // Only a requested DISCONNECT ends the link without ConnectionLost.
                self.transport = None;
                return Err(Error::Transport(TransportError::Closed));
            }
            if !wrote {
                return Ok(());
            }
        }
    }

    /// Writes every pending packet, batched into the transmit buffer. Returns whether any
    /// byte was written.
    fn flush(&mut self) -> Result<bool, Error> {
        let mut wrote_any = false;
        loop {
            let now = self.clock.now();
            let mut used = 0;
            loop {
                let spare = self.tx.get_mut(used..).unwrap_or(&mut []);
                match self.session.poll_transmit(now, spare) {
                    Ok(Some(n)) => used += n,
                    Ok(None) => break,
                    Err(Error::Exhausted(crate::ResourceError::TransmitBufferTooSmall))
                        if used > 0 =>
                    {
                        break
                    }
                    Err(error) => {
                        self.transport = None;
                        self.session
                            .handle_disconnected(TransportError::Write(ErrorKind::Other));
                        while self.session.poll_event().is_some() {}
                        return Err(error);
                    }
                }
            }
            if used == 0 {
                return Ok(wrote_any);
            }
            let Some(transport) = self.transport.as_mut() else {
                return Err(Error::Transport(TransportError::Closed));
            };
            let batch = self.tx.get(..used).unwrap_or(&[]);
            if let Err(error) = transport.write_all(batch).and_then(|()| transport.flush()) {
                let cause = TransportError::Write(error.kind());
                self.session.handle_disconnected(cause);
                while self.session.poll_event().is_some() {}
                self.transport = None;
                return Err(Error::Transport(cause));
            }
            wrote_any = true;
        }
    }
}
