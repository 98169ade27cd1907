//! Broker endpoints: the `host:port` list a device tries in turn when one broker is more than
//! one machine (a cluster's nodes, a primary and a standby). Each host name may resolve to
//! several addresses; the firmware tries every one of those too.
//!
//! The order of tries starts at the endpoint that last worked, so a device stays on a healthy
//! node and moves on only when it fails ([`Rotation`]). A refusal that needs a person puts the
//! device on the slow reconnect schedule only once every endpoint has refused: another node
//! may take what one refused.

use heapless::Vec;
use mqtt_core::Recovery;

/// Most endpoints a device keeps.
pub const MAX_ENDPOINTS: usize = 4;

/// One broker endpoint: the host name is also the name its certificate must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint<'a> {
    /// DNS name (or address literal) of the broker.
    pub host: &'a str,
    /// TCP port of its TLS listener.
    pub port: u16,
}

/// Why an endpoint list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointError {
    /// The list holds no endpoint.
    Empty,
    /// More than [`MAX_ENDPOINTS`] endpoints.
    TooMany,
    /// An entry is not `host:port` with a host of 1 to 253 bytes.
    BadHost,
    /// A port that is not a number from 1 to 65535.
    BadPort,
}

impl EndpointError {
    /// The reason in words, for a log line.
    pub fn as_str(&self) -> &'static str {
        match self {
            EndpointError::Empty => "no endpoint in the list",
            EndpointError::TooMany => "more than 4 endpoints",
            EndpointError::BadHost => "an entry is not host:port",
            EndpointError::BadPort => "a port is not a number from 1 to 65535",
        }
    }
}

/// The endpoints of `list` (`host:port`, separated by spaces or commas), or of
/// `default_host:default_port` when `list` is blank.
pub fn parse_endpoints<'a>(
    list: &'a str,
    default_host: &'a str,
    default_port: u16,
) -> Result<Vec<Endpoint<'a>, MAX_ENDPOINTS>, EndpointError> {
    let mut endpoints = Vec::new();
    let entries = list.split([' ', ',']).filter(|entry| !entry.is_empty());
    for entry in entries {
        let (host, port) = entry.rsplit_once(':').ok_or(EndpointError::BadHost)?;
        if host.is_empty() || host.len() > 253 || host.contains(':') {
            return Err(EndpointError::BadHost);
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or(EndpointError::BadPort)?;
        endpoints
            .push(Endpoint { host, port })
            .map_err(|_| EndpointError::TooMany)?;
    }
    if endpoints.is_empty() {
        if default_host.is_empty() || default_port == 0 {
            return Err(EndpointError::Empty);
        }
        endpoints
            .push(Endpoint {
                host: default_host,
                port: default_port,
            })
            .map_err(|_| EndpointError::TooMany)?;
    }
    Ok(endpoints)
}

/// The order in which to try `count` endpoints: from the one that worked last, round the list.
pub fn try_order(count: usize, last_good: usize) -> impl Iterator<Item = usize> {
    let start = if count == 0 { 0 } else { last_good % count };
    (0..count).map(move |offset| (start + offset) % count)
}

/// Which endpoint a connection attempt tries when, and what waiting helps after it: the
/// firmware reports what each try and each connection came to, this says what follows.
#[derive(Debug, Clone)]
pub struct Rotation<'a> {
    endpoints: Vec<Endpoint<'a>, MAX_ENDPOINTS>,
    /// Where the next attempt starts: the endpoint that took the last connection.
    last_good: usize,
    /// Connections in a row that ended without CONNACK 0 (refused, or closed before it).
    refused_in_row: usize,
}

impl<'a> Rotation<'a> {
    /// Starts at the first endpoint of the list.
    pub fn new(endpoints: Vec<Endpoint<'a>, MAX_ENDPOINTS>) -> Self {
        Rotation {
            endpoints,
            last_good: 0,
            refused_in_row: 0,
        }
    }

    /// One attempt's endpoint indices, in the order to try them: every endpoint once, from
    /// the one that took the last connection. It does not borrow the rotation, so that the
    /// attempt can report back ([`Rotation::connected`]) as it goes.
    pub fn attempt(&self) -> impl Iterator<Item = usize> {
        try_order(self.endpoints.len(), self.last_good)
    }

    /// The endpoint at `index`.
    pub fn endpoint(&self, index: usize) -> Option<Endpoint<'a>> {
        self.endpoints.get(index).copied()
    }

    /// The endpoint at `index` took the TLS connection: the next attempt starts there.
    pub fn connected(&mut self, index: usize) {
        self.last_good = index;
    }

    /// A connection ended (`connack_seen`: the broker accepted the device first), for a
    /// cause whose own verdict is `recovery`. What the backoff should do: a connection the
    /// broker never accepted moves the next attempt on to the next endpoint, and counts as
    /// needing a person only once every endpoint has done it in a row.
    pub fn connection_ended(&mut self, connack_seen: bool, recovery: Recovery) -> Recovery {
        if connack_seen {
            self.refused_in_row = 0;
            return recovery;
        }
        self.refused_in_row = self.refused_in_row.saturating_add(1);
        self.last_good = (self.last_good + 1) % self.endpoints.len().max(1);
        if self.refused_in_row >= self.endpoints.len() {
            recovery
        } else {
            Recovery::Retry
        }
    }
}

/// The failed tries of one attempt merged into one verdict: waiting helps if it helps any
/// endpoint, so only when every endpoint's failure needs a person does the slow schedule
/// apply. No failure at all (no endpoint tried) is a plain retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptOutcome {
    recovery: Option<Recovery>,
}

impl AttemptOutcome {
    /// One endpoint's try failed, with this verdict.
    pub fn failed(&mut self, recovery: Recovery) {
        self.recovery = Some(match (self.recovery, recovery) {
            (Some(Recovery::Retry), _) | (_, Recovery::Retry) => Recovery::Retry,
            _ => Recovery::NeedsAttention,
        });
    }

    /// What the backoff should do after the attempt.
    pub fn recovery(&self) -> Recovery {
        self.recovery.unwrap_or(Recovery::Retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec as StdVec;

    #[test]
    fn a_blank_list_means_the_single_configured_broker() {
        let endpoints = parse_endpoints("  ", "broker.example.com", 8883).unwrap();
        assert_eq!(
            endpoints.as_slice(),
            [Endpoint {
                host: "broker.example.com",
                port: 8883
            }]
        );
    }

    #[test]
    fn entries_are_separated_by_spaces_or_commas() {
        let endpoints = parse_endpoints("a.example:8883, b.example:443 ,c:1", "x", 1).unwrap();
        let hosts: StdVec<_> = endpoints.iter().map(|e| (e.host, e.port)).collect();
        assert_eq!(hosts, [("a.example", 8883), ("b.example", 443), ("c", 1)]);
    }

    #[test]
    fn rejects_missing_or_bad_ports_and_hosts() {
        assert_eq!(
            parse_endpoints("a.example", "x", 1),
            Err(EndpointError::BadHost)
        );
        assert_eq!(
            parse_endpoints(":8883", "x", 1),
            Err(EndpointError::BadHost)
        );
        assert_eq!(parse_endpoints("a:0", "x", 1), Err(EndpointError::BadPort));
        assert_eq!(
            parse_endpoints("a:65536", "x", 1),
            Err(EndpointError::BadPort)
        );
        assert_eq!(
            parse_endpoints("a:http", "x", 1),
            Err(EndpointError::BadPort)
        );
        assert_eq!(
            parse_endpoints("::1:8883", "x", 1),
            Err(EndpointError::BadHost)
        );
    }

    #[test]
    fn rejects_more_endpoints_than_it_keeps() {
        assert_eq!(
            parse_endpoints("a:1 b:2 c:3 d:4 e:5", "x", 1),
            Err(EndpointError::TooMany)
        );
        assert_eq!(parse_endpoints("a:1 b:2 c:3 d:4", "x", 1).unwrap().len(), 4);
    }

    #[test]
    fn an_empty_default_with_a_blank_list_is_an_error() {
        assert_eq!(parse_endpoints("", "", 8883), Err(EndpointError::Empty));
    }

    #[test]
    fn tries_start_at_the_endpoint_that_last_worked_and_cover_every_one_once() {
        assert_eq!(try_order(3, 0).collect::<StdVec<_>>(), [0, 1, 2]);
        assert_eq!(try_order(3, 2).collect::<StdVec<_>>(), [2, 0, 1]);
        assert_eq!(try_order(3, 7).collect::<StdVec<_>>(), [1, 2, 0]);
        assert_eq!(try_order(0, 5).count(), 0);
    }

    fn rotation(list: &str) -> Rotation<'_> {
        Rotation::new(parse_endpoints(list, "x", 1).unwrap())
    }

    fn hosts<'a>(rotation: &Rotation<'a>) -> StdVec<&'a str> {
        let endpoints = rotation.attempt().map(|i| rotation.endpoint(i));
        endpoints.map(|e| e.unwrap().host).collect()
    }

    #[test]
    fn an_attempt_starts_at_the_endpoint_that_took_the_last_connection() {
        let mut rotation = rotation("a:1 b:2 c:3");
        assert_eq!(hosts(&rotation), ["a", "b", "c"]);
        rotation.connected(2);
        assert_eq!(hosts(&rotation), ["c", "a", "b"]);
        let indices: StdVec<_> = rotation.attempt().collect();
        assert_eq!(indices, [2, 0, 1]);
    }

    #[test]
    fn a_connection_without_connack_moves_the_next_attempt_to_the_next_endpoint() {
        let mut rotation = rotation("a:1 b:2 c:3");
        rotation.connected(1);
        rotation.connection_ended(false, Recovery::Retry);
        assert_eq!(hosts(&rotation), ["c", "a", "b"]);
        rotation.connection_ended(false, Recovery::Retry);
        assert_eq!(hosts(&rotation), ["a", "b", "c"]);
    }

    #[test]
    fn a_connection_the_broker_accepted_keeps_its_endpoint_first() {
        let mut rotation = rotation("a:1 b:2");
        rotation.connected(1);
        assert_eq!(
            rotation.connection_ended(true, Recovery::Retry),
            Recovery::Retry
        );
        assert_eq!(hosts(&rotation), ["b", "a"]);
    }

    #[test]
    fn refusals_need_a_person_only_once_every_endpoint_refused_in_a_row() {
        let mut rotation = rotation("a:1 b:2 c:3");
        let refused = Recovery::NeedsAttention;
        assert_eq!(rotation.connection_ended(false, refused), Recovery::Retry);
        assert_eq!(rotation.connection_ended(false, refused), Recovery::Retry);
        assert_eq!(rotation.connection_ended(false, refused), refused);
        assert_eq!(rotation.connection_ended(false, refused), refused);
        // A broker that accepts the device starts the count again.
        rotation.connection_ended(true, Recovery::Retry);
        assert_eq!(rotation.connection_ended(false, refused), Recovery::Retry);
    }

    #[test]
    fn a_single_endpoint_that_refuses_needs_a_person_at_once() {
        let mut rotation = rotation("a:1");
        assert_eq!(
            rotation.connection_ended(false, Recovery::NeedsAttention),
            Recovery::NeedsAttention
        );
        assert_eq!(
            rotation.connection_ended(false, Recovery::Retry),
            Recovery::Retry
        );
        assert_eq!(hosts(&rotation), ["a"]);
    }

    #[test]
    fn an_attempt_needs_a_person_only_if_every_endpoint_failure_does() {
        let mut outcome = AttemptOutcome::default();
        assert_eq!(outcome.recovery(), Recovery::Retry);
        outcome.failed(Recovery::NeedsAttention);
        assert_eq!(outcome.recovery(), Recovery::NeedsAttention);
        outcome.failed(Recovery::NeedsAttention);
        assert_eq!(outcome.recovery(), Recovery::NeedsAttention);
        outcome.failed(Recovery::Retry);
        assert_eq!(outcome.recovery(), Recovery::Retry);
        // Once one endpoint may come back by itself, a later refusal does not change that.
        outcome.failed(Recovery::NeedsAttention);
        assert_eq!(outcome.recovery(), Recovery::Retry);
    }
}
