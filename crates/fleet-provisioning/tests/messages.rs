//! The fleet-provisioning payloads against a full JSON parser and the committed development
//! certificate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use fleet_provisioning::messages::{self, PemError, ReplyError};
use provisioning::base64::Base64Error;
use serde_json::{json, Value};

#[path = "pem/mod.rs"]
mod pem;

const DEVICE_CERTIFICATE: &[u8] = include_bytes!("../../../certs/dev-only-insecure/device.crt.der");
const DEVICE_CERTIFICATE_PEM: &str =
    include_str!("../../../certs/dev-only-insecure/device.crt.pem");

fn pem_of(der: &[u8]) -> String {
    pem::certificate_pem(der, 64) + "\n"
}

fn accepted_payload(pem: &str, token: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "certificateId": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "certificatePem": pem,
        "certificateOwnershipToken": token,
    }))
    .unwrap()
}

fn parse_pem(pem: &str) -> Result<Vec<u8>, ReplyError> {
    let mut der = [0; 2048];
    let mut token = [0; 64];
    let payload = accepted_payload(pem, "t");
    messages::certificate_accepted(&payload, &mut der, &mut token).map(|a| a.certificate.to_vec())
}

#[test]
fn the_csr_request_is_json_whose_field_is_the_pem_text() {
    let csr = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\"x\\\n-----END CERTIFICATE REQUEST-----\n";
    let mut out = [0; 256];
    let length = messages::create_from_csr(csr, &mut out).unwrap();
    let parsed: Value = serde_json::from_slice(&out[..length]).unwrap();
    assert_eq!(parsed, json!({ "certificateSigningRequest": csr }));
    assert_eq!(
        messages::create_from_csr(csr, &mut [0; 40]),
        Err(messages::RequestTooLong)
    );
}

#[test]
fn the_registration_carries_the_token_and_every_parameter() {
    let mut out = [0; 256];
    let parameters = [("SerialNumber", "dev-0042"), ("Odd \"name\"", "a\\b\nc")];
    let length = messages::register_thing("tok/en+=", &parameters, &mut out).unwrap();
    let parsed: Value = serde_json::from_slice(&out[..length]).unwrap();
    assert_eq!(
        parsed,
        json!({
            "certificateOwnershipToken": "tok/en+=",
            "parameters": { "SerialNumber": "dev-0042", "Odd \"name\"": "a\\b\nc" },
        })
    );
    assert!(messages::register_thing("t", &[], &mut out).is_ok());
    assert_eq!(
        messages::register_thing("token", &parameters, &mut [0; 30]),
        Err(messages::RequestTooLong)
    );
}

#[test]
fn an_issued_certificate_is_decoded_to_the_der_it_was_made_from() {
    let mut der = [0; 2048];
    let mut token = [0; 600];
    let long_token = "eyJ2ZXJzaW9uIjoi/".repeat(30);
    let payload = accepted_payload(DEVICE_CERTIFICATE_PEM, &long_token);
    let accepted = messages::certificate_accepted(&payload, &mut der, &mut token).unwrap();
    assert_eq!(accepted.certificate, DEVICE_CERTIFICATE);
    assert_eq!(accepted.ownership_token, long_token);
    assert_eq!(accepted.certificate_id.len(), 64);
    // The PEM the test makes itself, with '\r\n' line ends, and escaped '/' as some encoders
    // write them.
    let crlf = pem_of(DEVICE_CERTIFICATE).replace('\n', "\r\n");
    assert_eq!(parse_pem(&crlf).unwrap(), DEVICE_CERTIFICATE);
    let escaped_slashes = String::from_utf8(accepted_payload(&pem_of(DEVICE_CERTIFICATE), "t"))
        .unwrap()
        .replace('/', "\\/");
    let mut token = [0; 8];
    let accepted =
        messages::certificate_accepted(escaped_slashes.as_bytes(), &mut der, &mut token).unwrap();
    assert_eq!(accepted.certificate, DEVICE_CERTIFICATE);
}

#[test]
fn a_certificate_pem_that_is_not_exactly_one_certificate_is_refused_by_name() {
    let good = pem_of(DEVICE_CERTIFICATE);
    let pem_error = |pem: &str| match parse_pem(pem) {
        Err(ReplyError::Pem(cause)) => cause,
        other => panic!("{pem:?} gave {other:?}"),
    };
    assert_eq!(pem_error(&good[28..]), PemError::NoBeginLine);
    assert_eq!(
        pem_error(&good.replace("-----END CERTIFICATE-----\n", "")),
        PemError::NoEndLine
    );
    assert_eq!(pem_error(&format!("{good}{good}")), PemError::TextAfterEnd);
    assert_eq!(
        pem_error(&good.replacen("MII", "M!I", 1)),
        PemError::Base64(Base64Error::InvalidCharacter)
    );
    assert_eq!(
        pem_error(&good.replacen('\n', "", 2)),
        PemError::LineTooLong
    );
    assert_eq!(pem_error(&good.replacen('M', "é", 1)), PemError::NotPemText);
    let mut small = [0; 100];
    let payload = accepted_payload(&good, "t");
    assert_eq!(
        messages::certificate_accepted(&payload, &mut small, &mut [0; 8]),
        Err(ReplyError::Pem(PemError::TooLarge))
    );
    assert_eq!(
        messages::certificate_accepted(&payload, &mut [0; 2048], &mut []),
        Err(ReplyError::FieldTooLong("certificateOwnershipToken"))
    );
}

#[test]
fn replies_missing_a_field_or_not_json_are_malformed() {
    let mut der = [0; 2048];
    let mut token = [0; 8];
    for payload in [
        &b"{}"[..],
        b"not json",
        br#"{"certificateId":"x","certificatePem":"y"}"#,
        br#"{"certificateId":1,"certificatePem":"y","certificateOwnershipToken":"t"}"#,
    ] {
        assert_eq!(
            messages::certificate_accepted(payload, &mut der, &mut token),
            Err(ReplyError::Malformed),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(
        messages::rejected(br#"{"statusCode":"400"}"#),
        Err(ReplyError::Malformed)
    );
    assert_eq!(
        messages::registration_accepted(b"{}"),
        Err(ReplyError::Malformed)
    );
}

#[test]
fn a_refusal_is_kept_in_words_and_a_long_message_cut_at_a_character() {
    let payload = serde_json::to_vec(&json!({
        "statusCode": 400,
        "errorCode": "InvalidPayload",
        "errorMessage": "CSR \"subject\" not allowed",
    }))
    .unwrap();
    let refusal = messages::rejected(&payload).unwrap();
    assert_eq!(
        refusal.to_string(),
        "refused with status 400 (InvalidPayload): CSR \"subject\" not allowed"
    );
    let long = "é".repeat(100);
    let payload =
        serde_json::to_vec(&json!({ "statusCode": 500, "errorCode": "x", "errorMessage": long }))
            .unwrap();
    let refusal = messages::rejected(&payload).unwrap();
    assert_eq!(refusal.error_message.as_str(), "é".repeat(60));
}

#[test]
fn a_registration_names_the_thing_and_ignores_the_configuration() {
    let payload = serde_json::to_vec(&json!({
        "deviceConfiguration": { "fallback": "no", "nested": { "a": [1, 2] } },
        "thingName": "dev-0042",
    }))
    .unwrap();
    assert_eq!(
        messages::registration_accepted(&payload).unwrap().as_str(),
        "dev-0042"
    );
    let too_long = serde_json::to_vec(&json!({ "thingName": "x".repeat(129) })).unwrap();
    assert_eq!(
        messages::registration_accepted(&too_long),
        Err(ReplyError::FieldTooLong("thingName"))
    );
}
