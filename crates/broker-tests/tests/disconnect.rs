//! Ending a connection: the last will (MQTT 3.1.1 §3.1.2.5) is published when it ends without
//! DISCONNECT and discarded after a DISCONNECT (§3.14.4); a graceful disconnect writes what
//! was queued before it.

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::{self, unique_client_id};
use broker_tests::{test_config, Broker, Device, Observed, Observer, TcpTransport};
use mqtt_core::{LastWill, QoS, SessionConfig};
use std::time::Duration;

fn config_with_will<'a>(client_id: &'a str, will_topic: &'a str) -> SessionConfig<'a> {
    let mut config = test_config(client_id);
    config.connect.last_will = Some(LastWill {
        topic: will_topic,
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    config
}

#[test]
fn will_is_published_when_the_device_drops_the_connection_without_disconnect() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let will_topic = format!("devices/{client_id}/status");
    let mut observer = Observer::subscribe(&broker, &will_topic).unwrap();
    let mut device = Device::new(config_with_will(&client_id, &will_topic)).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    device
        .publish(
            &format!("devices/{client_id}/telemetry"),
            b"alive",
            QoS::AtLeastOnce,
            false,
        )
        .unwrap();

    device.drop_connection();

    let will = observer
        .next_message(Duration::from_secs(5))
        .expect("no will after an abrupt close");
    assert_eq!(
        will,
        Observed {
            topic: will_topic,
            payload: b"offline".to_vec(),
            qos: 1,
            retain: false
        }
    );
}

#[test]
fn will_is_not_published_after_a_graceful_disconnect() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let will_topic = format!("devices/{client_id}/status");
    let mut observer = Observer::subscribe(&broker, &will_topic).unwrap();
    let mut device = Device::new(config_with_will(&client_id, &will_topic)).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();

    device.disconnect();

    // Once the broker has logged the end of the connection, in whichever form, it has
    // decided about the will and sent it if it was going to: a sentinel published after
    // that reaches the observer after any will.
    let ended = broker
        .wait_for_log_line(
            "the end of the device's connection",
            Duration::from_secs(10),
            |line| connection_ended(line, &client_id),
        )
        .unwrap();
    peer::publish(&broker, &will_topic, "sentinel", 1, false).unwrap();
    let seen = observer
        .collect_until(Duration::from_secs(5), |m| m.text() == "sentinel")
        .unwrap();
    assert_eq!(
        seen.len(),
        1,
        "a will was published after DISCONNECT: {seen:?}"
    );
    assert!(
        ended.ends_with(&format!("Client {client_id} disconnected.")),
        "no DISCONNECT seen by the broker: {ended}"
    );
}

/// Mosquitto 2's log line for the end of `client_id`'s connection: after DISCONNECT
/// (`Client ID disconnected.`), or without it (`Client ID closed its connection.`,
/// `Socket error on client ID, disconnecting.`, `Client ID disconnected: <reason>.`).
fn connection_ended(line: &str, client_id: &str) -> bool {
    line.contains(&format!("Client {client_id} disconnected"))
        || line.contains(&format!("Client {client_id} closed its connection"))
        || line.contains(&format!("Socket error on client {client_id},"))
}

/// `Session::disconnect` promises DISCONNECT "once the packets before it are written", but
/// `transmit_when_up` sends DISCONNECT right after pending acknowledgements, ahead of queued
/// PUBLISHes (and PUBRELs, (UN)SUBSCRIBEs): the typical last status message before a device
/// sleeps stays in the outbox until the next connection, or is lost with the RAM.
#[test]
fn qos0_publish_queued_before_disconnect_is_written_before_the_disconnect() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/status");
    let mut observer = Observer::subscribe(&broker, &topic).unwrap();
    let mut device = Device::new(test_config(&client_id)).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();

    device
        .session()
        .publish(&topic, b"going to sleep", QoS::AtMostOnce, false)
        .unwrap();
    device.disconnect();

    assert_eq!(
        device.session().outbox_len(),
        0,
        "the message was not written before DISCONNECT"
    );
    let last = observer.next_message(Duration::from_secs(2));
    assert_eq!(last.map(|m| m.text()).as_deref(), Some("going to sleep"));
}
