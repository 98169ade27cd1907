//! The connection (MQTT 3.1.1 §3.1, §3.2, §3.14): what goes into CONNECT, the CONNACK that
//! opens the session or refuses it, the link state from a fresh transport to connected and
//! back down (CONNACK timeout, a lost transport, DISCONNECT on request), and what each
//! concern restores when the broker does or does not have the session.

use super::zero_option::ZeroOption;
use super::{encode, encode_bodyless, Event, Fields, Session, DISCONNECT};
use crate::error::{ConfigError, ConnectRefusal, Error, ProtocolError, TransportError};
use crate::framing::MIN_MAX_PACKET_SIZE;
use crate::{topic, Instant, QoS};
use core::fmt;
use log::{debug, info};
use mqttrs::{ConnectReturnCode, Packet, Protocol};

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

/// The default [`SessionConfig::max_dropped_publish_size`]: four full TLS records, more than
/// any message a device's topics are meant to carry, far less than MQTT's 256 MiB ceiling.
pub const DEFAULT_MAX_DROPPED_PUBLISH_SIZE: usize = 65_536;

/// Session settings.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig<'a> {
    /// The CONNECT content.
    pub connect: ConnectOptions<'a>,
    /// Largest packet accepted from the broker (at most the receive buffer).
    pub max_packet_size: usize,
    /// A PUBLISH longer than `max_packet_size` and at most this long is acknowledged, read
    /// past and reported as [`crate::Event::MessageDropped`], so that a broker does not send
    /// it again after every reconnect. Any other packet over `max_packet_size`, or a PUBLISH
    /// over this, ends the connection. 0 (or `max_packet_size`): no PUBLISH is read past.
    pub max_dropped_publish_size: usize,
    /// QoS 1/2 publishes on the wire at once (1 = stop-and-wait, at most the outbox size).
    pub inflight_window: usize,
    /// How long to wait for CONNACK.
    pub connack_timeout_ms: u32,
    /// How long to wait for PINGRESP.
    pub ping_timeout_ms: u32,
}

impl<'a> SessionConfig<'a> {
    /// Defaults: 1 KiB packets (larger PUBLISHes up to 64 KiB dropped), window 4, 10 s
    /// CONNACK and ping timeouts.
    pub const fn new(connect: ConnectOptions<'a>) -> Self {
        Self {
            connect,
            max_packet_size: 1024,
            max_dropped_publish_size: DEFAULT_MAX_DROPPED_PUBLISH_SIZE,
            inflight_window: 4,
            connack_timeout_ms: 10_000,
            ping_timeout_ms: 10_000,
        }
    }

    /// Checks the settings against a receive buffer of `rx` bytes and `slots` outbox slots.
    pub(super) fn validate(&self, rx: usize, slots: usize) -> Result<(), ConfigError> {
        let connect = &self.connect;
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
        if !(MIN_MAX_PACKET_SIZE..=rx).contains(&self.max_packet_size) {
            return Err(ConfigError::InvalidMaxPacketSize);
        }
        if self.inflight_window == 0 || self.inflight_window > slots {
            return Err(ConfigError::InvalidWindow);
        }
        Ok(())
    }
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

/// The link as the session sees it; [`ConnectionState`] is its public face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Down,
    Connecting {
        connect_sent: bool,
        deadline: Instant,
    },
    Up,
}

impl<'a, const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize>
    Session<'a, RX, SLOTS, SLOT_BYTES>
{
    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        match self.link {
            Link::Down => ConnectionState::Disconnected,
            Link::Connecting { .. } => ConnectionState::Connecting,
            Link::Up => ConnectionState::Connected,
        }
    }

    /// A new transport is open: CONNECT goes out with the next [`Session::poll_transmit`].
    pub fn handle_connected(&mut self, now: Instant) {
        self.reader.clear();
        self.inbound.restart();
        self.lost = ZeroOption::None;
        self.keepalive.restart(now);
        self.disconnect_requested = false;
        let deadline = now.plus_ms(u64::from(self.config().connack_timeout_ms));
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

    /// Ends the connection with DISCONNECT once the packets before it are written; the will
    /// is not published. The outbox is kept.
    pub fn disconnect(&mut self) {
        if self.link != Link::Down {
            self.disconnect_requested = true;
        }
    }

    /// The connection is over; [`Session::poll_event`] reports it next.
    pub(super) fn lose(&mut self, error: Error) {
        self.go_down(&error);
        self.lost = ZeroOption::Some(error);
    }

    /// The connection is over; the event that reports it, for `poll_event` to return.
    pub(super) fn lose_now(&mut self, error: Error) -> Event<'static> {
        self.go_down(&error);
        Event::ConnectionLost(error)
    }

    // Every lost connection passes here, so that it is logged once, with its cause.
    fn go_down(&mut self, error: &Error) {
        // The application reports it (Event::ConnectionLost); once is enough at info.
        debug!("connection lost: {error}");
        self.link = Link::Down;
        self.reader.clear();
    }

    /// Writes CONNECT into `buf`; the CONNACK deadline runs from the transport's opening.
    pub(super) fn transmit_connect(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let Link::Connecting {
            connect_sent: false,
            deadline,
        } = self.link
        else {
            return Ok(None);
        };
        let n = self.encode_connect(buf)?;
        self.link = Link::Connecting {
            connect_sent: true,
            deadline,
        };
        Ok(Some(n))
    }

    fn encode_connect(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let options = &self.config().connect;
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

    /// Writes DISCONNECT into `buf`; the link is down once it is written.
    pub(super) fn transmit_disconnect(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = encode_bodyless(DISCONNECT, buf)?;
        info!("disconnected by request");
        self.link = Link::Down;
        self.reader.clear();
        self.disconnect_requested = false;
        Ok(n)
    }
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Fields<'_, '_, SLOTS, SLOT_BYTES> {
    pub(super) fn handle_connack<'p>(
        &mut self,
        connack: mqttrs::Connack,
    ) -> Result<Option<Event<'p>>, Error> {
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
        debug!("connected (session present: {session_present})");
        Ok(Some(Event::Connected { session_present }))
    }

    fn restore_after_connect(&mut self, session_present: bool) {
        self.outbox.restore_after_connect(session_present);
        self.inbound.restore_after_connect(session_present);
        self.subscriptions.restore_after_connect(session_present);
    }
}
