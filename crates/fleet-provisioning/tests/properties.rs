//! Properties of the reply parsers: any bytes are refused or taken without a panic, and any
//! DER survives the trip through PEM in JSON.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use fleet_provisioning::messages;
use proptest::prelude::*;

#[path = "pem/mod.rs"]
mod pem;

use pem::certificate_pem as pem_of;

proptest! {
    #[test]
    fn any_bytes_are_taken_or_refused_without_a_panic(payload in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut der = [0; 512];
        let mut token = [0; 64];
        let _ = messages::certificate_accepted(&payload, &mut der, &mut token);
        let _ = messages::rejected(&payload);
        let _ = messages::registration_accepted(&payload);
    }

    #[test]
    fn json_shaped_noise_in_every_field_is_taken_or_refused_without_a_panic(
        id in ".{0,80}", pem in ".{0,300}", token in ".{0,80}", code in any::<i64>(),
    ) {
        let payload = serde_json::json!({
            "certificateId": id, "certificatePem": pem, "certificateOwnershipToken": token,
            "statusCode": code, "errorCode": id, "errorMessage": pem, "thingName": token,
        });
        let bytes = serde_json::to_vec(&payload).unwrap();
        let mut der = [0; 512];
        let mut token_out = [0; 64];
        let _ = messages::certificate_accepted(&bytes, &mut der, &mut token_out);
        let _ = messages::rejected(&bytes);
        let _ = messages::registration_accepted(&bytes);
    }

    #[test]
    fn any_der_comes_back_from_pem_in_json(der in proptest::collection::vec(any::<u8>(), 1..1500), width in 4usize..=64) {
        let width = width / 4 * 4;
        let payload = serde_json::to_vec(&serde_json::json!({
            "certificateId": "id", "certificatePem": pem_of(&der, width), "certificateOwnershipToken": "t",
        })).unwrap();
        let mut out = [0; 1500];
        let mut token = [0; 8];
        let accepted = messages::certificate_accepted(&payload, &mut out, &mut token).unwrap();
        prop_assert_eq!(accepted.certificate, der.as_slice());
    }
}
