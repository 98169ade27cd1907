//! Property tests (tier 2): encode→decode round trips through our framing
//! for every packet a server sends, arbitrary bytes against a connected session, the frame
//! reader against an independent splitter and with frames held back, and topic validation and matching (MQTT 3.1.1
//! §2.2, §3.2–§3.13, §4.7) against reference implementations written from the spec.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "harness/mod.rs"]
mod harness;

use harness::{TestSession, RX, SLOTS};
use mqtt_core::framing::{self, FrameReader};
use mqtt_core::session::ConnectionState;
use mqtt_core::topic::{matches, validate_filter, validate_name};
use mqtt_core::{ConnectOptions, Error, Event, Instant, QoS, ResourceError, SessionConfig};
use mqttrs::{Connack, ConnectReturnCode, Packet, Pid, QosPid, Suback, SubscribeReturnCodes};
use proptest::prelude::*;

const MAX: usize = 1024;

// ----- server packets, owned so that proptest can generate them ---------------------------------

/// A packet a server may send, with everything `mqttrs::Packet` borrows owned.
#[derive(Debug, Clone)]
enum ServerPacket {
    Connack {
        session_present: bool,
        code: u8,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        pid: u16,
        retain: bool,
        dup: bool,
    },
    Puback(u16),
    Pubrec(u16),
    Pubrel(u16),
    Pubcomp(u16),
    Suback {
        pid: u16,
        codes: Vec<u8>,
    },
    Unsuback(u16),
    Pingresp,
}

fn pid(n: u16) -> Pid {
    Pid::try_from(n).unwrap()
}

fn return_code(code: u8) -> SubscribeReturnCodes {
    match code {
        0 => SubscribeReturnCodes::Success(QoS::AtMostOnce),
        1 => SubscribeReturnCodes::Success(QoS::AtLeastOnce),
        2 => SubscribeReturnCodes::Success(QoS::ExactlyOnce),
        _ => SubscribeReturnCodes::Failure,
    }
}

impl ServerPacket {
    fn packet(&self) -> Packet<'_> {
        match self {
            ServerPacket::Connack {
                session_present,
                code,
            } => {
                let code = match code {
                    0 => ConnectReturnCode::Accepted,
                    1 => ConnectReturnCode::RefusedProtocolVersion,
                    2 => ConnectReturnCode::RefusedIdentifierRejected,
                    3 => ConnectReturnCode::ServerUnavailable,
                    4 => ConnectReturnCode::BadUsernamePassword,
                    _ => ConnectReturnCode::NotAuthorized,
                };
                Packet::Connack(Connack {
                    session_present: *session_present,
                    code,
                })
            }
            ServerPacket::Publish {
                topic,
                payload,
                qos,
                pid: id,
                retain,
                dup,
            } => {
                let qospid = match qos {
                    0 => QosPid::AtMostOnce,
                    1 => QosPid::AtLeastOnce(pid(*id)),
                    _ => QosPid::ExactlyOnce(pid(*id)),
                };
                Packet::Publish(mqttrs::Publish {
                    dup: *dup,
                    qospid,
                    retain: *retain,
                    topic_name: topic,
                    payload,
                })
            }
            ServerPacket::Puback(id) => Packet::Puback(pid(*id)),
            ServerPacket::Pubrec(id) => Packet::Pubrec(pid(*id)),
            ServerPacket::Pubrel(id) => Packet::Pubrel(pid(*id)),
            ServerPacket::Pubcomp(id) => Packet::Pubcomp(pid(*id)),
            ServerPacket::Suback { pid: id, codes } => {
                let return_codes = codes.iter().map(|c| return_code(*c)).collect();
                Packet::Suback(Suback {
                    pid: pid(*id),
                    return_codes,
                })
            }
            ServerPacket::Unsuback(id) => Packet::Unsuback(pid(*id)),
            ServerPacket::Pingresp => Packet::Pingresp,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; MAX * 2];
        let n = mqttrs::encode_slice(&self.packet(), &mut buf).unwrap();
        buf.truncate(n);
        buf
    }
}

/// Valid topic names: UTF-8 (multi-byte included), `$` and empty levels, no wildcard or NUL.
fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9/$ _üé☃-]{1,40}"
}

fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), len)
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn publish() -> impl Strategy<Value = ServerPacket> {
    (
        topic_name(),
        prop::collection::vec(any::<u8>(), 0..512),
        0..3u8,
        packet_id(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(topic, payload, qos, pid, retain, dup)| ServerPacket::Publish {
                topic,
                payload,
                qos,
                pid,
                retain,
                // §3.3.1.1: DUP is 0 on every QoS 0 message.
                dup: dup && qos > 0,
            },
        )
}

fn server_packet() -> impl Strategy<Value = ServerPacket> {
    prop_oneof![
        (any::<bool>(), 0..=5u8).prop_map(|(session_present, code)| ServerPacket::Connack {
            session_present,
            code
        }),
        publish(),
        packet_id().prop_map(ServerPacket::Puback),
        packet_id().prop_map(ServerPacket::Pubrec),
        packet_id().prop_map(ServerPacket::Pubrel),
        packet_id().prop_map(ServerPacket::Pubcomp),
        (
            packet_id(),
            prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0x80)], 1..=5)
        )
            .prop_map(|(pid, codes)| ServerPacket::Suback { pid, codes }),
        packet_id().prop_map(ServerPacket::Unsuback),
        Just(ServerPacket::Pingresp),
    ]
}

/// Cuts `bytes` at the given points (each taken modulo the length, so any `usize` will do).
fn split_at_points(bytes: &[u8], points: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = points.iter().map(|p| p % (bytes.len() + 1)).collect();
    cuts.push(0);
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

// ----- (a) round trips ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_server_packet_round_trips_through_framing(packet in server_packet()) {
        let bytes = packet.encode();
        let decoded = framing::decode(&bytes, MAX);
        prop_assert_eq!(decoded, Ok(packet.packet()));
    }

    #[test]
    fn publish_round_trips_with_every_field(packet in publish()) {
        let bytes = packet.encode();
        let ServerPacket::Publish { topic, payload, qos, pid: id, retain, dup } = &packet else {
            unreachable!()
        };
        match framing::decode(&bytes, MAX) {
            Ok(Packet::Publish(p)) => {
                prop_assert_eq!(p.topic_name, topic.as_str());
                prop_assert_eq!(p.payload, payload.as_slice());
                prop_assert_eq!(p.retain, *retain);
                prop_assert_eq!(p.dup, *dup);
                prop_assert_eq!(p.qospid.qos() as u8, *qos);
                prop_assert_eq!(p.qospid.pid().map(Pid::get), (*qos > 0).then_some(*id));
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn a_packet_over_the_maximum_size_is_refused(packet in publish(), max in 16..256usize) {
        let bytes = packet.encode();
        let decoded = framing::decode(&bytes, max);
        if bytes.len() > max {
            prop_assert_eq!(decoded, Err(mqtt_core::ProtocolError::PacketTooLarge));
        } else {
            prop_assert!(decoded.is_ok());
        }
    }

    #[test]
    fn dup_on_a_qos0_publish_is_refused(topic in topic_name(), payload in bytes(0..32)) {
        let packet =
            ServerPacket::Publish { topic, payload, qos: 0, pid: 1, retain: false, dup: false };
        let mut bytes = packet.encode();
        bytes[0] |= 0b1000;
        let refused = Err(mqtt_core::ProtocolError::InvalidFlags(bytes[0]));
        prop_assert_eq!(framing::decode(&bytes, MAX), refused);
    }

    // ----- (c) the frame reader ------------------------------------------------------------------

    #[test]
    fn reader_yields_exactly_the_frames_of_a_valid_stream(
        packets in prop::collection::vec(server_packet(), 1..12),
        points in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let frames: Vec<Vec<u8>> = packets.iter().map(ServerPacket::encode).collect();
        let stream: Vec<u8> = frames.concat();
        let mut reader = FrameReader::<{ 2 * MAX }>::new();
        let mut seen = Vec::new();
        for chunk in split_at_points(&stream, &points) {
            // `push` takes what fits; a chunk larger than the free space goes in as frames
            // are taken out, as the driver feeds it. Every frame fits the buffer, so each
            // round makes progress.
            let mut rest = chunk.as_slice();
            while !rest.is_empty() {
                let taken = reader.push(rest);
                rest = &rest[taken..];
                let mut progressed = taken > 0;
                while let Some(frame) = reader.next_frame(MAX).unwrap() {
                    prop_assert!(framing::decode(frame, MAX).is_ok());
                    seen.push(frame.to_vec());
                    progressed = true;
                }
                prop_assert!(progressed, "the reader took nothing and held no whole frame");
            }
        }
        prop_assert_eq!(seen, frames);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn held_frames_come_back_whole_and_in_order_while_the_rest_are_cut_past_them(
        packets in prop::collection::vec(server_packet(), 1..12),
        holds in prop::collection::vec(any::<bool>(), 12),
        releases in prop::collection::vec(any::<bool>(), 12),
        points in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let frames: Vec<Vec<u8>> = packets.iter().map(ServerPacket::encode).collect();
        // Room for every frame held at once: holding never stalls this reader.
        let mut reader = FrameReader::<{ 16 * MAX }>::new();
        let (mut passed, mut released) = (Vec::new(), Vec::new());
        let mut index = 0;
        for chunk in split_at_points(&frames.concat(), &points) {
            prop_assert_eq!(reader.push(&chunk), chunk.len());
            while reader.advance(MAX).unwrap().is_some() {
                if holds[index] {
                    reader.hold();
                } else {
                    passed.push(reader.current_frame().to_vec());
                }
                if releases[index] && reader.release_held().is_some() {
                    released.push(reader.current_frame().to_vec());
                }
                index += 1;
            }
        }
        while reader.release_held().is_some() {
            released.push(reader.current_frame().to_vec());
        }
        let chosen = |hold: bool| -> Vec<Vec<u8>> {
            frames.iter().zip(&holds).filter(|(_, h)| **h == hold).map(|(f, _)| f.clone()).collect()
        };
        prop_assert_eq!(passed, chosen(false));
        prop_assert_eq!(released, chosen(true));
        prop_assert_eq!(reader.next_frame(MAX).unwrap(), None);
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reader_agrees_with_a_reference_splitter_on_arbitrary_bytes(
        stream in prop::collection::vec(any::<u8>(), 0..600),
        chunks in prop::collection::vec(1..80usize, 1..40),
        max_seed in any::<u8>(),
    ) {
        // The harness checks frames, errors, room and stalls against its own splitter.
        let max = harness::framing::max_packet_size(max_seed);
        harness::framing::split_and_check(&stream, max, chunks.into_iter().cycle());
    }

    #[test]
    fn reader_agrees_with_a_reference_splitter_on_mostly_valid_bytes(
        packets in prop::collection::vec(server_packet(), 1..8),
        noise in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        chunks in prop::collection::vec(1..80usize, 1..40),
    ) {
        let mut stream: Vec<u8> = packets.iter().flat_map(ServerPacket::encode).collect();
        for (at, byte) in noise {
            let at = at % stream.len();
            stream[at] = byte;
        }
        harness::framing::split_and_check(&stream, 256, chunks.into_iter().cycle());
    }

    #[test]
    fn decode_never_panics_on_arbitrary_frames(frame in bytes(0..300), max in 0..400usize) {
        harness::framing::check_decode(&frame, max);
    }
}

// ----- (b) a connected session against arbitrary bytes ------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Broker bytes, cut at the given points.
    Bytes(Vec<u8>, Vec<usize>),
    /// A well-formed server packet, cut at the given points.
    Packet(ServerPacket, Vec<usize>),
    PollEvent,
    /// `poll_transmit` into a buffer of this size.
    PollTransmit(usize),
    /// `handle_timeout` at this instant (times go backwards too).
    Timeout(u64),
    Publish(u8, u8, bool),
    Subscribe(u8, u8),
    Unsubscribe(u8),
    Disconnect,
    /// A new transport: `handle_connected`, CONNECT out, CONNACK in.
    Reconnect(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (bytes(0..300), prop::collection::vec(any::<usize>(), 0..6))
            .prop_map(|(b, p)| Op::Bytes(b, p)),
        4 => (server_packet(), prop::collection::vec(any::<usize>(), 0..3))
            .prop_map(|(s, p)| Op::Packet(s, p)),
        4 => Just(Op::PollEvent),
        3 => (0..200usize).prop_map(Op::PollTransmit),
        2 => prop_oneof![any::<u64>(), 0..100_000u64].prop_map(Op::Timeout),
        2 => (any::<u8>(), 0..3u8, any::<bool>()).prop_map(|(t, q, r)| Op::Publish(t, q, r)),
        1 => (any::<u8>(), 0..3u8).prop_map(|(f, q)| Op::Subscribe(f, q)),
        1 => any::<u8>().prop_map(Op::Unsubscribe),
        1 => Just(Op::Disconnect),
        1 => any::<bool>().prop_map(Op::Reconnect),
    ]
}

fn qos(n: u8) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(n % 3)]
}

/// With `read_past`, PUBLISHes over the maximum are acknowledged and read past (the default);
/// without, every byte accepted must fit the receive buffer until the next poll.
fn connected_session(keep_alive_s: u16, read_past: bool) -> TestSession {
    let connect = ConnectOptions {
        client_id: "prop-1",
        username: Some("user"),
        password: Some(mqtt_core::Password(b"secret")),
        clean_session: false,
        keep_alive_s,
        last_will: None,
    };
    let mut config = SessionConfig::new(connect);
    config.max_packet_size = RX;
    if !read_past {
        config.max_dropped_publish_size = 0;
    }
    let mut session = TestSession::new(config).unwrap();
    session.handle_connected(Instant(0));
    let mut buf = [0u8; 256];
    let n = session
        .poll_transmit(Instant(0), &mut buf)
        .unwrap()
        .unwrap();
    assert!(matches!(
        mqttrs::decode_slice(&buf[..n]),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(session.handle_bytes(&[0x20, 0x02, 0x00, 0x00]), 4);
    assert_eq!(
        session.poll_event(),
        Some(Event::Connected {
            session_present: false
        })
    );
    session
}

fn check_transmitted(bytes: &[u8]) {
    let header = framing::parse_fixed_header(bytes, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(header.frame_len(), bytes.len());
    let packet = mqttrs::decode_slice(bytes).unwrap().unwrap();
    assert!(
        !matches!(
            packet,
            Packet::Connack(_) | Packet::Suback(_) | Packet::Unsuback(_) | Packet::Pingresp
        ),
        "a client sent {packet:?}"
    );
}

/// Offers `bytes` as the transport would: what does not fit is offered again after polling.
/// Bytes read past (an oversized PUBLISH) are discarded as they arrive: with `read_past`
/// only the count is checked.
fn feed(session: &mut TestSession, bytes: &[u8], accepted_since_poll: &mut usize, read_past: bool) {
    let connected = session.state() != ConnectionState::Disconnected;
    let taken = session.handle_bytes(bytes);
    assert!(taken <= bytes.len());
    if connected && !read_past {
        *accepted_since_poll += taken;
        assert!(
            *accepted_since_poll <= RX,
            "{accepted_since_poll} bytes in a {RX}-byte buffer"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn connected_session_survives_arbitrary_broker_bytes(
        keep_alive_s in prop_oneof![Just(0u16), 1..120u16],
        read_past in any::<bool>(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        const TOPICS: &[&str] = &["a", "a/b", "$SYS/x", "dev/1/status"];
        const FILTERS: &[&str] = &["a", "a/+", "#", "+/b", "dev/+/status"];
        let mut session = connected_session(keep_alive_s, read_past);
        let mut accepted = 0;
        let mut buf = [0u8; 256];
        for op in ops {
            match op {
                Op::Bytes(bytes, points) => {
                    for chunk in split_at_points(&bytes, &points) {
                        feed(&mut session, &chunk, &mut accepted, read_past);
                    }
                }
                Op::Packet(packet, points) => {
                    for chunk in split_at_points(&packet.encode(), &points) {
                        feed(&mut session, &chunk, &mut accepted, read_past);
                    }
                }
                Op::PollEvent => {
                    accepted = 0;
                    match session.poll_event() {
                        Some(Event::Message(m)) => {
                            prop_assert!(validate_name(m.topic).is_ok());
                            prop_assert!(m.payload.len() <= RX);
                        }
                        Some(Event::MessageDropped { topic, packet_len, .. }) => {
                            prop_assert!(read_past, "dropped with read-past off");
                            prop_assert!(validate_name(topic).is_ok());
                            prop_assert!(packet_len > RX);
                            prop_assert!(packet_len <= mqtt_core::DEFAULT_MAX_DROPPED_PUBLISH_SIZE);
                        }
                        _ => {}
                    }
                }
                Op::PollTransmit(size) => {
                    match session.poll_transmit(Instant(0), &mut buf[..size.min(256)]) {
                        Ok(Some(n)) => check_transmitted(&buf[..n]),
                        Ok(None) => {}
                        Err(Error::Exhausted(ResourceError::TransmitBufferTooSmall)) => {}
                        Err(other) => prop_assert!(false, "poll_transmit: {:?}", other),
                    }
                }
                Op::Timeout(at) => {
                    accepted = 0;
                    session.handle_timeout(Instant(at));
                }
                Op::Publish(topic, q, retain) => {
                    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                    let _ = session.publish(topic, b"payload", qos(q), retain);
                }
                Op::Subscribe(filter, q) => {
                    let filter = FILTERS[usize::from(filter) % FILTERS.len()];
                    let _ = session.subscribe(&[(filter, qos(q))]);
                }
                Op::Unsubscribe(filter) => {
                    let _ = session.unsubscribe(&[FILTERS[usize::from(filter) % FILTERS.len()]]);
                }
                Op::Disconnect => session.disconnect(),
                Op::Reconnect(session_present) => {
                    accepted = 0;
                    session.handle_connected(Instant(0));
                    match session.poll_transmit(Instant(0), &mut buf) {
                        Ok(Some(n)) => check_transmitted(&buf[..n]),
                        other => prop_assert!(false, "no CONNECT: {:?}", other),
                    }
                    let connack = [0x20, 0x02, u8::from(session_present), 0x00];
                    feed(&mut session, &connack, &mut accepted, read_past);
                }
            }
            prop_assert!(session.outbox_len() <= SLOTS);
            prop_assert!(session.inflight_len() <= session.config().inflight_window);
        }
        // Whatever happened, the session drains to quiet in bounded steps.
        for _ in 0..1_000 {
            let event = session.poll_event().is_some();
            let sent = match session.poll_transmit(Instant(0), &mut buf) {
                Ok(Some(n)) => {
                    check_transmitted(&buf[..n]);
                    true
                }
                _ => false,
            };
            if !event && !sent {
                return Ok(());
            }
        }
        prop_assert!(false, "session never went quiet");
    }

    #[test]
    fn session_harness_survives_arbitrary_scripts(script in bytes(0..400)) {
        // The fuzz target's harness, driven by proptest's generator instead of libFuzzer.
        harness::session::run(&script);
    }

    #[test]
    fn framing_harness_survives_arbitrary_input(data in bytes(0..600)) {
        harness::framing::run(&data);
    }
}

// ----- (d) topics --------------------------------------------------------------------------------

/// §4.7.3 and §1.5.3: a topic name is at least one character, at most 65,535 bytes of UTF-8,
/// without U+0000 (MQTT-1.5.3-2) and without the wildcards `+` and `#`, which "MUST NOT be
/// used within a Topic Name" (§4.7.1, MQTT-4.7.1-1).
fn reference_name_is_valid(name: &str) -> bool {
    !name.is_empty() && name.len() <= 65_535 && !name.chars().any(|c| matches!(c, '\0' | '+' | '#'))
}

/// §4.7.1.2 and §4.7.1.3 read character by character, as the spec words them: `#` follows a
/// separator or starts the filter and is its last character (MQTT-4.7.1-2); `+` follows a
/// separator or starts the filter and is followed by a separator or the end, so that it
/// "occupies an entire level" (MQTT-4.7.1-3). Plus §4.7.3 and §1.5.3: non-empty, at most
/// 65,535 bytes, no U+0000. Written without splitting into levels, unlike `validate_filter`.
fn reference_filter_is_valid_by_characters(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65_535 {
        return false;
    }
    let chars: Vec<char> = filter.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        let after_separator = i == 0 || chars[i - 1] == '/';
        let before_separator = i + 1 == chars.len() || chars[i + 1] == '/';
        match c {
            '\0' => false,
            '#' => after_separator && i + 1 == chars.len(),
            '+' => after_separator && before_separator,
            _ => true,
        }
    })
}

/// §4.7.1 read as "a filter is a list of levels, each `+`, a last `#`, or literal text".
fn reference_filter_is_valid(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65_535 || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, level)| match *level {
        "+" => true,
        "#" => i == levels.len() - 1,
        text => !text.contains('+') && !text.contains('#'),
    })
}

/// §4.7: compares level counts first, then levels; `#` also matches its parent level;
/// wildcards in the first level do not match names starting with `$` (§4.7.2).
fn reference_matches(filter: &str, name: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let n: Vec<&str> = name.split('/').collect();
    if name.starts_with('$') && matches!(f[0], "+" | "#") {
        return false;
    }
    let level_ok = |(fl, nl): (&&str, &&str)| *fl == "+" || fl == nl;
    if f.last() == Some(&"#") {
        let prefix = &f[..f.len() - 1];
        n.len() >= prefix.len() && prefix.iter().zip(&n).all(level_ok)
    } else {
        n.len() == f.len() && f.iter().zip(&n).all(level_ok)
    }
}

/// Any text, with the characters that topic rules are about (`/`, `+`, `#`, U+0000, a leading
/// `$`) common enough to meet, beside arbitrary Unicode of one to four bytes in UTF-8.
fn topic_text() -> impl Strategy<Value = String> {
    let special = prop_oneof![
        Just('/'),
        Just('+'),
        Just('#'),
        Just('\0'),
        Just('$'),
        Just('a')
    ];
    prop_oneof![
        any::<String>(),
        prop::collection::vec(prop_oneof![3 => special, 1 => any::<char>()], 0..16)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just(String::new()),
        Just("$x".to_string()),
        "[a-c]{1,3}"
    ]
}

fn generated_filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![3 => level(), 1 => Just("+".to_string())], 0..5),
        any::<bool>(),
    )
        .prop_filter_map("empty filter", |(levels, hash)| {
            let mut levels = levels;
            if hash {
                levels.push("#".to_string());
            }
            let filter = levels.join("/");
            (!filter.is_empty()).then_some(filter)
        })
}

fn generated_name() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..6)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("empty name", |name| !name.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5_000, ..ProptestConfig::default() })]

    #[test]
    fn topic_validation_of_any_text_agrees_with_the_spec(
        text in topic_text(),
        other in topic_text(),
    ) {
        prop_assert_eq!(validate_name(&text).is_ok(), reference_name_is_valid(&text),
                        "name {:?}", text);
        prop_assert_eq!(validate_filter(&text).is_ok(),
                        reference_filter_is_valid_by_characters(&text), "filter {:?}", text);
        // A name is also a filter (one without wildcards), and as a filter it matches itself.
        if reference_name_is_valid(&text) {
            prop_assert!(reference_filter_is_valid_by_characters(&text), "{:?}", text);
            prop_assert!(matches(&text, &text), "name {:?} does not match itself", text);
        }
        if reference_filter_is_valid_by_characters(&text) && reference_name_is_valid(&other) {
            prop_assert_eq!(matches(&text, &other), reference_matches(&text, &other),
                            "filter {:?}, name {:?}", text, other);
        }
    }

    #[test]
    fn filter_validation_agrees_with_the_reference(text in "[a/+#\u{0}$]{0,12}") {
        let expected = reference_filter_is_valid(&text);
        prop_assert_eq!(validate_filter(&text).is_ok(), expected, "{:?}", text);
    }

    #[test]
    fn name_validation_refuses_exactly_wildcards_nul_and_empty(text in "[a/+#\u{0}$ü]{0,12}") {
        let expected = !text.is_empty() && !text.contains(['+', '#', '\0']);
        prop_assert_eq!(validate_name(&text).is_ok(), expected, "{:?}", text);
    }

    #[test]
    fn generated_filters_and_names_are_valid(
        filter in generated_filter(),
        name in generated_name(),
    ) {
        prop_assert!(validate_filter(&filter).is_ok(), "{:?}", filter);
        prop_assert!(validate_name(&name).is_ok(), "{:?}", name);
    }

    #[test]
    fn matches_agrees_with_the_reference(filter in generated_filter(), name in generated_name()) {
        let expected = reference_matches(&filter, &name);
        prop_assert_eq!(matches(&filter, &name), expected, "{} vs {}", filter, name);
    }

    #[test]
    fn a_name_used_as_a_filter_matches_itself(name in generated_name()) {
        prop_assert!(matches(&name, &name));
    }
}
