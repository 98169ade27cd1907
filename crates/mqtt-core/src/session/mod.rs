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
//!
//! # Back-pressure on the broker's messages
//! An application that answers messages needs room for each answer, and a message the session
//! has acknowledged (PUBACK, PUBREC) the broker never sends again (§4.3.2, §4.3.3): it must not
//! be delivered to an application that has no room left. So the application says how many
//! more messages it can take ([`Session::set_message_room`]), the idea of MQTT 5's Receive
//! Maximum (MQTT 5.0 §4.9) on a 3.1.1 client. A PUBLISH beyond that room is held: kept whole,
//! unparsed and unacknowledged, in the receive buffer, and delivered in order once there is room;
//! its PUBACK or PUBREC goes out then, when the application has taken it. While PUBLISHes are
//! held the broker's other packets are still handled past them: the acknowledgements of our
//! own messages, which free the outbox room the application is waiting for, are never stuck
//! behind the messages waiting for that room (and a PUBLISH too large to keep is acknowledged
//! and dropped as it arrives, as always). The broker's window of unacknowledged QoS 1/2
//! messages (Mosquitto's `max_inflight_messages`, 20) bounds what it sends ahead of them, and
//! TCP flow control holds back the rest.
//!
//! When the receive buffer is full of held messages nothing more can be read. If the oldest is
//! QoS 0 it is delivered even so: QoS 0 has no acknowledgement, so nothing bounds how many the
//! broker sends ahead of the acknowledgements the application waits for, and holding them
//! could stall the connection for good; the application may drop what it cannot keep, as QoS 0
//! allows. A QoS 1/2 message is never delivered past the room: then the session waits
//! ([`Session::receive_blocked`]), and if no room comes the keepalive ends the connection and
//! the broker sends the held messages again on the next one (they were never acknowledged).
//!
//! # Layout
//! One file per concern, each owning its part of the session's state, in the manner of
//! minimq's `mqtt_client/session/`:
//! - `connection.rs`: CONNECT options and settings, the link state, CONNACK and what follows
//!   it, DISCONNECT, the lost connection;
//! - `inbound.rs`: PUBLISH received, the PUBACK/PUBREC/PUBCOMP owed for it, QoS 2 identifiers
//!   kept until PUBREL;
//! - `outbound.rs`: the outbox, the window, PUBACK/PUBREC/PUBREL/PUBCOMP of our publishes and
//!   their resend;
//! - `subscriptions.rs`: SUBSCRIBE/UNSUBSCRIBE, SUBACK/UNSUBACK, re-subscribing;
//! - `keepalive.rs`: PINGREQ when idle, the PINGRESP deadline.
//!
//! This file holds the [`Session`] type, its [`Event`]s and the `handle_*`/`poll_*` entry
//! points, which dispatch to those.

use crate::error::{ConfigError, Error, ProtocolError, ResourceError, TimeoutKind};
use crate::framing::{self, Cut, FrameReader};
use crate::{Instant, QoS};
use heapless::Vec;
use mqttrs::{Packet, Pid};

mod connection;
mod inbound;
mod keepalive;
mod outbound;
mod subscriptions;
mod zero_option;

pub use connection::{
    ConnectOptions, ConnectionState, LastWill, Password, SessionConfig,
    DEFAULT_MAX_DROPPED_PUBLISH_SIZE,
};
pub use inbound::{Message, MAX_INBOUND_QOS2};
pub use outbound::MessageId;
pub use subscriptions::{
    SubscribeResult, MAX_FILTERS_PER_PACKET, MAX_FILTER_LEN, MAX_SUBSCRIPTIONS,
};

use connection::Link;
use inbound::{Inbound, MessageLayout};
use keepalive::Keepalive;
use outbound::Outbox;
use subscriptions::Subscriptions;
use zero_option::ZeroOption;

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
    /// A message longer than [`SessionConfig::max_packet_size`] (and at most
    /// [`SessionConfig::max_dropped_publish_size`]) arrived: it was acknowledged as MQTT
    /// requires, so the broker does not send it again, and read past without being kept.
    MessageDropped {
        /// Its topic name.
        topic: &'a str,
        /// Bytes of the whole PUBLISH packet.
        packet_len: usize,
        /// The QoS it was delivered with.
        qos: QoS,
    },
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

/// The outbox's slots in a [`Session`] of the default shape: what a persistent journal of the
/// outbox sizes itself from.
pub const OUTBOX_SLOTS: usize = 8;
/// The largest encoded PUBLISH one outbox slot holds, by default.
pub const OUTBOX_SLOT_BYTES: usize = 512;

/// An MQTT client session with a receive buffer of `RX` bytes and an outbox of `SLOTS`
/// messages of at most `SLOT_BYTES` encoded bytes each. Never allocates.
pub struct Session<
    'a,
    const RX: usize = 1024,
    const SLOTS: usize = OUTBOX_SLOTS,
    const SLOT_BYTES: usize = OUTBOX_SLOT_BYTES,
> {
    /// `None` until [`Session::configure`]; [`Session::config`] is then the defaults.
    config: ZeroOption<SessionConfig<'a>>,
    link: Link,
    reader: FrameReader<RX>,
    outbox: Outbox<SLOTS, SLOT_BYTES>,
    next_packet_id: u16,
    subscriptions: Subscriptions,
    inbound: Inbound,
    keepalive: Keepalive,
    disconnect_requested: bool,
    lost: ZeroOption<Error>,
    /// How many more messages the application can take; see the module doc. Zero in an
    /// unconfigured session (all of whose bytes are zero), unlimited once configured.
    message_room: usize,
}

impl<'a, const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize>
    Session<'a, RX, SLOTS, SLOT_BYTES>
{
    /// Checks the configuration and makes a disconnected session.
    pub fn new(config: SessionConfig<'a>) -> Result<Self, ConfigError> {
        let mut session = Self::unconfigured();
        session.configure(config)?;
        Ok(session)
    }

    /// A session to be configured with [`Session::configure`] before it connects: `const`,
    /// so that a session with its buffers and outbox can be a `static` made at compile time
    /// instead of being built on a stack and moved. Its bytes are all zero (no configuration,
    /// empty tables; see `zero_option.rs`), so that such a static lies in `.bss` and costs no
    /// flash.
    pub const fn unconfigured() -> Self {
        Self {
            config: ZeroOption::None,
            link: Link::Down,
            reader: FrameReader::new(),
            outbox: Outbox::new(),
            next_packet_id: 0,
            subscriptions: Subscriptions::new(),
            inbound: Inbound::new(),
            keepalive: Keepalive::new(),
            disconnect_requested: false,
            lost: ZeroOption::None,
            message_room: 0,
        }
    }

    /// Checks `config` as [`Session::new`] does and puts it in force. Only while no
    /// transport is attached: settings change between connections, never during one.
    pub fn configure(&mut self, config: SessionConfig<'a>) -> Result<(), ConfigError> {
        if self.link != Link::Down {
            return Err(ConfigError::NotDisconnected);
        }
        config.validate(RX, SLOTS)?;
        self.config = ZeroOption::Some(config);
        // No limit on the messages taken until the application sets one.
        self.message_room = usize::MAX;
        Ok(())
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig<'a> {
        self.config.or_unconfigured()
    }

    // ----- inputs -------------------------------------------------------------------------

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

    /// The application can take `room` more messages ([`Event::Message`]) from now on; each one
    /// [`Session::poll_event`] delivers uses one. The broker's PUBLISHes beyond it wait in the
    /// receive buffer, unacknowledged (see the module doc). Unlimited from
    /// [`Session::configure`] on until set.
    pub fn set_message_room(&mut self, room: usize) {
        self.message_room = room;
    }

    /// Whether nothing can be received now: the receive buffer is full of messages the
    /// application has no room for, the oldest at QoS 1 or 2. Until it makes room only time
    /// changes anything (the keepalive); a driver should wait for its next deadline instead of
    /// polling again at once.
    pub fn receive_blocked(&mut self) -> bool {
        self.message_room == 0
            && self.reader.held() > 0
            && self.reader.is_full()
            && !self.reader.oldest_held().is_some_and(is_qos0_publish)
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
                if let Err(error) = self
                    .keepalive
                    .handle_timeout(now, self.config.or_unconfigured())
                {
                    self.lose(error);
                }
            }
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
            let max_packet_size = self.config().max_packet_size;
            let max_dropped = self.config().max_dropped_publish_size;
            let header = match self.next_cut(max_packet_size, max_dropped) {
                Ok(Some(Cut::Frame(_))) => None,
                Ok(Some(Cut::OversizedPublish(header))) => Some(header),
                Ok(None) => return None,
                Err(error) => return Some(self.lose_now(error.into())),
            };
            // Handle the packet with the frame borrowed, keep only owned results, then
            // borrow the frame again for a message: a returned borrow must not overlap the
            // mutations above it.
            let step = if let Some(header) = header {
                self.drop_publish(&header)
            } else {
                let frame = self.reader.current_frame();
                match framing::decode(frame, max_packet_size) {
                    Err(error) => Step::Lost(error.into()),
                    Ok(packet) => {
                        let mut fields = Fields {
                            config: self.config.or_unconfigured(),
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
                Step::Lost(error) => return Some(self.lose_now(error)),
                Step::Event(event) => return Some(event),
                Step::Message(layout) => {
                    self.message_room = self.message_room.saturating_sub(1);
                    return Some(layout.message(self.reader.current_frame()));
                }
                Step::Dropped(head) => return Some(head.event(self.reader.current_frame())),
            }
        }
    }

    /// Writes the next packet to send into `buf` and returns its length. An error
    /// [`ResourceError::TransmitBufferTooSmall`] leaves the packet queued.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let written = match self.link {
            Link::Down => None,
            Link::Connecting { .. } => self.transmit_connect(buf)?,
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
            Link::Up => self.keepalive.poll_timeout(self.config()),
        }
    }

    // ----- internals ----------------------------------------------------------------------

    /// The next frame to handle: held PUBLISHes first once there is room for them, else the
    /// next frame behind them, holding each PUBLISH the application has no room for (see the
    /// module doc). Only while connected: before CONNACK a PUBLISH is a protocol error.
    fn next_cut(
        &mut self,
        max_packet_size: usize,
        max_dropped: usize,
    ) -> Result<Option<Cut>, ProtocolError> {
        if self.link != Link::Up {
            return self.reader.cut(max_packet_size, max_dropped);
        }
        loop {
            if self.message_room > 0 && self.reader.held() > 0 {
                return Ok(self.reader.release_held().map(Cut::Frame));
            }
            match self.reader.cut(max_packet_size, max_dropped)? {
                Some(Cut::Frame(_))
                    if self.message_room == 0 && is_publish(self.reader.current_frame()) =>
                {
                    self.reader.hold();
                }
                Some(cut) => return Ok(Some(cut)),
                None => {
                    let stalled = self.reader.held() > 0 && self.reader.is_full();
                    if stalled && self.reader.oldest_held().is_some_and(is_qos0_publish) {
                        return Ok(self.reader.release_held().map(Cut::Frame));
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// The head of a PUBLISH too large to keep: checked like a whole one, acknowledged, and
    /// reported; its body is read past by the reader.
    fn drop_publish(&mut self, header: &framing::FixedHeader) -> Step {
        if self.link != Link::Up {
            return Step::Lost(ProtocolError::UnexpectedPacket.into());
        }
        let head = match framing::validate_publish_head(header, self.reader.current_frame()) {
            Ok(head) => head,
            Err(error) => return Step::Lost(error.into()),
        };
        match self.inbound.acknowledge(head.qospid) {
            Err(error) => Step::Lost(error),
            // A QoS 2 duplicate of a message already reported.
            Ok(None) => Step::Continue,
            Ok(Some(qos)) => Step::Dropped(DroppedHead {
                topic: head.topic,
                packet_len: head.frame_len,
                qos,
            }),
        }
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

    /// Writes the most urgent packet while connected: acknowledgements owed (parsing waits for
    /// them when their queue is full), PUBREL, subscription requests, publishes within the
    /// window, DISCONNECT once all of these are out, and PINGREQ.
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
        let window = self.config().inflight_window;
        if let Some(n) = self.outbox.transmit_publish(window, buf)? {
            return Ok(Some(n));
        }
        if self.disconnect_requested {
            // Last, so that everything the application queued before it is written; QoS 1/2
            // messages still unacknowledged stay in the outbox for the next connection.
            return self.transmit_disconnect(buf).map(Some);
        }
        self.keepalive
            .transmit_pingreq(now, self.config.or_unconfigured(), buf)
    }
}

/// What [`Session::config`] is before [`Session::configure`]: the defaults, no client id.
const UNCONFIGURED: SessionConfig<'static> = SessionConfig::new(ConnectOptions {
    client_id: "",
    username: None,
    password: None,
    clean_session: true,
    keep_alive_s: 0,
    last_will: None,
});

impl<'a> ZeroOption<SessionConfig<'a>> {
    /// The configuration in force; a field's method, so that it borrows only this field.
    fn or_unconfigured(&self) -> &SessionConfig<'a> {
        self.as_ref().unwrap_or(&UNCONFIGURED)
    }
}

/// Whether a frame is a PUBLISH (type 3, §2.2.1).
fn is_publish(frame: &[u8]) -> bool {
    frame.first().is_some_and(|first| first >> 4 == 3)
}

/// Whether a frame is a PUBLISH at QoS 0 (§3.3.1.2).
fn is_qos0_publish(frame: &[u8]) -> bool {
    is_publish(frame) && frame.first().is_some_and(|first| first & 0b0110 == 0)
}

/// What handling one frame produced, with no borrow of the frame.
enum Step {
    Continue,
    Lost(Error),
    Event(Event<'static>),
    Message(MessageLayout),
    Dropped(DroppedHead),
}

/// An oversized PUBLISH acknowledged and dropped, with where its topic sits in the head.
struct DroppedHead {
    topic: core::ops::Range<usize>,
    packet_len: usize,
    qos: QoS,
}

impl DroppedHead {
    fn event(self, head: &[u8]) -> Event<'_> {
        let topic = head
            .get(self.topic)
            .and_then(|t| core::str::from_utf8(t).ok());
        Event::MessageDropped {
            topic: topic.unwrap_or_default(),
            packet_len: self.packet_len,
            qos: self.qos,
        }
    }
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
            Event::Message(_) | Event::MessageDropped { .. } => {
                Event::ConnectionLost(Error::Protocol(ProtocolError::Decode))
            }
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
}

/// Encodes a packet into `buf`; every concern writes its packets through this, except the two
/// packets without a body ([`encode_bodyless`]).
fn encode(packet: &Packet<'_>, buf: &mut [u8]) -> Result<usize, Error> {
    mqttrs::encode_slice(packet, buf).map_err(|_| ResourceError::TransmitBufferTooSmall.into())
}

/// PINGREQ's first byte (§3.12.1).
const PINGREQ: u8 = 0xC0;
/// DISCONNECT's first byte (§3.14.1).
const DISCONNECT: u8 = 0xE0;

/// Writes PINGREQ or DISCONNECT: a fixed header whose remaining length is 0. Not through
/// [`encode`]: `&Packet::Pingreq` is a constant `Packet`, which the compiler keeps whole in
/// flash (1,332 bytes, the size of mqttrs's SUBSCRIBE variant), once per packet type.
fn encode_bodyless(first_byte: u8, buf: &mut [u8]) -> Result<usize, Error> {
    let [type_and_flags, remaining_length, ..] = buf else {
        return Err(ResourceError::TransmitBufferTooSmall.into());
    };
    *type_and_flags = first_byte;
    *remaining_length = 0;
    Ok(2)
}

#[cfg(test)]
mod tests;
