//! What the device does with its MQTT connection, sans IO: `online` on its status topic after
//! each CONNACK, telemetry on a schedule, commands carried out and answered, and the publish
//! benchmark. It takes events, the time (the core's [`Instant`]) and command payloads, and
//! gives publishes (through a [`Publisher`]) and its next deadline ([`Device::poll_timeout`]);
//! the firmware's driver owns the socket, the clock and the LEDs ([`Board`]).
//!
//! Log lines at `info` are one per state change and stable: the end-to-end tests match them.

use crate::bench::{BenchError, PublishBench, BENCH_PAYLOAD_MAX};
use crate::command::{parse_command, Command, CommandError, LedAction};
use crate::json::{format_error_reply, format_telemetry, Telemetry};
use crate::topics::{DeviceTopics, MAX_TOPIC_LEN};
use core::fmt::Write as _;
use heapless::{Deque, String, Vec};
use log::{error, info, warn};
use mqtt_core::{Error, Instant, MessageId, QoS, ResourceError, Session};

/// Largest reply payload (a ping is echoed up to this size).
pub const REPLY_CAPACITY: usize = 256;
/// Replies waiting for room in the outbox. The device takes a command only while one of these
/// is free ([`Device::message_room`]): every command may owe a reply, and a reply owed for a
/// command already acknowledged must never be dropped for lack of room.
pub const PENDING_REPLIES: usize = 4;
/// Largest telemetry document.
const TELEMETRY_CAPACITY: usize = 384;

/// Where the device's messages go: the MQTT session (on the board, through the journal that
/// writes messages queued while offline to flash).
pub trait Publisher {
    /// Queues a message; see [`Session::publish`].
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error>;
    /// Messages in the outbox: queued, in flight or awaiting their last acknowledgement.
    fn outbox_len(&self) -> usize;
}

impl<const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize> Publisher
    for Session<'_, RX, SLOTS, SLOT_BYTES>
{
    fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        Session::publish(self, topic, payload, qos, retain)
    }

    fn outbox_len(&self) -> usize {
        Session::outbox_len(self)
    }
}

/// The board under the device: its LEDs, and what telemetry reports about it.
pub trait Board {
    /// Carries out `action` on LED `index`; the level it is now driven to, or `None` if the
    /// board has no such LED.
    fn set_led(&mut self, index: u8, action: LedAction) -> Option<bool>;
    /// Free heap in bytes, if the firmware can tell.
    fn heap_free(&self) -> Option<u32>;
}

/// What the device counts for telemetry and `mqtt status`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Messages the broker acknowledged (QoS 1/2) or that were written (QoS 0).
    pub published: u32,
    /// Messages received on the command filter.
    pub received: u32,
    /// Connections accepted after the first.
    pub reconnects: u32,
}

/// Where `online` stands for the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Online {
    /// Not connected since it was acknowledged, or never connected.
    Settled,
    /// To be queued: retried every round until the outbox takes it.
    Due,
    /// In the outbox, not yet acknowledged. The session sends it again after a reconnect,
    /// so a reconnect does not queue another.
    Queued(MessageId),
}

/// A reply to a command, owned: it is published after the message that caused it is gone.
struct Reply {
    to_error_topic: bool,
    payload: Vec<u8, REPLY_CAPACITY>,
}

/// A benchmark as `mqtt bench` asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchRequest {
    /// How many messages.
    pub count: u32,
    /// Bytes per message.
    pub payload_len: usize,
    /// At which QoS.
    pub qos: QoS,
}

/// A `mqtt bench` in progress: numbered messages to `<base>/bench/q<qos>`, as fast as the
/// outbox takes them.
struct BenchRun {
    plan: PublishBench,
    qos: QoS,
    topic: String<MAX_TOPIC_LEN>,
    started: Instant,
    outbox_was_full: bool,
}

impl BenchRun {
    /// Whether the next round should not wait for input: more to queue, and room for it now
    /// or as soon as the round writes the outbox out (QoS 0 leaves it when written; QoS 1
    /// and 2 only when the broker answers, which is input worth waiting for).
    fn has_room_for_more(&self) -> bool {
        !self.plan.all_queued() && (!self.outbox_was_full || self.qos == QoS::AtMostOnce)
    }
}

/// Why a benchmark was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchRefusal {
    /// The plan itself (count or payload size).
    Plan(BenchError),
    /// `<base>/bench/q<n>` is longer than a topic may be.
    TopicTooLong,
}

impl core::fmt::Display for BenchRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BenchRefusal::Plan(cause) => f.write_str(cause.as_str()),
            BenchRefusal::TopicTooLong => {
                write!(f, "topic longer than {MAX_TOPIC_LEN} bytes")
            }
        }
    }
}

/// The device's behaviour across connections.
pub struct Device {
    topics: DeviceTopics,
    counters: Counters,
    replies: Deque<Reply, PENDING_REPLIES>,
    telemetry_interval_ms: u64,
    next_telemetry: Instant,
    online: Online,
    connected: bool,
    connected_before: bool,
    tls_version: &'static str,
    cipher: &'static str,
    bench: Option<BenchRun>,
}

impl Device {
    /// A device publishing under `topics`, with telemetry every `telemetry_interval_ms`
    /// (the first right after the first CONNACK).
    pub fn new(topics: DeviceTopics, telemetry_interval_ms: u64) -> Self {
        Self {
            topics,
            counters: Counters::default(),
            replies: Deque::new(),
            telemetry_interval_ms,
            next_telemetry: Instant(0),
            online: Online::Settled,
            connected: false,
            connected_before: false,
            tls_version: "none",
            cipher: "none",
            bench: None,
        }
    }

    /// The device's topics.
    pub fn topics(&self) -> &DeviceTopics {
        &self.topics
    }

    /// What the device has counted so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The broker accepted the connection (CONNACK 0) over TLS `tls_version` and `cipher`.
    pub fn handle_connected(&mut self, tls_version: &'static str, cipher: &'static str) {
        if self.connected_before {
            self.counters.reconnects = self.counters.reconnects.saturating_add(1);
        }
        self.connected_before = true;
        self.connected = true;
        self.tls_version = tls_version;
        self.cipher = cipher;
        if !matches!(self.online, Online::Queued(_)) {
            self.online = Online::Due;
        }
    }

    /// The connection ended. Replies and `online` wait for the next one.
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
    }

    /// The broker acknowledged message `id` (or a QoS 0 one was written).
    pub fn handle_published(&mut self, id: MessageId) {
        self.counters.published = self.counters.published.saturating_add(1);
        if self.online == Online::Queued(id) {
            self.online = Online::Settled;
        }
    }

    /// How many more commands the device can take now: one free reply slot each. The driver
    /// gives the session this much room before each round
    /// ([`mqtt_core::Session::set_message_room`]): the broker's commands beyond it wait,
    /// unacknowledged, until [`Device::poll_publish`] has moved replies into the outbox.
    pub fn message_room(&self) -> usize {
        self.replies.capacity() - self.replies.len()
    }

    /// A message arrived on the command filter at `qos`: carries out the command on `board`;
    /// its reply, if any, goes out at the next [`Device::poll_publish`], after the replies
    /// before it.
    pub fn handle_message(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        board: &mut impl Board,
    ) {
        self.counters.received = self.counters.received.saturating_add(1);
        let reply = match parse_command(&self.topics, topic, payload) {
            Ok(Command::Led { index, action }) => match board.set_led(index, action) {
                Some(level) => {
                    info!(
                        "led{index}: {} -> {}",
                        action.as_str(),
                        if level { "on" } else { "off" }
                    );
                    None
                }
                None => {
                    warn!("led{index}: not on this board");
                    error_reply(CommandError::NoSuchLed, topic)
                }
            },
            Ok(Command::Ping { payload }) => {
                info!("mqtt: ping ({} bytes)", payload.len());
                match Vec::from_slice(payload) {
                    Ok(echo) => Some(Reply {
                        to_error_topic: false,
                        payload: echo,
                    }),
                    Err(()) => error_reply(CommandError::BadPayload, topic),
                }
            }
            Err(cause) => {
                warn!("command on {topic} refused: {}", cause.as_str());
                error_reply(cause, topic)
            }
        };
        let Some(reply) = reply else {
            return;
        };
        if self.replies.push_back(reply).is_ok() {
            return;
        }
        // Past `message_room`: the session delivers that only at QoS 0, when its receive
        // buffer is full of held messages and reading on is the only way forward.
        if qos == QoS::AtMostOnce {
            warn!(
                "reply to {topic} dropped: {PENDING_REPLIES} replies already wait for the outbox, and a QoS 0 command is not held once the receive buffer is full"
            );
        } else {
            error!(
                "reply to {topic} dropped: a QoS {} command was delivered past the device's room ({PENDING_REPLIES} replies already wait)",
                qos as u8
            );
        }
    }

    /// Starts a benchmark (replacing one in progress), from `now`.
    pub fn start_bench(&mut self, request: BenchRequest, now: Instant) -> Result<(), BenchRefusal> {
        let plan =
            PublishBench::new(request.count, request.payload_len).map_err(BenchRefusal::Plan)?;
        let mut topic = String::new();
        write!(topic, "{}/bench/q{}", self.topics.base(), request.qos as u8)
            .map_err(|_| BenchRefusal::TopicTooLong)?;
        info!(
            "bench: {} messages, QoS {}, {} bytes, to {topic}",
            plan.total(),
            request.qos as u8,
            plan.payload_len()
        );
        let run = BenchRun {
            plan,
            qos: request.qos,
            topic,
            started: now,
            outbox_was_full: false,
        };
        if let Some(old) = self.bench.replace(run) {
            warn!(
                "bench: the one before stops after {} messages queued",
                old.plan.queued()
            );
        }
        Ok(())
    }

    /// Whether an `mqtt bench` is queueing or waiting for its last messages to settle.
    pub fn bench_running(&self) -> bool {
        self.bench.is_some()
    }

    /// Queues what is due while connected: `online`, replies, telemetry, the benchmark's next
    /// messages. Nothing while disconnected (replies and `online` wait; telemetry is skipped).
    /// Replies the outbox has no room for wait, in order, for the next round: each one
    /// queued makes room for one more command ([`Device::message_room`]).
    pub fn poll_publish(&mut self, now: Instant, out: &mut impl Publisher, board: &impl Board) {
        if !self.connected {
            return;
        }
        self.publish_online(out);
        self.publish_replies(out);
        if now >= self.next_telemetry {
            self.next_telemetry = now.plus_ms(self.telemetry_interval_ms);
            self.publish_telemetry(now, out, board);
        }
        self.feed_bench(now, out);
    }

    /// When [`Device::poll_publish`] next has something to do by itself: `now` while a
    /// benchmark has room for more, else the next telemetry. `online` and replies waiting for
    /// room in the outbox wait for input (an acknowledgement frees a slot), not for time:
    /// retrying them at once would spin. Before CONNACK it does nothing, so it has no
    /// deadline (telemetry due then would make the caller spin until CONNACK).
    pub fn poll_timeout(&self, now: Instant) -> Instant {
        if !self.connected {
            return Instant(u64::MAX);
        }
        let busy = self.bench.as_ref().is_some_and(BenchRun::has_room_for_more);
        if busy && self.connected {
            now
        } else {
            self.next_telemetry.max(now)
        }
    }

    fn publish_replies(&mut self, out: &mut impl Publisher) {
        while let Some(reply) = self.replies.front() {
            let topic = if reply.to_error_topic {
                self.topics.reply_error()
            } else {
                self.topics.reply_ping()
            };
            match out.publish(topic, &reply.payload, QoS::AtLeastOnce, false) {
                Ok(_) => {}
                // No room now: an acknowledgement makes some. Meanwhile the commands behind
                // this one wait at the broker, not here.
                Err(Error::Exhausted(ResourceError::OutboxFull | ResourceError::NoPacketId)) => {
                    return
                }
                // Waiting would not help (a reply that can never fit): say so, go on.
                Err(cause) => warn!("mqtt: reply to {topic} not published: {cause}"),
            }
            self.replies.pop_front();
        }
    }

    fn publish_online(&mut self, out: &mut impl Publisher) {
        if self.online != Online::Due {
            return;
        }
        // Messages queued while offline may fill the outbox at the moment of connecting, and
        // `online` must follow them: retried every round until the outbox takes it.
        match out.publish(self.topics.status(), b"online", QoS::AtLeastOnce, true) {
            Ok(id) => {
                info!("mqtt: published online to {}", self.topics.status());
                self.online = Online::Queued(id);
            }
            Err(Error::Exhausted(ResourceError::OutboxFull)) => {}
            Err(cause) => {
                warn!("mqtt: status not published: {cause}");
                self.online = Online::Settled;
            }
        }
    }

    fn publish_telemetry(&mut self, now: Instant, out: &mut impl Publisher, board: &impl Board) {
        let telemetry = Telemetry {
            uptime_s: now.0 / 1000,
            published: self.counters.published,
            received: self.counters.received,
            reconnects: self.counters.reconnects,
            heap_free: board.heap_free(),
            outbox: u32::try_from(out.outbox_len()).unwrap_or(u32::MAX),
            tls_version: self.tls_version,
            cipher: self.cipher,
        };
        let mut buf = [0u8; TELEMETRY_CAPACITY];
        let Ok(written) = format_telemetry(&telemetry, &mut buf) else {
            warn!("telemetry does not fit {TELEMETRY_CAPACITY} bytes");
            return;
        };
        let payload = buf.get(..written).unwrap_or(&[]);
        match out.publish(self.topics.telemetry(), payload, QoS::AtLeastOnce, false) {
            Ok(_) => info!("mqtt: telemetry queued ({written} bytes)"),
            Err(cause) => warn!("mqtt: telemetry not queued: {cause}"),
        }
    }

    /// Queues benchmark messages until the outbox is full or all are queued; reports the end.
    fn feed_bench(&mut self, now: Instant, out: &mut impl Publisher) {
        let Some(run) = self.bench.as_mut() else {
            return;
        };
        let mut payload = [0u8; BENCH_PAYLOAD_MAX];
        run.outbox_was_full = false;
        while let Some(next) = run.plan.next_payload(&mut payload) {
            match out.publish(&run.topic, next, run.qos, false) {
                Ok(_) => run.plan.mark_queued(),
                Err(Error::Exhausted(ResourceError::OutboxFull)) => {
                    run.outbox_was_full = true;
                    return;
                }
                Err(cause) => {
                    warn!(
                        "bench: stopped after {} messages queued: {cause}",
                        run.plan.queued()
                    );
                    self.bench = None;
                    return;
                }
            }
        }
        // Every message queued; done once the outbox is empty (in flight holds slots).
        if out.outbox_len() == 0 {
            let elapsed_ms = now.ms_since(run.started).max(1);
            let per_second = u64::from(run.plan.total()).saturating_mul(1000) / elapsed_ms;
            info!(
                "bench: done: {} messages at QoS {} of {} bytes sent and settled in {elapsed_ms} ms ({per_second}/s)",
                run.plan.total(),
                run.qos as u8,
                run.plan.payload_len()
            );
            self.bench = None;
        }
    }
}

fn error_reply(cause: CommandError, topic: &str) -> Option<Reply> {
    let mut buf = [0u8; REPLY_CAPACITY];
    let written = format_error_reply(cause, topic, &mut buf).ok()?;
    let payload = Vec::from_slice(buf.get(..written)?).ok()?;
    Some(Reply {
        to_error_topic: true,
        payload,
    })
}
