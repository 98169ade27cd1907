//! The device's behaviour over its MQTT connection, driven as the firmware drives it: events,
//! the time, and a publisher that stands in for the session's outbox.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use device_app::{
    BenchRequest, Board, Device, DeviceTopics, LedAction, Publisher, PENDING_REPLIES,
};
use mqtt_core::{Error, Instant, MessageId, QoS, ResourceError};

/// An outbox of `room` slots that records what was queued; `settle` empties it.
struct Outbox {
    room: usize,
    queued: Vec<(String, Vec<u8>, QoS, bool)>,
    in_outbox: usize,
    next_id: u32,
}

impl Outbox {
    fn with_room(room: usize) -> Self {
        Self {
            room,
            queued: Vec::new(),
            in_outbox: 0,
            next_id: 1,
        }
    }

    fn topics(&self) -> Vec<&str> {
        self.queued
            .iter()
            .map(|(topic, ..)| topic.as_str())
            .collect()
    }

    fn payloads_on(&self, topic: &str) -> Vec<String> {
        self.queued
            .iter()
            .filter(|(t, ..)| t == topic)
            .map(|(_, payload, ..)| String::from_utf8_lossy(payload).into_owned())
            .collect()
    }

    fn settle(&mut self) {
        self.in_outbox = 0;
    }
}

impl Publisher for Outbox {
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        if self.in_outbox >= self.room {
            return Err(Error::Exhausted(ResourceError::OutboxFull));
        }
        self.in_outbox += 1;
        self.queued
            .push((topic.to_owned(), payload.to_vec(), qos, retain));
        let id = MessageId(self.next_id);
        self.next_id += 1;
        Ok(id)
    }

    fn outbox_len(&self) -> usize {
        self.in_outbox
    }
}

/// Two LEDs; records what was done to them.
#[derive(Default)]
struct TwoLeds {
    levels: [bool; 2],
}

impl Board for TwoLeds {
    fn set_led(&mut self, index: u8, action: LedAction) -> Option<bool> {
        let level = self.levels.get_mut(usize::from(index))?;
        *level = match action {
            LedAction::On => true,
            LedAction::Off => false,
            LedAction::Toggle => !*level,
        };
        Some(*level)
    }

    fn heap_free(&self) -> Option<u32> {
        Some(1234)
    }
}

const STATUS: &str = "devices/d1/status";
const TELEMETRY: &str = "devices/d1/telemetry";
const TELEMETRY_MS: u64 = 10_000;
const PING_REPLIES: &str = "devices/d1/reply/ping";

fn device() -> Device {
    Device::new(DeviceTopics::new("devices", "d1").unwrap(), TELEMETRY_MS)
}

#[test]
fn has_no_deadline_of_its_own_before_connack_even_with_telemetry_due() {
    let mut device = device();
    // Telemetry is due from the start, but nothing is published before CONNACK: a deadline
    // of `now` here made the MQTT thread spin while it waited for CONNACK.
    assert_eq!(device.poll_timeout(Instant(5)), Instant(u64::MAX));
    device.handle_connected("TLSv1.3", "TLS_AES_128_GCM_SHA256");
    assert_eq!(device.poll_timeout(Instant(5)), Instant(5));
    device.handle_disconnected();
    assert_eq!(device.poll_timeout(Instant(7)), Instant(u64::MAX));
}

#[test]
fn online_goes_out_retained_after_each_connack_and_waits_for_room_in_the_outbox() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut full = Outbox::with_room(0);
    device.handle_connected("TLSv1.3", "TLS_AES_128_GCM_SHA256");
    // Telemetry due with no room is skipped for this interval; `online` is not.
    device.poll_publish(Instant(0), &mut full, &board);
    assert!(full.queued.is_empty());
    // Still due, but only an acknowledgement makes room: waiting for time would not help,
    // and retrying at once would spin.
    assert_eq!(device.poll_timeout(Instant(5)), Instant(TELEMETRY_MS));

    let mut outbox = Outbox::with_room(8);
    device.poll_publish(Instant(10), &mut outbox, &board);
    assert_eq!(outbox.topics(), [STATUS]);
    let (_, payload, qos, retain) = &outbox.queued[0];
    assert_eq!(
        (payload.as_slice(), *qos, *retain),
        (&b"online"[..], QoS::AtLeastOnce, true)
    );
    device.handle_message("devices/d1/cmd/led/0", b"on", QoS::AtLeastOnce, &mut board);
    device.poll_publish(Instant(20), &mut outbox, &board);
    assert_eq!(outbox.topics(), [STATUS], "online once per connection");
}

#[test]
fn a_reconnect_before_online_was_acknowledged_does_not_queue_a_second_online() {
    let mut device = device();
    let board = TwoLeds::default();
    let mut outbox = Outbox::with_room(8);
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board);
    // The connection drops before the broker acknowledged `online`: the session keeps it in
    // its outbox and sends it again, so the device must not add another.
    device.handle_disconnected();
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(1), &mut outbox, &board);
    assert_eq!(outbox.payloads_on(STATUS), ["online"]);

    // Once acknowledged, the next connection announces itself again.
    device.handle_published(MessageId(1));
    device.handle_disconnected();
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(2), &mut outbox, &board);
    assert_eq!(outbox.payloads_on(STATUS), ["online", "online"]);
    assert_eq!(device.counters().reconnects, 2);
}

#[test]
fn telemetry_goes_out_at_the_first_connack_then_every_interval_with_the_counters() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(8);
    device.handle_connected("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256");
    device.poll_publish(Instant(1_000), &mut outbox, &board);
    assert_eq!(
        device.poll_timeout(Instant(1_500)),
        Instant(1_000 + TELEMETRY_MS)
    );
    device.handle_message(
        "devices/d1/cmd/led/1",
        b"toggle",
        QoS::AtLeastOnce,
        &mut board,
    );
    device.handle_published(MessageId(1));
    device.poll_publish(Instant(1_000 + TELEMETRY_MS - 1), &mut outbox, &board);
    assert_eq!(
        outbox.payloads_on(TELEMETRY).len(),
        1,
        "not before the interval"
    );
    device.poll_publish(Instant(1_000 + TELEMETRY_MS), &mut outbox, &board);

    let reports = outbox.payloads_on(TELEMETRY);
    assert_eq!(reports.len(), 2);
    let last: serde_json::Value = serde_json::from_str(&reports[1]).unwrap();
    assert_eq!(last["uptime_s"], 11);
    assert_eq!(last["published"], 1);
    assert_eq!(last["received"], 1);
    assert_eq!(last["heap_free"], 1234);
    assert_eq!(
        last["outbox"], 2,
        "online and the first report, not yet acknowledged"
    );
    assert_eq!(last["tls"]["version"], "TLSv1.2");
}

#[test]
fn nothing_is_published_while_disconnected_and_replies_wait_for_the_connection() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(8);
    device.poll_publish(Instant(0), &mut outbox, &board);
    assert!(outbox.queued.is_empty());

    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board);
    device.handle_message(
        "devices/d1/cmd/ping",
        b"hello",
        QoS::AtLeastOnce,
        &mut board,
    );
    device.handle_disconnected();
    device.poll_publish(Instant(1), &mut outbox, &board);
    assert!(outbox.payloads_on("devices/d1/reply/ping").is_empty());
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(2), &mut outbox, &board);
    assert_eq!(outbox.payloads_on("devices/d1/reply/ping"), ["hello"]);
}

#[test]
fn commands_drive_the_leds_echo_pings_and_answer_what_they_cannot_do_on_reply_error() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(16);
    device.handle_connected("TLSv1.3", "x");
    device.handle_message(
        "devices/d1/cmd/led/1",
        b" ON ",
        QoS::AtLeastOnce,
        &mut board,
    );
    assert_eq!(board.levels, [false, true]);
    device.handle_message("devices/d1/cmd/led/2", b"on", QoS::AtLeastOnce, &mut board); // the board has two
    device.handle_message(
        "devices/d1/cmd/led/0",
        b"blink",
        QoS::AtLeastOnce,
        &mut board,
    );
    device.handle_message("devices/d1/cmd/reboot", b"", QoS::AtLeastOnce, &mut board);
    device.handle_message(
        "devices/d1/cmd/ping",
        b"\x00\xffbytes",
        QoS::AtLeastOnce,
        &mut board,
    );
    device.poll_publish(Instant(0), &mut outbox, &board);

    let errors: Vec<serde_json::Value> = outbox
        .payloads_on("devices/d1/reply/error")
        .iter()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect();
    let codes: Vec<&str> = errors
        .iter()
        .map(|e| e["error"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["no_such_led", "bad_payload", "unknown_command"]);
    assert_eq!(errors[0]["topic"], "devices/d1/cmd/led/2");
    let pings: Vec<&Vec<u8>> = outbox
        .queued
        .iter()
        .filter(|(topic, ..)| topic == "devices/d1/reply/ping")
        .map(|(_, payload, ..)| payload)
        .collect();
    assert_eq!(pings, [&b"\x00\xffbytes".to_vec()]);
    assert_eq!(device.counters().received, 5);
}

#[test]
fn a_reply_the_outbox_has_no_room_for_waits_for_the_next_round() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(2);
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board); // online and telemetry: full
    for n in 0..PENDING_REPLIES {
        device.handle_message(
            "devices/d1/cmd/ping",
            n.to_string().as_bytes(),
            QoS::AtLeastOnce,
            &mut board,
        );
    }
    device.poll_publish(Instant(1), &mut outbox, &board);
    assert!(outbox.payloads_on(PING_REPLIES).is_empty());
    // Acknowledged at QoS 1 before their replies were queued: the broker does not send these
    // commands again, so the replies wait for room instead of being dropped.
    outbox.room = 16;
    device.poll_publish(Instant(2), &mut outbox, &board);
    assert_eq!(outbox.payloads_on(PING_REPLIES), ["0", "1", "2", "3"]);
}

#[test]
fn room_for_commands_is_the_free_reply_slots_and_comes_back_as_replies_are_queued() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(0);
    device.handle_connected("TLSv1.3", "x");
    assert_eq!(device.message_room(), PENDING_REPLIES);
    device.handle_message("devices/d1/cmd/ping", b"a", QoS::AtLeastOnce, &mut board);
    device.handle_message("devices/d1/cmd/led/0", b"on", QoS::AtLeastOnce, &mut board);
    assert_eq!(
        device.message_room(),
        PENDING_REPLIES - 1,
        "an LED command owes no reply"
    );
    device.poll_publish(Instant(0), &mut outbox, &board);
    assert_eq!(device.message_room(), PENDING_REPLIES - 1, "no room yet");
    outbox.room = 8;
    device.poll_publish(Instant(1), &mut outbox, &board);
    assert_eq!(device.message_room(), PENDING_REPLIES);
}

/// The firmware's rounds: the session delivers at most `message_room()` of the commands the
/// broker has sent (the rest wait, unacknowledged), then `poll_publish`; the broker
/// acknowledges one of the device's messages per round.
#[test]
fn a_burst_of_commands_with_a_full_outbox_gets_every_reply_in_order() {
    const COMMANDS: usize = 40;
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(8);
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board);
    outbox.in_outbox = outbox.room; // full of messages in flight
    let mut waiting_at_broker = 0..COMMANDS;
    let mut rounds = 0;
    while outbox.payloads_on(PING_REPLIES).len() < COMMANDS {
        for n in waiting_at_broker.by_ref().take(device.message_room()) {
            let payload = format!("p{n}");
            device.handle_message(
                "devices/d1/cmd/ping",
                payload.as_bytes(),
                QoS::AtLeastOnce,
                &mut board,
            );
        }
        device.poll_publish(Instant(rounds), &mut outbox, &board);
        outbox.in_outbox -= 1; // a PUBACK
        rounds += 1;
        assert!(rounds < 10 * COMMANDS as u64, "stuck");
    }
    let expected: Vec<String> = (0..COMMANDS).map(|n| format!("p{n}")).collect();
    assert_eq!(outbox.payloads_on(PING_REPLIES), expected);
    assert_eq!(device.counters().received, COMMANDS as u32);
}

#[test]
fn a_qos0_command_past_the_room_is_carried_out_and_its_reply_dropped_in_words() {
    let mut device = device();
    let mut board = TwoLeds::default();
    let mut outbox = Outbox::with_room(0);
    device.handle_connected("TLSv1.3", "x");
    for n in 0..PENDING_REPLIES {
        let payload = n.to_string();
        device.handle_message(
            "devices/d1/cmd/ping",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            &mut board,
        );
    }
    let lines = logged(|| {
        device.handle_message("devices/d1/cmd/ping", b"late", QoS::AtMostOnce, &mut board);
    });
    assert!(
        lines.iter().any(|line| line.starts_with(
            "reply to devices/d1/cmd/ping dropped: 4 replies already wait for the outbox"
        )),
        "{lines:?}"
    );
    outbox.room = 8;
    device.poll_publish(Instant(0), &mut outbox, &board);
    assert_eq!(outbox.payloads_on(PING_REPLIES), ["0", "1", "2", "3"]);
}

#[test]
fn a_bench_queues_numbered_messages_as_the_outbox_takes_them_and_ends_once_settled() {
    let mut device = device();
    let board = TwoLeds::default();
    let mut outbox = Outbox::with_room(4);
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board); // online and telemetry
    outbox.settle();
    let request = BenchRequest {
        count: 10,
        payload_len: 16,
        qos: QoS::AtLeastOnce,
    };
    device.start_bench(request, Instant(0)).unwrap();
    assert_eq!(
        device.poll_timeout(Instant(1)),
        Instant(1),
        "room: go on at once"
    );

    let mut rounds = 0;
    while outbox.payloads_on("devices/d1/bench/q1").len() < 10 {
        device.poll_publish(Instant(rounds), &mut outbox, &board);
        outbox.settle(); // the broker acknowledges what was in flight
        rounds += 1;
        assert!(rounds < 10);
    }
    let sent = outbox.payloads_on("devices/d1/bench/q1");
    assert!(sent[0].starts_with("0....") && sent[0].len() == 16);
    assert!(sent[9].starts_with("9...."));
    // Settled: the run is over and no longer keeps the driver awake.
    device.poll_publish(Instant(rounds), &mut outbox, &board);
    assert_eq!(device.poll_timeout(Instant(rounds)), Instant(TELEMETRY_MS));

    let refused = device.start_bench(
        BenchRequest {
            count: 0,
            payload_len: 16,
            qos: QoS::AtMostOnce,
        },
        Instant(0),
    );
    assert!(refused.unwrap_err().to_string().contains("no messages"));
}

/// The info lines the device logs while `body` runs on this thread. Tests run on threads of
/// one process with one logger, so each thread keeps its own lines.
fn logged(body: impl FnOnce()) -> Vec<String> {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Info
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                LINES.with(|lines| lines.borrow_mut().push(record.args().to_string()));
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture;

    // Only the first call installs it; the others find it in place.
    let _ = log::set_logger(&CAPTURE);
    log::set_max_level(log::LevelFilter::Info);
    LINES.with(|lines| lines.borrow_mut().clear());
    body();
    LINES.with(|lines| lines.take())
}

/// Tests on the device and operators' scripts match these lines: words, never a Rust
/// type's `Debug` (`On`, `AtLeastOnce`), which a rename would change.
#[test]
fn led_commands_are_logged_in_words() {
    let mut device = device();
    let mut board = TwoLeds::default();
    device.handle_connected("TLSv1.3", "x");
    let lines = logged(|| {
        device.handle_message(
            "devices/d1/cmd/led/1",
            b" ON ",
            QoS::AtLeastOnce,
            &mut board,
        );
        device.handle_message(
            "devices/d1/cmd/led/1",
            b"toggle",
            QoS::AtLeastOnce,
            &mut board,
        );
        device.handle_message(
            "devices/d1/cmd/led",
            b" Toggle ",
            QoS::AtLeastOnce,
            &mut board,
        );
        device.handle_message("devices/d1/cmd/led/0", b"off", QoS::AtLeastOnce, &mut board);
    });
    assert_eq!(
        lines,
        [
            "led1: on -> on",
            "led1: toggle -> off",
            "led0: toggle -> on",
            "led0: off -> off"
        ]
    );
}

#[test]
fn a_bench_logs_its_qos_as_a_number() {
    let mut device = device();
    let board = TwoLeds::default();
    let mut outbox = Outbox::with_room(8);
    device.handle_connected("TLSv1.3", "x");
    device.poll_publish(Instant(0), &mut outbox, &board); // online and telemetry
    outbox.settle();
    let lines = logged(|| {
        let request = BenchRequest {
            count: 2,
            payload_len: 16,
            qos: QoS::AtLeastOnce,
        };
        device.start_bench(request, Instant(0)).unwrap();
        device.poll_publish(Instant(1), &mut outbox, &board);
        outbox.settle();
        device.poll_publish(Instant(2), &mut outbox, &board);
    });
    assert_eq!(
        lines[0],
        "bench: 2 messages, QoS 1, 16 bytes, to devices/d1/bench/q1"
    );
    assert!(
        lines[1].starts_with("bench: done: 2 messages at QoS 1 of 16 bytes sent and settled in "),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 2, "{lines:?}");
}
