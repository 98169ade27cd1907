//! The device under test: a `mqtt_core::driver::Client` with the default buffer sizes (the
//! firmware's), driven round by round until a condition holds, with every event recorded.

use crate::error::HarnessError;
use crate::transport::StdClock;
use mqtt_core::driver::{Client, Transport};
use mqtt_core::{ConnectOptions, Event, MessageId, QoS, Session, SessionConfig, SubscribeResult};
use std::time::{Duration, Instant};

/// Longest a single [`Client::poll`] round waits for bytes: short, so conditions are checked
/// often and every wait stays bounded.
const ROUND_MS: u32 = 20;
/// Default time limit of the helpers that wait for one acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A received message, copied out of the session's receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedMessage {
    /// Topic name.
    pub topic: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Delivered QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// DUP flag.
    pub duplicate: bool,
}

impl OwnedMessage {
    /// The payload as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Every event the client reported, in order of kind.
#[derive(Debug, Default)]
pub struct Inbox {
    /// `session_present` of each CONNACK.
    pub connected: Vec<bool>,
    /// Messages received.
    pub messages: Vec<OwnedMessage>,
    /// Acknowledged publishes.
    pub published: Vec<MessageId>,
    /// SUBACKs: packet id and results.
    pub subscribed: Vec<(u16, Vec<SubscribeResult>)>,
    /// UNSUBACKs.
    pub unsubscribed: Vec<u16>,
    /// Why connections ended.
    pub lost: Vec<mqtt_core::Error>,
    /// Messages too large to keep: topic, packet length, QoS.
    pub dropped: Vec<(String, usize, QoS)>,
}

impl Inbox {
    /// Records one event.
    pub fn record(&mut self, event: Event<'_>) {
        match event {
            Event::Connected { session_present } => self.connected.push(session_present),
            Event::Message(m) => self.messages.push(OwnedMessage {
                topic: m.topic.to_owned(),
                payload: m.payload.to_vec(),
                qos: m.qos,
                retain: m.retain,
                duplicate: m.duplicate,
            }),
            Event::Published(id) => self.published.push(id),
            Event::Subscribed { packet_id, results } => {
                self.subscribed
                    .push((packet_id, results.iter().copied().collect()));
            }
            Event::Unsubscribed { packet_id } => self.unsubscribed.push(packet_id),
            Event::ConnectionLost(error) => self.lost.push(error),
            Event::MessageDropped {
                topic,
                packet_len,
                qos,
            } => self.dropped.push((topic.to_owned(), packet_len, qos)),
        }
    }

    /// Payloads (as text) of the messages received on `topic`, in order.
    pub fn texts_on(&self, topic: &str) -> Vec<String> {
        self.messages
            .iter()
            .filter(|m| m.topic == topic)
            .map(OwnedMessage::text)
            .collect()
    }

    fn summary(&self) -> String {
        format!(
            "connected {:?}, {} messages {:?}, published {:?}, subscribed {:?}, lost {:?}",
            self.connected,
            self.messages.len(),
            self.messages
                .iter()
                .map(|m| (m.topic.as_str(), m.text()))
                .collect::<Vec<_>>(),
            self.published,
            self.subscribed,
            self.lost
        )
    }
}

/// A session configuration for tests: clean session, 10 s keepalive, and CONNACK and ping
/// timeouts short enough that a broken broker fails a test in seconds.
pub fn test_config(client_id: &str) -> SessionConfig<'_> {
    let mut config = SessionConfig::new(ConnectOptions {
        client_id,
        username: None,
        password: None,
        clean_session: true,
        keep_alive_s: 10,
        last_will: None,
    });
    config.connack_timeout_ms = 5_000;
    config.ping_timeout_ms = 5_000;
    config
}

/// The client under test and what it reported.
pub struct Device<'a, T: Transport> {
    /// The client.
    pub client: Client<'a, T, StdClock>,
    /// Its events so far.
    pub inbox: Inbox,
}

impl<'a, T: Transport> Device<'a, T> {
    /// A disconnected device.
    pub fn new(config: SessionConfig<'a>) -> Result<Self, HarnessError> {
        let session = Session::new(config).map_err(mqtt_core::Error::Config)?;
        Ok(Self {
            client: Client::new(session, StdClock::new()),
            inbox: Inbox::default(),
        })
    }

    /// The session, for publish/subscribe requests and state.
    pub fn session(&mut self) -> &mut Session<'a> {
        self.client.session()
    }

    /// Attaches `transport` and runs until CONNACK; returns `session_present`. Messages the
    /// broker sends right behind CONNACK are in the inbox already.
    pub fn connect(&mut self, transport: T) -> Result<bool, HarnessError> {
        let inbox = &mut self.inbox;
        Ok(self
            .client
            .connect(transport, &mut |event| inbox.record(event))?)
    }

    /// One round of [`Client::poll`].
    pub fn poll(&mut self, max_wait_ms: u32) -> Result<(), HarnessError> {
        let inbox = &mut self.inbox;
        Ok(self
            .client
            .poll(max_wait_ms, &mut |event| inbox.record(event))?)
    }

    /// Polls until `done` holds, at most `timeout`. `done` may also make requests.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&mut Session<'a>, &Inbox) -> bool,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self.client.session(), &self.inbox) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{what}; device: {}", self.inbox.summary()),
                });
            }
            self.poll(ROUND_MS).map_err(|error| HarnessError::Timeout {
                what: format!(
                    "{what}, but the connection ended ({error}); device: {}",
                    self.inbox.summary()
                ),
            })?;
        }
    }

    /// Polls for `duration`, whatever happens (to let traffic flow or time pass).
    pub fn run_for(&mut self, duration: Duration) -> Result<(), HarnessError> {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            self.poll(ROUND_MS)?;
        }
        Ok(())
    }

    /// Subscribes and waits for the SUBACK; returns one result per filter.
    pub fn subscribe(
        &mut self,
        filters: &[(&str, QoS)],
    ) -> Result<Vec<SubscribeResult>, HarnessError> {
        let packet_id = self.session().subscribe(filters)?;
        self.run_until(ACK_TIMEOUT, "SUBACK", |_, inbox| {
            inbox.subscribed.iter().any(|(id, _)| *id == packet_id)
        })?;
        let results = self
            .inbox
            .subscribed
            .iter()
            .find(|(id, _)| *id == packet_id)
            .map(|(_, r)| r.clone());
        Ok(results.unwrap_or_default())
    }

    /// Publishes and waits until it is done: QoS 0 written, QoS 1/2 acknowledged.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, HarnessError> {
        let id = self.session().publish(topic, payload, qos, retain)?;
        match qos {
            QoS::AtMostOnce => self.run_until(
                ACK_TIMEOUT,
                "the QoS 0 publish to be written",
                |session, _| session.outbox_len() == 0,
            )?,
            _ => self.run_until(ACK_TIMEOUT, "PUBACK/PUBCOMP", |_, inbox| {
                inbox.published.contains(&id)
            })?,
        }
        Ok(id)
    }

    /// Ends the connection with DISCONNECT (the broker discards the will) and closes it.
    pub fn disconnect(&mut self) {
        drop(self.client.disconnect());
    }

    /// Closes the connection without DISCONNECT, as a device losing power or its link would.
    pub fn drop_connection(&mut self) {
        drop(self.client.detach());
    }
}

/// The QoS as the number on the wire (what `mosquitto_sub` prints, `mosquitto_pub -q` takes).
pub fn qos_number(qos: QoS) -> u8 {
    match qos {
        QoS::AtMostOnce => 0,
        QoS::AtLeastOnce => 1,
        QoS::ExactlyOnce => 2,
    }
}
