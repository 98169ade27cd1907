//! What the core costs in RAM, and proof that it never touches the heap.
//!
//! Prints the size of the session, the blocking client and the frame reader for the default
//! limits (what the firmware's static allocation has to hold), then drives a whole MQTT
//! conversation through `driver::Client` — CONNECT, SUBSCRIBE, QoS 0/1/2 both ways, PINGREQ,
//! a dropped connection and a resumed session — against an in-memory broker, with a counting
//! global allocator, and fails if the core allocated even once.
//!
//! `cargo run -p mqtt-core --example memory_report`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use mqtt_core::driver::{Client, Clock, ReadTimeout};
use mqtt_core::framing::{parse_fixed_header, FrameReader};
use mqtt_core::{ConnectOptions, Event, Instant, QoS, Session, SessionConfig};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::cell::RefCell;
use std::mem::size_of;
use std::sync::atomic::{AtomicU64, Ordering};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Milliseconds; the workload moves it, the client reads it.
static NOW_MS: AtomicU64 = AtomicU64::new(0);

struct TestClock;

impl Clock for TestClock {
    fn now(&self) -> Instant {
        Instant(NOW_MS.load(Ordering::Relaxed))
    }
}

/// A broker in fixed buffers: answers each client packet as MQTT 3.1.1 requires and can push
/// its own messages. No heap, so that every allocation counted below is the core's.
struct MemoryBroker {
    to_client: [u8; 2048],
    len: usize,
    session_present: bool,
    /// Read packets but never answer (a connection about to die).
    swallow: bool,
    /// Packets received, by type (index = packet type).
    received: [u32; 16],
}

impl MemoryBroker {
    fn new() -> Self {
        Self {
            to_client: [0; 2048],
            len: 0,
            session_present: false,
            swallow: false,
            received: [0; 16],
        }
    }

    fn queue(&mut self, bytes: &[u8]) {
        self.to_client[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn answer(&mut self, packet: &[u8], header_len: usize) {
        let packet_type = packet[0] >> 4;
        self.received[usize::from(packet_type)] += 1;
        let body = &packet[header_len..];
        if self.swallow {
            return;
        }
        match packet_type {
            1 => self.queue(&[0x20, 0x02, u8::from(self.session_present), 0x00]),
            3 => {
                let qos = (packet[0] >> 1) & 0b11;
                let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                if qos > 0 {
                    let pid = [body[2 + topic_len], body[3 + topic_len]];
                    let answer = if qos == 1 { 0x40 } else { 0x50 };
                    self.queue(&[answer, 0x02, pid[0], pid[1]]);
                }
            }
            // PUBREC from the client (for our QoS 2): PUBREL. PUBREL from the client: PUBCOMP.
            5 => self.queue(&[0x62, 0x02, body[0], body[1]]),
            6 => self.queue(&[0x70, 0x02, body[0], body[1]]),
            // SUBSCRIBE: one filter granted QoS 1.
            8 => self.queue(&[0x90, 0x03, body[0], body[1], 0x01]),
            10 => self.queue(&[0xB0, 0x02, body[0], body[1]]),
            12 => self.queue(&[0xD0, 0x00]),
            _ => {}
        }
    }
}

struct MemoryTransport<'b>(&'b RefCell<MemoryBroker>);

/// The broker's side never fails; a read with nothing queued "times out" at once.
#[derive(Debug)]
struct NothingQueued;

impl embedded_io::Error for NothingQueued {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::TimedOut
    }
}

impl embedded_io::ErrorType for MemoryTransport<'_> {
    type Error = NothingQueued;
}

impl embedded_io::Write for MemoryTransport<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, NothingQueued> {
        // The client batches packets; split them again.
        let mut broker = self.0.borrow_mut();
        let mut rest = bytes;
        while !rest.is_empty() {
            let header = parse_fixed_header(rest, usize::MAX).unwrap().unwrap();
            broker.answer(&rest[..header.frame_len()], header.header_len);
            rest = &rest[header.frame_len()..];
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> Result<(), NothingQueued> {
        Ok(())
    }
}

impl embedded_io::Read for MemoryTransport<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NothingQueued> {
        let mut broker = self.0.borrow_mut();
        if broker.len == 0 {
            return Err(NothingQueued);
        }
        let n = buf.len().min(broker.len);
        buf[..n].copy_from_slice(&broker.to_client[..n]);
        let len = broker.len;
        broker.to_client.copy_within(n..len, 0);
        broker.len -= n;
        Ok(n)
    }
}

impl ReadTimeout for MemoryTransport<'_> {
    fn set_read_timeout(&mut self, _timeout_ms: u32) -> Result<(), NothingQueued> {
        Ok(())
    }
}

type FirmwareClient<'a, 'b> = Client<'a, MemoryTransport<'b>, TestClock, 1024, 8, 512, 1024>;

#[derive(Default, Debug)]
struct Counts {
    connected: u32,
    messages: u32,
    published: u32,
    subscribed: u32,
    lost: u32,
}

fn main() {
    println!(
        "size_of::<Session<'static>>() (RX 1024, 8 slots of 512 B) = {} bytes",
        size_of::<Session<'static>>()
    );
    println!(
        "size_of::<Session<'static, 256, 4, 128>>() (the tests' shape)  = {} bytes",
        size_of::<Session<'static, 256, 4, 128>>()
    );
    println!(
        "size_of::<Client<.., 1024, 8, 512, TX 1024>>()                 = {} bytes",
        size_of::<FirmwareClient<'static, 'static>>()
    );
    println!(
        "size_of::<FrameReader<1024>>()                                 = {} bytes",
        size_of::<FrameReader<1024>>()
    );

    let connect = ConnectOptions {
        client_id: "dev-1",
        username: Some("device"),
        password: Some(mqtt_core::Password(b"not-a-secret")),
        clean_session: false,
        keep_alive_s: 1,
        last_will: None,
    };
    let broker_a = RefCell::new(MemoryBroker::new());
    let broker_b = RefCell::new(MemoryBroker::new());
    broker_b.borrow_mut().session_present = true;
    let mut counts = Counts::default();
    let payload = [0x42u8; 200];
    let inbound_qos1: [u8; 11] = [
        0x32, 0x09, 0x00, 0x03, b'c', b'm', b'd', 0x00, 0x05, b'o', b'n',
    ];
    let inbound_qos2: [u8; 11] = [
        0x34, 0x09, 0x00, 0x03, b'c', b'm', b'd', 0x00, 0x06, b'o', b'f',
    ];

    // The counter counts: one Vec, one allocation.
    let probe = Region::new(GLOBAL);
    let probe_vec = std::hint::black_box(vec![0u8; 16]);
    assert_eq!(
        probe.change().allocations,
        1,
        "the counting allocator is not in place"
    );
    drop(probe_vec);

    // Construction is counted too: the session and client are plain values.
    let region = Region::new(GLOBAL);
    let session = Session::new(SessionConfig::new(connect)).unwrap();
    let mut client: FirmwareClient<'static, '_> = Client::new(session, TestClock);
    let mut on_event = |event: Event<'_>| match event {
        Event::Connected { .. } => counts.connected += 1,
        Event::Message(_) => counts.messages += 1,
        Event::Published(_) => counts.published += 1,
        Event::Subscribed { .. } => counts.subscribed += 1,
        Event::Unsubscribed { .. } | Event::MessageDropped { .. } => {}
        Event::ConnectionLost(_) => counts.lost += 1,
    };

    client
        .connect(MemoryTransport(&broker_a), &mut on_event)
        .unwrap();
    client
        .session()
        .subscribe(&[("cmd", QoS::AtLeastOnce)])
        .unwrap();
    for round in 0..200u32 {
        let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][(round % 3) as usize];
        client
            .session()
            .publish(
                "devices/dev-1/telemetry",
                &payload[..(round % 200) as usize],
                qos,
                false,
            )
            .unwrap();
        client.poll(0, &mut on_event).unwrap();
        if round % 10 == 9 {
            // Idle past the keepalive: PINGREQ, PINGRESP.
            NOW_MS.fetch_add(1_100, Ordering::Relaxed);
            client.poll(0, &mut on_event).unwrap();
            client.poll(0, &mut on_event).unwrap();
        }
    }
    // Messages from the broker, then a dropped connection with a QoS 2 message in flight
    // and a resumed session on another broker connection.
    broker_a.borrow_mut().queue(&inbound_qos1);
    broker_a.borrow_mut().queue(&inbound_qos2);
    for _ in 0..4 {
        client.poll(0, &mut on_event).unwrap();
    }
    client
        .session()
        .publish(
            "devices/dev-1/telemetry",
            &payload[..50],
            QoS::ExactlyOnce,
            false,
        )
        .unwrap();
    broker_a.borrow_mut().swallow = true;
    client.poll(0, &mut on_event).unwrap();
    let _closed = client.detach();
    client
        .connect(MemoryTransport(&broker_b), &mut on_event)
        .unwrap();
    for _ in 0..4 {
        client.poll(0, &mut on_event).unwrap();
    }
    client.session().unsubscribe(&["cmd"]).unwrap();
    client.poll(0, &mut on_event).unwrap();
    let _closed = client.disconnect();
    let stats = region.change();

    println!("workload: {counts:?}");
    let (a, b) = (broker_a.borrow(), broker_b.borrow());
    println!(
        "broker A received CONNECT {}, PUBLISH {}, PUBREL {}, SUBSCRIBE {}, PINGREQ {}; broker B PUBLISH {}",
        a.received[1], a.received[3], a.received[6], a.received[8], a.received[12], b.received[3]
    );
    println!(
        "heap during the workload: {} allocations, {} reallocations, {} bytes",
        stats.allocations, stats.reallocations, stats.bytes_allocated
    );
    assert!(
        counts.published >= 130,
        "the workload did not run: {counts:?}"
    );
    assert_eq!(counts.messages, 2, "{counts:?}");
    assert_eq!(
        b.received[3], 1,
        "the QoS 2 message in flight is resent on the resumed session"
    );
    assert_eq!(
        stats.allocations + stats.reallocations,
        0,
        "the core allocated"
    );
    println!("ok: the core made no heap allocation");
}
