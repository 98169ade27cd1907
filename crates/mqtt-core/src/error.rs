//! Errors grouped by cause. The reconnect policy reads only [`Error::recovery`].

use core::fmt;
use embedded_io::ErrorKind;

/// Every way the MQTT core can fail, grouped by who is at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The local configuration or a request from the application is invalid.
    Config(ConfigError),
    /// The peer broke MQTT 3.1.1 or refused us.
    Protocol(ProtocolError),
    /// A bounded buffer or table is full.
    Exhausted(ResourceError),
    /// The byte stream below MQTT failed.
    Transport(TransportError),
    /// The peer did not answer in time.
    Timeout(TimeoutKind),
}

/// What reconnecting can do about an error: the only thing the reconnect policy
/// ([`crate::backoff::Backoff`]) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A fault of the link or the broker that goes away by itself: retry with the usual backoff.
    Retry,
    /// A refusal or a setting that a person has to fix (credentials, authorization, the
    /// configuration). Still retried, rarely: a fleet must not be stranded by one hiccup of a
    /// broker's authentication backend, and new credentials may arrive at run time.
    NeedsAttention,
}

impl Error {
    /// Whether the error goes away by itself or needs a person (see [`Recovery`]).
    pub fn recovery(&self) -> Recovery {
        let by_itself = match self {
            Error::Config(_) => false,
            Error::Protocol(ProtocolError::ConnectionRefused(code)) => code.is_recoverable(),
            Error::Protocol(_) => true,
            Error::Exhausted(_) => true,
            Error::Transport(_) => true,
            Error::Timeout(_) => true,
        };
        if by_itself {
            Recovery::Retry
        } else {
            Recovery::NeedsAttention
        }
    }

    /// Whether reconnecting soon can help: [`Recovery::Retry`].
    pub fn is_recoverable(&self) -> bool {
        self.recovery() == Recovery::Retry
    }
}

/// Invalid configuration or application request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// Client id empty, longer than the packet allows, or containing NUL.
    InvalidClientId,
    /// A topic name is empty, too long, contains a wildcard or NUL.
    InvalidTopicName,
    /// A topic filter is empty, too long, contains NUL or misplaces `+`/`#`.
    InvalidTopicFilter,
    /// User name or password is too long for the packet.
    InvalidCredentials,
    /// The encoded packet would exceed the configured maximum packet size or a slot.
    PacketTooLarge,
    /// The in-flight window is zero or larger than the outbox.
    InvalidWindow,
    /// No filter, or more filters in one request than one packet may carry.
    TooManyFilters,
    /// The same filter twice in one request.
    DuplicateFilter,
    /// The request needs a connected session.
    NotConnected,
    /// The request needs a session with no transport attached.
    NotDisconnected,
    /// The maximum packet size is below the MQTT minimum or above the receive buffer.
    InvalidMaxPacketSize,
    /// The layer below refused a setting (e.g. a TLS socket option).
    TransportRejected,
}

/// The peer broke the protocol or refused the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// Remaining length longer than 4 bytes or not minimally encoded.
    MalformedRemainingLength,
    /// A packet larger than the configured maximum.
    PacketTooLarge,
    /// A packet type a server must never send to a client (CONNECT, SUBSCRIBE, ...).
    UnexpectedPacketType(u8),
    /// Reserved flag bits of the fixed header are wrong.
    InvalidFlags(u8),
    /// The remaining length does not fit the packet type or its content.
    InvalidLength(u8),
    /// Packet identifier zero.
    ZeroPacketId,
    /// QoS 3, or a SUBACK return code that is neither a QoS nor 0x80.
    InvalidQos,
    /// A topic name that is not UTF-8, contains NUL or a wildcard, or is empty.
    InvalidTopic,
    /// CONNACK return code outside 0..=5 or reserved CONNACK flags set.
    InvalidConnack,
    /// A packet before CONNACK, or a second CONNACK.
    UnexpectedPacket,
    /// A SUBACK whose return codes do not match the filters we asked for.
    SubackMismatch,
    /// `mqttrs` rejected a frame that passed our checks.
    Decode,
    /// The broker refused the connection with this CONNACK return code.
    ConnectionRefused(ConnectRefusal),
}

/// CONNACK return codes 1..=5 (MQTT 3.1.1 §3.2.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// 1: the broker does not speak MQTT 3.1.1.
    UnacceptableProtocolVersion,
    /// 2: the client identifier is not allowed.
    IdentifierRejected,
    /// 3: the MQTT service is unavailable.
    ServerUnavailable,
    /// 4: malformed user name or password.
    BadUserNameOrPassword,
    /// 5: the client is not authorized.
    NotAuthorized,
}

impl ConnectRefusal {
    /// Only "server unavailable" can go away by itself.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, ConnectRefusal::ServerUnavailable)
    }

    /// The CONNACK return code.
    pub fn code(&self) -> u8 {
        match self {
            ConnectRefusal::UnacceptableProtocolVersion => 1,
            ConnectRefusal::IdentifierRejected => 2,
            ConnectRefusal::ServerUnavailable => 3,
            ConnectRefusal::BadUserNameOrPassword => 4,
            ConnectRefusal::NotAuthorized => 5,
        }
    }

    /// What a person can do about the refusal, for the log line that reports it.
    pub fn remedy(&self) -> &'static str {
        match self {
            ConnectRefusal::UnacceptableProtocolVersion => "the broker must accept MQTT 3.1.1",
            ConnectRefusal::IdentifierRejected => {
                "check the client id (APP_MQTT_CLIENT_ID) against the broker's rules"
            }
            ConnectRefusal::ServerUnavailable => "the broker should come back by itself",
            ConnectRefusal::BadUserNameOrPassword => {
                "check the user name (APP_MQTT_USERNAME) and the provisioned password"
            }
            ConnectRefusal::NotAuthorized => {
                "give this client id, certificate or user name access at the broker"
            }
        }
    }
}

impl fmt::Display for ConnectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectRefusal::UnacceptableProtocolVersion => "unacceptable protocol version",
            ConnectRefusal::IdentifierRejected => "client identifier rejected",
            ConnectRefusal::ServerUnavailable => "server unavailable",
            ConnectRefusal::BadUserNameOrPassword => "bad user name or password",
            ConnectRefusal::NotAuthorized => "not authorized",
        })
    }
}

/// A bounded resource is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceError {
    /// The outbox holds as many messages as it can; the new one was not accepted.
    OutboxFull,
    /// The subscription table is full.
    SubscriptionsFull,
    /// Too many inbound QoS 2 messages awaiting PUBREL.
    InboundQos2Full,
    /// All packet identifiers are in use.
    NoPacketId,
    /// The caller's transmit buffer is smaller than the next packet.
    TransmitBufferTooSmall,
}

/// The transport (TCP/TLS socket) failed, with the cause the layer below reported: the core
/// does not know errno values, so the transport maps its errors onto
/// [`embedded_io::ErrorKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// The peer closed the stream.
    Closed,
    /// Reading failed.
    Read(ErrorKind),
    /// Writing failed or wrote nothing.
    Write(ErrorKind),
    /// The stream could not be opened.
    Connect,
}

/// What the peer failed to answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// No CONNACK after CONNECT.
    Connack,
    /// No PINGRESP (or any packet) after PINGREQ.
    Ping,
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}
impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}
impl From<ResourceError> for Error {
    fn from(e: ResourceError) -> Self {
        Error::Exhausted(e)
    }
}
impl From<TransportError> for Error {
    fn from(e: TransportError) -> Self {
        Error::Transport(e)
    }
}
impl From<TimeoutKind> for Error {
    fn from(e: TimeoutKind) -> Self {
        Error::Timeout(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::Protocol(e) => write!(f, "protocol: {e}"),
            Error::Exhausted(e) => write!(f, "resource exhausted: {e}"),
            Error::Transport(e) => write!(f, "transport: {e}"),
            Error::Timeout(e) => write!(f, "timeout: {e}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigError::InvalidClientId => "invalid client id",
            ConfigError::InvalidTopicName => "invalid topic name",
            ConfigError::InvalidTopicFilter => "invalid topic filter",
            ConfigError::InvalidCredentials => "user name or password too long",
            ConfigError::PacketTooLarge => "packet larger than the maximum or an outbox slot",
            ConfigError::InvalidWindow => "in-flight window is zero or larger than the outbox",
            ConfigError::TooManyFilters => "no filter, or more than one request may carry",
            ConfigError::DuplicateFilter => "the same filter twice in one request",
            ConfigError::NotConnected => "not connected",
            ConfigError::NotDisconnected => "only between connections",
            ConfigError::InvalidMaxPacketSize => {
                "maximum packet size below the MQTT minimum or above the receive buffer"
            }
            ConfigError::TransportRejected => "the transport refused a setting",
        })
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::MalformedRemainingLength => f.write_str("malformed remaining length"),
            ProtocolError::PacketTooLarge => f.write_str("packet larger than the maximum"),
            ProtocolError::UnexpectedPacketType(kind) => {
                write!(f, "packet type {kind} that a server must not send")
            }
            ProtocolError::InvalidFlags(kind) => {
                write!(f, "reserved flags set in a packet of type {kind}")
            }
            ProtocolError::InvalidLength(kind) => {
                write!(f, "wrong remaining length for a packet of type {kind}")
            }
            ProtocolError::ZeroPacketId => f.write_str("packet identifier 0"),
            ProtocolError::InvalidQos => f.write_str("invalid QoS or SUBACK return code"),
            ProtocolError::InvalidTopic => f.write_str("invalid topic in a PUBLISH"),
            ProtocolError::InvalidConnack => f.write_str("invalid CONNACK"),
            ProtocolError::UnexpectedPacket => {
                f.write_str("a packet before CONNACK, or a second CONNACK")
            }
            ProtocolError::SubackMismatch => f.write_str("SUBACK does not match the request"),
            ProtocolError::Decode => f.write_str("undecodable packet"),
            ProtocolError::ConnectionRefused(code) => write!(
                f,
                "connection refused by the broker: {code} (CONNACK {})",
                code.code()
            ),
        }
    }
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceError::OutboxFull => "outbox full",
            ResourceError::SubscriptionsFull => "subscription table full",
            ResourceError::InboundQos2Full => "too many QoS 2 messages awaiting PUBREL",
            ResourceError::NoPacketId => "every packet identifier in use",
            ResourceError::TransmitBufferTooSmall => "transmit buffer smaller than the packet",
        })
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Closed => f.write_str("connection closed"),
            TransportError::Read(kind) => write!(f, "read failed: {}", kind_in_words(*kind)),
            TransportError::Write(kind) => write!(f, "write failed: {}", kind_in_words(*kind)),
            TransportError::Connect => f.write_str("could not connect"),
        }
    }
}

impl fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutKind::Connack => "no CONNACK in time",
            TimeoutKind::Ping => "no answer to PINGREQ in time",
        })
    }
}

fn kind_in_words(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::NotConnected => "not connected",
        ErrorKind::BrokenPipe => "broken pipe",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::OutOfMemory => "out of memory, buffers or sockets",
        ErrorKind::InvalidInput => "invalid input",
        ErrorKind::InvalidData => "invalid data",
        ErrorKind::WriteZero => "wrote nothing",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Unsupported => "unsupported",
        _ => "socket error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_need_a_person_are_still_retried_rarely() {
        let refused = |c| Error::Protocol(ProtocolError::ConnectionRefused(c));
        assert_eq!(
            refused(ConnectRefusal::ServerUnavailable).recovery(),
            Recovery::Retry
        );
        for code in [
            ConnectRefusal::UnacceptableProtocolVersion,
            ConnectRefusal::IdentifierRejected,
            ConnectRefusal::BadUserNameOrPassword,
            ConnectRefusal::NotAuthorized,
        ] {
            assert_eq!(refused(code).recovery(), Recovery::NeedsAttention, "{code}");
        }
        assert_eq!(
            Error::Config(ConfigError::TransportRejected).recovery(),
            Recovery::NeedsAttention
        );
    }

    #[test]
    fn every_cause_is_printed_in_words_with_what_the_transport_said() {
        let cases = [
            (
                Error::Transport(TransportError::Read(ErrorKind::ConnectionReset)),
                "transport: read failed: connection reset",
            ),
            (
                Error::Transport(TransportError::Closed),
                "transport: connection closed",
            ),
            (
                Error::Timeout(TimeoutKind::Ping),
                "timeout: no answer to PINGREQ in time",
            ),
            (
                Error::Exhausted(ResourceError::OutboxFull),
                "resource exhausted: outbox full",
            ),
            (
                Error::Protocol(ProtocolError::InvalidLength(2)),
                "protocol: wrong remaining length for a packet of type 2",
            ),
            (
                Error::Config(ConfigError::InvalidTopicName),
                "configuration: invalid topic name",
            ),
        ];
        for (error, words) in cases {
            assert_eq!(std::format!("{error}"), words);
        }
    }

    #[test]
    fn refusals_are_printed_with_their_code_in_words() {
        let refused = Error::Protocol(ProtocolError::ConnectionRefused(
            ConnectRefusal::NotAuthorized,
        ));
        assert_eq!(
            std::format!("{refused}"),
            "protocol: connection refused by the broker: not authorized (CONNACK 5)"
        );
        assert_eq!(ConnectRefusal::BadUserNameOrPassword.code(), 4);
    }

    #[test]
    fn refusals_only_server_unavailable_is_recoverable() {
        let refused = |c| Error::Protocol(ProtocolError::ConnectionRefused(c));
        assert!(refused(ConnectRefusal::ServerUnavailable).is_recoverable());
        assert!(!refused(ConnectRefusal::NotAuthorized).is_recoverable());
        assert!(!refused(ConnectRefusal::BadUserNameOrPassword).is_recoverable());
        assert!(!refused(ConnectRefusal::IdentifierRejected).is_recoverable());
        assert!(!refused(ConnectRefusal::UnacceptableProtocolVersion).is_recoverable());
    }

    #[test]
    fn configuration_errors_are_not_recoverable_but_faults_of_the_link_are() {
        assert!(!Error::Config(ConfigError::InvalidClientId).is_recoverable());
        assert!(Error::Transport(TransportError::Closed).is_recoverable());
        assert!(Error::Timeout(TimeoutKind::Ping).is_recoverable());
        assert!(Error::Protocol(ProtocolError::InvalidFlags(0x21)).is_recoverable());
        assert!(Error::Exhausted(ResourceError::InboundQos2Full).is_recoverable());
    }
}
