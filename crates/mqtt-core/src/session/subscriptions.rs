//! Subscriptions (MQTT 3.1.1 §3.8–§3.11): SUBSCRIBE and UNSUBSCRIBE requests, their SUBACK
//! and UNSUBACK, and the table of filters that is restored after a reconnect without a
//! session.

use super::{encode, Event, Session};
use crate::error::{ConfigError, Error, ProtocolError, ResourceError};
use crate::{topic, QoS};
use heapless::{String, Vec};
use log::{debug, warn};
use mqttrs::{Packet, Pid, SubscribeReturnCodes};

/// Filters per SUBSCRIBE/UNSUBSCRIBE packet: the fixed capacity of `mqttrs`' no_std types.
pub const MAX_FILTERS_PER_PACKET: usize = 5;
/// Longest topic filter kept for re-subscribing.
pub const MAX_FILTER_LEN: usize = 128;
/// Subscriptions remembered for re-subscribing after a reconnect.
pub const MAX_SUBSCRIPTIONS: usize = 8;

/// The result for one filter of a SUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeResult {
    /// Granted with this maximum QoS.
    Granted(QoS),
    /// Refused by the broker (return code 0x80); the filter is forgotten.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubscriptionState {
    SubscribeUnsent,
    AwaitingSuback,
    Active,
    UnsubscribeUnsent,
    AwaitingUnsuback,
}

/// One filter of one SUBSCRIBE or UNSUBSCRIBE request. While a request awaits its
/// acknowledgement its entries stay, in order, so that SUBACK return codes line up with the
/// filters that were sent; a newer request for the same filter marks them `superseded`, and
/// they go when their acknowledgement comes (or at the next reconnect).
struct Subscription {
    filter: String<MAX_FILTER_LEN>,
    qos: QoS,
    /// The request this filter belongs to; filters of one request travel in one packet.
    packet_id: Pid,
    state: SubscriptionState,
    superseded: bool,
}

impl Subscription {
    fn awaiting_ack(&self) -> bool {
        matches!(
            self.state,
            SubscriptionState::AwaitingSuback | SubscriptionState::AwaitingUnsuback
        )
    }
}

/// The filters of every request not yet acknowledged, and those granted.
pub(super) struct Subscriptions {
    entries: Vec<Subscription, MAX_SUBSCRIPTIONS>,
}

impl<'a, const RX: usize, const SLOTS: usize, const SLOT_BYTES: usize>
    Session<'a, RX, SLOTS, SLOT_BYTES>
{
    /// Subscribes to up to five filters in one packet; returns its packet identifier, which
    /// [`Event::Subscribed`] reports. The filters are restored after a reconnect without a
    /// session. A filter subscribed again replaces the earlier subscription (§3.8.4).
    pub fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<u16, Error> {
        let mut names: Vec<&str, MAX_FILTERS_PER_PACKET> = Vec::new();
        for (filter, _) in filters {
            let _ = names.push(filter);
        }
        self.subscriptions.check_request(filters.len(), &names)?;
        let packet_id = self.allocate_packet_id()?;
        self.subscriptions.supersede(&names);
        for (filter, qos) in filters {
            let state = SubscriptionState::SubscribeUnsent;
            self.subscriptions
                .push_entry(filter, *qos, packet_id, state)?;
        }
        Ok(packet_id.get())
    }

    /// Unsubscribes from up to five filters in one packet; returns its packet identifier,
    /// which [`Event::Unsubscribed`] reports. The filters are no longer restored.
    pub fn unsubscribe(&mut self, filters: &[&str]) -> Result<u16, Error> {
        self.subscriptions.check_request(filters.len(), filters)?;
        let packet_id = self.allocate_packet_id()?;
        self.subscriptions.supersede(filters);
        for filter in filters {
            let state = SubscriptionState::UnsubscribeUnsent;
            self.subscriptions
                .push_entry(filter, QoS::AtMostOnce, packet_id, state)?;
        }
        Ok(packet_id.get())
    }
}

impl Subscriptions {
    pub(super) const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// Whether a request not yet forgotten holds this packet identifier.
    pub(super) fn uses(&self, packet_id: Pid) -> bool {
        self.entries.iter().any(|s| s.packet_id == packet_id)
    }

    /// Validates a request's filters and that the table has room for it.
    fn check_request(&self, count: usize, filters: &[&str]) -> Result<(), Error> {
        if count == 0 || count > MAX_FILTERS_PER_PACKET {
            return Err(ConfigError::TooManyFilters.into());
        }
        for (index, filter) in filters.iter().enumerate() {
            topic::validate_filter(filter)?;
            if filter.len() > MAX_FILTER_LEN {
                return Err(ConfigError::InvalidTopicFilter.into());
            }
            if filters.iter().skip(index + 1).any(|other| other == filter) {
                return Err(ConfigError::DuplicateFilter.into());
            }
        }
        // Entries a new request replaces go at once unless they await an acknowledgement.
        let freed = self
            .entries
            .iter()
            .filter(|s| !s.awaiting_ack() && filters.contains(&s.filter.as_str()))
            .count();
        if self.entries.len() - freed + filters.len() > MAX_SUBSCRIPTIONS {
            return Err(ResourceError::SubscriptionsFull.into());
        }
        Ok(())
    }

    /// A newer request names these filters: older entries for them go, or, while they await
    /// an acknowledgement, are marked to go when it comes.
    fn supersede(&mut self, filters: &[&str]) {
        self.entries
            .retain(|s| s.awaiting_ack() || !filters.contains(&s.filter.as_str()));
        for s in self.entries.iter_mut() {
            if filters.contains(&s.filter.as_str()) {
                s.superseded = true;
            }
        }
    }

    fn push_entry(
        &mut self,
        filter: &str,
        qos: QoS,
        packet_id: Pid,
        state: SubscriptionState,
    ) -> Result<(), Error> {
        let mut owned = String::new();
        owned
            .push_str(filter)
            .map_err(|_| ConfigError::InvalidTopicFilter)?;
        let entry = Subscription {
            filter: owned,
            qos,
            packet_id,
            state,
            superseded: false,
        };
        self.entries
            .push(entry)
            .map_err(|_| ResourceError::SubscriptionsFull.into())
    }

    /// CONNACK accepted: requests not acknowledged go out again, and without a session so do
    /// the granted subscriptions.
    pub(super) fn restore_after_connect(&mut self, session_present: bool) {
        // Superseded entries only waited to line up with an acknowledgement that is lost
        // with the connection; the requests that replaced them are still here.
        self.entries.retain(|s| !s.superseded);
        for s in self.entries.iter_mut() {
            s.state = match s.state {
                SubscriptionState::Active if session_present => SubscriptionState::Active,
                SubscriptionState::Active
                | SubscriptionState::AwaitingSuback
                | SubscriptionState::SubscribeUnsent => SubscriptionState::SubscribeUnsent,
                SubscriptionState::AwaitingUnsuback | SubscriptionState::UnsubscribeUnsent => {
                    SubscriptionState::UnsubscribeUnsent
                }
            };
        }
    }

    /// Writes the oldest request not yet sent, as one SUBSCRIBE or UNSUBSCRIBE, into `buf`.
    pub(super) fn transmit_request(&mut self, buf: &mut [u8]) -> Result<Option<usize>, Error> {
        use SubscriptionState::*;
        let Some(first) = self
            .entries
            .iter()
            .find(|s| matches!(s.state, SubscribeUnsent | UnsubscribeUnsent))
        else {
            return Ok(None);
        };
        let (packet_id, unsent) = (first.packet_id, first.state);
        let batch = || {
            self.entries
                .iter()
                .filter(move |s| s.packet_id == packet_id && s.state == unsent)
                .take(MAX_FILTERS_PER_PACKET)
        };
        let n = if unsent == SubscribeUnsent {
            let mut topics = Vec::new();
            for s in batch() {
                let topic_path = String::from(s.filter.as_str());
                // Capacity is MAX_FILTERS_PER_PACKET, and take() stops there.
                let _ = topics.push(mqttrs::SubscribeTopic {
                    topic_path,
                    qos: s.qos,
                });
            }
            encode(
                &Packet::Subscribe(mqttrs::Subscribe {
                    pid: packet_id,
                    topics,
                }),
                buf,
            )?
        } else {
            let mut topics = Vec::new();
            for s in batch() {
                let _ = topics.push(String::from(s.filter.as_str()));
            }
            encode(
                &Packet::Unsubscribe(mqttrs::Unsubscribe {
                    pid: packet_id,
                    topics,
                }),
                buf,
            )?
        };
        let awaiting = if unsent == SubscribeUnsent {
            AwaitingSuback
        } else {
            AwaitingUnsuback
        };
        self.entries
            .iter_mut()
            .filter(|s| s.packet_id == packet_id && s.state == unsent)
            .for_each(|s| s.state = awaiting);
        debug!("sending {:?} id {}", unsent, packet_id.get());
        Ok(Some(n))
    }

    pub(super) fn handle_suback<'p>(
        &mut self,
        suback: mqttrs::Suback,
    ) -> Result<Option<Event<'p>>, Error> {
        let pid = suback.pid;
        let awaiting =
            |s: &Subscription| s.packet_id == pid && s.state == SubscriptionState::AwaitingSuback;
        let count = self.entries.iter().filter(|s| awaiting(s)).count();
        if count == 0 {
            warn!("SUBACK for unknown id {}", pid.get());
            return Ok(None);
        }
        if count != suback.return_codes.len() {
            return Err(ProtocolError::SubackMismatch.into());
        }
        let mut results = Vec::new();
        let mut codes = suback.return_codes.iter();
        for s in self.entries.iter_mut().filter(|s| awaiting(s)) {
            let result = match codes.next() {
                Some(SubscribeReturnCodes::Success(granted)) => {
                    if !s.superseded {
                        s.state = SubscriptionState::Active;
                    }
                    SubscribeResult::Granted(*granted)
                }
                _ => {
                    warn!("broker refused subscription {}", s.filter);
                    SubscribeResult::Refused
                }
            };
            let _ = results.push(result);
        }
        // Refused and superseded filters are forgotten: they must not be restored after a
        // reconnect.
        self.entries.retain(|s| !awaiting(s));
        Ok(Some(Event::Subscribed {
            packet_id: pid.get(),
            results,
        }))
    }

    pub(super) fn handle_unsuback<'p>(&mut self, pid: Pid) -> Option<Event<'p>> {
        let before = self.entries.len();
        // The filters of this request are gone from the broker: forget them.
        self.entries
            .retain(|s| !(s.packet_id == pid && s.state == SubscriptionState::AwaitingUnsuback));
        if self.entries.len() == before {
            warn!("UNSUBACK for unknown id {}", pid.get());
            return None;
        }
        Some(Event::Unsubscribed {
            packet_id: pid.get(),
        })
    }
}
