//! Session harness: the fuzzer's bytes are a script of operations against a [`TestSession`]
//! and a model [`Broker`]: broker data (raw bytes, or the model's conforming answers split
//! at chosen points), time, publish/subscribe/unsubscribe requests, disconnect and reconnect
//! with or without a stored session, and `poll_transmit` with small buffers.
//!
//! Always checked: no panic; the outbox holds at most `SLOTS` messages and at most the
//! in-flight window is on the wire; `handle_bytes` takes at most the receive buffer between
//! two polls; every transmitted packet decodes with `mqttrs` to exactly its length and is a
//! packet a client may send; a deadline from `poll_timeout` is acted on by `handle_timeout`;
//! each QoS 1/2 message is reported `Published` at most once; no QoS 1/2 message is delivered
//! past the room the application gave (`set_message_room`).
//!
//! Checked while the broker's bytes all came from the model (no raw bytes since the last
//! session-less CONNACK, and no session reset the client could not see): the connection is
//! never dropped for a protocol violation or an exhausted table. And if no raw byte was ever
//! fed, after a final settling phase every QoS 1/2 message has been delivered and
//! acknowledged (QoS 2 exactly once while the broker never lost the session), the outbox is
//! empty, and the broker holds exactly the subscriptions the application asked for.
//!
//! Input layout: `[config, max packet size, op, args..., op, args..., ...]`.

use super::broker::{Broker, REFUSED_PREFIX};
use super::{TestSession, RX, SLOTS};
use mqtt_core::session::ConnectionState;
use mqtt_core::{
    ConnectOptions, Error, Event, Instant, LastWill, MessageId, ProtocolError, QoS, ResourceError,
    SessionConfig, TransportError,
};
use mqttrs::Packet;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Topic names the script publishes to (client and broker).
pub const TOPICS: &[&str] = &[
    "a",
    "a/b",
    "a/b/c",
    "$SYS/uptime",
    "dev/1/status",
    "x/y/z/w",
];
/// Topic filters the script subscribes to; one is invalid, one is refused by the broker.
pub const FILTERS: &[&str] = &[
    "a",
    "a/+",
    "a/#",
    "#",
    "+/b",
    "dev/+/status",
    "deny/#",
    "$SYS/#",
    "x/+/z/#",
    "a/#/b",
];

/// Set `HARNESS_TRACE=1` to print every operation and packet (for reading a crash).
fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("HARNESS_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if tracing() {
            eprintln!($($arg)*);
        }
    };
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn arg(&mut self) -> u8 {
        self.byte().unwrap_or(0)
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
}

fn has_duplicates<'f>(filters: impl Iterator<Item = &'f str>) -> bool {
    let mut seen = BTreeSet::new();
    filters.into_iter().any(|f| !seen.insert(f))
}

fn qos_of(n: u8) -> QoS {
    match n % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// The harness state besides the session and broker.
struct World {
    session: TestSession,
    broker: Broker,
    now: Instant,
    window: usize,
    max_packet_size: usize,
    clean_session: bool,
    /// A transport is open (the session was told `handle_connected` and not yet lost it).
    open: bool,
    /// Client packets written, not yet read by the broker.
    to_broker: VecDeque<Vec<u8>>,
    /// Broker bytes written, not yet handed to the session.
    to_client: VecDeque<u8>,
    /// Bytes `handle_bytes` accepted since the last call that may consume buffered bytes.
    accepted_since_poll: usize,
    /// Bytes of oversized PUBLISHes (`MessageDropped`) the session may still read past: those
    /// are discarded as they arrive, so they may go past the receive buffer between polls.
    read_past_allowance: usize,
    /// Raw bytes went to the session on this connection.
    raw_this_connection: bool,
    /// Raw bytes went to the session since the last session-less CONNACK: the session's state
    /// may no longer match the broker's.
    tainted: bool,
    /// Raw bytes went to the session at some point.
    ever_raw: bool,
    /// The broker threw its stored session away in answer to a CONNECT whose CONNACK the
    /// session never saw; the next connection resumes that new, empty session with session
    /// present = 1, so the session's idea of the broker's state is stale (an MQTT 3.1.1 race
    /// the client cannot see). Cleared by a session-less CONNACK the session does see.
    diverged: bool,
    /// The broker reset its session on this connection and the session has not seen CONNACK.
    reset_unseen: bool,
    /// Packets the session wrote on this connection.
    sent_this_connection: usize,
    next_tag: u32,
    /// Messages accepted by `publish`: id → (tag, qos).
    published: BTreeMap<MessageId, (u32, QoS)>,
    /// Ids reported by `Event::Published`.
    acknowledged: BTreeSet<MessageId>,
    /// Filters the application wants (subscribe/unsubscribe requests that were accepted).
    wanted: BTreeSet<String>,
    /// The last CONNACK the model sent on this connection was a refusal.
    refused: bool,
    /// The broker closed this connection (after a refusing CONNACK): what the session writes
    /// on it goes nowhere. A session that took a raw CONNACK as accepted still writes.
    broker_closed: bool,
    /// Messages the application can still take (`set_message_room`), `None` for no limit.
    room: Option<usize>,
}

impl World {
    fn new(config_byte: u8, size_byte: u8) -> Self {
        let clean_session = config_byte & 1 != 0;
        let keep_alive_s = [0, 1, 5, 60][usize::from(config_byte >> 1) % 4];
        let window = 1 + usize::from(config_byte >> 3) % SLOTS;
        let last_will = (config_byte & 0x20 != 0).then_some(LastWill {
            topic: "dev/1/status",
            payload: b"offline",
            qos: qos_of(config_byte >> 6),
            retain: true,
        });
        let connect = ConnectOptions {
            client_id: "fuzz-1",
            username: None,
            password: None,
            clean_session,
            keep_alive_s,
            last_will,
        };
        let mut config = SessionConfig::new(connect);
        config.max_packet_size = mqtt_core::framing::MIN_MAX_PACKET_SIZE
            + usize::from(size_byte) % (RX - mqtt_core::framing::MIN_MAX_PACKET_SIZE + 1);
        config.inflight_window = window;
        config.connack_timeout_ms = 2_000;
        config.ping_timeout_ms = 3_000;
        let session = TestSession::new(config).expect("valid configuration");
        Self {
            session,
            broker: Broker::new(),
            now: Instant(1_000),
            window,
            max_packet_size: config.max_packet_size,
            clean_session,
            open: false,
            to_broker: VecDeque::new(),
            to_client: VecDeque::new(),
            accepted_since_poll: 0,
            read_past_allowance: 0,
            raw_this_connection: false,
            tainted: false,
            ever_raw: false,
            diverged: false,
            reset_unseen: false,
            sent_this_connection: 0,
            next_tag: 0,
            published: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            wanted: BTreeSet::new(),
            refused: false,
            broker_closed: false,
            room: None,
        }
    }

    fn check_invariants(&self) {
        assert!(
            self.session.outbox_len() <= SLOTS,
            "outbox {}",
            self.session.outbox_len()
        );
        assert!(
            self.session.inflight_len() <= self.window,
            "{} in flight, window {}",
            self.session.inflight_len(),
            self.window
        );
        assert!(self.session.inflight_len() <= self.session.outbox_len());
        if self.session.state() == ConnectionState::Disconnected {
            assert_eq!(
                self.session.poll_timeout(),
                None,
                "a deadline while disconnected"
            );
        }
    }

    // ----- transport ------------------------------------------------------------------------

    fn connect(&mut self) {
        self.diverged |= core::mem::take(&mut self.reset_unseen);
        self.session.handle_connected(self.now);
        self.accepted_since_poll = 0;
        self.read_past_allowance = 0;
        self.to_broker.clear();
        self.to_client.clear();
        self.broker.connection_closed();
        self.open = true;
        self.raw_this_connection = false;
        self.sent_this_connection = 0;
        self.refused = false;
        self.broker_closed = false;
    }

    fn close(&mut self) {
        self.diverged |= core::mem::take(&mut self.reset_unseen);
        self.open = false;
        self.to_broker.clear();
        self.to_client.clear();
        self.broker.connection_closed();
    }

    fn drop_transport(&mut self, cause: TransportError) {
        self.session.handle_disconnected(cause);
        self.accepted_since_poll = 0;
        self.close();
    }

    // ----- session outputs ------------------------------------------------------------------

    /// One `poll_event`; returns whether there was an event.
    fn poll_event(&mut self) -> bool {
        self.accepted_since_poll = 0;
        let conforming = !self.raw_this_connection && !self.tainted && !self.diverged;
        let Some(event) = self.session.poll_event() else {
            return false;
        };
        match &event {
            Event::Message(m) => trace!(
                "  event Message {} {} bytes {:?} dup={} retain={}",
                m.topic,
                m.payload.len(),
                m.qos,
                m.duplicate,
                m.retain
            ),
            other => trace!("  event {other:?}"),
        }
        match event {
            Event::Connected { session_present } => {
                self.reset_unseen = false;
                if !self.raw_this_connection {
                    assert_eq!(Some(session_present), self.broker.last_session_present);
                    if !session_present {
                        self.tainted = false;
                        self.diverged = false;
                    }
                }
                if self.clean_session {
                    assert!(!session_present, "session present with a clean session");
                }
            }
            Event::Message(message) => {
                assert!(mqtt_core::topic::validate_name(message.topic).is_ok());
                assert!(message.payload.len() <= self.max_packet_size);
                match &mut self.room {
                    Some(0) => assert_eq!(
                        message.qos,
                        QoS::AtMostOnce,
                        "a QoS 1/2 message delivered past the room"
                    ),
                    Some(room) => *room -= 1,
                    None => {}
                }
            }
            Event::MessageDropped {
                topic, packet_len, ..
            } => {
                self.read_past_allowance += packet_len;
                assert!(mqtt_core::topic::validate_name(topic).is_ok());
                assert!(packet_len > self.max_packet_size);
                assert!(packet_len <= mqtt_core::DEFAULT_MAX_DROPPED_PUBLISH_SIZE);
            }
            Event::Published(id) => {
                let known = self.published.get(&id);
                assert!(
                    matches!(known, Some((_, qos)) if *qos != QoS::AtMostOnce),
                    "Published for {id:?}, which is {known:?}"
                );
                assert!(
                    self.acknowledged.insert(id),
                    "{id:?} reported Published twice"
                );
            }
            Event::Subscribed { results, .. } => {
                assert!((1..=5).contains(&results.len()));
            }
            Event::Unsubscribed { .. } => {}
            Event::ConnectionLost(error) => {
                if conforming {
                    let expected = match error {
                        Error::Timeout(_) | Error::Transport(_) => true,
                        Error::Protocol(ProtocolError::ConnectionRefused(_)) => self.refused,
                        _ => false,
                    };
                    assert!(
                        expected,
                        "connection to a conforming broker lost: {error:?}"
                    );
                }
                self.close();
            }
        }
        true
    }

    fn drain_events(&mut self) -> bool {
        let mut any = false;
        // poll_event parses one frame per call; 64 frames fit 256 bytes at most.
        for _ in 0..1_000 {
            if !self.poll_event() {
                return any;
            }
            any = true;
        }
        panic!("poll_event never returned None");
    }

    /// One `poll_transmit` into a buffer of `size` bytes; returns whether a packet came out.
    fn poll_transmit(&mut self, size: usize) -> bool {
        let mut buf = [0u8; 512];
        let buf = &mut buf[..size.min(512)];
        let before = self.session.state();
        match self.session.poll_transmit(self.now, buf) {
            Ok(None) => false,
            Ok(Some(n)) => {
                assert!(n <= buf.len(), "wrote {n} into {}", buf.len());
                let bytes = buf[..n].to_vec();
                self.check_client_packet(&bytes, before);
                if self.open && !self.broker_closed {
                    self.to_broker.push_back(bytes);
                }
                if self.session.state() == ConnectionState::Disconnected {
                    // A requested DISCONNECT went out; the caller closes the transport.
                    self.close();
                }
                true
            }
            Err(Error::Exhausted(ResourceError::TransmitBufferTooSmall)) => false,
            Err(other) => panic!("poll_transmit failed: {other:?}"),
        }
    }

    /// Checks one packet the session wrote.
    fn check_client_packet(&mut self, bytes: &[u8], state: ConnectionState) {
        let header = mqtt_core::framing::parse_fixed_header(bytes, usize::MAX)
            .ok()
            .flatten()
            .expect("a complete fixed header");
        assert_eq!(header.frame_len(), bytes.len(), "one packet, exactly");
        let packet = match mqttrs::decode_slice(bytes) {
            Ok(Some(packet)) => packet,
            other => panic!("transmitted {bytes:02x?} does not decode: {other:?}"),
        };
        trace!("  client -> {packet:?}");
        if self.sent_this_connection == 0 {
            assert!(
                matches!(packet, Packet::Connect(_)),
                "first packet {packet:?}"
            );
        } else {
            assert!(!matches!(packet, Packet::Connect(_)), "second CONNECT");
            assert_eq!(
                state,
                ConnectionState::Connected,
                "{packet:?} before CONNACK"
            );
        }
        self.sent_this_connection += 1;
    }

    fn transmit_all(&mut self) -> bool {
        let mut any = false;
        for _ in 0..1_000 {
            if !self.poll_transmit(512) {
                return any;
            }
            any = true;
        }
        panic!("poll_transmit never returned None");
    }

    // ----- broker -----------------------------------------------------------------------------

    fn broker_reads(&mut self, packets: usize) -> bool {
        let mut any = false;
        for _ in 0..packets {
            let Some(bytes) = self.to_broker.pop_front() else {
                break;
            };
            any = true;
            let packet = mqttrs::decode_slice(&bytes)
                .ok()
                .flatten()
                .expect("checked when sent");
            trace!("  broker reads {packet:?}");
            let mut answer = Vec::new();
            let connect = matches!(packet, Packet::Connect(_));
            if connect {
                self.refused = self.broker.refuse_next.is_some();
            }
            let keep_open = self.broker.handle(&packet, &mut answer);
            if connect && self.broker.last_connect_reset {
                self.reset_unseen = true;
            }
            trace!("  broker answers {answer:02x?}");
            self.to_client.extend(answer);
            if !keep_open {
                // A refusing broker closes after CONNACK; the client's DISCONNECT ends it too.
                self.to_broker.clear();
                self.broker_closed = true;
                break;
            }
        }
        any
    }

    /// Hands at most `limit` pending broker bytes to the session, in pieces of at most
    /// `piece` bytes; returns whether any byte was taken.
    fn deliver(&mut self, limit: usize, piece: usize) -> bool {
        let mut budget = limit.min(self.to_client.len());
        let mut any = false;
        while budget > 0 {
            let n = budget.min(piece.max(1));
            let chunk: Vec<u8> = self.to_client.iter().take(n).copied().collect();
            let taken = self.handle_bytes(&chunk);
            self.to_client.drain(..taken);
            budget -= n;
            any |= taken > 0;
            if taken < n {
                break;
            }
        }
        any
    }

    fn handle_bytes(&mut self, bytes: &[u8]) -> usize {
        let connected = self.session.state() != ConnectionState::Disconnected;
        let taken = self.session.handle_bytes(bytes);
        assert!(taken <= bytes.len(), "took {taken} of {}", bytes.len());
        if connected {
            self.accepted_since_poll += taken;
            self.check_accepted();
        }
        taken
    }

    /// At most the receive buffer between two polls, besides the bodies of oversized
    /// PUBLISHes, which are discarded as they arrive.
    fn check_accepted(&mut self) {
        let excess = self.accepted_since_poll.saturating_sub(RX);
        assert!(
            excess <= self.read_past_allowance,
            "{} bytes accepted between polls into a {RX}-byte buffer",
            self.accepted_since_poll
        );
        self.read_past_allowance -= excess;
        self.accepted_since_poll -= excess;
    }

    fn feed_raw(&mut self, bytes: &[u8]) {
        self.raw_this_connection = true;
        self.tainted = true;
        self.ever_raw = true;
        self.broker.session_may_differ = true;
        self.handle_bytes(bytes);
    }

    fn feed_raw_in_place(&mut self, bytes: &[u8]) {
        self.raw_this_connection = true;
        self.tainted = true;
        self.ever_raw = true;
        self.broker.session_may_differ = true;
        let connected = self.session.state() != ConnectionState::Disconnected;
        let buf = self.session.receive_buffer();
        let room = buf.len();
        let n = bytes.len().min(room);
        buf[..n].copy_from_slice(&bytes[..n]);
        self.session.handle_received(n);
        if connected {
            self.accepted_since_poll += n;
            self.check_accepted();
        }
    }

    /// Events, transmissions, the broker's answers and their delivery until nothing moves.
    fn round_trip(&mut self) -> bool {
        let mut any = false;
        for _ in 0..200 {
            let mut moved = self.drain_events();
            moved |= self.transmit_all();
            moved |= self.broker_reads(usize::MAX);
            moved |= self.deliver(usize::MAX, usize::MAX);
            if !moved {
                return any;
            }
            any = true;
        }
        any
    }

    fn broker_publishes(&mut self, selector: u8, len: usize) {
        let topic = TOPICS[usize::from(selector & 0x07) % TOPICS.len()];
        let payload = vec![0x5A; len];
        let mut out = Vec::new();
        let (qos, retain) = (qos_of((selector >> 3) & 0x03), selector & 0x80 != 0);
        self.broker
            .publish(topic, &payload, qos, retain, self.max_packet_size, &mut out);
        self.to_client.extend(out);
    }

    // ----- time -------------------------------------------------------------------------------

    fn advance(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.session.handle_timeout(self.now);
        self.accepted_since_poll = 0;
        if let Some(deadline) = self.session.poll_timeout() {
            assert!(
                deadline > self.now,
                "deadline {deadline:?} not acted on at {:?}",
                self.now
            );
        }
    }

    // ----- application requests ---------------------------------------------------------------

    fn publish(&mut self, selector: u8, filler: u8) {
        let topic = TOPICS[usize::from(selector & 0x07) % TOPICS.len()];
        let qos = qos_of((selector >> 3) & 0x03);
        let retain = selector & 0x80 != 0;
        let tag = self.next_tag;
        self.next_tag += 1;
        let mut payload = tag.to_le_bytes().to_vec();
        payload.resize(4 + usize::from(filler % 128), 0xA5);
        match self.session.publish(topic, &payload, qos, retain) {
            Ok(id) => {
                assert!(
                    self.published.insert(id, (tag, qos)).is_none(),
                    "{id:?} handed out twice"
                );
            }
            Err(Error::Exhausted(ResourceError::OutboxFull)) => {
                assert_eq!(self.session.outbox_len(), SLOTS, "OutboxFull with room");
            }
            Err(Error::Config(mqtt_core::ConfigError::PacketTooLarge)) => {
                let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
                let remaining = 2 + topic.len() + id_len + payload.len();
                let frame = 1 + if remaining < 128 { 1 } else { 2 } + remaining;
                assert!(
                    frame > 128,
                    "a {frame}-byte PUBLISH refused by 128-byte slots"
                );
            }
            Err(other) => panic!("publish failed: {other:?}"),
        }
    }

    fn filters(input: &mut Input<'_>) -> Vec<(&'static str, QoS)> {
        let count = input.arg();
        // 0 and 6 filters are refused by the API; 1..=5 are valid requests.
        let count = usize::from(count) % 7;
        (0..count)
            .map(|_| {
                let b = input.arg();
                (
                    FILTERS[usize::from(b & 0x0F) % FILTERS.len()],
                    qos_of(b >> 4),
                )
            })
            .collect()
    }

    fn subscribe(&mut self, filters: &[(&'static str, QoS)]) {
        match self.session.subscribe(filters) {
            Ok(_) => {
                for (filter, _) in filters {
                    if !filter.starts_with(REFUSED_PREFIX) {
                        self.wanted.insert((*filter).to_string());
                    }
                }
            }
            Err(Error::Config(mqtt_core::ConfigError::TooManyFilters)) => {
                assert!(filters.is_empty() || filters.len() > 5);
            }
            Err(Error::Config(mqtt_core::ConfigError::InvalidTopicFilter)) => {
                assert!(filters
                    .iter()
                    .any(|(f, _)| mqtt_core::topic::validate_filter(f).is_err()));
            }
            // A filter twice in one request may be refused (it is since the fix of known bug 1).
            Err(Error::Config(_)) if has_duplicates(filters.iter().map(|(f, _)| *f)) => {}
            Err(Error::Exhausted(ResourceError::SubscriptionsFull | ResourceError::NoPacketId)) => {
            }
            Err(other) => panic!("subscribe failed: {other:?}"),
        }
    }

    fn unsubscribe(&mut self, filters: &[&'static str]) {
        match self.session.unsubscribe(filters) {
            Ok(_) => {
                for filter in filters {
                    self.wanted.remove(*filter);
                }
            }
            Err(Error::Config(mqtt_core::ConfigError::TooManyFilters)) => {
                assert!(filters.is_empty() || filters.len() > 5);
            }
            Err(Error::Config(mqtt_core::ConfigError::InvalidTopicFilter)) => {
                assert!(filters
                    .iter()
                    .any(|f| mqtt_core::topic::validate_filter(f).is_err()));
            }
            Err(Error::Config(_)) if has_duplicates(filters.iter().copied()) => {}
            Err(Error::Exhausted(ResourceError::SubscriptionsFull | ResourceError::NoPacketId)) => {
            }
            Err(other) => panic!("unsubscribe failed: {other:?}"),
        }
    }

    fn set_message_room(&mut self, room: Option<usize>) {
        trace!("  room {room:?}");
        self.room = room;
        self.session.set_message_room(room.unwrap_or(usize::MAX));
    }

    // ----- the end ----------------------------------------------------------------------------

    /// Reconnects if needed and lets the model broker and the session talk until nothing moves;
    /// then, if the broker was always the model, checks that nothing was lost.
    fn settle(&mut self) {
        trace!("settle");
        // The application takes what it held back: the model broker's messages never stall it.
        self.set_message_room(None);
        self.broker.refuse_next = None;
        self.broker.forget_session = false;
        for _ in 0..4 {
            if self.session.state() == ConnectionState::Disconnected || !self.open {
                if self.open {
                    self.drop_transport(TransportError::Closed);
                }
                self.drain_events();
                self.connect();
            }
            self.round_trip();
            if self.session.state() == ConnectionState::Connected && self.open {
                break;
            }
        }
        self.check_invariants();
        if self.ever_raw {
            return;
        }
        assert_eq!(
            self.session.state(),
            ConnectionState::Connected,
            "settled without a connection"
        );
        assert_eq!(self.session.outbox_len(), 0, "messages left in the outbox");
        for (id, (tag, qos)) in &self.published {
            let delivered = self.broker.delivered.get(tag).copied().unwrap_or(0);
            match qos {
                QoS::AtMostOnce => {
                    assert!(delivered <= 1, "QoS 0 {id:?} delivered {delivered} times")
                }
                QoS::AtLeastOnce => {
                    assert!(delivered >= 1, "QoS 1 {id:?} never delivered");
                    assert!(
                        self.acknowledged.contains(id),
                        "QoS 1 {id:?} never reported Published"
                    );
                }
                QoS::ExactlyOnce => {
                    assert!(delivered >= 1, "QoS 2 {id:?} never delivered");
                    if !self.broker.session_ever_lost && !self.clean_session {
                        assert_eq!(delivered, 1, "QoS 2 {id:?} delivered more than once");
                    }
                    assert!(
                        self.acknowledged.contains(id),
                        "QoS 2 {id:?} never reported Published"
                    );
                }
            }
        }
        if !self.diverged {
            assert_eq!(
                self.broker.subscriptions, self.wanted,
                "broker's subscriptions"
            );
        }
    }
}

/// The fuzz entry point: runs the script in `data` with every invariant checked.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let (Some(config), Some(size)) = (input.byte(), input.byte()) else {
        return;
    };
    let mut world = World::new(config, size);
    world.connect();
    let mut steps = 0;
    while let Some(op) = input.byte() {
        steps += 1;
        if steps > 4_096 {
            break;
        }
        trace!(
            "op {} (rest {:02x?})",
            op % 16,
            &input.0[..input.0.len().min(8)]
        );
        match op % 16 {
            0 => {
                let n = usize::from(input.arg()) % 64 + 1;
                let bytes = input.bytes(n).to_vec();
                world.feed_raw(&bytes);
            }
            1 => {
                let n = usize::from(input.arg()) % 64 + 1;
                let bytes = input.bytes(n).to_vec();
                world.feed_raw_in_place(&bytes);
            }
            2 => {
                let n = usize::from(input.arg() % 4) + 1;
                world.broker_reads(n);
            }
            3 => {
                let limit = usize::from(input.arg());
                let piece = usize::from(input.arg() % 16) + 1;
                world.deliver(if limit == 0 { usize::MAX } else { limit }, piece);
            }
            4 => {
                let selector = input.arg();
                let len = usize::from(input.arg());
                world.broker_publishes(selector, len);
            }
            5 => {
                let step = [
                    0,
                    1,
                    100,
                    999,
                    1_000,
                    2_000,
                    3_000,
                    5_000,
                    30_000,
                    61_000,
                    u64::MAX / 2,
                ];
                let ms = step[usize::from(input.arg()) % step.len()];
                world.advance(ms);
            }
            6 => {
                let selector = input.arg();
                let filler = input.arg();
                world.publish(selector, filler);
            }
            7 => {
                let filters = World::filters(&mut input);
                world.subscribe(&filters);
            }
            8 => {
                let filters: Vec<&'static str> = World::filters(&mut input)
                    .into_iter()
                    .map(|(f, _)| f)
                    .collect();
                world.unsubscribe(&filters);
            }
            9 => world.session.disconnect(),
            10 => {
                let how = input.arg();
                world.broker.forget_session = how & 0x10 != 0;
                match how % 3 {
                    // The transport fails; reconnect later (or at the end).
                    0 => world.drop_transport(TransportError::Read(
                        embedded_io::ErrorKind::ConnectionReset,
                    )),
                    // Fails and is replaced at once.
                    1 => {
                        world.drop_transport(TransportError::Closed);
                        world.drain_events();
                        world.connect();
                    }
                    // A new transport without telling the session the old one went.
                    _ => {
                        world.close();
                        world.connect();
                    }
                }
            }
            11 => {
                let size = usize::from(input.arg() % 96);
                world.poll_transmit(size);
            }
            12 => {
                world.poll_event();
            }
            13 => {
                world.drain_events();
                world.transmit_all();
            }
            14 => {
                world.round_trip();
            }
            _ => {
                let what = input.arg();
                if what & 1 == 0 {
                    world.broker.refuse_next = Some(1 + (what >> 1) % 5);
                } else if what & 2 == 0 {
                    world.broker.forget_session = true;
                } else {
                    // The application's room for messages: none, a few, or no limit.
                    let room = usize::from(what >> 2) % 5;
                    world.set_message_room((room < 4).then_some(room));
                }
            }
        }
        world.check_invariants();
    }
    world.settle();
}
