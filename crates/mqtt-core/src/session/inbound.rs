//! Messages from the broker (MQTT 3.1.1 §3.3, §4.3): PUBLISH received at QoS 0, 1 and 2, the
//! PUBACK, PUBREC and PUBCOMP the client owes for them, and the QoS 2 packet identifiers kept
//! until PUBREL so that a message is delivered once (§4.3.3, method B).

use super::{encode, Event};
use crate::error::{Error, ResourceError};
use crate::QoS;
use heapless::{Deque, Vec};
use log::{debug, warn};
use mqttrs::{Packet, Pid, QosPid};

/// Inbound QoS 2 packet identifiers remembered until PUBREL. Mosquitto keeps 20 in flight
/// while connected, but resumes a stored session with up to 80 at once.
pub const MAX_INBOUND_QOS2: usize = 64;
/// Acknowledgements of inbound messages waiting to be written.
const MAX_PENDING_ACKS: usize = 16;

/// A message received from the broker, borrowed from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// The QoS it was delivered with.
    pub qos: QoS,
    /// Set when the broker sends it from its retained store.
    pub retain: bool,
    /// DUP: the broker may have sent it before (QoS 1 only; QoS 2 duplicates are suppressed).
    pub duplicate: bool,
}

#[derive(Debug, Clone, Copy)]
enum Ack {
    Puback(Pid),
    Pubrec(Pid),
    Pubcomp(Pid),
}

/// The client's side of the flows the broker starts.
pub(super) struct Inbound {
    /// QoS 2 messages delivered whose PUBREL has not come yet.
    qos2: Vec<Pid, MAX_INBOUND_QOS2>,
    acks: Deque<Ack, MAX_PENDING_ACKS>,
}

impl Inbound {
    pub(super) const fn new() -> Self {
        Self {
            qos2: Vec::new(),
            acks: Deque::new(),
        }
    }

    /// A new transport is open: acknowledgements owed on the old one are dropped (a broker
    /// that kept the session sends those messages again).
    pub(super) fn restart(&mut self) {
        self.acks.clear();
    }

    /// CONNACK accepted. Without a session the broker has forgotten the QoS 2 messages it
    /// sent: no PUBREL comes for them, and new messages may reuse their identifiers.
    pub(super) fn restore_after_connect(&mut self, session_present: bool) {
        if !session_present {
            self.qos2.clear();
        }
    }

    /// No room for another acknowledgement: received frames wait until these are written.
    pub(super) fn acks_full(&self) -> bool {
        self.acks.is_full()
    }

    fn queue_ack(&mut self, ack: Ack) -> Result<(), Error> {
        // poll_event parses only while there is room, so this cannot fail; if it ever did,
        // dropping the connection is the honest answer.
        self.acks
            .push_back(ack)
            .map_err(|_| ResourceError::TransmitBufferTooSmall.into())
    }

    pub(super) fn handle_publish<'p>(
        &mut self,
        publish: mqttrs::Publish<'p>,
    ) -> Result<Option<Event<'p>>, Error> {
        let Some(qos) = self.acknowledge(publish.qospid)? else {
            return Ok(None);
        };
        Ok(Some(Event::Message(Message {
            topic: publish.topic_name,
            payload: publish.payload,
            qos,
            retain: publish.retain,
            duplicate: publish.dup,
        })))
    }

    /// Queues what a PUBLISH of this QoS and packet identifier is owed. `None`: a QoS 2
    /// duplicate, not to be delivered again.
    pub(super) fn acknowledge(&mut self, qospid: QosPid) -> Result<Option<QoS>, Error> {
        Ok(Some(match qospid {
            QosPid::AtMostOnce => QoS::AtMostOnce,
            QosPid::AtLeastOnce(pid) => {
                self.queue_ack(Ack::Puback(pid))?;
                QoS::AtLeastOnce
            }
            QosPid::ExactlyOnce(pid) => {
                if self.qos2.contains(&pid) {
                    // Delivered already; only the PUBREC was lost (§4.3.3, method B).
                    self.queue_ack(Ack::Pubrec(pid))?;
                    debug!("duplicate QoS 2 id {} suppressed", pid.get());
                    return Ok(None);
                }
                if self.qos2.push(pid).is_err() {
                    // Dropping the connection would meet the same burst again after every
                    // reconnect. Delivering without remembering the id risks one duplicate,
                    // and only if this PUBREC is lost with the connection.
                    warn!("QoS 2 id table full: id {} delivered untracked", pid.get());
                }
                self.queue_ack(Ack::Pubrec(pid))?;
                QoS::ExactlyOnce
            }
        }))
    }

    pub(super) fn handle_pubrel(&mut self, pid: Pid) -> Result<(), Error> {
        self.qos2.retain(|p| *p != pid);
        self.queue_ack(Ack::Pubcomp(pid))
    }

    /// Writes the oldest acknowledgement owed into `buf`; on error it stays queued.
    pub(super) fn transmit_ack(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let Some(ack) = self.acks.front().copied() else {
            return Ok(None);
        };
        let packet = match ack {
            Ack::Puback(pid) => Packet::Puback(pid),
            Ack::Pubrec(pid) => Packet::Pubrec(pid),
            Ack::Pubcomp(pid) => Packet::Pubcomp(pid),
        };
        let n = encode(&packet, buf)?;
        self.acks.pop_front();
        Ok(Some(n))
    }
}

/// Where a received message's topic and payload sit in its frame.
pub(super) struct MessageLayout {
    topic: core::ops::Range<usize>,
    payload: core::ops::Range<usize>,
    qos: QoS,
    retain: bool,
    duplicate: bool,
}

impl MessageLayout {
    pub(super) fn of(frame: &[u8], message: &Message<'_>) -> Self {
        // The payload runs to the end of the frame; the topic starts after the fixed header
        // and its 2-byte length (both validated by framing).
        let payload_start = frame.len().saturating_sub(message.payload.len());
        let id_len = if message.qos == QoS::AtMostOnce { 0 } else { 2 };
        let topic_end = payload_start.saturating_sub(id_len);
        let topic_start = topic_end.saturating_sub(message.topic.len());
        Self {
            topic: topic_start..topic_end,
            payload: payload_start..frame.len(),
            qos: message.qos,
            retain: message.retain,
            duplicate: message.duplicate,
        }
    }

    pub(super) fn message(self, frame: &[u8]) -> Event<'_> {
        let topic = frame
            .get(self.topic)
            .and_then(|t| core::str::from_utf8(t).ok());
        Event::Message(Message {
            topic: topic.unwrap_or_default(),
            payload: frame.get(self.payload).unwrap_or_default(),
            qos: self.qos,
            retain: self.retain,
            duplicate: self.duplicate,
        })
    }
}
