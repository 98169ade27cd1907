//! A model MQTT 3.1.1 broker for the session harness: it answers every client packet the way
//! the specification requires (§3, §4.3, §4.4), keeps a session across connections when the
//! client asks for one, resends its own unacknowledged QoS 1/2 messages on resume, and checks
//! the client's side of the protocol as it goes (CONNECT first and once, packet identifiers
//! not reused while in flight, DUP only with QoS > 0, only client packet types).

use mqttrs::{Connack, ConnectReturnCode, Packet, Pid, QoS, QosPid, Suback, SubscribeReturnCodes};
use std::collections::{BTreeMap, BTreeSet};

/// Filters starting with this are refused with return code 0x80.
pub const REFUSED_PREFIX: &str = "deny";

/// At most this many broker→client QoS 1/2 messages unacknowledged (Mosquitto's
/// `max_inflight_messages` is 20; the client keeps 32 inbound QoS 2 identifiers).
pub const BROKER_INFLIGHT: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // named for what the broker waits for, as in §4.3
enum Outgoing {
    /// PUBLISH (QoS 1) sent, PUBACK awaited; the encoded PUBLISH for resending.
    AwaitingPuback(Vec<u8>),
    /// PUBLISH (QoS 2) sent, PUBREC awaited.
    AwaitingPubrec(Vec<u8>),
    /// PUBREL sent, PUBCOMP awaited.
    AwaitingPubcomp,
}

/// The model broker, one client.
#[derive(Debug, Default)]
pub struct Broker {
    /// Raw bytes reached the client at some point: a raw CONNACK can make it drop (or keep) a
    /// session this broker keeps (or dropped), so it may reuse a QoS 2 packet id this broker
    /// still holds. Set by the harness.
    pub session_may_differ: bool,
    /// CONNECT received on the current connection.
    connected: bool,
    /// The current connection asked for a clean session.
    clean_session: bool,
    /// Whether a session is stored for the client.
    has_session: bool,
    /// Filters the client is subscribed to (session state).
    pub subscriptions: BTreeSet<String>,
    /// QoS 2 identifiers received and not yet released (session state, §4.3.3 method B).
    inbound_qos2: BTreeSet<u16>,
    /// Broker→client messages in flight (session state).
    outgoing: BTreeMap<u16, Outgoing>,
    next_pid: u16,
    /// Client messages delivered to subscribers, keyed by the tag in their first 4 bytes.
    pub delivered: BTreeMap<u32, u32>,
    /// Set by the harness: answer the next CONNECT with this refusal code (1..=5).
    pub refuse_next: Option<u8>,
    /// Set by the harness: the next CONNECT finds no stored session (broker restarted).
    pub forget_session: bool,
    /// The session-present flag of the last CONNACK sent.
    pub last_session_present: Option<bool>,
    /// Whether any CONNACK after the first reported no session.
    pub session_ever_lost: bool,
    /// The last CONNECT threw a stored session away (the broker had forgotten it).
    pub last_connect_reset: bool,
    connacks: u32,
}

/// The first 4 bytes of a client payload: the harness's tag for the message.
pub fn tag_of(payload: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

fn encode(packet: &Packet<'_>, out: &mut Vec<u8>) {
    let mut buf = [0u8; 1024];
    let n = mqttrs::encode_slice(packet, &mut buf).expect("broker packet fits");
    out.extend_from_slice(&buf[..n]);
}

impl Broker {
    /// A broker with no stored session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether CONNECT arrived on the current connection and was accepted.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The network connection closed (either side).
    pub fn connection_closed(&mut self) {
        if self.connected && self.clean_session {
            // §3.1.2.4: a clean session lasts as long as the network connection.
            self.clear_session();
            self.has_session = false;
        }
        self.connected = false;
    }

    fn clear_session(&mut self) {
        self.subscriptions.clear();
        self.inbound_qos2.clear();
        self.outgoing.clear();
    }

    /// Broker→client QoS 1/2 messages not yet acknowledged.
    pub fn inflight(&self) -> usize {
        self.outgoing.len()
    }

    /// Handles one packet the client wrote (already decoded by the harness) and appends the
    /// answer to `out`. Returns `false` if the broker closes the connection.
    pub fn handle(&mut self, packet: &Packet<'_>, out: &mut Vec<u8>) -> bool {
        if !self.connected {
            let Packet::Connect(connect) = packet else {
                panic!("client sent {packet:?} before CONNECT");
            };
            return self.handle_connect(connect, out);
        }
        match packet {
            Packet::Connect(_) => panic!("client sent a second CONNECT"),
            Packet::Publish(publish) => {
                assert!(
                    !(publish.dup && publish.qospid == QosPid::AtMostOnce),
                    "DUP on a QoS 0 PUBLISH"
                );
                let tag = tag_of(publish.payload);
                match publish.qospid {
                    QosPid::AtMostOnce => self.deliver(tag),
                    QosPid::AtLeastOnce(pid) => {
                        self.deliver(tag);
                        encode(&Packet::Puback(pid), out);
                    }
                    QosPid::ExactlyOnce(pid) => {
                        if self.inbound_qos2.contains(&pid.get()) {
                            assert!(
                                publish.dup || self.session_may_differ,
                                "client reused packet id {} for a new QoS 2 PUBLISH before PUBCOMP",
                                pid.get()
                            );
                        } else {
                            self.inbound_qos2.insert(pid.get());
                            self.deliver(tag);
                        }
                        encode(&Packet::Pubrec(pid), out);
                    }
                }
            }
            Packet::Pubrel(pid) => {
                self.inbound_qos2.remove(&pid.get());
                encode(&Packet::Pubcomp(*pid), out);
            }
            Packet::Puback(pid) => {
                if matches!(
                    self.outgoing.get(&pid.get()),
                    Some(Outgoing::AwaitingPuback(_))
                ) {
                    self.outgoing.remove(&pid.get());
                }
            }
            Packet::Pubrec(pid) => match self.outgoing.get(&pid.get()) {
                Some(Outgoing::AwaitingPubrec(_)) | Some(Outgoing::AwaitingPubcomp) => {
                    self.outgoing.insert(pid.get(), Outgoing::AwaitingPubcomp);
                    encode(&Packet::Pubrel(*pid), out);
                }
                _ => {}
            },
            Packet::Pubcomp(pid) => {
                if matches!(
                    self.outgoing.get(&pid.get()),
                    Some(Outgoing::AwaitingPubcomp)
                ) {
                    self.outgoing.remove(&pid.get());
                }
            }
            Packet::Subscribe(subscribe) => {
                let mut return_codes = heapless::Vec::new();
                for topic in &subscribe.topics {
                    let code = if topic.topic_path.starts_with(REFUSED_PREFIX) {
                        SubscribeReturnCodes::Failure
                    } else {
                        self.subscriptions.insert(topic.topic_path.to_string());
                        SubscribeReturnCodes::Success(topic.qos)
                    };
                    return_codes.push(code).expect("at most 5 filters");
                }
                encode(
                    &Packet::Suback(Suback {
                        pid: subscribe.pid,
                        return_codes,
                    }),
                    out,
                );
            }
            Packet::Unsubscribe(unsubscribe) => {
                for topic in &unsubscribe.topics {
                    self.subscriptions.remove(topic.as_str());
                }
                encode(&Packet::Unsuback(unsubscribe.pid), out);
            }
            Packet::Pingreq => encode(&Packet::Pingresp, out),
            Packet::Disconnect => {
                self.connection_closed();
                return false;
            }
            other => panic!("client sent a packet only a server sends: {other:?}"),
        }
        true
    }

    fn handle_connect(&mut self, connect: &mqttrs::Connect<'_>, out: &mut Vec<u8>) -> bool {
        assert_eq!(connect.protocol, mqttrs::Protocol::MQTT311);
        if let Some(code) = self.refuse_next.take() {
            let code = match code {
                1 => ConnectReturnCode::RefusedProtocolVersion,
                2 => ConnectReturnCode::RefusedIdentifierRejected,
                3 => ConnectReturnCode::ServerUnavailable,
                4 => ConnectReturnCode::BadUsernamePassword,
                _ => ConnectReturnCode::NotAuthorized,
            };
            encode(
                &Packet::Connack(Connack {
                    session_present: false,
                    code,
                }),
                out,
            );
            return false;
        }
        let forget = core::mem::take(&mut self.forget_session);
        let session_present = !connect.clean_session && self.has_session && !forget;
        self.last_connect_reset = !connect.clean_session && self.has_session && forget;
        if !session_present {
            self.clear_session();
        }
        self.has_session = !connect.clean_session;
        self.clean_session = connect.clean_session;
        self.connected = true;
        if self.connacks > 0 && !session_present {
            self.session_ever_lost = true;
        }
        self.connacks += 1;
        self.last_session_present = Some(session_present);
        let code = ConnectReturnCode::Accepted;
        encode(
            &Packet::Connack(Connack {
                session_present,
                code,
            }),
            out,
        );
        // §4.4: on resume, resend unacknowledged PUBLISH (with DUP) and PUBREL.
        for (pid, state) in &self.outgoing {
            match state {
                Outgoing::AwaitingPuback(publish) | Outgoing::AwaitingPubrec(publish) => {
                    let mut publish = publish.clone();
                    publish[0] |= 0b1000;
                    out.extend_from_slice(&publish);
                }
                Outgoing::AwaitingPubcomp => {
                    let pid = Pid::try_from(*pid).expect("nonzero");
                    encode(&Packet::Pubrel(pid), out);
                }
            }
        }
        true
    }

    fn deliver(&mut self, tag: Option<u32>) {
        if let Some(tag) = tag {
            *self.delivered.entry(tag).or_default() += 1;
        }
    }

    /// Sends a message to the client if the window allows; `max` is the client's maximum
    /// packet size, which a configured broker respects. Returns whether one was sent.
    pub fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        max: usize,
        out: &mut Vec<u8>,
    ) -> bool {
        if !self.connected || (qos != QoS::AtMostOnce && self.outgoing.len() >= BROKER_INFLIGHT) {
            return false;
        }
        let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
        // Fixed header of at most 3 bytes below 16 KiB.
        let Some(room) = max.checked_sub(3 + 2 + topic.len() + id_len) else {
            return false;
        };
        let payload = &payload[..payload.len().min(room)];
        let qospid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            _ => {
                let pid = self.allocate_pid();
                if qos == QoS::AtLeastOnce {
                    QosPid::AtLeastOnce(pid)
                } else {
                    QosPid::ExactlyOnce(pid)
                }
            }
        };
        let mut encoded = Vec::new();
        let publish = mqttrs::Publish {
            dup: false,
            qospid,
            retain,
            topic_name: topic,
            payload,
        };
        encode(&Packet::Publish(publish), &mut encoded);
        match qospid {
            QosPid::AtMostOnce => {}
            QosPid::AtLeastOnce(pid) => {
                self.outgoing
                    .insert(pid.get(), Outgoing::AwaitingPuback(encoded.clone()));
            }
            QosPid::ExactlyOnce(pid) => {
                self.outgoing
                    .insert(pid.get(), Outgoing::AwaitingPubrec(encoded.clone()));
            }
        }
        out.extend_from_slice(&encoded);
        true
    }

    fn allocate_pid(&mut self) -> Pid {
        loop {
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.outgoing.contains_key(&self.next_pid) {
                return Pid::try_from(self.next_pid).expect("nonzero");
            }
        }
    }
}
