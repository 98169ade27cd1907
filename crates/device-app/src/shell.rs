//! The `mqtt` shell commands' arguments, checked before anything reaches the MQTT thread:
//! `mqtt status`, `mqtt pub <topic> <payload> [qos]`, `mqtt bench <count> <qos> [size]`.
//! A refusal names the command, the argument and what it must be.

use crate::bench::{BENCH_PAYLOAD_MAX, BENCH_PAYLOAD_MIN};
use crate::device::BenchRequest;
use core::fmt;
use mqtt_core::QoS;

/// The longest topic `mqtt pub` takes.
pub const SHELL_TOPIC_MAX: usize = 128;
/// The longest payload `mqtt pub` takes (and a benchmark message's).
pub const SHELL_PAYLOAD_MAX: usize = BENCH_PAYLOAD_MAX;
/// The most messages one `mqtt bench` sends.
pub const BENCH_COUNT_MAX: u32 = 1_000_000;

/// What an `mqtt` command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellCommand<'a> {
    /// `mqtt status`: the connection, the queues and the counters.
    Status,
    /// `mqtt pub <topic> <payload> [qos]`: one message (QoS 1 unless given).
    Publish {
        /// The topic, 1 to [`SHELL_TOPIC_MAX`] bytes.
        topic: &'a str,
        /// The payload, at most [`SHELL_PAYLOAD_MAX`] bytes.
        payload: &'a [u8],
        /// At which QoS.
        qos: QoS,
    },
    /// `mqtt bench <count> <qos> [size]`: numbered messages from the MQTT thread.
    Bench(BenchRequest),
}

/// Why an `mqtt` command was refused before it reached the MQTT thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellError<'a> {
    /// No such subcommand, or the wrong number of arguments.
    Usage,
    /// A number outside its range (or not a number).
    OutOfRange {
        /// `pub` or `bench`.
        command: &'static str,
        /// Which argument.
        name: &'static str,
        /// The least it may be.
        min: u32,
        /// The most it may be.
        max: u32,
        /// What was given.
        given: &'a str,
    },
    /// An empty topic or one longer than [`SHELL_TOPIC_MAX`].
    TopicLength,
    /// A payload longer than [`SHELL_PAYLOAD_MAX`].
    PayloadLength,
}

impl fmt::Display for ShellError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShellError::Usage => f.write_str(
                "usage: mqtt status | mqtt pub <topic> <payload> [qos] | mqtt bench <count> <qos> [size]",
            ),
            ShellError::OutOfRange {
                command,
                name,
                min,
                max,
                given,
            } => write!(
                f,
                "{command} rejected: {name} must be {min} to {max}, not '{given}'"
            ),
            ShellError::TopicLength => write!(
                f,
                "pub rejected: topic must be 1 to {SHELL_TOPIC_MAX} bytes"
            ),
            ShellError::PayloadLength => write!(
                f,
                "pub rejected: payload longer than {SHELL_PAYLOAD_MAX} bytes"
            ),
        }
    }
}

/// Parses an `mqtt` command line: `args[0]` is the subcommand (`status`, `pub`, `bench`).
pub fn parse_mqtt_command<'a>(args: &[&'a str]) -> Result<ShellCommand<'a>, ShellError<'a>> {
    match args {
        ["status"] => Ok(ShellCommand::Status),
        ["pub", topic, payload, rest @ ..] if rest.len() <= 1 => {
            let qos = match rest.first() {
                Some(text) => qos(bounded("pub", "qos", text, 0, 2)?),
                None => QoS::AtLeastOnce,
            };
            if topic.is_empty() || topic.len() > SHELL_TOPIC_MAX {
                return Err(ShellError::TopicLength);
            }
            if payload.len() > SHELL_PAYLOAD_MAX {
                return Err(ShellError::PayloadLength);
            }
            Ok(ShellCommand::Publish {
                topic,
                payload: payload.as_bytes(),
                qos,
            })
        }
        ["bench", count, level, rest @ ..] if rest.len() <= 1 => {
            let count = bounded("bench", "count", count, 1, BENCH_COUNT_MAX)?;
            let qos = qos(bounded("bench", "qos", level, 0, 2)?);
            let payload_len = match rest.first() {
                Some(text) => bounded(
                    "bench",
                    "size",
                    text,
                    BENCH_PAYLOAD_MIN as u32,
                    BENCH_PAYLOAD_MAX as u32,
                )?,
                None => 64,
            };
            Ok(ShellCommand::Bench(BenchRequest {
                count,
                payload_len: payload_len as usize,
                qos,
            }))
        }
        _ => Err(ShellError::Usage),
    }
}

/// An unsigned decimal in `min..=max`.
fn bounded<'a>(
    command: &'static str,
    name: &'static str,
    given: &'a str,
    min: u32,
    max: u32,
) -> Result<u32, ShellError<'a>> {
    let refused = ShellError::OutOfRange {
        command,
        name,
        min,
        max,
        given,
    };
    if given.is_empty() || !given.bytes().all(|b| b.is_ascii_digit()) {
        return Err(refused);
    }
    let value: u32 = given.parse().map_err(|_| refused)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(refused)
    }
}

fn qos(level: u32) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn pub_takes_a_topic_a_payload_and_an_optional_qos() {
        assert_eq!(
            parse_mqtt_command(&["pub", "a/b", "hello"]),
            Ok(ShellCommand::Publish {
                topic: "a/b",
                payload: b"hello",
                qos: QoS::AtLeastOnce
            })
        );
        assert_eq!(
            parse_mqtt_command(&["pub", "a/b", "", "0"]),
            Ok(ShellCommand::Publish {
                topic: "a/b",
                payload: b"",
                qos: QoS::AtMostOnce
            })
        );
    }

    #[test]
    fn pub_refusals_name_the_argument_and_its_limits() {
        let refused = |args: &[&str]| parse_mqtt_command(args).unwrap_err().to_string();
        assert_eq!(
            refused(&["pub", "a", "b", "3"]),
            "pub rejected: qos must be 0 to 2, not '3'"
        );
        assert_eq!(
            refused(&["pub", "a", "b", "-1"]),
            "pub rejected: qos must be 0 to 2, not '-1'"
        );
        assert_eq!(
            refused(&["pub", "", "b"]),
            "pub rejected: topic must be 1 to 128 bytes"
        );
        let long_topic = "t".repeat(SHELL_TOPIC_MAX + 1);
        assert_eq!(
            refused(&["pub", &long_topic, "b"]),
            "pub rejected: topic must be 1 to 128 bytes"
        );
        let long_payload = "p".repeat(SHELL_PAYLOAD_MAX + 1);
        assert_eq!(
            refused(&["pub", "a", &long_payload]),
            "pub rejected: payload longer than 192 bytes"
        );
        assert!(refused(&["pub", "a"]).starts_with("usage: "));
        assert!(refused(&["reboot"]).starts_with("usage: "));
    }

    #[test]
    fn bench_takes_a_count_a_qos_and_an_optional_size() {
        assert_eq!(
            parse_mqtt_command(&["bench", "500", "1"]),
            Ok(ShellCommand::Bench(BenchRequest {
                count: 500,
                payload_len: 64,
                qos: QoS::AtLeastOnce
            }))
        );
        assert_eq!(
            parse_mqtt_command(&["bench", "1", "0", "11"]),
            Ok(ShellCommand::Bench(BenchRequest {
                count: 1,
                payload_len: 11,
                qos: QoS::AtMostOnce
            }))
        );
        let refused = |args: &[&str]| parse_mqtt_command(args).unwrap_err().to_string();
        assert_eq!(
            refused(&["bench", "0", "1"]),
            "bench rejected: count must be 1 to 1000000, not '0'"
        );
        assert_eq!(
            refused(&["bench", "10", "1", "10"]),
            "bench rejected: size must be 11 to 192, not '10'"
        );
        assert_eq!(
            refused(&["bench", "99999999999", "1"]),
            "bench rejected: count must be 1 to 1000000, not '99999999999'"
        );
    }
}
