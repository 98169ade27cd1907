//! Topic names and topic filters (MQTT 3.1.1 §4.7).
//!
//! Names are what a PUBLISH carries: no wildcards. Filters are what a SUBSCRIBE carries: `+`
//! stands alone in its level, `#` stands alone in the last level. Both are non-empty UTF-8
//! without U+0000 and at most 65535 bytes (§1.5.3); `&str` already guarantees UTF-8.

use crate::error::ConfigError;

/// The longest string an MQTT packet can carry (§1.5.3).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// Checks a topic name for PUBLISH.
pub fn validate_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || name.len() > MAX_TOPIC_LEN
        || name.bytes().any(|b| b == 0 || b == b'+' || b == b'#')
    {
        return Err(ConfigError::InvalidTopicName);
    }
    Ok(())
}

/// Checks a topic filter for SUBSCRIBE/UNSUBSCRIBE.
pub fn validate_filter(filter: &str) -> Result<(), ConfigError> {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return Err(ConfigError::InvalidTopicFilter);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        let wildcard_ok = match level {
            "#" => is_last,
            "+" => true,
            other => !other.contains(['+', '#']),
        };
        if !wildcard_ok {
            return Err(ConfigError::InvalidTopicFilter);
        }
    }
    Ok(())
}

/// Whether `name` matches `filter` (§4.7.1, §4.7.2: a leading `$` level is not matched by a
/// leading wildcard).
pub fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_topic_names() {
        for name in ["a", "devices/dev-1/status", "/", "a//b", "$SYS/x", "ü/☃"] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn rejects_topic_names_with_wildcards_nul_or_nothing() {
        for name in ["", "a/+", "#", "a/#/b", "a\0b", "+"] {
            assert_eq!(
                validate_name(name),
                Err(ConfigError::InvalidTopicName),
                "{name:?}"
            );
        }
    }

    #[test]
    fn rejects_topic_names_over_65535_bytes() {
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(validate_name(&long), Err(ConfigError::InvalidTopicName));
        assert_eq!(validate_name(&long[1..]), Ok(()));
    }

    #[test]
    fn accepts_filters_with_wildcards_in_their_own_level() {
        for filter in ["#", "+", "a/+/b", "a/#", "+/+", "/+", "a/b", "+/#"] {
            assert_eq!(validate_filter(filter), Ok(()), "{filter}");
        }
    }

    #[test]
    fn rejects_filters_with_misplaced_wildcards() {
        for filter in ["", "a/#/b", "a#", "a/b#", "+a", "a/+b", "#/a", "a\0"] {
            assert_eq!(
                validate_filter(filter),
                Err(ConfigError::InvalidTopicFilter),
                "{filter:?}"
            );
        }
    }

    #[test]
    fn matches_follow_the_wildcard_rules() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(!matches("a/+/c", "a/b/d"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(matches("#", "a/b"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/x", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(matches("+", ""));
        assert!(!matches("+", "a/b"));
    }
}
