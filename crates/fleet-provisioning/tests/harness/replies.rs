//! Any bytes as a reply on each of the API's topics. Invariants: no panic; a certificate
//! taken is DER no larger than its buffer and comes back the same when written as PEM into a
//! reply again; a token taken is the JSON string's text; a refusal's message is cut to its
//! bound at a character boundary; a thing name fits its bound.

use fleet_provisioning::messages::{self, MAX_ERROR_MESSAGE, MAX_THING_NAME};

/// Small buffers as well as real ones: the first byte picks the certificate buffer's size.
pub fn run(data: &[u8]) {
    let (size_byte, payload) = data.split_first().unwrap_or((&0, &[]));
    let certificate_size = if size_byte & 1 == 0 {
        2048
    } else {
        usize::from(*size_byte)
    };
    let mut certificate = vec![0; certificate_size];
    let mut token = [0; 256];
    if let Ok(accepted) = messages::certificate_accepted(payload, &mut certificate, &mut token) {
        assert!(accepted.certificate.len() <= certificate_size);
        let der = accepted.certificate.to_vec();
        let token_text = accepted.ownership_token.to_string();
        let again = reply_with(&der, &token_text);
        let mut certificate = vec![0; certificate_size.max(1)];
        let mut token = [0; 256];
        let reparsed = messages::certificate_accepted(&again, &mut certificate, &mut token)
            .unwrap_or_else(|e| panic!("a certificate taken once is refused when sent again: {e}"));
        assert_eq!(reparsed.certificate, der.as_slice());
        assert_eq!(reparsed.ownership_token, token_text);
    }
    if let Ok(refusal) = messages::rejected(payload) {
        assert!(refusal.error_message.len() <= MAX_ERROR_MESSAGE);
        let _ = refusal.to_string();
    }
    if let Ok(name) = messages::registration_accepted(payload) {
        assert!(name.len() <= MAX_THING_NAME);
    }
}

/// An accepted reply carrying `der` as PEM and `token`, as a signer writes it.
fn reply_with(der: &[u8], token: &str) -> Vec<u8> {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap_or_default())
        .collect();
    let pem = if der.is_empty() {
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".to_string()
    } else {
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            lines.join("\n")
        )
    };
    serde_json::to_vec(&serde_json::json!({
        "certificateId": "id",
        "certificatePem": pem,
        "certificateOwnershipToken": token,
    }))
    .unwrap_or_default()
}
