//! JSON the device publishes: error replies and telemetry (RFC 8259).
//!
//! Written by hand through [`core::fmt::Write`] into the caller's buffer. `serde-json-core`
//! would fit (1,172 B more flash on frdm_k64f) but escapes controls as `\u001F`, where the
//! tests pin `\u001f` (docs/dependencies.md). On [`FormatError::BufferTooSmall`] the buffer
//! holds a truncated prefix that must not be sent.

use core::fmt::{self, Write};

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

/// JSON for reply/error: `{"error":"<code>","topic":"<topic, JSON-escaped>"}`; returns the bytes
/// written or `FormatError::BufferTooSmall`.
pub fn format_error_reply(
    error: CommandError,
    topic: &str,
    buf: &mut [u8],
) -> Result<usize, FormatError> {
    write_json(buf, |w| {
        // The codes are plain ASCII identifiers: nothing to escape.
        write!(w, "{{\"error\":\"{}\",\"topic\":", error.as_str())?;
        write_string(w, topic)?;
        w.write_char('}')
    })
}

/// {"uptime_s":..,"published":..,"received":..,"reconnects":..,"outbox":..,"heap_free":..|null,"tls":{"version":"..","cipher":".."}} (strings JSON-escaped)
pub fn format_telemetry(t: &Telemetry<'_>, buf: &mut [u8]) -> Result<usize, FormatError> {
    write_json(buf, |w| {
        write!(
            w,
            "{{\"uptime_s\":{},\"published\":{},\"received\":{},\"reconnects\":{},\"outbox\":{},\"heap_free\":",
            t.uptime_s, t.published, t.received, t.reconnects, t.outbox
        )?;
        match t.heap_free {
            Some(bytes) => write!(w, "{bytes}")?,
            None => w.write_str("null")?,
        }
        w.write_str(",\"tls\":{\"version\":")?;
        write_string(w, t.tls_version)?;
        w.write_str(",\"cipher\":")?;
        write_string(w, t.cipher)?;
        w.write_str("}}")
    })
}

fn write_json(
    buf: &mut [u8],
    body: impl FnOnce(&mut SliceWriter<'_>) -> fmt::Result,
) -> Result<usize, FormatError> {
    let mut w = SliceWriter { buf, len: 0 };
    // `fmt::Error` can only come from `SliceWriter` running out of room.
    body(&mut w).map_err(|_| FormatError::BufferTooSmall)?;
    Ok(w.len)
}

/// Writes `s` as a quoted JSON string (RFC 8259 §7): quote, backslash and the C0 controls are
/// escaped, everything else (valid UTF-8 already) goes through as is.
fn write_string(w: &mut impl Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    let mut plain_from = 0;
    for (i, byte) in s.bytes().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Escaped bytes are ASCII, so `i` is always a char boundary; `get` keeps it panic-free.
        w.write_str(s.get(plain_from..i).ok_or(fmt::Error)?)?;
        if short.is_empty() {
            write!(w, "\\u{byte:04x}")?;
        } else {
            w.write_str(short)?;
        }
        plain_from = i + 1;
    }
    w.write_str(s.get(plain_from..).ok_or(fmt::Error)?)?;
    w.write_char('"')
}

/// A [`Write`] into a fixed slice that fails instead of truncating silently.
struct SliceWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
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
    fn error_reply_escapes_quotes_backslashes_and_controls() {
        let json = error_reply(
            CommandError::UnknownCommand,
            "a\"b\\c\nd\te\u{1}f\u{1f}g\r\u{8}\u{c}",
        );
        assert_eq!(
            json,
            r#"{"error":"unknown_command","topic":"a\"b\\c\nd\te\u0001f\u001fg\r\b\f"}"#
        );
        let parsed: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["topic"], "a\"b\\c\nd\te\u{1}f\u{1f}g\r\u{8}\u{c}");
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
