//! The PEM the signer's replies carry, made from DER by the `base64` crate, not by the
//! crate under test.

use base64::Engine;

/// `der` as a PEM certificate, base64 lines of `width` characters, `\n` line ends, none
/// after the END line.
pub fn certificate_pem(der: &[u8], width: usize) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(width)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----",
        lines.join("\n")
    )
}
