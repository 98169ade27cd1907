//! The device's topic names, all under `<prefix>/<client id>/` (MQTT 3.1.1 §4.7).
//!
//! They are built once, at start-up, so that a bad prefix or client id is refused there and not
//! on the first publish.

use core::fmt::Write;
use heapless::String;

/// The longest topic this crate builds, in bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// The longest suffix appended to the base; it decides whether every topic fits.
const LONGEST_SUFFIX: &str = "/reply/error";

type Topic = String<MAX_TOPIC_LEN>;

/// Why a prefix or client id cannot make topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicError {
    /// The prefix or the client id is empty.
    Empty,
    /// A topic would be longer than [`MAX_TOPIC_LEN`] bytes.
    TooLong,
    /// A wildcard (`+`, `#`), NUL, or a `/` where it would add or split a level.
    InvalidCharacter,
}

impl core::fmt::Display for TopicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TopicError::Empty => "empty",
            TopicError::TooLong => "a topic would be longer than the limit",
            TopicError::InvalidCharacter => "contains a wildcard, NUL or a misplaced '/'",
        })
    }
}

/// Topics under `<prefix>/<client id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTopics {
    status: Topic,
    telemetry: Topic,
    commands: Topic,
    reply_ping: Topic,
    reply_error: Topic,
}

impl DeviceTopics {
    /// Builds the topics of device `client_id` under `prefix`.
    ///
    /// The prefix may hold several levels (`acme/site1`) but no empty one, so it may not start or
    /// end with `/` nor contain `//`. The client id is exactly one level.
    pub fn new(prefix: &str, client_id: &str) -> Result<Self, TopicError> {
        if prefix.is_empty() || client_id.is_empty() {
            return Err(TopicError::Empty);
        }
        if prefix
            .split('/')
            .any(|level| level.is_empty() || has_forbidden(level))
            || client_id.contains('/')
            || has_forbidden(client_id)
        {
            return Err(TopicError::InvalidCharacter);
        }
        // base + "/" + id + suffix; checked up front so no push below can fail half-way.
        let total = prefix
            .len()
            .saturating_add(1)
            .saturating_add(client_id.len())
            .saturating_add(LONGEST_SUFFIX.len());
        if total > MAX_TOPIC_LEN {
            return Err(TopicError::TooLong);
        }
        let make = |suffix: &str| -> Result<Topic, TopicError> {
            let mut topic = Topic::new();
            write!(topic, "{prefix}/{client_id}{suffix}").map_err(|_| TopicError::TooLong)?;
            Ok(topic)
        };
        Ok(Self {
            status: make("/status")?,
            telemetry: make("/telemetry")?,
            commands: make("/cmd/#")?,
            reply_ping: make("/reply/ping")?,
            reply_error: make(LONGEST_SUFFIX)?,
        })
    }

    /// `<base>/status`.
    pub fn status(&self) -> &str {
        &self.status
    }

    /// `<base>/telemetry`.
    pub fn telemetry(&self) -> &str {
        &self.telemetry
    }

    /// `<base>/cmd/#`, the filter the device subscribes to.
    pub fn commands(&self) -> &str {
        &self.commands
    }

    /// `<base>/reply/ping`.
    pub fn reply_ping(&self) -> &str {
        &self.reply_ping
    }

    /// `<base>/reply/error`.
    pub fn reply_error(&self) -> &str {
        &self.reply_error
    }

    /// `<prefix>/<client id>`, the base every topic of the device hangs under.
    pub fn base(&self) -> &str {
        self.status.strip_suffix("/status").unwrap_or(&self.status)
    }

    /// `<base>/cmd`: the level the command filter's `#` hangs under.
    pub(crate) fn command_root(&self) -> &str {
        self.commands.strip_suffix("/#").unwrap_or(&self.commands)
    }
}

/// Wildcards would turn our names into filters (§4.7.1); NUL is forbidden in any string (§1.5.3).
fn has_forbidden(level: &str) -> bool {
    level.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_every_topic_under_prefix_and_client_id() {
        let t = DeviceTopics::new("acme", "dev-1").unwrap();
        assert_eq!(t.status(), "acme/dev-1/status");
        assert_eq!(t.telemetry(), "acme/dev-1/telemetry");
        assert_eq!(t.commands(), "acme/dev-1/cmd/#");
        assert_eq!(t.reply_ping(), "acme/dev-1/reply/ping");
        assert_eq!(t.reply_error(), "acme/dev-1/reply/error");
        assert_eq!(t.command_root(), "acme/dev-1/cmd");
        assert_eq!(t.base(), "acme/dev-1");
    }

    #[test]
    fn accepts_multi_level_prefix() {
        let t = DeviceTopics::new("acme/site1", "dev").unwrap();
        assert_eq!(t.status(), "acme/site1/dev/status");
    }

    #[test]
    fn refuses_empty_prefix_or_client_id() {
        assert_eq!(DeviceTopics::new("", "dev"), Err(TopicError::Empty));
        assert_eq!(DeviceTopics::new("acme", ""), Err(TopicError::Empty));
    }

    #[test]
    fn refuses_wildcards_and_nul_in_prefix_or_client_id() {
        for bad in ["a+b", "a#", "+", "#", "a\0b"] {
            assert_eq!(
                DeviceTopics::new(bad, "dev"),
                Err(TopicError::InvalidCharacter),
                "{bad:?}"
            );
            assert_eq!(
                DeviceTopics::new("acme", bad),
                Err(TopicError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_slash_in_client_id() {
        assert_eq!(
            DeviceTopics::new("acme", "a/b"),
            Err(TopicError::InvalidCharacter)
        );
        assert_eq!(
            DeviceTopics::new("acme", "/"),
            Err(TopicError::InvalidCharacter)
        );
    }

    #[test]
    fn refuses_prefix_with_empty_level() {
        for bad in ["/acme", "acme/", "acme//site", "/"] {
            assert_eq!(
                DeviceTopics::new(bad, "dev"),
                Err(TopicError::InvalidCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn accepts_longest_fitting_base_and_refuses_one_byte_more() {
        // 128 = prefix + "/" + id + "/reply/error"(12)
        let id = "d";
        let prefix = "p".repeat(MAX_TOPIC_LEN - 1 - id.len() - LONGEST_SUFFIX.len());
        let t = DeviceTopics::new(&prefix, id).unwrap();
        assert_eq!(t.reply_error().len(), MAX_TOPIC_LEN);
        let longer = std::format!("{prefix}p");
        assert_eq!(DeviceTopics::new(&longer, id), Err(TopicError::TooLong));
    }

    #[test]
    fn counts_length_in_bytes_not_chars() {
        let prefix = "é".repeat(60); // 120 bytes
        assert_eq!(DeviceTopics::new(&prefix, "d"), Err(TopicError::TooLong));
    }
}
