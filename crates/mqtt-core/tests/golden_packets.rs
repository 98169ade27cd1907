//! Golden packets: the exact bytes Mosquitto 2.0.11 sent to a client, captured on loopback by
//! `tests/golden/capture.py` into `tests/golden/mosquitto.txt`, decoded by our framing and
//! driven through a session.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_core::framing::decode;
use mqtt_core::{ConnectOptions, Event, Instant, QoS, Session, SessionConfig};
use mqttrs::{Packet, QosPid, SubscribeReturnCodes};
use std::collections::BTreeMap;

fn golden() -> BTreeMap<String, Vec<u8>> {
    let text = include_str!("golden/mosquitto.txt");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, hex) = line.split_once(' ').unwrap();
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            (name.to_string(), bytes)
        })
        .collect()
}

fn packet(name: &str) -> Vec<u8> {
    golden()
        .remove(name)
        .unwrap_or_else(|| panic!("no golden packet {name}"))
}

#[test]
fn decodes_every_captured_packet() {
    let all = golden();
    assert_eq!(all.len(), 11, "capture file complete");
    for (name, bytes) in &all {
        assert!(decode(bytes, 1024).is_ok(), "{name}: {bytes:02x?}");
    }
}

#[test]
fn captured_connacks_carry_session_present_only_for_a_stored_session() {
    let present = |name: &str| match decode(&packet(name), 1024).unwrap() {
        Packet::Connack(c) => c.session_present,
        other => panic!("{other:?}"),
    };
    assert!(!present("connack_clean_session"));
    assert!(!present("connack_persistent_first"));
    assert!(present("connack_persistent_session_present"));
}

#[test]
fn captured_suback_grants_each_requested_qos() {
    let bytes = packet("suback_qos0_qos1_qos2");
    let Packet::Suback(suback) = decode(&bytes, 1024).unwrap() else {
        panic!()
    };
    assert_eq!(suback.pid.get(), 7);
    assert_eq!(
        suback.return_codes.as_slice(),
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].map(SubscribeReturnCodes::Success)
    );
}

#[test]
fn captured_publish_has_topic_id_and_payload() {
    let bytes = packet("publish_qos1_echo");
    let Packet::Publish(publish) = decode(&bytes, 1024).unwrap() else {
        panic!()
    };
    assert_eq!(publish.topic_name, "golden/b");
    assert_eq!(publish.payload, b"hello");
    assert!(matches!(publish.qospid, QosPid::AtLeastOnce(pid) if pid.get() == 1));
    assert!(!publish.dup && !publish.retain);
}

#[test]
fn a_session_fed_the_captured_stream_reports_what_mosquitto_said() {
    let options = ConnectOptions {
        client_id: "golden-1",
        username: None,
        password: None,
        clean_session: true,
        keep_alive_s: 30,
        last_will: None,
    };
    let mut session: Session<'static> = Session::new(SessionConfig::new(options)).unwrap();
    session.handle_connected(Instant(0));
    let mut buf = [0u8; 1024];
    assert!(session
        .poll_transmit(Instant(0), &mut buf)
        .unwrap()
        .is_some());
    // The whole conversation's broker side in one read, as TCP may deliver it.
    let mut stream = packet("connack_clean_session");
    stream.extend(packet("publish_qos1_echo"));
    stream.extend(packet("pingresp"));
    assert_eq!(session.handle_bytes(&stream), stream.len());
    assert_eq!(
        session.poll_event(),
        Some(Event::Connected {
            session_present: false
        })
    );
    match session.poll_event() {
        Some(Event::Message(m)) => {
            assert_eq!(
                (m.topic, m.payload, m.qos),
                ("golden/b", &b"hello"[..], QoS::AtLeastOnce)
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(session.poll_event(), None);
    // The session acknowledges Mosquitto's PUBLISH with exactly the PUBACK Mosquitto sends.
    let n = session
        .poll_transmit(Instant(0), &mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], [0x40, 0x02, 0x00, 0x01]);
}
