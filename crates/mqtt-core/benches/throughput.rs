//! Throughput of the core on the host: framing + decode of PUBLISH frames (bytes/s), the
//! outbound QoS 1 round trip publish → poll_transmit → PUBACK → Published (messages/s), and
//! inbound QoS 1 handling PUBLISH → Message → PUBACK (messages/s).
//!
//! `cargo bench -p mqtt-core --bench throughput`. Host numbers only bound what a Cortex-M4
//! does; they show regressions and where the time goes, not the firmware's rate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mqtt_core::framing::{self, FrameReader};
use mqtt_core::{ConnectOptions, Event, Instant, QoS, Session, SessionConfig};
use mqttrs::{Packet, Pid, QosPid};
use std::hint::black_box;

const TOPIC: &str = "devices/dev-1/telemetry";
const PAYLOAD: &[u8; 100] = &[0x42; 100];
const MAX: usize = 1024;

fn publish_frame(pid: u16) -> Vec<u8> {
    let publish = mqttrs::Publish {
        dup: false,
        qospid: QosPid::AtLeastOnce(Pid::try_from(pid).unwrap()),
        retain: false,
        topic_name: TOPIC,
        payload: PAYLOAD,
    };
    let mut buf = [0u8; 256];
    let n = mqttrs::encode_slice(&Packet::Publish(publish), &mut buf).unwrap();
    buf[..n].to_vec()
}

fn connected_session() -> Session<'static> {
    let connect = ConnectOptions {
        client_id: "bench-1",
        username: None,
        password: None,
        clean_session: true,
        keep_alive_s: 0,
        last_will: None,
    };
    let mut session = Session::new(SessionConfig::new(connect)).unwrap();
    session.handle_connected(Instant(0));
    let mut buf = [0u8; 256];
    session
        .poll_transmit(Instant(0), &mut buf)
        .unwrap()
        .unwrap();
    session.handle_bytes(&[0x20, 0x02, 0x00, 0x00]);
    assert!(matches!(
        session.poll_event(),
        Some(Event::Connected { .. })
    ));
    session
}

fn framing_and_decode(c: &mut Criterion) {
    // 64 QoS 1 PUBLISH frames back to back, read as a socket would hand them over: 512 bytes
    // at a time, frames split across reads.
    let stream: Vec<u8> = (1..=64).flat_map(publish_frame).collect();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("reader_and_decode_publish_128B", |b| {
        let mut reader = FrameReader::<MAX>::new();
        b.iter(|| {
            let mut frames = 0;
            for chunk in black_box(&stream).chunks(512) {
                assert_eq!(reader.push(chunk), chunk.len());
                while let Some(frame) = reader.next_frame(MAX).unwrap() {
                    if let Ok(Packet::Publish(p)) = framing::decode(frame, MAX) {
                        black_box(p.payload);
                        frames += 1;
                    }
                }
            }
            assert_eq!(frames, 64);
        });
    });
    group.finish();
}

/// The packet identifier of an encoded QoS 1 PUBLISH with a short remaining length.
fn pid_of(publish: &[u8]) -> [u8; 2] {
    let topic_len = usize::from(u16::from_be_bytes([publish[2], publish[3]]));
    [publish[4 + topic_len], publish[5 + topic_len]]
}

fn outbound_qos1(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    group.throughput(Throughput::Elements(1));
    group.bench_function("publish_qos1_transmit_puback", |b| {
        let mut session = connected_session();
        let mut tx = [0u8; 1024];
        b.iter(|| {
            let id = session
                .publish(TOPIC, black_box(PAYLOAD), QoS::AtLeastOnce, false)
                .unwrap();
            let n = session.poll_transmit(Instant(0), &mut tx).unwrap().unwrap();
            let [high, low] = pid_of(&tx[..n]);
            assert_eq!(session.handle_bytes(&[0x40, 0x02, high, low]), 4);
            assert_eq!(session.poll_event(), Some(Event::Published(id)));
        });
    });
    group.bench_function("inbound_qos1_message_and_puback", |b| {
        let mut session = connected_session();
        let frame = publish_frame(7);
        let mut tx = [0u8; 64];
        b.iter(|| {
            assert_eq!(session.handle_bytes(black_box(&frame)), frame.len());
            match session.poll_event() {
                Some(Event::Message(m)) => {
                    black_box(m.payload);
                }
                other => panic!("{other:?}"),
            }
            let n = session.poll_transmit(Instant(0), &mut tx).unwrap().unwrap();
            assert_eq!(&tx[..n], &[0x40, 0x02, 0x00, 0x07]);
        });
    });
    group.finish();
}

criterion_group!(benches, framing_and_decode, outbound_qos1);
criterion_main!(benches);
