//! Messages larger than the device keeps (MQTT 3.1.1 §3.3, §4.3.2): a PUBLISH over the
//! maximum packet size is acknowledged and read past, so that a broker holding a persistent
//! session does not send it again after every reconnect; one far larger than anything the
//! device reads past still ends the connection. Against a plain-TCP Mosquitto.

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::{self, unique_client_id};
use broker_tests::{qos_number, test_config, Broker, Device, TcpTransport};
use mqtt_core::{Error, ProtocolError, QoS, SubscribeResult};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const SENTINEL: &str = "end";
/// Larger than the device's 1 KiB packets, smaller than the 64 KiB it reads past.
const LARGE: usize = 12 * 1024;

fn subscribed_device<'a>(
    broker: &Broker,
    client_id: &'a str,
    topic: &str,
) -> Device<'a, TcpTransport> {
    let mut config = test_config(client_id);
    config.connect.clean_session = false;
    let mut device = Device::new(config).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    let granted = device.subscribe(&[(topic, QoS::ExactlyOnce)]).unwrap();
    assert_eq!(granted, [SubscribeResult::Granted(QoS::ExactlyOnce)]);
    device
}

/// A message of `LARGE` bytes at `qos`, then a sentinel: the device reports the large one
/// dropped (topic and size), receives the sentinel on the same connection, and after a
/// reconnect to its stored session the broker sends the large one no more.
fn large_message_is_acknowledged_and_dropped(qos: QoS) {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/cmd/large");
    let mut device = subscribed_device(&broker, &client_id, &topic);

    peer::publish(&broker, &topic, &"x".repeat(LARGE), qos_number(qos), false).unwrap();
    peer::publish(&broker, &topic, SENTINEL, qos_number(qos), false).unwrap();
    device
        .run_until(WAIT, "the sentinel after the large message", |_, inbox| {
            inbox.texts_on(&topic).iter().any(|t| t == SENTINEL)
        })
        .unwrap();

    assert_eq!(device.inbox.dropped.len(), 1, "{:?}", device.inbox.dropped);
    let (dropped_topic, packet_len, dropped_qos) = device.inbox.dropped[0].clone();
    assert_eq!(dropped_topic, topic);
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    // Fixed header (1 + 2 bytes of remaining length), topic with its length, id, payload.
    assert_eq!(packet_len, 3 + 2 + topic.len() + id_len + LARGE);
    assert_eq!(dropped_qos, qos);
    assert!(device.inbox.lost.is_empty(), "{:?}", device.inbox.lost);
    assert_eq!(device.inbox.connected.len(), 1);

    // Had the PUBACK/PUBREC not gone out, Mosquitto would resend the message (DUP) on the
    // stored session ahead of anything newer.
    device.drop_connection();
    let present = device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    assert!(present, "the broker kept no session");
    peer::publish(&broker, &topic, "after", qos_number(qos), false).unwrap();
    device
        .run_until(WAIT, "the message after the reconnect", |_, inbox| {
            inbox.texts_on(&topic).iter().any(|t| t == "after")
        })
        .unwrap();
    assert_eq!(
        device.inbox.dropped.len(),
        1,
        "the broker sent the large message again: {:?}",
        device.inbox.dropped
    );
}

#[test]
fn a_12_kib_qos0_message_is_dropped_and_the_connection_stays() {
    large_message_is_acknowledged_and_dropped(QoS::AtMostOnce);
}

#[test]
fn a_12_kib_qos1_message_is_acknowledged_dropped_and_not_sent_again() {
    large_message_is_acknowledged_and_dropped(QoS::AtLeastOnce);
}

#[test]
fn a_12_kib_qos2_message_is_acknowledged_dropped_and_not_sent_again() {
    large_message_is_acknowledged_and_dropped(QoS::ExactlyOnce);
}

#[test]
fn a_message_larger_than_the_device_reads_past_ends_the_connection() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/cmd/huge");
    let mut device = subscribed_device(&broker, &client_id, &topic);

    peer::publish(&broker, &topic, &"x".repeat(100 * 1024), 1, false).unwrap();
    // The poll that meets the packet reports the loss and then fails: either way the
    // cause is in the inbox.
    let _ = device.run_until(WAIT, "the connection to end", |_, inbox| {
        !inbox.lost.is_empty()
    });
    assert_eq!(
        device.inbox.lost,
        [Error::Protocol(ProtocolError::PacketTooLarge)]
    );
    assert!(
        device.inbox.dropped.is_empty(),
        "{:?}",
        device.inbox.dropped
    );
}
