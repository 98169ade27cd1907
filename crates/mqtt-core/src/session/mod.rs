//! The MQTT 3.1.1 client session (§3, §4): connect, keepalive, the QoS 1/2 flows in both
//! directions, resend after reconnect, subscriptions and the bounded outbox.
//!
//! # Driving a session
//! A [`Session`] is deterministic: every input carries the current [`Instant`], nothing happens
//! between calls. After any input, poll in this order until each returns `None`:
//! 1. [`Session::poll_event`] – parses received frames and reports what happened;
//! 2. [`Session::poll_transmit`] – the next packet to write to the transport;
//! 3. [`Session::poll_timeout`] – when to call [`Session::handle_timeout`] at the latest.
//!
//! Inputs are [`Session::handle_connected`] (a fresh transport is open),
//! [`Session::handle_bytes`] / [`Session::receive_buffer`] + [`Session::handle_received`],
//! [`Session::handle_disconnected`] and [`Session::handle_timeout`]; application requests are
//! [`Session::publish`], [`Session::subscribe`], [`Session::unsubscribe`] and
//! [`Session::disconnect`].
//!
//! # What survives a reconnect
//! Publishes live in a fixed table of slots (the outbox) from [`Session::publish`] until they
//! are acknowledged: messages made while offline wait there, and at most
//! [`SessionConfig::inflight_window`] QoS 1/2 messages are on the wire at once. When the broker
//! reports a session present, unacknowledged PUBLISHes are resent with DUP and the same packet
//! identifier and PUBRELs are resent (§4.4). Without a session the broker has forgotten them,
//! so they are sent again as new messages and subscriptions are restored. Nothing is dropped:
//! when the outbox is full, `publish` refuses with [`ResourceError::OutboxFull`].

use crate::error::{
    ConfigError, ConnectRefusal, Error, ProtocolError, ResourceError, TimeoutKind, TransportError,
};
use crate::framing::{self, FrameReader, MIN_MAX_PACKET_SIZE};
use crate::{topic, Instant, QoS};
use core::fmt;
use heapless::Vec;
use log::{debug, info, warn};
use mqttrs::{ConnectReturnCode, Packet, Pid, Protocol};

mod inbound;
mod keepalive;
mod outbound;
mod subscriptions;

pub use inbound::{Message, MAX_INBOUND_QOS2};
pub use outbound::MessageId;
pub use subscriptions::{
    SubscribeResult, MAX_FILTERS_PER_PACKET, MAX_FILTER_LEN, MAX_SUBSCRIPTIONS,
};

use inbound::{Inbound, MessageLayout};
use keepalive::Keepalive;
use outbound::Outbox;
use subscriptions::Subscriptions;

/// A password. Its `Debug` never shows the bytes.
#[derive(Clone, Copy)]
pub struct Password<'a>(pub &'a [u8]);

impl fmt::Debug for Password<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The last will the broker publishes if the connection ends without DISCONNECT (§3.1.2.5).
#[derive(Debug, Clone, Copy)]
pub struct LastWill<'a> {
    /// Topic name of the will message.
    pub topic: &'a str,
    /// Its payload.
    pub payload: &'a [u8],
    /// Its QoS.
    pub qos: QoS,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// What goes into CONNECT (§3.1).
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions<'a> {
    /// Client identifier; the broker's ACLs and the device certificate use it.
    pub client_id: &'a str,
    /// Optional user name.
    pub username: Option<&'a str>,
    /// Optional password (never logged).
    pub password: Option<Password<'a>>,
    /// Start from a clean session (`true`) or resume the broker's stored one (`false`).
    pub clean_session: bool,
    /// Keepalive in seconds; 0 turns keepalive off.
    pub keep_alive_s: u16,
    /// Optional last will.
    pub last_will: Option<LastWill<'a>>,
}

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig<'a> {
    /// The CONNECT content.
    pub connect: ConnectOptions<'a>,
    /// Largest packet accepted from the broker (at most the receive buffer).
    pub max_packet_size: usize,
    /// QoS 1/2 publishes on the wire at once (1 = stop-and-wait, at most the outbox size).
    pub inflight_window: usize,
    /// How long to wait for CONNACK.
    pub connack_timeout_ms: u32,
    /// How long to wait for PINGRESP.
    pub ping_timeout_ms: u32,
}

impl<'a> SessionConfig<'a> {
    /// Defaults: 1 KiB packets, window 4, 10 s CONNACK and ping timeouts.
    pub fn new(connect: ConnectOptions<'a>) -> Self {
        Self {
            connect,
            max_packet_size: 1024,
            inflight_window: 4,
            connack_timeout_ms: 10_000,
            ping_timeout_ms: 10_000,
        }
    }
}

/// What the session reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// CONNACK accepted.
    Connected {
        /// The broker had a stored session for us.
        session_present: bool,
    },
    /// A message arrived.
    Message(Message<'a>),
    /// A QoS 1 or 2 publish was acknowledged (PUBACK or PUBCOMP).
    Published(MessageId),
    /// SUBACK for the request with this packet identifier, one result per filter in order.
    Subscribed {
        /// The identifier [`Session::subscribe`] returned.
        packet_id: u16,
        /// One result per filter.
        results: Vec<SubscribeResult, MAX_FILTERS_PER_PACKET>,
    },
    /// UNSUBACK for the request with this packet identifier.
    Unsubscribed {
        /// The identifier [`Session::unsubscribe`] returned.
        packet_id: u16,
    },
    /// The connection is over; the caller must close the transport.
    ConnectionLost(Error),
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// No transport.
    Disconnected,
    /// Transport open, CONNECT queued or sent, no CONNACK yet.
    Connecting,
    /// CONNACK accepted.
    Connected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    Connecting {
        connect_sent: bool,
        deadline: Instant,
    },
    Up,
}

/// An MQTT client session with a receive buffer of `RX` bytes and an outbox of `SLOTS`
/// messages of at most `SLOT_BYTES` encoded bytes each. Never allocates.
pub struct Session<
    'a,
    const RX: usize = 1024,
    const SLOTS: usize = 8,
    const SLOT_BYTES: usize = 512,
> {
    config: SessionConfig<'a>,
    link: Link,
    reader: FrameReader<RX>,
    outbox: Outbox<SLOTS, SLOT_BYTES>,
    next_packet_id: u16,
    subscriptions: Subscriptions,
    inbound: Inbound,
    keepalive: Keepalive,
    disconnect_requested: bool,
    lost: Option<Error>,
}

impl<'a, const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize>
    Session<'a, RX, SLOTS, SLOT_BYTES>
{
    /// Checks the configuration and makes a disconnected session.
    pub fn new(config: SessionConfig<'a>) -> Result<Self, ConfigError> {
        let connect = &config.connect;
        if connect.client_id.is_empty()
            || connect.client_id.len() > 256
            || connect.client_id.contains('\0')
        {
            return Err(ConfigError::InvalidClientId);
        }
        if connect
            .username
            .is_some_and(|u| u.len() > 1024 || u.contains('\0'))
            || connect.password.is_some_and(|p| p.0.len() > 1024)
        {
            return Err(ConfigError::InvalidCredentials);
        }
        if let Some(will) = &connect.last_will {
            topic::validate_name(will.topic)?;
        }
        if !(MIN_MAX_PACKET_SIZE..=RX).contains(&config.max_packet_size) {
            return Err(ConfigError::InvalidMaxPacketSize);
        }
        if config.inflight_window == 0 || config.inflight_window > SLOTS {
            return Err(ConfigError::InvalidWindow);
        }
        Ok(Self {
            config,
            link: Link::Down,
            reader: FrameReader::new(),
            outbox: Outbox::new(),
            next_packet_id: 0,
            subscriptions: Subscriptions::new(),
            inbound: Inbound::new(),
            keepalive: Keepalive::new(),
            disconnect_requested: false,
            lost: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig<'a> {
        &self.config
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        match self.link {
            Link::Down => ConnectionState::Disconnected,
            Link::Connecting { .. } => ConnectionState::Connecting,
            Link::Up => ConnectionState::Connected,
        }
    }

    // ----- inputs -------------------------------------------------------------------------

    /// A new transport is open: CONNECT goes out with the next [`Session::poll_transmit`].
    pub fn handle_connected(&mut self, now: Instant) {
        self.reader.clear();
        self.inbound.restart();
        self.lost = None;
        self.keepalive.restart(now);
        self.disconnect_requested = false;
        let deadline = now.plus_ms(u64::from(self.config.connack_timeout_ms));
        self.link = Link::Connecting {
            connect_sent: false,
            deadline,
        };
    }

    /// The transport failed or was closed under us.
    pub fn handle_disconnected(&mut self, cause: TransportError) {
        if self.link != Link::Down {
            self.lose(Error::Transport(cause));
        }
    }

    /// Space to receive into directly; follow with [`Session::handle_received`].
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        self.reader.spare_capacity()
    }

    /// `n` bytes were written into [`Session::receive_buffer`].
    pub fn handle_received(&mut self, n: usize) {
        self.reader.commit(n);
    }

    /// Copies received bytes in; returns how many fit. When fewer than all fit, drain
    /// [`Session::poll_event`] and [`Session::poll_transmit`] and offer the rest again.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> usize {
        if self.link == Link::Down {
            return bytes.len();
        }
        self.reader.push(bytes)
    }

    /// Time has passed: fires the CONNACK and ping timeouts and schedules PINGREQ.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.link {
            Link::Down => {}
            Link::Connecting { deadline, .. } => {
                if now >= deadline {
                    self.lose(Error::Timeout(TimeoutKind::Connack));
                }
            }
            Link::Up => {
                if let Err(error) = self.keepalive.handle_timeout(now, &self.config) {
                    self.lose(error);
                }
            }
        }
    }

    // ----- application requests -----------------------------------------------------------

    /// Ends the connection with DISCONNECT once the packets before it are written; the will
    /// is not published. The outbox is kept.
    pub fn disconnect(&mut self) {
        if self.link != Link::Down {
            self.disconnect_requested = true;
        }
    }

    // ----- outputs ------------------------------------------------------------------------

    /// The next event. Parses at most one received frame per call.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        if let Some(error) = self.lost.take() {
            return Some(Event::ConnectionLost(error));
        }
        loop {
            if self.link == Link::Down || self.inbound.acks_full() {
                // Down: nothing to parse. Acks full: let poll_transmit drain them first.
                return None;
            }
            let max_packet_size = self.config.max_packet_size;
            match self.reader.advance(max_packet_size) {
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(error) => {
                    warn!("dropping connection: broken framing: {error:?}");
                    return Some(self.lose_now(error.into()));
                }
            }
            // Handle the packet with the frame borrowed, keep only owned results, then
            // borrow the frame again for a message: a returned borrow must not overlap the
            // mutations above it.
            let step = {
                let frame = self.reader.current_frame();
                match framing::decode(frame, max_packet_size) {
                    Err(error) => Step::Lost(error.into()),
                    Ok(packet) => {
                        let mut fields = Fields {
                            config: &self.config,
                            link: &mut self.link,
                            outbox: &mut self.outbox,
                            subscriptions: &mut self.subscriptions,
                            inbound: &mut self.inbound,
                            keepalive: &mut self.keepalive,
                        };
                        match fields.handle_packet(packet) {
                            Err(error) => Step::Lost(error),
                            Ok(None) => Step::Continue,
                            Ok(Some(Event::Message(m))) => {
                                Step::Message(MessageLayout::of(frame, &m))
                            }
                            Ok(Some(event)) => Step::Event(event.without_message()),
                        }
                    }
                }
            };
            match step {
                Step::Continue => continue,
                Step::Lost(error) => {
                    warn!("dropping connection: {error}");
                    return Some(self.lose_now(error));
                }
                Step::Event(event) => return Some(event),
                Step::Message(layout) => return Some(layout.message(self.reader.current_frame())),
            }
        }
    }

    /// Writes the next packet to send into `buf` and returns its length. An error
    /// [`ResourceError::TransmitBufferTooSmall`] leaves the packet queued.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let written = match self.link {
            Link::Down => None,
            Link::Connecting {
                connect_sent: true, ..
            } => None,
            Link::Connecting {
                connect_sent: false,
                deadline,
            } => {
                let n = self.encode_connect(buf)?;
                self.link = Link::Connecting {
                    connect_sent: true,
                    deadline,
                };
                Some(n)
            }
            Link::Up => self.transmit_when_up(now, buf)?,
        };
        if written.is_some() {
            self.keepalive.handle_transmit(now);
        }
        Ok(written)
    }

    /// The instant at which [`Session::handle_timeout`] must be called, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.link {
            Link::Down => None,
            Link::Connecting { deadline, .. } => Some(deadline),
            Link::Up => self.keepalive.poll_timeout(&self.config),
        }
    }

    // ----- internals ----------------------------------------------------------------------

    fn lose(&mut self, error: Error) {
        info!("connection lost: {error}");
        self.link = Link::Down;
        self.reader.clear();
        self.lost = Some(error);
    }

    fn lose_now(&mut self, error: Error) -> Event<'static> {
        info!("connection lost: {error}");
        self.link = Link::Down;
        self.reader.clear();
        Event::ConnectionLost(error)
    }

    fn allocate_packet_id(&mut self) -> Result<Pid, ResourceError> {
        for _ in 0..u16::MAX {
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            let Ok(candidate) = Pid::try_from(self.next_packet_id) else {
                continue;
            };
            let in_outbox = self.outbox.uses(candidate);
            let in_subscriptions = self.subscriptions.uses(candidate);
            if !in_outbox && !in_subscriptions {
                return Ok(candidate);
            }
        }
        Err(ResourceError::NoPacketId)
    }

    fn encode_connect(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let options = &self.config.connect;
        let connect = mqttrs::Connect {
            protocol: Protocol::MQTT311,
            keep_alive: options.keep_alive_s,
            client_id: options.client_id,
            clean_session: options.clean_session,
            last_will: options.last_will.map(|will| mqttrs::LastWill {
                topic: will.topic,
                message: will.payload,
                qos: will.qos,
                retain: will.retain,
            }),
            username: options.username,
            password: options.password.map(|p| p.0),
        };
        debug!("sending CONNECT as {}", options.client_id);
        encode(&Packet::Connect(connect), buf)
    }

    fn transmit_when_up(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        if let Some(n) = self.inbound.transmit_ack(buf)? {
            return Ok(Some(n));
        }
        if let Some(n) = self.outbox.transmit_pubrel(buf)? {
            return Ok(Some(n));
        }
        if let Some(n) = self.subscriptions.transmit_request(buf)? {
            return Ok(Some(n));
        }
        let window = self.config.inflight_window;
        if let Some(n) = self.outbox.transmit_publish(window, buf)? {
            return Ok(Some(n));
        }
        if self.disconnect_requested {
            // Last, so that everything the application queued before it is written; QoS 1/2
            // messages still unacknowledged stay in the outbox for the next connection.
            let n = encode(&Packet::Disconnect, buf)?;
            info!("disconnected by request");
            self.link = Link::Down;
            self.reader.clear();
            self.disconnect_requested = false;
            return Ok(Some(n));
        }
        self.keepalive.transmit_pingreq(now, &self.config, buf)
    }
}

/// What handling one frame produced, with no borrow of the frame.
enum Step {
    Continue,
    Lost(Error),
    Event(Event<'static>),
    Message(MessageLayout),
}

impl Event<'_> {
    /// The same event with no borrow; a message becomes nothing (callers handle it first).
    fn without_message(self) -> Event<'static> {
        match self {
            Event::Connected { session_present } => Event::Connected { session_present },
            Event::Published(id) => Event::Published(id),
            Event::Subscribed { packet_id, results } => Event::Subscribed { packet_id, results },
            Event::Unsubscribed { packet_id } => Event::Unsubscribed { packet_id },
            Event::ConnectionLost(e) => Event::ConnectionLost(e),
            Event::Message(_) => Event::ConnectionLost(Error::Protocol(ProtocolError::Decode)),
        }
    }
}

/// The session fields that handling one packet changes, borrowed apart from the reader that
/// holds the packet's bytes.
struct Fields<'s, 'a, const SLOTS: usize, const SLOT_BYTES: usize> {
    config: &'s SessionConfig<'a>,
    link: &'s mut Link,
    outbox: &'s mut Outbox<SLOTS, SLOT_BYTES>,
    subscriptions: &'s mut Subscriptions,
    inbound: &'s mut Inbound,
    keepalive: &'s mut Keepalive,
}

fn encode(packet: &Packet<'_>, buf: &mut [u8]) -> Result<usize, Error> {
    mqttrs::encode_slice(packet, buf).map_err(|_| ResourceError::TransmitBufferTooSmall.into())
}

impl<'s, 'a, const SLOTS: usize, const SLOT_BYTES: usize> Fields<'s, 'a, SLOTS, SLOT_BYTES> {
    fn handle_packet<'p>(&mut self, packet: Packet<'p>) -> Result<Option<Event<'p>>, Error> {
        let connecting = matches!(self.link, Link::Connecting { .. });
        // MQTT-3.1.0-1: CONNECT is the client's first packet, so a CONNACK before it was
        // written answers nothing we asked; accepting it would skip CONNECT altogether.
        let connect_sent = matches!(
            self.link,
            Link::Connecting {
                connect_sent: true,
                ..
            }
        );
        match packet {
            Packet::Connack(connack) if connect_sent => self.handle_connack(connack),
            _ if connecting => Err(ProtocolError::UnexpectedPacket.into()),
            Packet::Connack(_) => Err(ProtocolError::UnexpectedPacket.into()),
            Packet::Publish(publish) => self.inbound.handle_publish(publish),
            Packet::Puback(pid) => Ok(self.outbox.complete(pid, QoS::AtLeastOnce)),
            Packet::Pubrec(pid) => {
                self.outbox.handle_pubrec(pid);
                Ok(None)
            }
            Packet::Pubrel(pid) => {
                self.inbound.handle_pubrel(pid)?;
                Ok(None)
            }
            Packet::Pubcomp(pid) => Ok(self.outbox.complete(pid, QoS::ExactlyOnce)),
            Packet::Suback(suback) => self.subscriptions.handle_suback(suback),
            Packet::Unsuback(pid) => Ok(self.subscriptions.handle_unsuback(pid)),
            Packet::Pingresp => {
                self.keepalive.handle_pingresp();
                Ok(None)
            }
            // framing::validate_from_server refuses every other type before decoding.
            _ => Err(ProtocolError::UnexpectedPacket.into()),
        }
    }

    fn handle_connack<'p>(&mut self, connack: mqttrs::Connack) -> Result<Option<Event<'p>>, Error> {
        let refusal = match connack.code {
            ConnectReturnCode::Accepted => None,
            ConnectReturnCode::RefusedProtocolVersion => {
                Some(ConnectRefusal::UnacceptableProtocolVersion)
            }
            ConnectReturnCode::RefusedIdentifierRejected => {
                Some(ConnectRefusal::IdentifierRejected)
            }
            ConnectReturnCode::ServerUnavailable => Some(ConnectRefusal::ServerUnavailable),
            ConnectReturnCode::BadUsernamePassword => Some(ConnectRefusal::BadUserNameOrPassword),
            ConnectReturnCode::NotAuthorized => Some(ConnectRefusal::NotAuthorized),
        };
        if let Some(refusal) = refusal {
            return Err(ProtocolError::ConnectionRefused(refusal).into());
        }
        // §3.2.2.2: with clean session the broker must answer session present = 0.
        let session_present = connack.session_present && !self.config.connect.clean_session;
        self.restore_after_connect(session_present);
        *self.link = Link::Up;
        self.keepalive.handle_connack();
        info!("connected (session present: {session_present})");
        Ok(Some(Event::Connected { session_present }))
    }

    fn restore_after_connect(&mut self, session_present: bool) {
        self.outbox.restore_after_connect(session_present);
        self.inbound.restore_after_connect(session_present);
        self.subscriptions.restore_after_connect(session_present);
    }
}

#[cfg(test)]
mod tests;
