//! JSON the device publishes: error replies and telemetry (RFC 8259), through
//! `serde-json-core` into the caller's buffer (1,172 B of flash on frdm_k64f,
//! docs/dependencies.md). On [`FormatError::BufferTooSmall`] the buffer holds a truncated
//! prefix that must not be sent.

use serde::Serialize;

use crate::command::CommandError;

/// Why JSON could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The whole document does not fit in the buffer.
    BufferTooSmall,
}

/// What telemetry reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Telemetry<'a> {
    /// Seconds since boot.
    pub uptime_s: u64,
    /// Messages published since boot.
    pub published: u32,
    /// Messages received since boot.
    pub received: u32,
    /// Reconnections since boot.
    pub reconnects: u32,
    /// Free heap in bytes, if the firmware can tell.
    pub heap_free: Option<u32>,
    /// Messages waiting in the outbox.
    pub outbox: u32,
    /// Negotiated TLS version, e.g. `TLSv1.3`.
    pub tls_version: &'a str,
    /// Negotiated cipher suite.
    pub cipher: &'a str,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a str,
    topic: &'a str,
}

/// The telemetry document, fields in the documented order.
#[derive(Serialize)]
struct TelemetryDocument<'a> {
    uptime_s: u64,
    published: u32,
    received: u32,
    reconnects: u32,
    outbox: u32,
    heap_free: Option<u32>,
    tls: Tls<'a>,
}

#[derive(Serialize)]
struct Tls<'a> {
    version: &'a str,
    cipher: &'a str,
}

/// JSON for reply/error: `{"error":"<code>","topic":"<topic>"}`; returns the bytes written or
/// `FormatError::BufferTooSmall`.
pub fn format_error_reply(
    error: CommandError,
    topic: &str,
    buf: &mut [u8],
) -> Result<usize, FormatError> {
    let reply = ErrorReply {
        error: error.as_str(),
        topic,
    };
    serde_json_core::to_slice(&reply, buf).map_err(|_| FormatError::BufferTooSmall)
}

/// {"uptime_s":..,"published":..,"received":..,"reconnects":..,"outbox":..,"heap_free":..|null,"tls":{"version":"..","cipher":".."}}
pub fn format_telemetry(t: &Telemetry<'_>, buf: &mut [u8]) -> Result<usize, FormatError> {
    let document = TelemetryDocument {
        uptime_s: t.uptime_s,
        published: t.published,
        received: t.received,
        reconnects: t.reconnects,
        outbox: t.outbox,
        heap_free: t.heap_free,
        tls: Tls {
            version: t.tls_version,
            cipher: t.cipher,
        },
    };
    serde_json_core::to_slice(&document, buf).map_err(|_| FormatError::BufferTooSmall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::string::String;

    fn error_reply(error: CommandError, topic: &str) -> String {
        let mut buf = [0u8; 512];
        let n = format_error_reply(error, topic, &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn telemetry_json(t: &Telemetry<'_>) -> Value {
        let mut buf = [0u8; 512];
        let n = format_telemetry(t, &mut buf).unwrap();
        serde_json::from_slice(&buf[..n]).unwrap()
    }

    #[test]
    fn error_reply_has_code_and_topic() {
        assert_eq!(
            error_reply(CommandError::NoSuchLed, "acme/dev/cmd/led/7"),
            r#"{"error":"no_such_led","topic":"acme/dev/cmd/led/7"}"#
        );
    }

    #[test]
    fn error_reply_escapes_quotes_backslashes_and_every_control() {
        // Every C0 control, quote and backslash: what a JSON parser reads back is the topic,
        // whatever escape spelling the writer chose (RFC 8259 allows several).
        let mut topic = std::string::String::from("a\"b\\c");
        topic.extend((0u8..0x20).map(char::from));
        let json = error_reply(CommandError::UnknownCommand, &topic);
        assert!(json.bytes().all(|b| b >= 0x20), "a raw control in {json:?}");
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["topic"], topic.as_str());
        assert_eq!(parsed["error"], "unknown_command");
    }

    #[test]
    fn error_reply_passes_non_ascii_through() {
        let json = error_reply(CommandError::BadPayload, "café/☃/\u{7f}");
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["topic"], "café/☃/\u{7f}");
        assert_eq!(parsed["error"], "bad_payload");
    }

    #[test]
    fn error_reply_fits_exactly_and_refuses_one_byte_less() {
        let expected = br#"{"error":"bad_payload","topic":"t"}"#;
        let mut buf = [0u8; 64];
        let exact = &mut buf[..expected.len()];
        assert_eq!(
            format_error_reply(CommandError::BadPayload, "t", exact),
            Ok(expected.len())
        );
        assert_eq!(&exact[..], &expected[..]);
        for len in 0..expected.len() {
            assert_eq!(
                format_error_reply(CommandError::BadPayload, "t", &mut buf[..len]),
                Err(FormatError::BufferTooSmall),
                "len {len}"
            );
        }
    }

    #[test]
    fn telemetry_reports_every_field() {
        let json = telemetry_json(&Telemetry {
            uptime_s: u64::MAX,
            published: 1,
            received: 2,
            reconnects: 3,
            heap_free: Some(4096),
            outbox: 5,
            tls_version: "TLSv1.3",
            cipher: "TLS_AES_128_GCM_SHA256",
        });
        assert_eq!(json["uptime_s"], u64::MAX);
        assert_eq!(json["published"], 1);
        assert_eq!(json["received"], 2);
        assert_eq!(json["reconnects"], 3);
        assert_eq!(json["outbox"], 5);
        assert_eq!(json["heap_free"], 4096);
        assert_eq!(json["tls"]["version"], "TLSv1.3");
        assert_eq!(json["tls"]["cipher"], "TLS_AES_128_GCM_SHA256");
        assert_eq!(json.as_object().unwrap().len(), 7);
    }

    #[test]
    fn telemetry_keeps_documented_field_order() {
        let mut buf = [0u8; 256];
        let n = format_telemetry(&Telemetry::default(), &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            br#"{"uptime_s":0,"published":0,"received":0,"reconnects":0,"outbox":0,"heap_free":null,"tls":{"version":"","cipher":""}}"#
        );
    }

    #[test]
    fn telemetry_reports_unknown_heap_as_null() {
        let json = telemetry_json(&Telemetry {
            heap_free: None,
            ..Telemetry::default()
        });
        assert!(json["heap_free"].is_null());
    }

    #[test]
    fn telemetry_escapes_tls_strings() {
        let json = telemetry_json(&Telemetry {
            tls_version: "v\"1\"",
            cipher: "a\\b\u{0}",
            ..Telemetry::default()
        });
        assert_eq!(json["tls"]["version"], "v\"1\"");
        assert_eq!(json["tls"]["cipher"], "a\\b\u{0}");
    }

    #[test]
    fn telemetry_refuses_every_buffer_too_small() {
        let t = Telemetry {
            heap_free: Some(1),
            tls_version: "TLSv1.2",
            ..Telemetry::default()
        };
        let mut buf = [0u8; 256];
        let needed = format_telemetry(&t, &mut buf).unwrap();
        for len in 0..needed {
            assert_eq!(
                format_telemetry(&t, &mut buf[..len]),
                Err(FormatError::BufferTooSmall),
                "len {len}"
            );
        }
    }
}
