//! Session behaviour against a scripted broker: the broker's packets are encoded with `mqttrs`
//! (the same bytes Mosquitto sends: fixed header, packet identifier, return codes), the
//! client's packets are decoded with `mqttrs` and checked field by field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::error::{
    ConnectRefusal, Error, ProtocolError, ResourceError, TimeoutKind, TransportError,
};
use mqttrs::{ConnectReturnCode, QosPid, SubscribeReturnCodes};
use std::format;
use std::string::{String as StdString, ToString};
use std::vec::Vec as StdVec;

type TestSession = Session<'static, 256, 4, 128>;

const T0: Instant = Instant(1_000);

fn options() -> ConnectOptions<'static> {
    ConnectOptions {
        client_id: "dev-1",
        username: None,
        password: None,
        clean_session: false,
        keep_alive_s: 30,
        last_will: None,
    }
}

fn session_with(config: SessionConfig<'static>) -> TestSession {
    Session::new(config).unwrap()
}

fn session() -> TestSession {
    let mut config = SessionConfig::new(options());
    config.max_packet_size = 256;
    config.inflight_window = 2;
    session_with(config)
}

/// Everything the session wants to send now, one entry per packet.
fn transmit(s: &mut TestSession, now: Instant) -> StdVec<StdVec<u8>> {
    let mut out = StdVec::new();
    let mut buf = [0u8; 512];
    while let Some(n) = s.poll_transmit(now, &mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    out
}

fn describe(bytes: &[u8]) -> StdString {
    match mqttrs::decode_slice(bytes).unwrap().unwrap() {
        Packet::Publish(p) => format!(
            "PUBLISH {} {:?} dup={} retain={} {:?}",
            p.topic_name,
            p.qospid,
            p.dup,
            p.retain,
            core::str::from_utf8(p.payload).unwrap()
        ),
        other => format!("{other:?}"),
    }
}

fn transmit_described(s: &mut TestSession, now: Instant) -> StdVec<StdString> {
    transmit(s, now).iter().map(|p| describe(p)).collect()
}

fn from_broker(s: &mut TestSession, packet: Packet<'_>) {
    let mut buf = [0u8; 512];
    let n = mqttrs::encode_slice(&packet, &mut buf).unwrap();
    feed(s, &buf[..n]);
}

fn feed(s: &mut TestSession, bytes: &[u8]) {
    assert_eq!(s.handle_bytes(bytes), bytes.len(), "receive buffer full");
}

/// Events as strings, so that tests read like a transcript.
fn events(s: &mut TestSession) -> StdVec<StdString> {
    let mut out = StdVec::new();
    while let Some(event) = s.poll_event() {
        out.push(match event {
            Event::Message(m) => format!(
                "message {} {:?} {:?} retain={} dup={}",
                m.topic,
                core::str::from_utf8(m.payload).unwrap(),
                m.qos,
                m.retain,
                m.duplicate
            ),
            other => format!("{other:?}"),
        });
    }
    out
}

fn pid(n: u16) -> Pid {
    Pid::try_from(n).unwrap()
}

fn connack(session_present: bool) -> Packet<'static> {
    Packet::Connack(mqttrs::Connack {
        session_present,
        code: ConnectReturnCode::Accepted,
    })
}

fn connect(s: &mut TestSession, now: Instant, session_present: bool) {
    s.handle_connected(now);
    let sent = transmit(s, now);
    assert_eq!(sent.len(), 1);
    assert!(matches!(
        mqttrs::decode_slice(&sent[0]),
        Ok(Some(Packet::Connect(_)))
    ));
    from_broker(s, connack(session_present));
    assert_eq!(
        events(s),
        [format!(
            "Connected {{ session_present: {session_present} }}"
        )]
    );
    assert_eq!(s.state(), ConnectionState::Connected);
}

#[test]
fn sends_connect_with_identity_keepalive_will_and_credentials() {
    let mut config = SessionConfig::new(ConnectOptions {
        client_id: "dev-9",
        username: Some("user"),
        password: Some(Password(b"secret")),
        clean_session: true,
        keep_alive_s: 45,
        last_will: Some(LastWill {
            topic: "devices/dev-9/status",
            payload: b"offline",
            qos: QoS::AtLeastOnce,
            retain: true,
        }),
    });
    config.max_packet_size = 256;
    let mut s = session_with(config);
    s.handle_connected(T0);
    let sent = transmit(&mut s, T0);
    let Ok(Some(Packet::Connect(c))) = mqttrs::decode_slice(&sent[0]) else {
        panic!()
    };
    assert_eq!(c.client_id, "dev-9");
    assert_eq!(c.keep_alive, 45);
    assert!(c.clean_session);
    assert_eq!(c.username, Some("user"));
    assert_eq!(c.password, Some(&b"secret"[..]));
    let will = c.last_will.unwrap();
    assert_eq!(
        (will.topic, will.message, will.qos, will.retain),
        (
            "devices/dev-9/status",
            &b"offline"[..],
            QoS::AtLeastOnce,
            true
        )
    );
    // Nothing else goes out before CONNACK.
    assert!(transmit(&mut s, T0).is_empty());
}

#[test]
fn password_debug_is_redacted() {
    let options = ConnectOptions {
        password: Some(Password(b"hunter2")),
        ..options()
    };
    let printed = format!("{options:?}");
    assert!(!printed.contains("hunter2"));
    assert!(printed.contains("redacted"));
}

#[test]
fn rejects_invalid_configuration() {
    let bad_id = SessionConfig::new(ConnectOptions {
        client_id: "",
        ..options()
    });
    assert_eq!(
        TestSession::new(bad_id).err(),
        Some(ConfigError::InvalidClientId)
    );
    let mut window = SessionConfig::new(options());
    window.max_packet_size = 256;
    window.inflight_window = 5;
    assert_eq!(
        TestSession::new(window).err(),
        Some(ConfigError::InvalidWindow)
    );
    let too_big = SessionConfig::new(options()); // 1024 > RX of 256
    assert_eq!(
        TestSession::new(too_big).err(),
        Some(ConfigError::InvalidMaxPacketSize)
    );
    let will = LastWill {
        topic: "a/#",
        payload: b"",
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let mut bad_will = SessionConfig::new(ConnectOptions {
        last_will: Some(will),
        ..options()
    });
    bad_will.max_packet_size = 256;
    assert_eq!(
        TestSession::new(bad_will).err(),
        Some(ConfigError::InvalidTopicName)
    );
}

#[test]
fn refused_connack_ends_the_connection_with_a_typed_unrecoverable_error() {
    let mut s = session();
    s.handle_connected(T0);
    transmit(&mut s, T0);
    from_broker(
        &mut s,
        Packet::Connack(mqttrs::Connack {
            session_present: false,
            code: ConnectReturnCode::NotAuthorized,
        }),
    );
    let lost = s.poll_event();
    let expected = Error::Protocol(ProtocolError::ConnectionRefused(
        ConnectRefusal::NotAuthorized,
    ));
    assert_eq!(lost, Some(Event::ConnectionLost(expected)));
    assert!(!expected.is_recoverable());
    assert_eq!(s.state(), ConnectionState::Disconnected);
}

#[test]
fn connack_timeout_ends_the_connection() {
    let mut s = session();
    s.handle_connected(T0);
    transmit(&mut s, T0);
    assert_eq!(s.poll_timeout(), Some(T0.plus_ms(10_000)));
    s.handle_timeout(T0.plus_ms(9_999));
    assert!(events(&mut s).is_empty());
    s.handle_timeout(T0.plus_ms(10_000));
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Timeout(TimeoutKind::Connack)))
    );
}

#[test]
fn packet_other_than_connack_before_connack_is_a_protocol_error() {
    let mut s = session();
    s.handle_connected(T0);
    transmit(&mut s, T0);
    from_broker(&mut s, Packet::Pingresp);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::UnexpectedPacket
        )))
    );
}

/// Found by the session fuzz target: a CONNACK that arrives before CONNECT was written (a
/// hostile peer, stale bytes) was taken as the answer, and CONNECT was never sent.
#[test]
fn connack_before_connect_is_written_is_a_protocol_error_and_connect_still_comes_first() {
    let mut s = session();
    s.handle_connected(T0);
    from_broker(&mut s, connack(false));
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::UnexpectedPacket
        )))
    );
    assert_eq!(s.state(), ConnectionState::Disconnected);
    // On the next connection the first packet is CONNECT, as MQTT-3.1.0-1 requires.
    connect(&mut s, T0, false);
}

#[test]
fn second_connack_is_a_protocol_error() {
    let mut s = session();
    connect(&mut s, T0, false);
    from_broker(&mut s, connack(false));
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::UnexpectedPacket
        )))
    );
}

#[test]
fn sends_pingreq_when_idle_for_the_keepalive_and_times_out_without_pingresp() {
    let mut s = session();
    connect(&mut s, T0, false);
    let ping_at = T0.plus_ms(30_000);
    assert_eq!(s.poll_timeout(), Some(ping_at));
    s.handle_timeout(Instant(ping_at.0 - 1));
    assert!(transmit(&mut s, Instant(ping_at.0 - 1)).is_empty());
    s.handle_timeout(ping_at);
    assert_eq!(transmit_described(&mut s, ping_at), ["Pingreq"]);
    let timeout_at = ping_at.plus_ms(10_000);
    assert_eq!(s.poll_timeout(), Some(timeout_at));
    s.handle_timeout(timeout_at);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Timeout(TimeoutKind::Ping)))
    );
}

#[test]
fn pingresp_keeps_the_connection_and_rearms_keepalive() {
    let mut s = session();
    connect(&mut s, T0, false);
    let ping_at = T0.plus_ms(30_000);
    s.handle_timeout(ping_at);
    transmit(&mut s, ping_at);
    from_broker(&mut s, Packet::Pingresp);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(ping_at.plus_ms(30_000)));
    s.handle_timeout(ping_at.plus_ms(20_000));
    assert_eq!(s.state(), ConnectionState::Connected);
}

#[test]
fn traffic_postpones_the_ping() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.publish("a", b"1", QoS::AtMostOnce, false).unwrap();
    transmit(&mut s, T0.plus_ms(20_000));
    assert_eq!(s.poll_timeout(), Some(T0.plus_ms(50_000)));
}

#[test]
fn qos1_publish_completes_on_puback() {
    let mut s = session();
    connect(&mut s, T0, false);
    let id = s
        .publish("devices/dev-1/telemetry", b"{}", QoS::AtLeastOnce, true)
        .unwrap();
    assert_eq!(
        transmit_described(&mut s, T0),
        ["PUBLISH devices/dev-1/telemetry AtLeastOnce(Pid(1)) dup=false retain=true \"{}\""]
    );
    assert_eq!(s.inflight_len(), 1);
    from_broker(&mut s, Packet::Puback(pid(1)));
    assert_eq!(events(&mut s), [format!("Published({id:?})")]);
    assert_eq!(s.outbox_len(), 0);
}

#[test]
fn qos0_publish_leaves_the_outbox_once_written() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.publish("a/b", b"x", QoS::AtMostOnce, false).unwrap();
    assert_eq!(s.outbox_len(), 1);
    assert_eq!(
        transmit_described(&mut s, T0),
        ["PUBLISH a/b AtMostOnce dup=false retain=false \"x\""]
    );
    assert_eq!(s.outbox_len(), 0);
}

#[test]
fn window_limits_messages_in_flight_and_acks_open_it() {
    let mut s = session(); // window 2, 4 slots
    connect(&mut s, T0, false);
    for n in 0..4 {
        s.publish("t", n.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .unwrap();
    }
    assert_eq!(transmit(&mut s, T0).len(), 2);
    assert_eq!(s.inflight_len(), 2);
    from_broker(&mut s, Packet::Puback(pid(2)));
    events(&mut s);
    let sent = transmit_described(&mut s, T0);
    assert_eq!(
        sent,
        ["PUBLISH t AtLeastOnce(Pid(3)) dup=false retain=false \"2\""]
    );
}

#[test]
fn qos2_publish_runs_pubrec_pubrel_pubcomp() {
    let mut s = session();
    connect(&mut s, T0, false);
    let id = s.publish("t", b"once", QoS::ExactlyOnce, false).unwrap();
    assert_eq!(transmit(&mut s, T0).len(), 1);
    from_broker(&mut s, Packet::Pubrec(pid(1)));
    assert!(events(&mut s).is_empty());
    assert_eq!(transmit_described(&mut s, T0), ["Pubrel(Pid(1))"]);
    from_broker(&mut s, Packet::Pubcomp(pid(1)));
    assert_eq!(events(&mut s), [format!("Published({id:?})")]);
    assert_eq!(s.outbox_len(), 0);
}

#[test]
fn full_outbox_refuses_the_new_message_and_keeps_the_old_ones() {
    let mut s = session();
    for n in 0..4 {
        s.publish("t", &[n], QoS::AtLeastOnce, false).unwrap();
    }
    assert_eq!(
        s.publish("t", b"x", QoS::AtLeastOnce, false),
        Err(Error::Exhausted(ResourceError::OutboxFull))
    );
    assert_eq!(s.outbox_len(), 4);
}

#[test]
fn message_too_large_for_a_slot_is_refused() {
    let mut s = session();
    let big = [0u8; 200];
    assert_eq!(
        s.publish("t", &big, QoS::AtLeastOnce, false),
        Err(Error::Config(ConfigError::PacketTooLarge))
    );
    assert_eq!(s.outbox_len(), 0);
}

#[test]
fn invalid_topic_name_is_refused() {
    let mut s = session();
    assert_eq!(
        s.publish("a/+", b"", QoS::AtMostOnce, false),
        Err(Error::Config(ConfigError::InvalidTopicName))
    );
}

#[test]
fn messages_published_offline_go_out_in_order_after_connect() {
    let mut s = session();
    s.publish("t", b"1", QoS::AtLeastOnce, false).unwrap();
    s.publish("t", b"2", QoS::AtMostOnce, false).unwrap();
    assert!(transmit(&mut s, T0).is_empty());
    connect(&mut s, T0, false);
    assert_eq!(
        transmit_described(&mut s, T0),
        [
            "PUBLISH t AtLeastOnce(Pid(1)) dup=false retain=false \"1\"",
            "PUBLISH t AtMostOnce dup=false retain=false \"2\"",
        ]
    );
}

#[test]
fn unacknowledged_publish_is_resent_with_dup_and_same_id_when_the_session_is_present() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.publish("t", b"a", QoS::AtLeastOnce, false).unwrap();
    transmit(&mut s, T0);
    s.handle_disconnected(TransportError::Closed);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Transport(
            TransportError::Closed
        )))
    );
    connect(&mut s, T0.plus_ms(5_000), true);
    assert_eq!(
        transmit_described(&mut s, T0),
        ["PUBLISH t AtLeastOnce(Pid(1)) dup=true retain=false \"a\""]
    );
    from_broker(&mut s, Packet::Puback(pid(1)));
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn pubrel_is_resent_after_a_reconnect() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.publish("t", b"a", QoS::ExactlyOnce, false).unwrap();
    transmit(&mut s, T0);
    from_broker(&mut s, Packet::Pubrec(pid(1)));
    events(&mut s);
    transmit(&mut s, T0); // PUBREL, lost with the connection
    s.handle_disconnected(TransportError::Read(
        embedded_io::ErrorKind::ConnectionReset,
    ));
    events(&mut s);
    connect(&mut s, T0, true);
    assert_eq!(transmit_described(&mut s, T0), ["Pubrel(Pid(1))"]);
}

#[test]
fn without_a_session_messages_are_sent_as_new_and_subscriptions_restored() {
    let mut s = session();
    connect(&mut s, T0, false);
    let sub = s.subscribe(&[("cmd/#", QoS::AtLeastOnce)]).unwrap();
    transmit(&mut s, T0);
    from_broker(
        &mut s,
        Packet::Suback(mqttrs::Suback {
            pid: pid(sub),
            return_codes: [SubscribeReturnCodes::Success(QoS::AtLeastOnce)]
                .into_iter()
                .collect(),
        }),
    );
    events(&mut s);
    s.publish("t", b"a", QoS::AtLeastOnce, false).unwrap();
    transmit(&mut s, T0);
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    connect(&mut s, T0, false);
    assert_eq!(
        transmit_described(&mut s, T0),
        [
            format!("Subscribe(Subscribe {{ pid: Pid({sub}), topics: [SubscribeTopic {{ topic_path: \"cmd/#\", qos: AtLeastOnce }}] }})"),
            "PUBLISH t AtLeastOnce(Pid(2)) dup=false retain=false \"a\"".to_string(),
        ]
    );
}

#[test]
fn active_subscriptions_are_not_repeated_when_the_session_is_present() {
    let mut s = session();
    connect(&mut s, T0, false);
    let sub = s.subscribe(&[("cmd/#", QoS::AtLeastOnce)]).unwrap();
    transmit(&mut s, T0);
    from_broker(
        &mut s,
        Packet::Suback(mqttrs::Suback {
            pid: pid(sub),
            return_codes: [SubscribeReturnCodes::Success(QoS::AtLeastOnce)]
                .into_iter()
                .collect(),
        }),
    );
    events(&mut s);
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    connect(&mut s, T0, true);
    assert!(transmit(&mut s, T0).is_empty());
}

#[test]
fn inbound_qos1_is_delivered_and_acknowledged() {
    let mut s = session();
    connect(&mut s, T0, false);
    from_broker(
        &mut s,
        Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid(7)),
            retain: true,
            topic_name: "devices/dev-1/cmd/led",
            payload: b"on",
        }),
    );
    assert_eq!(
        events(&mut s),
        ["message devices/dev-1/cmd/led \"on\" AtLeastOnce retain=true dup=false"]
    );
    assert_eq!(transmit_described(&mut s, T0), ["Puback(Pid(7))"]);
}

#[test]
fn inbound_qos2_is_delivered_exactly_once() {
    let mut s = session();
    connect(&mut s, T0, false);
    let publish = |dup| {
        Packet::Publish(mqttrs::Publish {
            dup,
            qospid: QosPid::ExactlyOnce(pid(9)),
            retain: false,
            topic_name: "x",
            payload: b"once",
        })
    };
    from_broker(&mut s, publish(false));
    assert_eq!(events(&mut s).len(), 1);
    assert_eq!(transmit_described(&mut s, T0), ["Pubrec(Pid(9))"]);
    // PUBREC lost; the broker resends with DUP: acknowledged again, not delivered again.
    from_broker(&mut s, publish(true));
    assert!(events(&mut s).is_empty());
    assert_eq!(transmit_described(&mut s, T0), ["Pubrec(Pid(9))"]);
    from_broker(&mut s, Packet::Pubrel(pid(9)));
    assert!(events(&mut s).is_empty());
    assert_eq!(transmit_described(&mut s, T0), ["Pubcomp(Pid(9))"]);
    // After PUBREL the id is free: a new message with it is a new message.
    from_broker(&mut s, publish(false));
    assert_eq!(events(&mut s).len(), 1);
}

#[test]
fn inbound_qos2_ids_survive_a_reconnect_with_session() {
    let mut s = session();
    connect(&mut s, T0, false);
    let publish = Packet::Publish(mqttrs::Publish {
        dup: false,
        qospid: QosPid::ExactlyOnce(pid(3)),
        retain: false,
        topic_name: "x",
        payload: b"",
    });
    from_broker(&mut s, publish.clone());
    assert_eq!(events(&mut s).len(), 1);
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    connect(&mut s, T0, true);
    from_broker(&mut s, publish);
    assert!(
        events(&mut s).is_empty(),
        "duplicate after reconnect suppressed"
    );
}

#[test]
fn subscribe_reports_granted_qos_and_refusal_per_filter() {
    let mut s = session();
    connect(&mut s, T0, false);
    let id = s
        .subscribe(&[("a/+", QoS::ExactlyOnce), ("b/#", QoS::AtMostOnce)])
        .unwrap();
    let sent = transmit(&mut s, T0);
    assert_eq!(sent.len(), 1, "one packet for the request");
    let Ok(Some(Packet::Subscribe(sub))) = mqttrs::decode_slice(&sent[0]) else {
        panic!()
    };
    assert_eq!(sub.topics.len(), 2);
    from_broker(
        &mut s,
        Packet::Suback(mqttrs::Suback {
            pid: pid(id),
            return_codes: [
                SubscribeReturnCodes::Success(QoS::AtLeastOnce),
                SubscribeReturnCodes::Failure,
            ]
            .into_iter()
            .collect(),
        }),
    );
    assert_eq!(
        events(&mut s),
        [format!(
            "Subscribed {{ packet_id: {id}, results: [Granted(AtLeastOnce), Refused] }}"
        )]
    );
    // The refused filter is not restored after a reconnect without session.
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    connect(&mut s, T0, false);
    let sent = transmit(&mut s, T0);
    let Ok(Some(Packet::Subscribe(sub))) = mqttrs::decode_slice(&sent[0]) else {
        panic!()
    };
    assert_eq!(sub.topics.len(), 1);
    assert_eq!(sub.topics[0].topic_path.as_str(), "a/+");
}

#[test]
fn suback_with_wrong_number_of_codes_is_a_protocol_error() {
    let mut s = session();
    connect(&mut s, T0, false);
    let id = s
        .subscribe(&[("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)])
        .unwrap();
    transmit(&mut s, T0);
    from_broker(
        &mut s,
        Packet::Suback(mqttrs::Suback {
            pid: pid(id),
            return_codes: [SubscribeReturnCodes::Success(QoS::AtMostOnce)]
                .into_iter()
                .collect(),
        }),
    );
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::SubackMismatch
        )))
    );
}

#[test]
fn subscribe_validates_filters_and_bounds() {
    let mut s = session();
    assert_eq!(
        s.subscribe(&[]),
        Err(Error::Config(ConfigError::TooManyFilters))
    );
    assert_eq!(
        s.subscribe(&[("a/#/b", QoS::AtMostOnce)]),
        Err(Error::Config(ConfigError::InvalidTopicFilter))
    );
    let names: StdVec<StdString> = (0..MAX_SUBSCRIPTIONS + 1)
        .map(|n| format!("f{n}"))
        .collect();
    for name in &names[..MAX_SUBSCRIPTIONS] {
        s.subscribe(&[(name, QoS::AtMostOnce)]).unwrap();
    }
    assert_eq!(
        s.subscribe(&[(&names[MAX_SUBSCRIPTIONS], QoS::AtMostOnce)]),
        Err(Error::Exhausted(ResourceError::SubscriptionsFull))
    );
    // Subscribing again to a known filter replaces it and needs no room.
    s.subscribe(&[("f0", QoS::AtLeastOnce)]).unwrap();
}

#[test]
fn unsubscribe_sends_unsubscribe_and_forgets_the_filter_on_unsuback() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.subscribe(&[("a", QoS::AtMostOnce)]).unwrap();
    transmit(&mut s, T0);
    let id = s.unsubscribe(&["a"]).unwrap();
    let sent = transmit(&mut s, T0);
    let Ok(Some(Packet::Unsubscribe(unsub))) = mqttrs::decode_slice(&sent[0]) else {
        panic!()
    };
    assert_eq!(unsub.topics.len(), 1);
    from_broker(&mut s, Packet::Unsuback(pid(id)));
    assert_eq!(
        events(&mut s),
        [format!("Unsubscribed {{ packet_id: {id} }}")]
    );
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    connect(&mut s, T0, false);
    assert!(transmit(&mut s, T0).is_empty(), "nothing restored");
}

#[test]
fn each_input_that_panics_mqttrs_becomes_a_protocol_error() {
    for input in crate::framing::tests::MQTTRS_PANICS {
        let mut s = session();
        connect(&mut s, T0, false);
        feed(&mut s, input);
        let event = s.poll_event();
        assert!(
            matches!(event, Some(Event::ConnectionLost(Error::Protocol(_)))),
            "{input:02x?}: {event:?}"
        );
        assert_eq!(s.state(), ConnectionState::Disconnected);
    }
}

#[test]
fn oversized_packet_other_than_publish_drops_the_connection() {
    let mut s = session();
    connect(&mut s, T0, false);
    feed(&mut s, &[0x90, 0x80, 0x04]); // a SUBACK of 512 bytes announced, maximum 256
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::PacketTooLarge
        )))
    );
}

#[test]
fn publish_larger_than_the_read_past_limit_drops_the_connection() {
    let mut s = session();
    connect(&mut s, T0, false);
    // 65,537 bytes of remaining length: over the 64 KiB read past by default.
    feed(&mut s, &[0x32, 0x81, 0x80, 0x04]);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::PacketTooLarge
        )))
    );
}

/// A PUBLISH of `payload_len` payload bytes on `topic` at `qos` with packet id 7.
fn large_publish(topic: &str, qos: u8, payload_len: usize) -> StdVec<u8> {
    let id_len = if qos > 0 { 2 } else { 0 };
    let mut remaining = 2 + topic.len() + id_len + payload_len;
    let mut frame = std::vec![0x30 | (qos << 1)];
    loop {
        let byte = (remaining % 128) as u8;
        remaining /= 128;
        frame.push(if remaining > 0 { byte | 0x80 } else { byte });
        if remaining == 0 {
            break;
        }
    }
    frame.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    frame.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        frame.extend_from_slice(&[0, 7]);
    }
    frame.resize(frame.len() + payload_len, b'x');
    frame
}

/// Feeds `stream` in chunks of at most `chunk` bytes, draining events and acknowledgements
/// between them as a driver does; returns both.
fn feed_in_chunks(
    s: &mut TestSession,
    stream: &[u8],
    chunk: usize,
) -> (StdVec<StdString>, StdVec<StdString>) {
    let (mut seen, mut sent) = (StdVec::new(), StdVec::new());
    let mut rest = stream;
    while !rest.is_empty() {
        let taken = s.handle_bytes(&rest[..chunk.min(rest.len())]);
        rest = &rest[taken..];
        loop {
            let before = (seen.len(), sent.len());
            seen.extend(events(s));
            sent.extend(transmit_described(s, T0));
            if (seen.len(), sent.len()) == before {
                break;
            }
        }
    }
    (seen, sent)
}

#[test]
fn publish_over_the_maximum_is_acknowledged_dropped_and_read_past() {
    for chunk in [1, 7, 100, 256] {
        let mut s = session();
        connect(&mut s, T0, false);
        let mut stream = large_publish("cmd/big", 1, 12 * 1024);
        let packet_len = stream.len();
        from_broker_into(&mut stream, Packet::Pingresp);
        let (seen, sent) = feed_in_chunks(&mut s, &stream, chunk);
        assert_eq!(
            seen,
            [
                format!("MessageDropped {{ topic: \"cmd/big\", packet_len: {packet_len}, qos: AtLeastOnce }}"),
            ],
            "chunks of {chunk}"
        );
        assert_eq!(sent, ["Puback(Pid(7))"], "chunks of {chunk}");
        assert_eq!(s.state(), ConnectionState::Connected);
        assert_eq!(s.reader.buffered(), 0, "the PINGRESP behind it was parsed");
    }
}

#[test]
fn oversized_qos2_publish_is_acknowledged_once_and_its_duplicate_suppressed() {
    let mut s = session();
    connect(&mut s, T0, false);
    let stream = large_publish("cmd/big", 2, 1000);
    let (seen, sent) = feed_in_chunks(&mut s, &stream, 64);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(sent, ["Pubrec(Pid(7))"]);
    let mut duplicate = stream.clone();
    duplicate[0] |= 0x08;
    let (seen, sent) = feed_in_chunks(&mut s, &duplicate, 64);
    assert!(
        seen.is_empty(),
        "a QoS 2 duplicate was reported again: {seen:?}"
    );
    assert_eq!(sent, ["Pubrec(Pid(7))"]);
}

#[test]
fn oversized_qos0_publish_is_dropped_without_acknowledgement() {
    let mut s = session();
    connect(&mut s, T0, false);
    let (seen, sent) = feed_in_chunks(&mut s, &large_publish("t", 0, 300), 50);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(sent.is_empty(), "{sent:?}");
}

#[test]
fn oversized_publish_whose_head_does_not_fit_the_buffer_drops_the_connection() {
    let mut s = session();
    connect(&mut s, T0, false);
    let topic = "t".repeat(300); // more than the 256-byte receive buffer
    let stream = large_publish(&topic, 1, 10);
    s.handle_bytes(&stream[..256]);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::PacketTooLarge
        )))
    );
}

#[test]
fn oversized_publish_with_an_invalid_head_drops_the_connection() {
    for (topic, qos, cause) in [
        ("a/#", 1, ProtocolError::InvalidTopic),
        ("ok", 3, ProtocolError::InvalidQos),
    ] {
        let mut s = session();
        connect(&mut s, T0, false);
        let mut stream = large_publish(topic, qos.min(2), 400);
        stream[0] = 0x30 | (qos << 1);
        s.handle_bytes(&stream[..100]);
        assert_eq!(
            s.poll_event(),
            Some(Event::ConnectionLost(Error::Protocol(cause))),
            "{topic} QoS {qos}"
        );
    }
}

#[test]
fn oversized_publish_before_connack_drops_the_connection() {
    let mut s = session();
    s.handle_connected(T0);
    transmit(&mut s, T0);
    s.handle_bytes(&large_publish("t", 1, 400)[..100]);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::UnexpectedPacket
        )))
    );
}

#[test]
fn read_past_limit_of_zero_keeps_the_old_refusal() {
    let mut config = SessionConfig::new(options());
    config.max_packet_size = 256;
    config.max_dropped_publish_size = 0;
    let mut s = session_with(config);
    connect(&mut s, T0, false);
    s.handle_bytes(&large_publish("t", 1, 400)[..100]);
    assert_eq!(
        s.poll_event(),
        Some(Event::ConnectionLost(Error::Protocol(
            ProtocolError::PacketTooLarge
        )))
    );
}

fn from_broker_into(stream: &mut StdVec<u8>, packet: Packet<'_>) {
    let mut buf = [0u8; 512];
    let n = mqttrs::encode_slice(&packet, &mut buf).unwrap();
    stream.extend_from_slice(&buf[..n]);
}

#[test]
fn a_burst_of_qos1_messages_is_acknowledged_despite_a_full_ack_queue() {
    let mut s = session();
    connect(&mut s, T0, false);
    let mut stream = StdVec::new();
    for n in 1..=40u16 {
        let mut buf = [0u8; 64];
        let publish = Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid(n)),
            retain: false,
            topic_name: "t",
            payload: b"p",
        });
        let len = mqttrs::encode_slice(&publish, &mut buf).unwrap();
        stream.extend_from_slice(&buf[..len]);
    }
    let (mut delivered, mut acked, mut offset) = (0, 0, 0);
    while offset < stream.len() || s.reader.buffered() > 0 {
        offset += s.handle_bytes(&stream[offset..]);
        delivered += events(&mut s).len();
        acked += transmit(&mut s, T0).len();
    }
    delivered += events(&mut s).len();
    acked += transmit(&mut s, T0).len();
    assert_eq!((delivered, acked), (40, 40));
}

#[test]
fn graceful_disconnect_goes_out_after_pending_acks_and_queued_publishes() {
    let mut s = session();
    connect(&mut s, T0, false);
    from_broker(
        &mut s,
        Packet::Publish(mqttrs::Publish {
            dup: false,
            qospid: QosPid::AtLeastOnce(pid(4)),
            retain: false,
            topic_name: "t",
            payload: b"",
        }),
    );
    events(&mut s);
    s.publish("t", b"last words", QoS::AtMostOnce, false)
        .unwrap();
    s.disconnect();
    assert_eq!(
        transmit_described(&mut s, T0),
        [
            "Puback(Pid(4))",
            "PUBLISH t AtMostOnce dup=false retain=false \"last words\"",
            "Disconnect"
        ]
    );
    assert_eq!(s.state(), ConnectionState::Disconnected);
    assert_eq!(
        s.poll_event(),
        None,
        "a requested disconnect is not a lost connection"
    );
}

#[test]
fn transmit_buffer_too_small_keeps_the_packet_queued() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.publish("topic", b"payload", QoS::AtLeastOnce, false)
        .unwrap();
    let mut tiny = [0u8; 4];
    assert_eq!(
        s.poll_transmit(T0, &mut tiny),
        Err(Error::Exhausted(ResourceError::TransmitBufferTooSmall))
    );
    assert_eq!(transmit(&mut s, T0).len(), 1);
}

#[test]
fn pingreq_and_disconnect_are_the_two_bytes_of_the_spec() {
    // §3.12.1 and §3.14.1: type 12 / 14, no flags, remaining length 0.
    let mut s = session();
    connect(&mut s, T0, false);
    let ping_at = T0.plus_ms(30_000);
    s.handle_timeout(ping_at);
    let mut tiny = [0u8; 1];
    assert_eq!(
        s.poll_transmit(ping_at, &mut tiny),
        Err(Error::Exhausted(ResourceError::TransmitBufferTooSmall))
    );
    assert_eq!(transmit(&mut s, ping_at), [[0xC0, 0x00]]);
    s.disconnect();
    assert_eq!(
        s.poll_transmit(ping_at, &mut tiny),
        Err(Error::Exhausted(ResourceError::TransmitBufferTooSmall))
    );
    assert_eq!(transmit(&mut s, ping_at), [[0xE0, 0x00]]);
    assert_eq!(s.state(), ConnectionState::Disconnected);
}

#[test]
fn packet_ids_skip_those_still_in_use() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.next_packet_id = u16::MAX - 1;
    s.publish("t", b"", QoS::AtLeastOnce, false).unwrap(); // 65535
    s.publish("t", b"", QoS::AtLeastOnce, false).unwrap(); // wraps to 1
    let ids: StdVec<_> = s
        .outbox
        .slots
        .iter()
        .flatten()
        .filter_map(|s| s.packet_id)
        .map(Pid::get)
        .collect();
    assert_eq!(ids, [u16::MAX, 1]);
}

#[test]
fn session_with_default_limits_stays_under_8_kib() {
    let size = core::mem::size_of::<Session<'static>>();
    assert!(size < 8 * 1024, "Session is {size} bytes");
}

#[test]
fn a_burst_of_qos2_messages_beyond_the_id_table_is_delivered_without_dropping_the_connection() {
    let mut s = session();
    connect(&mut s, T0, true);
    let mut delivered = 0;
    for n in 1..=(MAX_INBOUND_QOS2 as u16 + 10) {
        from_broker(
            &mut s,
            Packet::Publish(mqttrs::Publish {
                dup: false,
                qospid: QosPid::ExactlyOnce(pid(n)),
                retain: false,
                topic_name: "t",
                payload: b"",
            }),
        );
        delivered += events(&mut s).len();
        assert_eq!(
            transmit_described(&mut s, T0),
            [format!("Pubrec(Pid({n}))")]
        );
    }
    assert_eq!(delivered, MAX_INBOUND_QOS2 + 10);
    assert_eq!(s.state(), ConnectionState::Connected);
}

/// Made at compile time, as a firmware's `static` is.
const UNCONFIGURED: TestSession = Session::unconfigured();

#[test]
fn a_session_made_at_compile_time_connects_once_configured() {
    let mut s = UNCONFIGURED;
    let mut config = SessionConfig::new(options());
    config.max_packet_size = 256;
    config.inflight_window = 2;
    s.configure(config).unwrap();
    assert_eq!(s.config().connect.client_id, "dev-1");
    connect(&mut s, T0, false);
}

#[test]
fn configure_checks_the_settings_and_refuses_while_a_transport_is_attached() {
    let mut s = UNCONFIGURED;
    let mut bad = SessionConfig::new(options());
    bad.max_packet_size = 512; // over the 256-byte receive buffer
    assert_eq!(s.configure(bad), Err(ConfigError::InvalidMaxPacketSize));
    let mut connected = session();
    connect(&mut connected, T0, false);
    assert_eq!(
        connected.configure(SessionConfig::new(options())),
        Err(ConfigError::NotDisconnected)
    );
}

// ----- back-pressure on the broker's messages -----------------------------------------------

fn command(qos: QoS, id: u16, payload: &'static [u8]) -> Packet<'static> {
    let qospid = match qos {
        QoS::AtMostOnce => QosPid::AtMostOnce,
        QoS::AtLeastOnce => QosPid::AtLeastOnce(pid(id)),
        QoS::ExactlyOnce => QosPid::ExactlyOnce(pid(id)),
    };
    Packet::Publish(mqttrs::Publish {
        dup: false,
        qospid,
        retain: false,
        topic_name: "devices/dev-1/cmd/ping",
        payload,
    })
}

fn payloads(events: &[StdString]) -> StdVec<&str> {
    events.iter().filter_map(|e| e.split('"').nth(1)).collect()
}

#[test]
fn messages_beyond_the_room_are_held_unacknowledged_and_delivered_in_order_later() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.set_message_room(1);
    from_broker(&mut s, command(QoS::AtLeastOnce, 1, b"a"));
    from_broker(&mut s, command(QoS::ExactlyOnce, 2, b"b"));
    from_broker(&mut s, command(QoS::AtMostOnce, 0, b"c"));
    from_broker(&mut s, command(QoS::AtLeastOnce, 3, b"d"));
    assert_eq!(payloads(&events(&mut s)), ["a"]);
    // MQTT-4.3.2: acknowledged once the application has taken it, and not before.
    assert_eq!(transmit_described(&mut s, T0), ["Puback(Pid(1))"]);
    assert!(events(&mut s).is_empty(), "no room: nothing more");

    s.set_message_room(2);
    assert_eq!(payloads(&events(&mut s)), ["b", "c"]);
    assert_eq!(transmit_described(&mut s, T0), ["Pubrec(Pid(2))"]);
    s.set_message_room(8);
    assert_eq!(payloads(&events(&mut s)), ["d"]);
    assert_eq!(transmit_described(&mut s, T0), ["Puback(Pid(3))"]);
}

#[test]
fn acknowledgements_behind_held_messages_are_handled_past_them() {
    let mut s = session();
    connect(&mut s, T0, false);
    let id = s
        .publish("devices/dev-1/reply/ping", b"r", QoS::AtLeastOnce, false)
        .unwrap();
    transmit(&mut s, T0);
    s.set_message_room(0);
    // The broker wrote a command before it received our message, then the PUBACK for it:
    // the room the application waits for must not wait behind the command.
    from_broker(&mut s, command(QoS::AtLeastOnce, 5, b"next"));
    from_broker(&mut s, Packet::Puback(pid(1)));
    from_broker(&mut s, Packet::Pingresp);
    assert_eq!(events(&mut s), [format!("Published({id:?})")]);
    assert_eq!(s.outbox_len(), 0);
    assert!(
        transmit(&mut s, T0).is_empty(),
        "the command is not acknowledged"
    );

    s.set_message_room(1);
    assert_eq!(payloads(&events(&mut s)), ["next"]);
    assert_eq!(transmit_described(&mut s, T0), ["Puback(Pid(5))"]);
}

#[test]
fn a_receive_buffer_full_of_held_qos1_messages_reads_nothing_more_until_there_is_room() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.set_message_room(0);
    let mut buf = [0u8; 64];
    let mut id = 1;
    let mut fed = StdVec::new();
    loop {
        let n =
            mqttrs::encode_slice(&command(QoS::AtLeastOnce, id, b"0123456789"), &mut buf).unwrap();
        let taken = s.handle_bytes(&buf[..n]);
        fed.extend_from_slice(&buf[..taken]);
        assert!(events(&mut s).is_empty());
        if taken < n {
            break;
        }
        id += 1;
    }
    assert!(s.receive_blocked());
    assert!(s.receive_buffer().is_empty());
    assert!(transmit(&mut s, T0).is_empty());

    s.set_message_room(1);
    assert!(!s.receive_blocked());
    assert_eq!(payloads(&events(&mut s)), ["0123456789"]);
    assert!(!s.receive_buffer().is_empty(), "room to read again");
}

#[test]
fn a_receive_buffer_full_of_held_qos0_messages_delivers_the_oldest_past_the_room() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.set_message_room(0);
    let mut buf = [0u8; 64];
    let n = mqttrs::encode_slice(&command(QoS::AtMostOnce, 0, b"0123456789"), &mut buf).unwrap();
    let mut delivered = 0;
    for _ in 0..40 {
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let taken = s.handle_bytes(rest);
            rest = &rest[taken..];
            delivered += events(&mut s).len();
            assert!(!s.receive_blocked());
        }
    }
    // QoS 0 carries no acknowledgement to bound how many the broker sends ahead of the
    // acknowledgements the application waits for: reading on is the only way forward.
    assert!(delivered > 0 && delivered < 40, "{delivered}");
}

#[test]
fn held_messages_go_with_the_connection_unacknowledged_and_the_broker_sends_them_again() {
    let mut s = session();
    connect(&mut s, T0, false);
    s.set_message_room(0);
    from_broker(&mut s, command(QoS::AtLeastOnce, 4, b"held"));
    assert!(events(&mut s).is_empty());
    s.handle_disconnected(TransportError::Closed);
    events(&mut s);
    s.set_message_room(4);
    connect(&mut s, T0, true);
    assert!(
        transmit(&mut s, T0).is_empty(),
        "no PUBACK for the old connection's bytes"
    );
    let mut again = command(QoS::AtLeastOnce, 4, b"held");
    if let Packet::Publish(publish) = &mut again {
        publish.dup = true;
    }
    from_broker(&mut s, again);
    assert_eq!(payloads(&events(&mut s)), ["held"]);
    assert_eq!(transmit_described(&mut s, T0), ["Puback(Pid(4))"]);
}
