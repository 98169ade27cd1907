//! What the network layer's answers mean to the device, sans IO: where the supervisor stands
//! as `mqtt status` reports it ([`LinkState`]), and whether a DHCPv4 lease event ends the
//! connections on the address the device had ([`LeaseWatch`], RFC 2131 §4.4.5).

/// Where the MQTT thread stands, as `mqtt status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for the network (DHCP on the board).
    WaitingForNetwork,
    /// Resolving, TCP connect and TLS handshake.
    Connecting,
    /// TLS is up and MQTT CONNECT sent; no CONNACK yet.
    MqttConnecting,
    /// CONNACK received: the broker took the device.
    Connected,
    /// Waiting out the reconnect delay.
    BackingOff,
}

impl LinkState {
    /// The state of a TLS connection, by whether its CONNACK came.
    pub fn of_connection(connack_seen: bool) -> Self {
        if connack_seen {
            LinkState::Connected
        } else {
            LinkState::MqttConnecting
        }
    }

    /// The state in words, as `mqtt status` prints it (tests match these).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::WaitingForNetwork => "waiting for network",
            LinkState::Connecting => "connecting",
            LinkState::MqttConnecting => "mqtt connecting",
            LinkState::Connected => "connected",
            LinkState::BackingOff => "backing off",
        }
    }
}

/// The address DHCPv4 last bound. Zephyr keeps an address that a TCP connection still uses
/// after its lease ends, so these events, not the interface, tell that the connection's
/// address is no longer the device's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseWatch {
    bound: Option<[u8; 4]>,
}

impl LeaseWatch {
    /// No lease yet.
    pub const fn new() -> Self {
        LeaseWatch { bound: None }
    }

    /// DHCPv4 bound `address`. Whether connections made on the previous lease are now on an
    /// address that is not the device's: a renewal binds the same address again and ends
    /// nothing; the first lease ends nothing either.
    pub fn bound(&mut self, address: [u8; 4]) -> bool {
        let previous = self.bound.replace(address);
        previous.is_some_and(|previous| previous != address)
    }

    /// DHCPv4 stopped: the address is gone, and the next lease is a first one.
    pub fn stopped(&mut self) {
        self.bound = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_connection_is_mqtt_connecting_until_its_connack() {
        assert_eq!(LinkState::of_connection(false), LinkState::MqttConnecting);
        assert_eq!(LinkState::of_connection(true), LinkState::Connected);
        assert_eq!(LinkState::of_connection(false).as_str(), "mqtt connecting");
        assert_eq!(LinkState::of_connection(true).as_str(), "connected");
    }

    #[test]
    fn every_state_has_its_own_words() {
        let states = [
            LinkState::WaitingForNetwork,
            LinkState::Connecting,
            LinkState::MqttConnecting,
            LinkState::Connected,
            LinkState::BackingOff,
        ];
        for (i, a) in states.iter().enumerate() {
            for b in states.iter().skip(i + 1) {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
        assert_eq!(LinkState::Connecting.as_str(), "connecting");
        assert_eq!(LinkState::BackingOff.as_str(), "backing off");
        assert_eq!(LinkState::WaitingForNetwork.as_str(), "waiting for network");
    }

    #[test]
    fn a_renewal_of_the_same_address_ends_nothing() {
        let mut lease = LeaseWatch::new();
        assert!(!lease.bound([192, 0, 2, 100]), "the first lease");
        assert!(!lease.bound([192, 0, 2, 100]), "a renewal");
    }

    #[test]
    fn a_lease_with_another_address_ends_the_connections_on_the_old() {
        let mut lease = LeaseWatch::new();
        lease.bound([192, 0, 2, 100]);
        assert!(lease.bound([192, 0, 2, 101]));
        assert!(!lease.bound([192, 0, 2, 101]));
    }

    #[test]
    fn after_dhcp_stopped_the_next_lease_is_a_first_one() {
        let mut lease = LeaseWatch::new();
        lease.bound([192, 0, 2, 100]);
        lease.stopped();
        assert!(!lease.bound([192, 0, 2, 101]));
    }
}
