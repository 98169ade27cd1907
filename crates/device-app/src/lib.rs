//! Application logic of the device, sans IO.
//!
//! The firmware owns the MQTT session, the socket and the LEDs; this crate decides what the
//! device does with them: [`Device`] takes events and the time and gives publishes and its
//! next deadline (status, telemetry, commands and replies, the publish benchmark), using
//! which topics the device uses ([`DeviceTopics`]), what a message received on its command
//! filter asks for ([`parse_command`]), and the JSON it answers and reports with
//! ([`format_error_reply`], [`format_telemetry`]). Topic rules follow MQTT 3.1.1 §4.7, JSON
//! follows RFC 8259.
//!
//! It also holds the decisions the firmware's Zephyr layer would otherwise make itself, so
//! that host tests check them: which broker endpoint next and what a refusal means for the
//! reconnect schedule ([`Rotation`]), what mbedTLS's verify flags say about the broker's
//! certificate ([`CertificateProblem`]), the state `mqtt status` reports ([`LinkState`]),
//! whether a DHCPv4 lease ends the connection ([`LeaseWatch`]), the ALPN names
//! ([`AlpnNames`]), and text cut to a fixed buffer ([`CutText`]).
//!
//! No heap: topics are bounded [`heapless::String`]s and JSON is written into a buffer the caller
//! owns. Nothing here panics, whatever the input.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod alpn;
mod bench;
mod certificate;
mod command;
mod cut;
mod device;
mod endpoints;
mod json;
mod link;
mod pin;
mod shell;
mod topics;

pub use alpn::{AlpnError, AlpnNames, ALPN_BYTES, MAX_ALPN_NAMES};
pub use certificate::{flags as verify_flags, Algorithm, CertificateProblem, UsageField};
pub use cut::{write_c_string, CutText, CUT_MARKER};

pub use bench::{BenchError, PublishBench, BENCH_PAYLOAD_MAX, BENCH_PAYLOAD_MIN};
pub use command::{parse_command, Command, CommandError, LedAction, LED_COUNT};
pub use device::{
    BenchRefusal, BenchRequest, Board, Counters, Device, Publisher, PENDING_REPLIES, REPLY_CAPACITY,
};
pub use endpoints::{
    parse_endpoints, try_order, AttemptOutcome, Endpoint, EndpointError, Rotation, MAX_ENDPOINTS,
};
pub use json::{format_error_reply, format_telemetry, FormatError, Telemetry};
pub use link::{LeaseWatch, LinkState};
pub use pin::{parse_pin, PinError};
pub use shell::{
    parse_mqtt_command, ShellCommand, ShellError, BENCH_COUNT_MAX, SHELL_PAYLOAD_MAX,
    SHELL_TOPIC_MAX,
};
pub use topics::{DeviceTopics, TopicError, MAX_TOPIC_LEN};
