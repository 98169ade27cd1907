//! Property tests: whatever arrives from the broker or the firmware, parsing and formatting never
//! panic, never overrun the buffer, and whatever fits is JSON a real parser accepts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use device_app::{
    format_error_reply, format_telemetry, parse_command, Command, CommandError, DeviceTopics,
    FormatError, Telemetry, LED_COUNT,
};
use proptest::prelude::*;
use serde_json::Value;

const ERRORS: [CommandError; 4] = [
    CommandError::NotACommand,
    CommandError::UnknownCommand,
    CommandError::BadPayload,
    CommandError::NoSuchLed,
];

fn topics() -> DeviceTopics {
    DeviceTopics::new("acme/site1", "dev").unwrap()
}

/// Topics near the interesting ones as well as arbitrary strings, so the command branches are hit.
fn topic_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "acme/site1/dev/cmd(/[a-z0-9+#/]{0,8}){0,3}",
        "acme/site1/dev/cmd/led/.{0,4}",
        Just("acme/site1/dev/cmd/ping".to_owned()),
    ]
}

proptest! {
    #[test]
    fn topic_builder_never_panics_and_topics_stay_bounded(
        prefix in prop_oneof![any::<String>(), "[a-z/+#]{0,80}"],
        id in prop_oneof![any::<String>(), "[a-z/+#]{0,40}"],
    ) {
        if let Ok(t) = DeviceTopics::new(&prefix, &id) {
            let base = format!("{prefix}/{id}/");
            for topic in [t.status(), t.telemetry(), t.commands(), t.reply_ping(), t.reply_error()] {
                prop_assert!(topic.len() <= device_app::MAX_TOPIC_LEN);
                prop_assert!(topic.starts_with(&base));
            }
        }
    }

    #[test]
    fn parse_command_never_panics(topic in topic_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        match parse_command(&topics(), &topic, &payload) {
            Ok(Command::Led { index, .. }) => prop_assert!(index < LED_COUNT),
            Ok(Command::Ping { payload: echoed }) => prop_assert_eq!(echoed, &payload[..]),
            Err(_) => {}
        }
    }

    #[test]
    fn error_reply_is_valid_json_when_it_fits(error_index in 0..ERRORS.len(), topic in any::<String>(), len in 0usize..256) {
        let error = ERRORS[error_index];
        let mut buf = vec![0u8; len];
        match format_error_reply(error, &topic, &mut buf) {
            Ok(n) => {
                prop_assert!(n <= len);
                let json: Value = serde_json::from_slice(&buf[..n]).unwrap();
                prop_assert_eq!(json["error"].as_str(), Some(error.as_str()));
                prop_assert_eq!(json["topic"].as_str(), Some(topic.as_str()));
            }
            Err(FormatError::BufferTooSmall) => {
                // It really did not fit: a big enough buffer succeeds.
                let mut big = vec![0u8; 8 * topic.len() + 64];
                let needed = format_error_reply(error, &topic, &mut big).unwrap();
                prop_assert!(needed > len);
            }
        }
    }

    #[test]
    fn telemetry_is_valid_json_when_it_fits(
        uptime_s in any::<u64>(),
        counters in any::<(u32, u32, u32, u32)>(),
        heap_free in any::<Option<u32>>(),
        tls_version in any::<String>(),
        cipher in any::<String>(),
        len in 0usize..512,
    ) {
        let (published, received, reconnects, outbox) = counters;
        let t = Telemetry { uptime_s, published, received, reconnects, heap_free, outbox, tls_version: &tls_version, cipher: &cipher };
        let mut buf = vec![0u8; len];
        if let Ok(n) = format_telemetry(&t, &mut buf) {
            prop_assert!(n <= len);
            let json: Value = serde_json::from_slice(&buf[..n]).unwrap();
            prop_assert_eq!(json["uptime_s"].as_u64(), Some(uptime_s));
            prop_assert_eq!(json["outbox"].as_u64(), Some(u64::from(outbox)));
            prop_assert_eq!(json["heap_free"].as_u64(), heap_free.map(u64::from));
            prop_assert_eq!(json["tls"]["version"].as_str(), Some(tls_version.as_str()));
            prop_assert_eq!(json["tls"]["cipher"].as_str(), Some(cipher.as_str()));
        }
    }
}
