//! Broker endpoints: the `host:port` list a device tries in turn when one broker is more than
//! one machine (a cluster's nodes, a primary and a standby). Each host name may resolve to
//! several addresses; the firmware tries every one of those too.
//!
//! The order of tries starts at the endpoint that last worked, so a device stays on a healthy
//! node and moves on only when it fails.

use heapless::Vec;

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
}
