//! Commands the device takes on `<base>/cmd/...` (subscribed as the MQTT filter `<base>/cmd/#`,
//! MQTT 3.1.1 §4.7.1.2).
//!
//! Topic levels are matched exactly, as MQTT does (§4.7.3: topics are case-sensitive); payloads
//! are forgiving, because people type them into a broker's web console.

use crate::topics::DeviceTopics;

/// How many LEDs `cmd/led/<n>` can address: `n` is `0..LED_COUNT`.
pub const LED_COUNT: u8 = 3;

/// What to do with an LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedAction {
    /// Switch it on.
    On,
    /// Switch it off.
    Off,
    /// Invert it.
    Toggle,
}

impl LedAction {
    /// The action in the log's words (`led1: Toggle -> off`), which the tests match: not its
    /// `Debug` output, so that renaming the variant does not change the log.
    pub fn as_str(self) -> &'static str {
        match self {
            LedAction::On => "On",
            LedAction::Off => "Off",
            LedAction::Toggle => "Toggle",
        }
    }
}

/// A command received on the device's command filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    /// `cmd/led` (LED 0) or `cmd/led/<n>` (n = 0..=2), payload `on`/`off`/`toggle` (ASCII,
    /// case-insensitive, surrounding whitespace ignored)
    Led {
        /// Which LED, below [`LED_COUNT`].
        index: u8,
        /// What to do with it.
        action: LedAction,
    },
    /// `cmd/ping`: answered on reply/ping with the same payload (any bytes)
    Ping {
        /// The bytes to echo.
        payload: &'a [u8],
    },
}

/// Why a received message is not a command the device can carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The topic is not under this device's `cmd` level (another device, or not a command).
    NotACommand,
    /// Under `cmd`, but no command of that name.
    UnknownCommand,
    /// A known command with a payload it cannot act on.
    BadPayload,
    /// `cmd/led/<n>` with no LED `n`.
    NoSuchLed,
}

impl CommandError {
    /// A stable short code for replies and logs; consumers match on it, so never change one.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotACommand => "not_a_command",
            Self::UnknownCommand => "unknown_command",
            Self::BadPayload => "bad_payload",
            Self::NoSuchLed => "no_such_led",
        }
    }
}

/// Works out which command a message received on `topic` is.
///
/// `<base>/cmd` itself is matched by the `<base>/cmd/#` filter (§4.7.1.2) and so reported as
/// [`CommandError::UnknownCommand`], not as [`CommandError::NotACommand`]. For an LED command
/// the index is checked before the payload.
pub fn parse_command<'a>(
    topics: &DeviceTopics,
    topic: &str,
    payload: &'a [u8],
) -> Result<Command<'a>, CommandError> {
    let rest = topic
        .strip_prefix(topics.command_root())
        .ok_or(CommandError::NotACommand)?;
    let name = match rest.strip_prefix('/') {
        Some(name) => name,
        None if rest.is_empty() => return Err(CommandError::UnknownCommand),
        // `<base>/cmdfoo`: a different level that merely starts the same way.
        None => return Err(CommandError::NotACommand),
    };
    match name.split_once('/') {
        None if name == "ping" => Ok(Command::Ping { payload }),
        None if name == "led" => led(0, payload),
        Some(("led", index)) => led(parse_led_index(index)?, payload),
        _ => Err(CommandError::UnknownCommand),
    }
}

fn led(index: u8, payload: &[u8]) -> Result<Command<'static>, CommandError> {
    Ok(Command::Led {
        index,
        action: parse_led_action(payload)?,
    })
}

/// Only the canonical decimal form names an LED, so each LED has one topic (no `01`, `+1`).
fn parse_led_index(level: &str) -> Result<u8, CommandError> {
    let index = match level.as_bytes() {
        [digit @ b'0'..=b'9'] => digit - b'0',
        _ => return Err(CommandError::NoSuchLed),
    };
    if index < LED_COUNT {
        Ok(index)
    } else {
        Err(CommandError::NoSuchLed)
    }
}

fn parse_led_action(payload: &[u8]) -> Result<LedAction, CommandError> {
    let word = trim_ascii(payload);
    [
        (&b"on"[..], LedAction::On),
        (b"off", LedAction::Off),
        (b"toggle", LedAction::Toggle),
    ]
    .into_iter()
    .find(|(name, _)| word.eq_ignore_ascii_case(name))
    .map(|(_, action)| action)
    .ok_or(CommandError::BadPayload)
}

/// `<[u8]>::trim_ascii` is newer than our MSRV (1.75).
fn trim_ascii(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !first.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !last.is_ascii_whitespace() {
            break;
        }
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> DeviceTopics {
        DeviceTopics::new("acme/site1", "dev").unwrap()
    }

    fn parse<'a>(topic: &str, payload: &'a [u8]) -> Result<Command<'a>, CommandError> {
        parse_command(&topics(), topic, payload)
    }

    #[test]
    fn led_without_index_addresses_led_zero() {
        assert_eq!(
            parse("acme/site1/dev/cmd/led", b"on"),
            Ok(Command::Led {
                index: 0,
                action: LedAction::On
            })
        );
    }

    #[test]
    fn led_with_index_addresses_that_led() {
        for (level, index) in [("0", 0), ("1", 1), ("2", 2)] {
            let topic = std::format!("acme/site1/dev/cmd/led/{level}");
            assert_eq!(
                parse(&topic, b"off"),
                Ok(Command::Led {
                    index,
                    action: LedAction::Off
                })
            );
        }
    }

    #[test]
    fn led_actions_are_logged_in_the_words_the_end_to_end_tests_match() {
        // pytest/test_app.py: "led1: On -> on", "led1: Toggle -> off".
        assert_eq!(LedAction::On.as_str(), "On");
        assert_eq!(LedAction::Off.as_str(), "Off");
        assert_eq!(LedAction::Toggle.as_str(), "Toggle");
    }

    #[test]
    fn led_actions_are_case_insensitive_and_whitespace_tolerant() {
        let cases: [(&[u8], LedAction); 6] = [
            (b"on", LedAction::On),
            (b"ON", LedAction::On),
            (b" Off\r\n", LedAction::Off),
            (b"\ttoggle ", LedAction::Toggle),
            (b"ToGgLe", LedAction::Toggle),
            (b"off\n", LedAction::Off),
        ];
        for (payload, action) in cases {
            assert_eq!(
                parse("acme/site1/dev/cmd/led/1", payload),
                Ok(Command::Led { index: 1, action }),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn led_refuses_bad_payloads() {
        let bad: [&[u8]; 8] = [
            b"", b"   ", b"o n", b"onn", b"1", b"\"on\"", b"on off", b"\xffon",
        ];
        for payload in bad {
            assert_eq!(
                parse("acme/site1/dev/cmd/led", payload),
                Err(CommandError::BadPayload),
                "{payload:?}"
            );
        }
    }

    #[test]
    fn led_index_out_of_range_or_not_canonical_is_no_such_led() {
        for level in [
            "3", "9", "10", "255", "256", "01", "+1", "-1", "x", "", " 1",
        ] {
            let topic = std::format!("acme/site1/dev/cmd/led/{level}");
            assert_eq!(
                parse(&topic, b"on"),
                Err(CommandError::NoSuchLed),
                "{level:?}"
            );
        }
    }

    #[test]
    fn led_index_is_checked_before_payload() {
        assert_eq!(
            parse("acme/site1/dev/cmd/led/7", b"bogus"),
            Err(CommandError::NoSuchLed)
        );
    }

    #[test]
    fn ping_carries_payload_unchanged() {
        let payload = b"\x00\xff any bytes \"";
        assert_eq!(
            parse("acme/site1/dev/cmd/ping", payload),
            Ok(Command::Ping { payload })
        );
        assert_eq!(
            parse("acme/site1/dev/cmd/ping", b""),
            Ok(Command::Ping { payload: b"" })
        );
    }

    #[test]
    fn unknown_names_under_cmd_are_unknown_command() {
        for topic in [
            "acme/site1/dev/cmd/unknown",
            "acme/site1/dev/cmd/LED",
            "acme/site1/dev/cmd/Ping",
            "acme/site1/dev/cmd/ping/extra",
            "acme/site1/dev/cmd/",
            "acme/site1/dev/cmd",
            "acme/site1/dev/cmd//led",
        ] {
            assert_eq!(
                parse(topic, b"on"),
                Err(CommandError::UnknownCommand),
                "{topic}"
            );
        }
    }

    #[test]
    fn topics_outside_this_devices_cmd_are_not_commands() {
        for topic in [
            "acme/site1/other/cmd/led",
            "acme/site1/devx/cmd/led",
            "acme/site1/dev/cmdx/led",
            "acme/site1/dev/status",
            "acme/site1/dev",
            "acme/site2/dev/cmd/led",
            "",
            "/acme/site1/dev/cmd/led",
        ] {
            assert_eq!(
                parse(topic, b"on"),
                Err(CommandError::NotACommand),
                "{topic}"
            );
        }
    }

    #[test]
    fn error_codes_are_stable() {
        assert_eq!(CommandError::NotACommand.as_str(), "not_a_command");
        assert_eq!(CommandError::UnknownCommand.as_str(), "unknown_command");
        assert_eq!(CommandError::BadPayload.as_str(), "bad_payload");
        assert_eq!(CommandError::NoSuchLed.as_str(), "no_such_led");
    }
}
