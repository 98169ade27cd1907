//! QoS 0/1/2 in both directions (MQTT 3.1.1 §4.3), several QoS 1 messages in flight, and
//! retained messages (§3.3.1.3), against a plain-TCP Mosquitto.

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::{self, unique_client_id, ObserverOptions};
use broker_tests::{qos_number, test_config, Broker, Device, Observed, Observer, TcpTransport};
use mqtt_core::{QoS, SubscribeResult};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
/// Published after the message under test at the same QoS: once it has arrived, the message
/// before it has too (one subscriber gets the messages of one QoS in order; libmosquitto hands
/// a QoS 2 message over only at PUBREL, so a sentinel of lower QoS could overtake it).
const SENTINEL: &str = "end";
/// After the sentinel, how long to keep listening for late duplicates.
const QUIET: Duration = Duration::from_millis(200);

fn connected_device<'a>(broker: &Broker, client_id: &'a str) -> Device<'a, TcpTransport> {
    let mut device = Device::new(test_config(client_id)).unwrap();
    let session_present = device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();
    assert!(
        !session_present,
        "a clean session never has a session present"
    );
    device
}

/// The device publishes one message at `qos`, then a sentinel; the subscriber must get
/// the message with its payload and QoS, and for QoS 2 exactly once.
fn device_publish_reaches_a_subscriber(qos: QoS) {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/telemetry");
    let mut observer = Observer::subscribe(&broker, &topic).unwrap();
    let mut device = connected_device(&broker, &client_id);

    device
        .publish(&topic, b"temperature 21.5", qos, false)
        .unwrap();
    device
        .publish(&topic, SENTINEL.as_bytes(), qos, false)
        .unwrap();

    let mut seen = observer
        .collect_until(WAIT, |m| m.text() == SENTINEL)
        .unwrap();
    seen.extend(observer.messages_within(QUIET));
    let before: Vec<&Observed> = seen.iter().filter(|m| m.text() != SENTINEL).collect();
    let expected = Observed {
        topic: topic.clone(),
        payload: b"temperature 21.5".to_vec(),
        qos: qos_number(qos),
        retain: false,
    };
    assert!(!before.is_empty(), "the message never arrived");
    assert!(before.iter().all(|m| **m == expected), "{before:?}");
    if qos == QoS::ExactlyOnce {
        assert_eq!(
            before.len(),
            1,
            "QoS 2 delivered more than once: {before:?}"
        );
    }
}

#[test]
fn device_qos0_publish_reaches_a_subscriber() {
    device_publish_reaches_a_subscriber(QoS::AtMostOnce);
}

#[test]
fn device_qos1_publish_reaches_a_subscriber() {
    device_publish_reaches_a_subscriber(QoS::AtLeastOnce);
}

#[test]
fn device_qos2_publish_reaches_a_subscriber_exactly_once() {
    device_publish_reaches_a_subscriber(QoS::ExactlyOnce);
}

/// A peer publishes one message at `qos`, then a sentinel; the device, subscribed with
/// QoS 2, must get the message with its payload and QoS, and for QoS 2 exactly once.
fn device_receives_from_a_peer(qos: QoS) {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/commands");
    let mut device = connected_device(&broker, &client_id);
    let granted = device.subscribe(&[(&topic, QoS::ExactlyOnce)]).unwrap();
    assert_eq!(granted, [SubscribeResult::Granted(QoS::ExactlyOnce)]);

    peer::publish(&broker, &topic, "switch on", qos_number(qos), false).unwrap();
    peer::publish(&broker, &topic, SENTINEL, qos_number(qos), false).unwrap();
    device
        .run_until(WAIT, "the sentinel at the device", |_, inbox| {
            inbox.texts_on(&topic).iter().any(|t| t == SENTINEL)
        })
        .unwrap();
    device.run_for(QUIET).unwrap();

    let received: Vec<_> = device
        .inbox
        .messages
        .iter()
        .filter(|m| m.text() != SENTINEL)
        .collect();
    assert!(!received.is_empty(), "the message never arrived");
    for message in &received {
        assert_eq!(
            (message.topic.as_str(), message.text().as_str()),
            (topic.as_str(), "switch on")
        );
        assert_eq!(message.qos, qos);
        assert!(!message.retain);
    }
    if qos == QoS::ExactlyOnce {
        assert_eq!(
            received.len(),
            1,
            "QoS 2 delivered more than once: {received:?}"
        );
    }
}

#[test]
fn device_receives_a_qos0_message_from_a_peer() {
    device_receives_from_a_peer(QoS::AtMostOnce);
}

#[test]
fn device_receives_a_qos1_message_from_a_peer() {
    device_receives_from_a_peer(QoS::AtLeastOnce);
}

#[test]
fn device_receives_a_qos2_message_from_a_peer_exactly_once() {
    device_receives_from_a_peer(QoS::ExactlyOnce);
}

#[test]
fn hundred_qos1_publishes_in_a_window_of_4_all_arrive_in_order() {
    const COUNT: usize = 100;
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/burst");
    let options = ObserverOptions {
        qos: 1,
        ..ObserverOptions::default()
    };
    let mut observer = Observer::subscribe_with(&broker, &topic, options).unwrap();
    let mut config = test_config(&client_id);
    config.inflight_window = 4;
    let mut device = Device::new(config).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();

    // Keep the outbox full: as soon as a slot frees up, the next message goes in.
    let mut next = 0;
    let mut most_in_flight = 0;
    device
        .run_until(Duration::from_secs(20), "100 PUBACKs", |session, inbox| {
            while next < COUNT && session.outbox_has_room() {
                session
                    .publish(&topic, next.to_string().as_bytes(), QoS::AtLeastOnce, false)
                    .unwrap();
                next += 1;
            }
            most_in_flight = most_in_flight.max(session.inflight_len());
            inbox.published.len() == COUNT
        })
        .unwrap();

    assert!(
        most_in_flight <= 4,
        "window exceeded: {most_in_flight} in flight"
    );
    assert!(
        most_in_flight >= 2,
        "never more than one message in flight: no pipelining"
    );
    let seen = observer.collect(COUNT, WAIT).unwrap();
    let payloads: Vec<String> = seen.iter().map(Observed::text).collect();
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(payloads, expected);
    assert!(seen.iter().all(|m| m.qos == 1 && !m.retain));
    assert!(
        observer
            .messages_within(Duration::from_millis(200))
            .is_empty(),
        "duplicates after the last"
    );
}

#[test]
fn retained_publish_from_the_device_reaches_a_later_subscriber_flagged_retained() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/status");
    let mut device = connected_device(&broker, &client_id);
    device
        .publish(&topic, b"online", QoS::AtLeastOnce, true)
        .unwrap();

    // Subscribed only after the publish was acknowledged: only the retained store has it.
    let mut observer = Observer::subscribe(&broker, &topic).unwrap();
    let message = observer.next_message(WAIT).expect("no retained message");
    assert_eq!(
        message,
        Observed {
            topic,
            payload: b"online".to_vec(),
            qos: 1,
            retain: true
        }
    );
}

#[test]
fn device_subscribing_to_a_retained_topic_receives_it_flagged_retained() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/config");
    peer::publish(&broker, &topic, "interval=60", 1, true).unwrap();
    let mut device = connected_device(&broker, &client_id);

    device.subscribe(&[(&topic, QoS::AtLeastOnce)]).unwrap();
    device
        .run_until(WAIT, "the retained message", |_, inbox| {
            !inbox.messages.is_empty()
        })
        .unwrap();
    let retained = &device.inbox.messages[0];
    assert_eq!(
        (retained.topic.as_str(), retained.text().as_str()),
        (topic.as_str(), "interval=60")
    );
    assert!(
        retained.retain,
        "a message from the retained store must carry retain = 1"
    );
    assert_eq!(retained.qos, QoS::AtLeastOnce);

    // §3.3.1.3: to an existing subscription the broker forwards a retained publish with
    // retain = 0.
    peer::publish(&broker, &topic, "interval=30", 1, true).unwrap();
    device
        .run_until(WAIT, "the live message", |_, inbox| {
            inbox.messages.len() == 2
        })
        .unwrap();
    let live = &device.inbox.messages[1];
    assert_eq!(live.text(), "interval=30");
    assert!(!live.retain, "a live message must carry retain = 0");
}

/// Far more messages than the broker's in-flight window (20) and the session's queue of
/// pending acknowledgements (16): the device must keep acknowledging while it parses.
fn device_receives_a_burst_in_order(qos: QoS) {
    const COUNT: usize = 100;
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let topic = format!("devices/{client_id}/burst");
    let mut device = connected_device(&broker, &client_id);
    device.subscribe(&[(&topic, QoS::ExactlyOnce)]).unwrap();
    let payloads: Vec<String> = (0..COUNT).map(|i| format!("m{i}")).collect();

    std::thread::scope(|scope| {
        let publisher =
            scope.spawn(|| peer::publish_each(&broker, &topic, &payloads, qos_number(qos)));
        device
            .run_until(WAIT, "the whole burst", |_, inbox| {
                inbox.messages.len() >= COUNT
            })
            .unwrap();
        publisher.join().unwrap().unwrap();
    });
    device.run_for(QUIET).unwrap();

    assert_eq!(device.inbox.texts_on(&topic), payloads);
    assert!(device.inbox.messages.iter().all(|m| m.qos == qos));
}

#[test]
fn device_receives_a_burst_of_100_qos1_messages_in_order() {
    device_receives_a_burst_in_order(QoS::AtLeastOnce);
}

#[test]
fn device_receives_a_burst_of_100_qos2_messages_in_order_exactly_once() {
    device_receives_a_burst_in_order(QoS::ExactlyOnce);
}

#[test]
fn device_receives_nothing_more_after_unsubscribing() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let commands = format!("devices/{client_id}/commands");
    let config = format!("devices/{client_id}/config");
    let mut device = connected_device(&broker, &client_id);
    device
        .subscribe(&[(&commands, QoS::AtLeastOnce), (&config, QoS::AtLeastOnce)])
        .unwrap();

    let packet_id = device.session().unsubscribe(&[&commands]).unwrap();
    device
        .run_until(WAIT, "UNSUBACK", |_, inbox| {
            inbox.unsubscribed.contains(&packet_id)
        })
        .unwrap();
    peer::publish(&broker, &commands, "ignored", 1, false).unwrap();
    peer::publish(&broker, &config, "still subscribed", 1, false).unwrap();
    device
        .run_until(
            WAIT,
            "the message on the remaining subscription",
            |_, inbox| !inbox.messages.is_empty(),
        )
        .unwrap();
    device.run_for(QUIET).unwrap();

    assert!(
        device.inbox.texts_on(&commands).is_empty(),
        "delivered after UNSUBACK"
    );
    assert_eq!(device.inbox.texts_on(&config), ["still subscribed"]);
}
