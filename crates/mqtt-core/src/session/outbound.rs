//! Messages to the broker (MQTT 3.1.1 §3.3, §4.3, §4.4): the outbox, a fixed table of slots
//! that holds each publish from [`Session::publish`] until it is acknowledged (PUBACK, or
//! PUBREC, PUBREL and PUBCOMP), the window of QoS 1/2 messages on the wire, and the resend
//! with DUP and the same packet identifier after a reconnect.

use super::zero_option::ZeroOption;
use super::{encode, Event, Session};
use crate::error::{ConfigError, Error, ResourceError};
use crate::{topic, QoS};
use heapless::Vec;
use log::{debug, warn};
use mqttrs::{Packet, Pid, QosPid};

/// The handle [`Session::publish`] returns and [`Event::Published`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not on the wire in this connection (new, or to be resent).
    Queued,
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    AwaitingAck,
    /// PUBREC received; PUBREL to be sent.
    ReleasePending,
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitingPubcomp,
}

pub(super) struct Slot<const B: usize> {
    id: MessageId,
    pub(super) packet_id: Option<Pid>,
    stage: Stage,
    /// The encoded PUBLISH; emptied once PUBREC makes the payload unnecessary.
    packet: Vec<u8, B>,
}

/// `SLOTS` messages of at most `SLOT_BYTES` encoded bytes each, queued or in flight.
pub(super) struct Outbox<const SLOTS: usize, const SLOT_BYTES: usize> {
    pub(super) slots: [ZeroOption<Slot<SLOT_BYTES>>; SLOTS],
    next_message_id: u32,
}

impl<'a, const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize>
    Session<'a, RX, SLOTS, SLOT_BYTES>
{
    /// Messages in the outbox: queued, in flight or awaiting their last acknowledgement.
    pub fn outbox_len(&self) -> usize {
        self.outbox.slots.iter().flatten().count()
    }

    /// QoS 1/2 messages on the wire in this connection.
    pub fn inflight_len(&self) -> usize {
        self.outbox.inflight_len()
    }

    /// Whether [`Session::publish`] would accept one more message now.
    pub fn outbox_has_room(&self) -> bool {
        self.outbox.slots.iter().any(ZeroOption::is_none)
    }

    /// Queues a message. Accepted while disconnected too: it waits in the outbox.
    pub fn publish(
        &mut self,
        topic_name: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<MessageId, Error> {
        topic::validate_name(topic_name)?;
        let free = self
            .outbox
            .slots
            .iter()
            .position(ZeroOption::is_none)
            .ok_or(ResourceError::OutboxFull)?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            _ => Some(self.allocate_packet_id()?),
        };
        let qospid = match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(pid)) => QosPid::AtLeastOnce(pid),
            (QoS::ExactlyOnce, Some(pid)) => QosPid::ExactlyOnce(pid),
            _ => QosPid::AtMostOnce,
        };
        let publish = mqttrs::Publish {
            dup: false,
            qospid,
            retain,
            topic_name,
            payload,
        };
        let mut packet: Vec<u8, SLOT_BYTES> = Vec::new();
        packet
            .resize_default(SLOT_BYTES)
            .map_err(|_| ConfigError::PacketTooLarge)?;
        let len = mqttrs::encode_slice(&Packet::Publish(publish), &mut packet)
            .map_err(|_| ConfigError::PacketTooLarge)?;
        packet.truncate(len);
        let outbox = &mut self.outbox;
        let id = MessageId(outbox.next_message_id);
        outbox.next_message_id = outbox.next_message_id.wrapping_add(1);
        if let Some(slot) = outbox.slots.get_mut(free) {
            *slot = ZeroOption::Some(Slot {
                id,
                packet_id,
                stage: Stage::Queued,
                packet,
            });
        }
        debug!("queued {id:?} qos {qos:?} for {topic_name}");
        Ok(id)
    }
}

impl<const SLOTS: usize, const SLOT_BYTES: usize> Outbox<SLOTS, SLOT_BYTES> {
    pub(super) const fn new() -> Self {
        Self {
            slots: [const { ZeroOption::None }; SLOTS],
            next_message_id: 0,
        }
    }

    /// Whether a message in the outbox holds this packet identifier.
    pub(super) fn uses(&self, packet_id: Pid) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| s.packet_id == Some(packet_id))
    }

    fn inflight_len(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.stage != Stage::Queued)
            .count()
    }

    /// CONNACK accepted: what was on the wire goes out again (§4.4).
    pub(super) fn restore_after_connect(&mut self, session_present: bool) {
        for slot in self.slots.iter_mut().flatten() {
            match slot.stage {
                Stage::Queued => {}
                Stage::AwaitingAck => {
                    slot.stage = Stage::Queued;
                    if let Some(first) = slot.packet.first_mut() {
                        if session_present {
                            *first |= 0b1000; // DUP (§3.3.1.1), same packet identifier
                        } else {
                            *first &= !0b1000; // a new message to a broker without state
                        }
                    }
                }
                // PUBREC was received, the broker owns the message: resend PUBREL (§4.4). A
                // broker without the session answers PUBCOMP for an unknown id all the same.
                Stage::ReleasePending | Stage::AwaitingPubcomp => {
                    slot.stage = Stage::ReleasePending
                }
            }
        }
    }

    pub(super) fn handle_pubrec(&mut self, pid: Pid) {
        let slot = self
            .slots
            .iter_mut()
            .flatten()
            .find(|s| s.packet_id == Some(pid));
        match slot {
            Some(slot) if slot.stage != Stage::Queued => {
                slot.stage = Stage::ReleasePending;
                slot.packet.clear();
            }
            _ => warn!("PUBREC for unknown id {}", pid.get()),
        }
    }

    /// PUBACK (`expected` QoS 1) or PUBCOMP (QoS 2): the message leaves the outbox.
    pub(super) fn complete<'p>(&mut self, pid: Pid, expected: QoS) -> Option<Event<'p>> {
        let awaited = match expected {
            QoS::AtLeastOnce => Stage::AwaitingAck,
            _ => Stage::AwaitingPubcomp,
        };
        let found = self.slots.iter_mut().find(|s| {
            s.as_ref()
                .is_some_and(|s| s.packet_id == Some(pid) && s.stage == awaited)
        });
        match found.and_then(ZeroOption::take) {
            Some(slot) => {
                debug!("{:?} acknowledged", slot.id);
                Some(Event::Published(slot.id))
            }
            None => {
                warn!("acknowledgement for unknown id {}", pid.get());
                None
            }
        }
    }

    /// Writes the PUBREL of the oldest message that needs one into `buf`.
    pub(super) fn transmit_pubrel(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        let oldest = self
            .slots
            .iter_mut()
            .flatten()
            .filter(|s| s.stage == Stage::ReleasePending)
            .min_by_key(|s| s.id);
        let Some(slot) = oldest else {
            return Ok(None);
        };
        let Some(pid) = slot.packet_id else {
            return Ok(None);
        };
        let n = encode(&Packet::Pubrel(pid), buf)?;
        slot.stage = Stage::AwaitingPubcomp;
        Ok(Some(n))
    }

    /// Writes the oldest queued PUBLISH into `buf`, QoS 1/2 only while fewer than `window`
    /// are on the wire.
    pub(super) fn transmit_publish(
        &mut self,
        window: usize,
        buf: &mut [u8],
    ) -> Result<Option<usize>, Error> {
        let window_full = self.inflight_len() >= window;
        let next = self
            .slots
            .iter_mut()
            .flatten()
            .filter(|s| s.stage == Stage::Queued && (s.packet_id.is_none() || !window_full))
            .min_by_key(|s| s.id);
        let Some(slot) = next else {
            return Ok(None);
        };
        let dst = buf
            .get_mut(..slot.packet.len())
            .ok_or(ResourceError::TransmitBufferTooSmall)?;
        dst.copy_from_slice(&slot.packet);
        let n = slot.packet.len();
        let id = slot.id;
        if slot.packet_id.is_some() {
            slot.stage = Stage::AwaitingAck;
        } else if let Some(emptied) = self
            .slots
            .iter_mut()
            .find(|s| s.as_ref().is_some_and(|s| s.id == id))
        {
            // QoS 0: nothing comes back; the slot is free once written.
            *emptied = ZeroOption::None;
        }
        debug!("sending PUBLISH {id:?}");
        Ok(Some(n))
    }
}
