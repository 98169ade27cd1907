//! The device and the real MQTT session together, byte for byte, against a model broker that
//! behaves as Mosquitto does towards a subscriber: at most 20 unacknowledged QoS 1 messages on
//! the way to it, and a PUBACK for each of its messages as soon as it reads one. The rounds are
//! the firmware's (src/app.rs): room for messages, bytes in, events, bytes out, then
//! `poll_publish`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{BTreeSet, VecDeque};

use device_app::{Board, Device, DeviceTopics, LedAction};
use mqtt_core::{ConnectOptions, Event, Instant, QoS, Session, SessionConfig};
use mqttrs::{Packet, Pid, QosPid};

/// Mosquitto's `max_inflight_messages` default.
const BROKER_WINDOW: usize = 20;
const PING: &str = "devices/d1/cmd/ping";
const REPLY: &str = "devices/d1/reply/ping";
const SEQ: &str = "devices/d1/seq";
/// What the link carries to the device in one round.
const LINK_BYTES_PER_ROUND: usize = 48;

/// The firmware's session shape: 1 KiB receive buffer, 8 outbox slots of 512 bytes.
type FirmwareSession = Session<'static, 1024, 8, 512>;

struct NoLeds;

impl Board for NoLeds {
    fn set_led(&mut self, _index: u8, _action: LedAction) -> Option<bool> {
        None
    }

    fn heap_free(&self) -> Option<u32> {
        None
    }
}

/// The broker's side of the connection.
#[derive(Default)]
struct Broker {
    /// Bytes written to the device, not yet read by it.
    to_device: VecDeque<u8>,
    commands: usize,
    next_command: usize,
    /// Commands written and not yet acknowledged by the device.
    unacknowledged: BTreeSet<u16>,
    /// Packet identifiers of the commands the device acknowledged, in order.
    acknowledged: Vec<u16>,
    /// Payloads the device published on the reply topic, in order.
    replies: Vec<String>,
    /// Messages the device published, all topics.
    received: usize,
    /// Payloads of the numbered messages, in order.
    numbered: Vec<String>,
}

impl Broker {
    fn write(&mut self, packet: &Packet<'_>) {
        let mut buf = [0u8; 256];
        let n = mqttrs::encode_slice(packet, &mut buf).unwrap();
        self.to_device.extend(&buf[..n]);
    }

    /// Sends commands while its window to the device has room.
    fn write_commands(&mut self) {
        while self.next_command < self.commands && self.unacknowledged.len() < BROKER_WINDOW {
            let id = u16::try_from(self.next_command + 1).unwrap();
            let payload = format!("p{}", self.next_command);
            self.write(&Packet::Publish(mqttrs::Publish {
                dup: false,
                qospid: QosPid::AtLeastOnce(Pid::try_from(id).unwrap()),
                retain: false,
                topic_name: PING,
                payload: payload.as_bytes(),
            }));
            self.unacknowledged.insert(id);
            self.next_command += 1;
        }
    }

    /// Reads one packet from the device and answers it.
    fn read(&mut self, bytes: &[u8]) {
        match mqttrs::decode_slice(bytes).unwrap().unwrap() {
            Packet::Connect(_) => self.write(&Packet::Connack(mqttrs::Connack {
                session_present: false,
                code: mqttrs::ConnectReturnCode::Accepted,
            })),
            Packet::Publish(publish) => {
                self.received += 1;
                let payload = String::from_utf8(publish.payload.to_vec()).unwrap();
                match publish.topic_name {
                    REPLY => self.replies.push(payload),
                    SEQ => self.numbered.push(payload),
                    _ => {}
                }
                if let QosPid::AtLeastOnce(id) = publish.qospid {
                    self.write(&Packet::Puback(id));
                }
            }
            Packet::Puback(id) => {
                assert!(
                    self.unacknowledged.remove(&id.get()),
                    "PUBACK for {}, which is not in flight",
                    id.get()
                );
                self.acknowledged.push(id.get());
            }
            other => panic!("the device sent {other:?}"),
        }
    }
}

fn session() -> FirmwareSession {
    let mut config = SessionConfig::new(ConnectOptions {
        client_id: "d1",
        username: None,
        password: None,
        clean_session: false,
        keep_alive_s: 0,
        last_will: None,
    });
    config.inflight_window = 8;
    Session::new(config).unwrap()
}

/// Everything the session has to send, read by the broker.
fn transmit(session: &mut FirmwareSession, broker: &mut Broker, now: Instant) {
    let mut buf = [0u8; 1024];
    while let Some(n) = session.poll_transmit(now, &mut buf).unwrap() {
        broker.read(&buf[..n]);
    }
}

/// One round of the firmware's loop. After the device's turn the shell fills whatever room is
/// left with numbered messages (`mqtt pub` as fast as the outbox takes them, as in the soak
/// test): the replies owed for acknowledged commands go first, or a busy shell would keep them
/// waiting for ever.
fn round(
    device: &mut Device,
    session: &mut FirmwareSession,
    broker: &mut Broker,
    now: Instant,
    shell: &mut Shell,
) {
    session.set_message_room(device.message_room());
    // A slow link: acknowledgements trickle in, a few bytes a round.
    let pending: Vec<u8> = broker
        .to_device
        .iter()
        .take(LINK_BYTES_PER_ROUND)
        .copied()
        .collect();
    let taken = session.handle_bytes(&pending);
    broker.to_device.drain(..taken);
    while let Some(event) = session.poll_event() {
        match event {
            Event::Connected { .. } => device.handle_connected("TLSv1.3", "x"),
            Event::Message(message) => {
                device.handle_message(message.topic, message.payload, message.qos, &mut NoLeds);
            }
            Event::Published(id) => device.handle_published(id),
            Event::ConnectionLost(cause) => panic!("connection lost: {cause}"),
            _ => {}
        }
    }
    transmit(session, broker, now);
    broker.write_commands();
    device.poll_publish(now, session, &NoLeds);
    shell.publish(session);
    transmit(session, broker, now);
}

/// Numbered messages from the shell, as many as the outbox takes, up to `count`.
#[derive(Default)]
struct Shell {
    count: usize,
    queued: usize,
}

impl Shell {
    fn publish(&mut self, session: &mut FirmwareSession) {
        while self.queued < self.count && session.outbox_has_room() {
            let payload = format!("{}", self.queued);
            session
                .publish(SEQ, payload.as_bytes(), QoS::AtLeastOnce, false)
                .unwrap();
            self.queued += 1;
        }
    }
}

/// Connects, then fills the outbox with numbered messages (the shell's, in the soak) that are
/// on the wire but whose PUBACKs the broker writes only after the commands it sends next; the
/// shell goes on filling the outbox every round. The device's replies find the outbox full, and what
/// makes room is behind the commands.
fn connected_with_a_full_outbox(commands: usize) -> (Device, FirmwareSession, Broker, Shell) {
    let mut device = Device::new(DeviceTopics::new("devices", "d1").unwrap(), 3_600_000);
    let mut session = session();
    let mut broker = Broker::default();
    let mut shell = Shell::default();
    session.handle_connected(Instant(0));
    transmit(&mut session, &mut broker, Instant(0));
    for _ in 0..3 {
        // online and telemetry
        round(
            &mut device,
            &mut session,
            &mut broker,
            Instant(0),
            &mut shell,
        );
    }
    assert_eq!(session.outbox_len(), 0);
    assert_eq!(broker.received, 2);
    broker.commands = commands;
    shell.count = usize::MAX;
    shell.publish(&mut session);
    let mut buf = [0u8; 1024];
    let mut on_the_wire = Vec::new();
    while let Some(n) = session.poll_transmit(Instant(0), &mut buf).unwrap() {
        on_the_wire.push(buf[..n].to_vec());
    }
    broker.write_commands();
    for packet in on_the_wire {
        broker.read(&packet);
    }
    (device, session, broker, shell)
}

#[test]
fn a_burst_of_commands_against_a_full_outbox_gets_every_reply_in_order_none_dropped() {
    const COMMANDS: usize = 200;
    let (mut device, mut session, mut broker, mut shell) = connected_with_a_full_outbox(COMMANDS);
    let mut rounds = 0;
    while broker.replies.len() < COMMANDS {
        round(
            &mut device,
            &mut session,
            &mut broker,
            Instant(rounds),
            &mut shell,
        );
        rounds += 1;
        assert!(
            rounds < 10_000,
            "stuck after {} replies",
            broker.replies.len()
        );
    }
    let expected: Vec<String> = (0..COMMANDS).map(|n| format!("p{n}")).collect();
    assert_eq!(broker.replies, expected);
    // Each command acknowledged once, in the order it came.
    let ids: Vec<u16> = (1..=u16::try_from(COMMANDS).unwrap()).collect();
    assert_eq!(broker.acknowledged, ids);
    assert_eq!(device.counters().received, COMMANDS as u32);
    // The shell kept the outbox full all along, and lost nothing either.
    shell.count = shell.queued;
    while session.outbox_len() > 0 {
        round(
            &mut device,
            &mut session,
            &mut broker,
            Instant(rounds),
            &mut shell,
        );
        rounds += 1;
        assert!(rounds < 20_000, "the outbox does not drain");
    }
    let numbered: Vec<String> = (0..shell.queued).map(|n| format!("{n}")).collect();
    assert!(
        numbered.len() > 8,
        "only {} numbered messages got through",
        numbered.len()
    );
    assert_eq!(
        broker.numbered, numbered,
        "the shell's messages, all of them"
    );
}

#[test]
fn a_command_is_acknowledged_only_once_the_device_has_room_for_its_reply() {
    let (mut device, mut session, mut broker, mut shell) = connected_with_a_full_outbox(100);
    let mut rounds = 0;
    while broker.replies.len() < 100 {
        round(
            &mut device,
            &mut session,
            &mut broker,
            Instant(rounds),
            &mut shell,
        );
        // Acknowledged = replied to, waiting for the outbox, or just taken; nothing more.
        let owed = broker.acknowledged.len() - broker.replies.len();
        assert!(
            owed <= device_app::PENDING_REPLIES,
            "{owed} commands acknowledged whose replies are not out"
        );
        rounds += 1;
        assert!(rounds < 1_000, "stuck");
    }
}
