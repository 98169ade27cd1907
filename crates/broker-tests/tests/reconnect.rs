//! The link over time: reconnecting with backoff while the broker is down, and keepalive
//! (MQTT 3.1.1 §3.1.2.10: the broker drops a client silent for 1.5 × keepalive).

// An integration-test crate is test code throughout, helpers included: the workspace's
// test-only allowances (clippy.toml) reach only `#[test]` functions and `cfg(test)` modules.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use broker_tests::peer::unique_client_id;
use broker_tests::{test_config, Broker, Device, HarnessError, TcpTransport};
use mqtt_core::backoff::{Backoff, BackoffConfig};
use mqtt_core::{ConnectRefusal, Error, ProtocolError, QoS, TransportError};
use std::time::{Duration, Instant};

#[test]
fn reconnects_with_growing_backoff_delays_once_the_broker_is_back() {
    let mut broker = Broker::plain().unwrap();
    let port = broker.port();
    broker.kill();
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        broker.start().map(|()| broker)
    });

    let client_id = unique_client_id("dev");
    let mut device = Device::new(test_config(&client_id)).unwrap();
    let config = BackoffConfig {
        base_ms: 50,
        cap_ms: 400,
        stable_after_ms: 10_000,
        ..BackoffConfig::default()
    };
    let mut backoff = Backoff::new(config, 42);
    let mut ceilings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let session_present = loop {
        let error = match TcpTransport::connect(port) {
            Ok(transport) => match device.connect(transport) {
                Ok(present) => break present,
                Err(HarnessError::Mqtt(error)) => error,
                Err(other) => panic!("{other}"),
            },
            Err(_) => Error::Transport(TransportError::Connect),
        };
        assert!(Instant::now() < deadline, "still not connected: {error}");
        let ceiling = backoff.ceiling_ms();
        let delay = backoff.next_delay_ms(error.recovery());
        assert!(
            delay <= ceiling,
            "delay {delay} ms over its ceiling {ceiling} ms"
        );
        ceilings.push(ceiling);
        std::thread::sleep(Duration::from_millis(u64::from(delay)));
    };
    let broker = restarter.join().unwrap().unwrap();

    assert!(!session_present);
    assert!(
        ceilings.len() >= 2,
        "the broker was down for 700 ms: {ceilings:?}"
    );
    let doubling: Vec<u32> = (0..ceilings.len())
        .map(|n| (50u32 << n.min(4)).min(400))
        .collect();
    assert_eq!(
        ceilings, doubling,
        "ceilings double from 50 ms up to the 400 ms cap"
    );
    assert_eq!(backoff.attempt() as usize, ceilings.len());
    device
        .publish(
            &format!("devices/{client_id}/hello"),
            b"back",
            QoS::AtLeastOnce,
            false,
        )
        .unwrap();
    drop(broker);
}

#[test]
fn keepalive_pings_keep_an_idle_connection_open() {
    let broker = Broker::plain().unwrap();
    let client_id = unique_client_id("dev");
    let mut config = test_config(&client_id);
    // Not 1 s: Mosquitto 2.0 computes its limit in whole seconds as keepalive * 3 / 2, which
    // for 1 s is 1 s, so a client pinging exactly every second is dropped now and then.
    config.connect.keep_alive_s = 2;
    let mut device = Device::new(config).unwrap();
    device
        .connect(TcpTransport::connect(broker.port()).unwrap())
        .unwrap();

    // Idle for longer than the broker's 3 s limit: only PINGREQs keep the link up.
    device.run_for(Duration::from_millis(4_500)).unwrap();

    assert!(device.inbox.lost.is_empty(), "{:?}", device.inbox.lost);
    let pings = broker
        .log()
        .matches(&format!("Received PINGREQ from {client_id}"))
        .count();
    assert!(
        pings >= 2,
        "expected a PINGREQ every 2 s, the broker saw {pings}"
    );
    device
        .publish(
            &format!("devices/{client_id}/hello"),
            b"still here",
            QoS::AtLeastOnce,
            false,
        )
        .unwrap();
}

#[test]
fn connect_refused_as_not_authorized_is_retried_on_the_slow_schedule() {
    let broker = Broker::plain_refusing_anonymous().unwrap();
    let client_id = unique_client_id("dev");
    let mut device = Device::new(test_config(&client_id)).unwrap();

    let refused = device.connect(TcpTransport::connect(broker.port()).unwrap());

    let error = match refused {
        Err(HarnessError::Mqtt(error)) => error,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        error,
        Error::Protocol(ProtocolError::ConnectionRefused(
            ConnectRefusal::NotAuthorized
        ))
    );
    assert!(
        !device.client.is_attached(),
        "the refused transport must be dropped"
    );
    // Only a person can fix credentials: retried, but no sooner than after the usual cap
    // (half of it at least), never given up.
    let config = BackoffConfig::default();
    let mut backoff = Backoff::new(config, 1);
    let delay = backoff.next_delay_ms(error.recovery());
    assert!(
        delay >= config.cap_ms / 2 && delay <= config.cap_ms,
        "{delay} ms"
    );
}
