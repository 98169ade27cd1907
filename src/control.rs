//! The operator's view of the MQTT thread: the `mqtt status`, `mqtt pub` and `mqtt bench`
//! shell commands (Zephyr shell, `src/control.c`) and the connection manager's "network down"
//! event.
//!
//! The session stays the MQTT thread's alone. The shell queues publish requests in a bounded
//! `k_msgq` that this thread drains once per loop round ([`serve_requests`]) and while it
//! waits to reconnect ([`wait_serving`]), so a message published offline goes to the core's
//! outbox. Every request gets an answer line, queued or rejected with its typed error; none
//! is dropped. The status the shell prints is a snapshot this thread copies in each round.

use crate::ffi;
use core::fmt::{self, Write as _};
use device_app::{PublishBench, BENCH_PAYLOAD_MAX, MAX_TOPIC_LEN};
use heapless::String;
use log::{info, warn};
use mqtt_core::{Error, MessageId, QoS, ResourceError, Session};

/// Where the MQTT thread stands, as `mqtt status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the network (DHCP on the board).
    WaitingForNetwork,
    /// Resolving, TCP connect and TLS handshake, or MQTT CONNECT without CONNACK yet.
    Connecting,
    /// CONNACK received.
    Connected,
    /// Waiting out the reconnect delay.
    BackingOff,
}

impl LinkState {
    fn as_str(self) -> &'static str {
        match self {
            LinkState::WaitingForNetwork => "waiting for network",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::BackingOff => "backing off",
        }
    }
}

/// Why a shell publish was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The session refused it (invalid topic, outbox full, packet too large, ...).
    Session(mqtt_core::Error),
    /// The topic bytes are not UTF-8 (MQTT topics are UTF-8 strings, §1.5.3).
    TopicNotUtf8,
    /// A length or QoS outside what control.c promises; a bug on the C side.
    MalformedRequest,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Session(cause) => write!(f, "{cause}"),
            Rejection::TopicNotUtf8 => f.write_str("topic is not UTF-8"),
            Rejection::MalformedRequest => f.write_str("malformed request"),
        }
    }
}

/// The snapshot `mqtt status` prints, kept by the MQTT thread and copied to C each round.
pub struct Status {
    raw: ffi::MqttStatus,
}

impl Status {
    pub fn new(host: &str, port: u16) -> Self {
        let mut raw = ffi::MqttStatus {
            inflight: 0,
            outbox: 0,
            reconnects: 0,
            published: 0,
            port,
            state: [0; 16],
            host: [0; 64],
            tls_version: [0; 16],
            cipher: [0; 48],
            last_error: [0; 96],
        };
        copy_text(&mut raw.host, host);
        let mut status = Self { raw };
        status.set_tls("none", "none");
        status.set_state(LinkState::WaitingForNetwork);
        status
    }

    pub fn set_state(&mut self, state: LinkState) {
        copy_text(&mut self.raw.state, state.as_str());
        self.publish();
    }

    pub fn set_tls(&mut self, version: &str, cipher: &str) {
        copy_text(&mut self.raw.tls_version, version);
        copy_text(&mut self.raw.cipher, cipher);
    }

    /// Records what ended the last connection or connection attempt (its `Display` text).
    pub fn set_last_error(&mut self, cause: &dyn fmt::Display) {
        let mut text: String<96> = String::new();
        // Truncated rather than lost when longer than the field.
        let _ = write!(text, "{cause}");
        copy_text(&mut self.raw.last_error, &text);
        self.publish();
    }

    /// The counters of this round, then the whole snapshot to the shell's side.
    pub fn update(&mut self, session: &Session<'_>, published: u32, reconnects: u32) {
        self.raw.published = published;
        self.raw.reconnects = reconnects;
        self.update_queues(session);
    }

    /// In flight and outbox depth, then the whole snapshot to the shell's side.
    fn update_queues(&mut self, session: &Session<'_>) {
        self.raw.inflight = u32::try_from(session.inflight_len()).unwrap_or(u32::MAX);
        self.raw.outbox = u32::try_from(session.outbox_len()).unwrap_or(u32::MAX);
        self.publish();
    }

    fn publish(&self) {
        // SAFETY: raw is a valid, initialized MqttStatus with the C struct's layout; the C side
        // copies it under its lock before returning and keeps no pointer.
        unsafe { ffi::app_control_set_status(&self.raw) }
    }
}

/// Copies `text` into a fixed C field, truncated at a character boundary, NUL-terminated.
fn copy_text<const N: usize>(field: &mut [u8; N], text: &str) {
    let mut end = text.len().min(N.saturating_sub(1));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    field.fill(0);
    if let (Some(dst), Some(src)) = (field.get_mut(..end), text.as_bytes().get(..end)) {
        dst.copy_from_slice(src);
    }
}

/// Takes one request, waiting at most `timeout_ms` (0: only what is already queued).
fn take_request(timeout_ms: i32) -> Option<ffi::PublishRequest> {
    let mut request = ffi::PublishRequest {
        ticket: 0,
        topic_len: 0,
        payload_len: 0,
        qos: 0,
        topic: [0; ffi::CONTROL_TOPIC_MAX],
        payload: [0; ffi::CONTROL_PAYLOAD_MAX],
    };
    // SAFETY: request is a valid PublishRequest with the C struct's layout; k_msgq_get writes
    // exactly one item of that size into it.
    let ret = unsafe { ffi::app_control_take_request(&mut request, timeout_ms) };
    (ret == 0).then_some(request)
}

/// The ticket of [`wake`]'s empty request.
const WAKE_TICKET: u32 = 0;

/// Ends a reconnect delay early (new credentials are waiting to be used); any thread.
pub fn wake() {
    // SAFETY: plain call; k_msgq_put copies a static request and never blocks.
    unsafe { ffi::app_control_wake() }
}

/// Hands one request to the session and answers it (to the shell, and in the log).
fn serve(session: &mut Session<'_>, status: &mut Status, request: &ffi::PublishRequest) {
    if request.ticket == WAKE_TICKET {
        return;
    }
    let outcome = publish(session, request);
    status.update_queues(session);
    let mut answer = ffi::PublishAnswer {
        queued: 0,
        message_id: 0,
        outbox: 0,
        reason: [0; 96],
    };
    match outcome {
        Ok(MessageId(id)) => {
            info!("control: pub #{} queued as message {id}", request.ticket);
            answer.queued = 1;
            answer.message_id = id;
            answer.outbox = u32::try_from(session.outbox_len()).unwrap_or(u32::MAX);
        }
        Err(cause) => {
            warn!("control: pub #{} rejected: {cause}", request.ticket);
            let mut text: String<96> = String::new();
            let _ = write!(text, "{cause}");
            copy_text(&mut answer.reason, &text);
        }
    }
    // SAFETY: answer is a valid PublishAnswer with the C struct's layout; the C side copies it
    // before returning.
    unsafe { ffi::app_control_answer(request.ticket, &answer) }
}

/// The QoS a C request carries as 0, 1 or 2; anything else is a bug on the C side.
fn qos_from_wire(qos: u8) -> Option<QoS> {
    match qos {
        0 => Some(QoS::AtMostOnce),
        1 => Some(QoS::AtLeastOnce),
        2 => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

fn publish(
    session: &mut Session<'_>,
    request: &ffi::PublishRequest,
) -> Result<MessageId, Rejection> {
    let qos = qos_from_wire(request.qos).ok_or(Rejection::MalformedRequest)?;
    let topic = request
        .topic
        .get(..usize::from(request.topic_len))
        .ok_or(Rejection::MalformedRequest)?;
    let payload = request
        .payload
        .get(..usize::from(request.payload_len))
        .ok_or(Rejection::MalformedRequest)?;
    let topic = core::str::from_utf8(topic).map_err(|_| Rejection::TopicNotUtf8)?;
    crate::outbox_journal::publish(session, topic, payload, qos, false).map_err(Rejection::Session)
}

/// Serves every request already queued; called once per loop round.
pub fn serve_requests(session: &mut Session<'_>, status: &mut Status) {
    while let Some(request) = take_request(0) {
        serve(session, status, &request);
    }
}

/// Waits `ms` milliseconds, serving requests as they come (the reconnect delay: offline
/// publishes go to the outbox at once instead of after the delay), or until `cut_short`
/// says so after a [`wake`].
pub fn wait_serving(
    session: &mut Session<'_>,
    status: &mut Status,
    ms: u32,
    clock: impl Fn() -> u64,
    cut_short: impl Fn() -> bool,
) {
    let deadline = clock().saturating_add(u64::from(ms));
    loop {
        let left = deadline.saturating_sub(clock());
        if left == 0 || cut_short() {
            return;
        }
        if let Some(request) = take_request(i32::try_from(left).unwrap_or(i32::MAX)) {
            serve(session, status, &request);
        }
    }
}

/// A `mqtt bench` in progress: numbered messages published from this thread, as fast as the
/// outbox takes them, to `<base>/bench/q<qos>`.
pub struct BenchRun {
    plan: PublishBench,
    qos: QoS,
    topic: String<MAX_TOPIC_LEN>,
    started_ms: u64,
    outbox_was_full: bool,
}

/// The benchmark `mqtt bench` left, if any, ready to run under `base_topic`.
pub fn take_bench(base_topic: &str, now_ms: u64) -> Option<BenchRun> {
    let mut request = ffi::BenchRequest {
        count: 0,
        payload_len: 0,
        qos: 0,
    };
    // SAFETY: request is a valid BenchRequest with the C struct's layout; the C side writes it
    // under its lock and keeps no pointer.
    if !unsafe { ffi::app_control_take_bench(&mut request) } {
        return None;
    }
    let Some(qos) = qos_from_wire(request.qos) else {
        warn!("bench: refused: {}", Rejection::MalformedRequest);
        return None;
    };
    let plan = match PublishBench::new(request.count, usize::from(request.payload_len)) {
        Ok(plan) => plan,
        Err(cause) => {
            warn!("bench: refused: {}", cause.as_str());
            return None;
        }
    };
    let mut topic = String::new();
    if write!(topic, "{base_topic}/bench/q{}", request.qos).is_err() {
        warn!("bench: refused: topic longer than {MAX_TOPIC_LEN} bytes");
        return None;
    }
    info!(
        "bench: {} messages, {qos:?}, {} bytes, to {topic}",
        plan.total(),
        plan.payload_len()
    );
    Some(BenchRun {
        plan,
        qos,
        topic,
        started_ms: now_ms,
        outbox_was_full: false,
    })
}

impl BenchRun {
    /// Queues messages until the outbox is full or all are queued. An error other than a
    /// full outbox ends the run.
    pub fn feed(&mut self, session: &mut Session<'_>) -> Result<(), Error> {
        let mut payload = [0u8; BENCH_PAYLOAD_MAX];
        self.outbox_was_full = false;
        while let Some(next) = self.plan.next_payload(&mut payload) {
            match session.publish(&self.topic, next, self.qos, false) {
                Ok(_) => self.plan.mark_queued(),
                Err(Error::Exhausted(ResourceError::OutboxFull)) => {
                    self.outbox_was_full = true;
                    return Ok(());
                }
                Err(cause) => return Err(cause),
            }
        }
        Ok(())
    }

    /// Whether the next round should not wait for input: more to queue, and room for it now
    /// or as soon as the round writes the outbox out (QoS 0 leaves it when written; QoS 1
    /// and 2 only when the broker answers, which is input worth waiting for).
    pub fn has_room_for_more(&self) -> bool {
        !self.plan.all_queued() && (!self.outbox_was_full || self.qos == QoS::AtMostOnce)
    }

    /// Every message queued and the outbox empty (messages in flight hold outbox slots).
    pub fn finished(&self, session: &Session<'_>) -> bool {
        self.plan.all_queued() && session.outbox_len() == 0
    }

    /// Logs the result line `bench/bench.py` reads.
    pub fn report_done(&self, now_ms: u64) {
        let elapsed_ms = now_ms.saturating_sub(self.started_ms).max(1);
        let per_second = u64::from(self.plan.total()).saturating_mul(1000) / elapsed_ms;
        info!(
            "bench: done: {} messages {:?} of {} bytes sent and settled in {elapsed_ms} ms ({per_second}/s)",
            self.plan.total(),
            self.qos,
            self.plan.payload_len()
        );
    }

    /// How many are queued so far, for a line when the run ends early.
    pub fn queued(&self) -> u32 {
        self.plan.queued()
    }
}
