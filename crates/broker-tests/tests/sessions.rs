//! Sessions across disconnects and broker restarts (MQTT 3.1.1 §3.1.2.4, §4.4): messages
//! queued by the broker for an offline persistent session, the outbox resent after the broker
//! died mid-flight, and subscriptions restored when the broker lost the session.

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::{self, unique_client_id, ObserverOptions};
use broker_tests::{test_config, Broker, Device, HarnessError, Observer, TcpTransport};
use mqtt_core::backoff::{Backoff, BackoffConfig};
use mqtt_core::{Error, QoS, SubscribeResult, TransportError};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// Reconnects with backoff until CONNACK (at most `limit`); returns `session_present`.
fn reconnect(device: &mut Device<'_, TcpTransport>, port: u16, limit: Duration) -> bool {
    let config = BackoffConfig {
        base_ms: 50,
        cap_ms: 400,
        stable_after_ms: 10_000,
        ..BackoffConfig::default()
    };
    let mut backoff = Backoff::new(config, 0x5EED);
    let deadline = Instant::now() + limit;
    loop {
        let error = match TcpTransport::connect(port) {
            Ok(transport) => match device.connect(transport) {
                Ok(session_present) => return session_present,
                Err(HarnessError::Mqtt(error)) => error,
                Err(other) => panic!("{other}"),
            },
            Err(_) => Error::Transport(TransportError::Connect),
        };
        assert!(
            Instant::now() < deadline,
            "no connection within {limit:?}: {error}"
        );
        let delay = backoff.next_delay_ms(error.recovery());
        std::thread::sleep(Duration::from_millis(u64::from(delay)));
    }
}

#[test]
fn persistent_session_gets_the_qos1_messages_published_while_the_device_was_offline() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/commands");
    let mut config = test_config(&client_id);
    config.connect.clean_session = false;
    let mut device = Device::new(config).unwrap();
    let present = device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    assert!(!present, "a new client id has no stored session");
    device.subscribe(&[(&topic, QoS::AtLeastOnce)]).unwrap();
    device.disconnect();

    let commands: Vec<String> = (0..5).map(|i| format!("command {i}")).collect();
    peer::publish_each(&broker, &topic, &commands, 1).unwrap();

    let present = device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    assert!(present, "the broker should have kept the session");
    device
        .run_until(WAIT, "5 queued messages", |_, inbox| {
            inbox.messages.len() >= commands.len()
        })
        .unwrap();
    assert_eq!(device.inbox.texts_on(&topic), commands);
    assert!(device
        .inbox
        .messages
        .iter()
        .all(|m| m.qos == QoS::AtLeastOnce));
}

#[test]
fn qos1_messages_unacknowledged_when_the_broker_dies_arrive_after_it_restarts() {
    let mut broker = Broker::plain_persistent().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/telemetry");
    // A persistent subscriber: the broker's database keeps its subscription and the messages
    // queued for it while it reconnects after the restart.
    let options = ObserverOptions {
        client_id: Some(unique_client_id("observer")),
        persistent: true,
        qos: 1,
    };
    let mut observer = Observer::subscribe_with(&broker, &topic, options).unwrap();
    let mut config = test_config(&client_id);
    config.connect.clean_session = false;
    let mut device = Device::new(config).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();

    // Mid-flight: the broker freezes, four messages (the window) go on the wire and wait
    // unread in its socket, and it is killed without ever having seen them.
    broker.freeze().unwrap();
    let payloads: Vec<String> = (0..8).map(|i| format!("reading {i}")).collect();
    for payload in &payloads[..4] {
        device
            .session()
            .publish(&topic, payload.as_bytes(), QoS::AtLeastOnce, false)
            .unwrap();
    }
    device.run_for(Duration::from_millis(100)).unwrap();
    assert_eq!(
        device.session().inflight_len(),
        4,
        "the window should be on the wire"
    );
    broker.kill();
    // Four more while the broker is down: they wait in the outbox.
    for payload in &payloads[4..] {
        device
            .session()
            .publish(&topic, payload.as_bytes(), QoS::AtLeastOnce, false)
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while device.poll(20).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the device never noticed that the broker died"
        );
    }
    assert!(!device.client.is_attached());
    assert_eq!(
        device.session().outbox_len(),
        payloads.len(),
        "nothing was acknowledged"
    );

    broker.start().unwrap();
    let present = reconnect(&mut device, broker.port(), WAIT);
    device
        .run_until(WAIT, "every message acknowledged", |session, _| {
            session.outbox_len() == 0
        })
        .unwrap();
    // Mosquitto usually saves the device's session right after CONNACK, before the freeze;
    // then the window is resent as duplicates with its packet identifiers (§4.4). If the
    // freeze came first, the restarted broker has no session and the window goes out again
    // as new messages, DUP clear. Either way the broker logs the DUP flag it received.
    let dup = u8::from(present);
    let log = broker.log();
    let restarted = log.rsplit("running").next().unwrap_or_default();
    for packet_id in 1..=4 {
        let resent = format!("Received PUBLISH from {client_id} (d{dup}, q1, r0, m{packet_id},");
        assert!(
            restarted.contains(&resent),
            "window message m{packet_id} not resent with DUP = {dup} (session present: {present})"
        );
    }

    let mut missing: BTreeSet<String> = payloads.iter().cloned().collect();
    let seen = observer.collect_until(WAIT, |m| {
        missing.remove(&m.text());
        missing.is_empty()
    });
    assert!(
        seen.is_ok(),
        "not every message arrived at least once: {seen:?}"
    );
}

#[test]
fn subscriptions_are_restored_after_reconnecting_to_a_broker_that_lost_the_session() {
    let mut broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/commands");
    let mut device = Device::new(test_config(&client_id)).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    device.subscribe(&[(&topic, QoS::AtLeastOnce)]).unwrap();

    // No persistence: the restarted broker knows nothing of the device.
    broker.restart().unwrap();
    let deadline = Instant::now() + WAIT;
    while device.poll(20).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the device never noticed the restart"
        );
    }
    let present = reconnect(&mut device, broker.port(), WAIT);
    assert!(!present);
    device
        .run_until(
            WAIT,
            "the SUBACK of the restored subscription",
            |_, inbox| inbox.subscribed.len() == 2,
        )
        .unwrap();
    assert_eq!(
        device.inbox.subscribed[1].1,
        [SubscribeResult::Granted(QoS::AtLeastOnce)]
    );

    peer::publish(&broker, &topic, "after restart", 1, false).unwrap();
    device
        .run_until(
            WAIT,
            "a message on the restored subscription",
            |_, inbox| !inbox.messages.is_empty(),
        )
        .unwrap();
    assert_eq!(device.inbox.texts_on(&topic), ["after restart"]);
}

/// MQTT 3.1.1 sets no limit on how many QoS 2 messages a server has in flight, and on a
/// session resume Mosquitto 2.0.11 exceeds its own `max_inflight_messages` (20): in our logs,
/// up to 80 of 100 queued QoS 2 PUBLISHes went out before their PUBRECs came back. The
/// session keeps each inbound QoS 2 packet identifier until PUBREL in a table of
/// `MAX_INBOUND_QOS2` (32) and drops the connection with `InboundQos2Full` when it overflows;
/// every reconnect meets the same burst (about 25 reconnects for 100 messages here; with
/// real backoff delays, minutes of reconnecting).
#[test]
fn persistent_session_takes_100_queued_qos2_messages_without_dropping_the_connection() {
    const COUNT: usize = 100;
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/commands");
    let mut config = test_config(&client_id);
    config.connect.clean_session = false;
    let mut device = Device::new(config).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    device.subscribe(&[(&topic, QoS::ExactlyOnce)]).unwrap();
    device.disconnect();
    let commands: Vec<String> = (0..COUNT).map(|i| format!("command {i}")).collect();
    peer::publish_each(&broker, &topic, &commands, 2).unwrap();

    let present = device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    assert!(present);
    let outcome = device.run_until(WAIT, "100 queued QoS 2 messages", |_, inbox| {
        inbox.messages.len() >= COUNT
    });

    assert_eq!(device.inbox.lost, [], "the connection was dropped");
    outcome.unwrap();
    assert_eq!(device.inbox.texts_on(&topic), commands);
}
