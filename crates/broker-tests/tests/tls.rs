//! MQTT over TLS with client certificates, against Mosquitto configured by `certs/mkcerts`:
//! the device authenticates with its certificate (CN = client id = username), the ACL keeps it
//! below `devices/<client id>/`, and the device verifies the broker's host name.

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::{self, unique_client_id};
use broker_tests::transport::client_config;
use broker_tests::{test_config, Broker, CertSet, Device, Observed, Observer, TlsTransport};
use mqtt_core::{LastWill, QoS, SubscribeResult};
use rustls::CertificateError;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A device connected to `broker` over TLS with the device certificate from its set.
fn tls_device<'a>(broker: &Broker, client_id: &'a str) -> Device<'a, TlsTransport> {
    let certs = broker.certs().unwrap();
    let tls = client_config(&certs.ca(), &certs.device_cert(), &certs.device_key()).unwrap();
    let mut device = Device::new(test_config(client_id)).unwrap();
    device
        .connect(TlsTransport::connect(broker.port(), "localhost", tls).unwrap())
        .unwrap();
    device
}

#[test]
fn qos1_both_directions_over_tls_with_the_device_certificate() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls(&client_id).unwrap();
    let up = format!("devices/{client_id}/up");
    let down = format!("devices/{client_id}/down");
    let mut observer = Observer::subscribe(&broker, &up).unwrap();
    let mut device = tls_device(&broker, &client_id);

    device
        .publish(&up, b"hello over tls", QoS::AtLeastOnce, false)
        .unwrap();
    let seen = observer
        .next_message(WAIT)
        .expect("nothing arrived from the device");
    assert_eq!(
        seen,
        Observed {
            topic: up,
            payload: b"hello over tls".to_vec(),
            qos: 1,
            retain: false
        }
    );

    let granted = device.subscribe(&[(&down, QoS::AtLeastOnce)]).unwrap();
    assert_eq!(granted, [SubscribeResult::Granted(QoS::AtLeastOnce)]);
    peer::publish(&broker, &down, "reboot", 1, false).unwrap();
    device
        .run_until(WAIT, "the command", |_, inbox| !inbox.messages.is_empty())
        .unwrap();
    let command = &device.inbox.messages[0];
    assert_eq!(
        (command.topic.as_str(), command.text().as_str()),
        (down.as_str(), "reboot")
    );
    assert_eq!(command.qos, QoS::AtLeastOnce);
}

#[test]
fn qos2_both_directions_over_tls_arrive_exactly_once() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls(&client_id).unwrap();
    let up = format!("devices/{client_id}/up");
    let down = format!("devices/{client_id}/down");
    let mut observer = Observer::subscribe(&broker, &up).unwrap();
    let mut device = tls_device(&broker, &client_id);
    device.subscribe(&[(&down, QoS::ExactlyOnce)]).unwrap();

    // Each message is followed by a QoS 2 "end" to know when to stop looking for duplicates.
    device
        .publish(&up, b"once", QoS::ExactlyOnce, false)
        .unwrap();
    device
        .publish(&up, b"end", QoS::ExactlyOnce, false)
        .unwrap();
    peer::publish(&broker, &down, "once", 2, false).unwrap();
    peer::publish(&broker, &down, "end", 2, false).unwrap();

    let seen = observer.collect_until(WAIT, |m| m.text() == "end").unwrap();
    assert_eq!(
        seen.iter().map(|m| (m.text(), m.qos)).collect::<Vec<_>>(),
        [("once".into(), 2), ("end".into(), 2)]
    );
    device
        .run_until(WAIT, "end at the device", |_, inbox| {
            inbox.texts_on(&down).contains(&"end".into())
        })
        .unwrap();
    assert_eq!(device.inbox.texts_on(&down), ["once", "end"]);
    assert!(device
        .inbox
        .messages
        .iter()
        .all(|m| m.qos == QoS::ExactlyOnce));
}

#[test]
fn will_over_tls_is_published_when_the_connection_drops() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls(&client_id).unwrap();
    let status = format!("devices/{client_id}/status");
    let mut observer = Observer::subscribe(&broker, &status).unwrap();
    let certs = broker.certs().unwrap();
    let tls = client_config(&certs.ca(), &certs.device_cert(), &certs.device_key()).unwrap();
    let mut config = test_config(&client_id);
    config.connect.last_will = Some(LastWill {
        topic: &status,
        payload: b"lost",
        qos: QoS::AtLeastOnce,
        retain: false,
    });
    let mut device = Device::new(config).unwrap();
    device
        .connect(TlsTransport::connect(broker.port(), "localhost", tls).unwrap())
        .unwrap();

    device.drop_connection();

    let will = observer
        .next_message(WAIT)
        .expect("no will after the TLS connection dropped");
    assert_eq!(will.text(), "lost");
}

#[test]
fn acl_keeps_the_device_out_of_other_devices_topics() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls(&client_id).unwrap();
    let own = format!("devices/{client_id}/down");
    let other = "devices/someone-else/down";
    let mut device = tls_device(&broker, &client_id);
    // MQTT 3.1.1 cannot refuse a filter for ACL reasons: Mosquitto grants it and then
    // delivers nothing.
    device
        .subscribe(&[(other, QoS::AtLeastOnce), (&own, QoS::AtLeastOnce)])
        .unwrap();
    let mut observer = Observer::subscribe(&broker, other).unwrap();

    device
        .publish(other, b"forged", QoS::AtLeastOnce, false)
        .unwrap();
    peer::publish(&broker, other, "not for you", 1, false).unwrap();
    peer::publish(&broker, &own, "for you", 1, false).unwrap();

    device
        .run_until(WAIT, "the message on its own topic", |_, inbox| {
            !inbox.texts_on(&own).is_empty()
        })
        .unwrap();
    assert!(
        device.inbox.texts_on(other).is_empty(),
        "read another device's topic"
    );
    let at_observer = observer
        .collect_until(WAIT, |m| m.text() == "not for you")
        .unwrap();
    assert_eq!(
        at_observer.len(),
        1,
        "the device wrote to another device's topic: {at_observer:?}"
    );
}

#[test]
fn tls_handshake_fails_when_the_broker_certificate_names_another_host() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls_with_broker_san(&client_id, "DNS:broker.elsewhere.example").unwrap();
    let certs = broker.certs().unwrap();
    let tls = client_config(&certs.ca(), &certs.device_cert(), &certs.device_key()).unwrap();

    let refused = TlsTransport::connect(broker.port(), "localhost", tls.clone()).unwrap_err();
    let tls_error = refused
        .tls_error()
        .unwrap_or_else(|| panic!("not a TLS error: {refused}"));
    assert!(
        matches!(
            tls_error,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{tls_error:?}"
    );

    // The same broker dialled by the name in its certificate is accepted: only the name failed.
    let mut device = Device::new(test_config(&client_id)).unwrap();
    device
        .connect(TlsTransport::connect(broker.port(), "broker.elsewhere.example", tls).unwrap())
        .unwrap();
}

#[test]
fn broker_refuses_a_device_certificate_from_another_ca() {
    let client_id = unique_client_id("dev");
    let broker = Broker::tls(&client_id).unwrap();
    let certs = broker.certs().unwrap();
    let other = tempfile::tempdir().unwrap();
    let foreign = CertSet::generate(other.path(), &client_id, &["--no-mosquitto-conf"]).unwrap();
    // Trusts the right CA, but presents a certificate the broker's CA never signed.
    let tls = client_config(&certs.ca(), &foreign.device_cert(), &foreign.device_key()).unwrap();

    let mut device = Device::new(test_config(&client_id)).unwrap();
    // TLS 1.3: the client finishes its handshake before the broker checks its certificate, so
    // the refusal may surface at the handshake or at the first read after CONNECT.
    let outcome =
        TlsTransport::connect(broker.port(), "localhost", tls).and_then(|t| device.connect(t));
    assert!(outcome.is_err(), "connected with a foreign certificate");
    assert!(device.inbox.connected.is_empty());
}
