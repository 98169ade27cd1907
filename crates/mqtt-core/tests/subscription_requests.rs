//! Regression tests for the subscription bugs the session fuzz target found (its inputs are
//! kept in `fuzz/corpus/session/bug_*` and replayed by `tests/fuzz_corpus.rs`):
//! 1. a filter given twice to `subscribe` was stored twice, and `unsubscribe` changed only one
//!    entry, so a SUBSCRIBE went out *after* the UNSUBSCRIBE;
//! 2. and 3. re-subscribing or unsubscribing a filter whose SUBSCRIBE awaited its SUBACK made
//!    the (correct) SUBACK look wrong, and the session dropped the connection.
//!
//! The broker's side is what MQTT 3.1.1 requires of it: §3.9.3 (one SUBACK return code per
//! filter of the SUBSCRIBE, in order) and §3.10.4 (UNSUBACK).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_core::{ConnectOptions, Event, Instant, QoS, Session, SessionConfig, SubscribeResult};
use mqttrs::Packet;

type TestSession = Session<'static, 256, 4, 128>;

fn connected_session() -> TestSession {
    let connect = ConnectOptions {
        client_id: "dev-1",
        username: None,
        password: None,
        clean_session: false,
        keep_alive_s: 0,
        last_will: None,
    };
    let mut config = SessionConfig::new(connect);
    config.max_packet_size = 256;
    let mut session = TestSession::new(config).unwrap();
    reconnect(&mut session, false);
    session
}

fn reconnect(session: &mut TestSession, session_present: bool) {
    session.handle_connected(Instant(0));
    assert_eq!(transmit(session).len(), 1, "CONNECT");
    assert_eq!(
        session.handle_bytes(&[0x20, 0x02, u8::from(session_present), 0x00]),
        4
    );
    assert_eq!(
        session.poll_event(),
        Some(Event::Connected { session_present })
    );
}

/// Everything the session writes now, decoded.
fn transmit(session: &mut TestSession) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while let Some(n) = session.poll_transmit(Instant(0), &mut buf).unwrap() {
        let packet = mqttrs::decode_slice(&buf[..n]).unwrap().unwrap();
        out.push(match packet {
            Packet::Subscribe(s) => format!(
                "SUBSCRIBE {} {:?}",
                s.pid.get(),
                s.topics
                    .iter()
                    .map(|t| t.topic_path.as_str())
                    .collect::<Vec<_>>()
            ),
            Packet::Unsubscribe(u) => format!(
                "UNSUBSCRIBE {} {:?}",
                u.pid.get(),
                u.topics.iter().map(|t| t.as_str()).collect::<Vec<_>>()
            ),
            other => format!("{other:?}"),
        });
    }
    out
}

fn events(session: &mut TestSession) -> Vec<Event<'static>> {
    let mut out = Vec::new();
    while let Some(event) = session.poll_event() {
        out.push(match event {
            Event::Subscribed { packet_id, results } => Event::Subscribed { packet_id, results },
            Event::Unsubscribed { packet_id } => Event::Unsubscribed { packet_id },
            Event::ConnectionLost(e) => Event::ConnectionLost(e),
            other => panic!("unexpected {other:?}"),
        });
    }
    out
}

fn suback(packet_id: u16, codes: &[u8]) -> Vec<u8> {
    let id = packet_id.to_be_bytes();
    let mut bytes = vec![0x90, 2 + codes.len() as u8, id[0], id[1]];
    bytes.extend_from_slice(codes);
    bytes
}

fn unsuback(packet_id: u16) -> Vec<u8> {
    let id = packet_id.to_be_bytes();
    vec![0xB0, 0x02, id[0], id[1]]
}

fn granted(qos: &[QoS]) -> heapless::Vec<SubscribeResult, 5> {
    qos.iter().map(|q| SubscribeResult::Granted(*q)).collect()
}

#[test]
fn a_filter_given_twice_is_never_subscribed_after_its_unsubscribe() {
    let mut session = connected_session();
    // Refusing the request is one fix; accepting it must still end unsubscribed.
    if session
        .subscribe(&[("x", QoS::AtMostOnce), ("x", QoS::AtMostOnce)])
        .is_err()
    {
        assert!(transmit(&mut session).is_empty());
        return;
    }
    let unsubscribe = session.unsubscribe(&["x"]).unwrap();
    let sent = transmit(&mut session);
    assert_eq!(
        sent.last(),
        Some(&format!("UNSUBSCRIBE {unsubscribe} [\"x\"]")),
        "{sent:?}"
    );
}

#[test]
fn resubscribing_while_the_suback_is_pending_keeps_the_connection() {
    let mut session = connected_session();
    let first = session
        .subscribe(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)])
        .unwrap();
    assert_eq!(
        transmit(&mut session),
        [format!("SUBSCRIBE {first} [\"a\", \"b\"]")]
    );
    let second = session.subscribe(&[("a", QoS::AtLeastOnce)]).unwrap();
    assert_eq!(
        transmit(&mut session),
        [format!("SUBSCRIBE {second} [\"a\"]")]
    );
    session.handle_bytes(&suback(first, &[0, 0]));
    session.handle_bytes(&suback(second, &[1]));
    assert_eq!(
        events(&mut session),
        [
            Event::Subscribed {
                packet_id: first,
                results: granted(&[QoS::AtMostOnce, QoS::AtMostOnce])
            },
            Event::Subscribed {
                packet_id: second,
                results: granted(&[QoS::AtLeastOnce])
            },
        ]
    );
    // Without a stored session both filters come back, "a" once, at the newer QoS.
    reconnect(&mut session, false);
    let restored = transmit(&mut session);
    let mut filters: Vec<&str> = restored
        .iter()
        .flat_map(|p| ["\"a\"", "\"b\""].into_iter().filter(|f| p.contains(f)))
        .collect();
    filters.sort_unstable();
    assert_eq!(filters, ["\"a\"", "\"b\""], "{restored:?}");
}

#[test]
fn unsubscribing_while_the_suback_is_pending_keeps_the_connection() {
    let mut session = connected_session();
    let first = session
        .subscribe(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)])
        .unwrap();
    transmit(&mut session);
    let second = session.unsubscribe(&["a"]).unwrap();
    assert_eq!(
        transmit(&mut session),
        [format!("UNSUBSCRIBE {second} [\"a\"]")]
    );
    session.handle_bytes(&suback(first, &[0, 0]));
    session.handle_bytes(&unsuback(second));
    assert_eq!(
        events(&mut session),
        [
            Event::Subscribed {
                packet_id: first,
                results: granted(&[QoS::AtMostOnce, QoS::AtMostOnce])
            },
            Event::Unsubscribed { packet_id: second },
        ]
    );
    // Without a stored session only "b" is restored.
    reconnect(&mut session, false);
    let restored = transmit(&mut session);
    assert_eq!(restored.len(), 1, "{restored:?}");
    assert!(restored[0].ends_with("[\"b\"]"), "{restored:?}");
}

#[test]
fn a_connection_lost_while_a_suback_is_pending_restores_only_the_newest_request() {
    let mut session = connected_session();
    session
        .subscribe(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)])
        .unwrap();
    transmit(&mut session);
    session.unsubscribe(&["a"]).unwrap();
    // Neither acknowledgement arrives: the connection goes first.
    session.handle_disconnected(mqtt_core::TransportError::Read(
        embedded_io::ErrorKind::ConnectionReset,
    ));
    assert!(matches!(
        session.poll_event(),
        Some(Event::ConnectionLost(_))
    ));
    reconnect(&mut session, false);
    let sent = transmit(&mut session);
    assert!(
        sent.iter()
            .any(|p| p.starts_with("SUBSCRIBE") && p.ends_with("[\"b\"]")),
        "{sent:?}"
    );
    assert!(
        !sent
            .iter()
            .any(|p| p.starts_with("SUBSCRIBE") && p.contains("\"a\"")),
        "{sent:?}"
    );
}
