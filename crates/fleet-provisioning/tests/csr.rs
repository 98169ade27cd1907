//! The keys and requests of `csr` judged from outside: keys and signatures from the `p256`
//! crate, the results read and verified by `openssl`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod openssl;

use fleet_provisioning::csr::{
    csr_der, csr_pem, pem_len, pkcs8_private_key, subject_public_key_info, CsrError, NameAttribute,
    Subject, MAX_CSR_DER, MAX_CSR_PEM, PKCS8_P256_LEN, SPKI_P256_LEN,
};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use provisioning::keyinfo::{self, KeyType};

/// A key from a fixed seed, so that every run checks the same bytes.
fn key(seed: u8) -> SigningKey {
    let mut scalar = [seed; 32];
    scalar[0] = 0x01;
    SigningKey::from_bytes(&scalar.into()).unwrap()
}

fn point(key: &SigningKey) -> [u8; 65] {
    let encoded = key.verifying_key().to_encoded_point(false);
    encoded.as_bytes().try_into().unwrap()
}

fn sign(key: &SigningKey) -> impl FnOnce(&[u8]) -> Result<[u8; 64], &'static str> + '_ {
    |info| {
        let signature: Signature = key.sign(info);
        Ok(signature.to_bytes().into())
    }
}

fn der(subject: &Subject<'_>, key: &SigningKey) -> Vec<u8> {
    let mut out = [0; MAX_CSR_DER];
    let len = csr_der(subject, &point(key), sign(key), &mut out).unwrap();
    out[..len].to_vec()
}

const CN_ONLY: Subject<'static> = Subject {
    common_name: "dev-0042",
    organization: None,
    organizational_unit: None,
    serial_number: None,
};

const FULL: Subject<'static> = Subject {
    common_name: "dev-0042",
    organization: Some("Example Fleet Ltd"),
    organizational_unit: Some("Sensors"),
    serial_number: Some("SN 0042-A"),
};

/// Whether `openssl req -verify` takes the request's self-signature. openssl 3.0 exits with 0
/// on a failed verify too: only its words tell.
fn verifies(request: &[u8], inform: &str) -> bool {
    let output = openssl::run(&["req", "-verify", "-noout", "-inform", inform], request);
    let said = String::from_utf8_lossy(&output.stderr);
    output.status.success() && said.trim_end().ends_with("verify OK")
}

fn subject_line(request: &[u8], inform: &str) -> String {
    openssl::text(
        &[
            "req", "-noout", "-subject", "-nameopt", "RFC2253", "-inform", inform,
        ],
        request,
    )
}

#[test]
fn openssl_verifies_the_request_and_reads_the_subject_asked() {
    let cases = [
        (CN_ONLY, "subject=CN=dev-0042\n"),
        (
            FULL,
            "subject=serialNumber=SN 0042-A,CN=dev-0042,OU=Sensors,O=Example Fleet Ltd\n",
        ),
    ];
    for (seed, (subject, expected)) in cases.into_iter().enumerate() {
        let key = key(seed as u8 + 1);
        let request = der(&subject, &key);
        assert!(verifies(&request, "DER"));
        assert_eq!(subject_line(&request, "DER"), expected);

        let mut work = [0; MAX_CSR_DER];
        let mut pem = [0; MAX_CSR_PEM];
        let len = csr_pem(&subject, &point(&key), sign(&key), &mut work, &mut pem).unwrap();
        let pem = &pem[..len];
        assert!(verifies(pem, "PEM"));
        assert_eq!(subject_line(pem, "PEM"), expected);
        // openssl writes PEM the same way: 64 characters a line, "\n" ends.
        assert_eq!(openssl::ok(&["req", "-inform", "DER"], &request), pem);
    }
}

#[test]
fn a_name_in_utf8_reaches_openssl_unchanged() {
    let subject = Subject {
        common_name: "Gerät-7 ☃",
        organization: Some("Ünïcode, Inc."),
        ..CN_ONLY
    };
    let request = der(&subject, &key(9));
    assert!(verifies(&request, "DER"));
    let line = openssl::text(
        &[
            "req",
            "-noout",
            "-subject",
            "-inform",
            "DER",
            "-nameopt",
            "RFC2253,-esc_msb",
        ],
        &request,
    );
    assert_eq!(line, "subject=CN=Gerät-7 ☃,O=Ünïcode\\, Inc.\n");
}

#[test]
fn openssl_refuses_a_request_with_a_flipped_signature_byte() {
    let key = key(3);
    let request = der(&FULL, &key);
    assert!(verifies(&request, "DER"));
    let mut broken = request.clone();
    *broken.last_mut().unwrap() ^= 0x01;
    assert!(!verifies(&broken, "DER"));
}

/// The request's last TLV is the signature BIT STRING: no unused bits, then the
/// ECDSA-Sig-Value.
fn assert_signature_is(request: &[u8], expected: &[u8]) {
    let mut tail = vec![0x03, expected.len() as u8 + 1, 0x00];
    tail.extend_from_slice(expected);
    assert!(
        request.ends_with(&tail),
        "request ends {:02x?}, expected {:02x?}",
        &request[request.len() - tail.len()..],
        tail
    );
}

#[test]
fn the_signature_is_minimal_der_as_p256_writes_it() {
    let mut r_top = [0x11; 32];
    r_top[0] = 0x80;
    let mut s_zeros = [0x22; 32];
    s_zeros[..2].copy_from_slice(&[0, 0]);
    let mut r_zero_then_top = [0x33; 32];
    r_zero_then_top[..2].copy_from_slice(&[0, 0xF0]);
    let mut s_one = [0; 32];
    s_one[31] = 1;
    let raws = [(r_top, s_zeros), (r_zero_then_top, s_one), (s_zeros, r_top)];
    for (r, s) in raws {
        let mut raw = [0; 64];
        raw[..32].copy_from_slice(&r);
        raw[32..].copy_from_slice(&s);
        let expected = Signature::from_slice(&raw).unwrap().to_der();
        let mut out = [0; MAX_CSR_DER];
        let signer = |_: &[u8]| Ok::<_, ()>(raw);
        let len = csr_der(&CN_ONLY, &point(&key(1)), signer, &mut out).unwrap();
        assert_signature_is(&out[..len], expected.as_bytes());
    }
    // Real signatures: about half have r or s with the top bit set.
    for seed in 1..=40 {
        let key = key(seed);
        let mut given = None;
        let signer = |info: &[u8]| {
            let signature: Signature = key.sign(info);
            given = Some(signature);
            Ok::<_, ()>(signature.to_bytes().into())
        };
        let mut out = [0; MAX_CSR_DER];
        let len = csr_der(&CN_ONLY, &point(&key), signer, &mut out).unwrap();
        assert_signature_is(&out[..len], given.unwrap().to_der().as_bytes());
    }
}

#[test]
fn the_private_key_is_the_pkcs8_openssl_writes_and_its_public_key_the_spki() {
    for seed in [1, 2, 0x80, 0xFE] {
        let key = key(seed);
        let scalar: [u8; 32] = key.to_bytes().into();
        let mut pkcs8 = [0; PKCS8_P256_LEN];
        let len = pkcs8_private_key(&scalar, &point(&key), &mut pkcs8).unwrap();
        assert_eq!(len, PKCS8_P256_LEN);
        assert_eq!(keyinfo::private_key(&pkcs8), Some(KeyType::P256));
        openssl::ok(&["pkey", "-inform", "DER", "-noout", "-check"], &pkcs8);
        let ec = openssl::run(&["ec", "-inform", "DER", "-noout", "-check"], &pkcs8);
        assert!(
            String::from_utf8_lossy(&ec.stderr).contains("EC Key valid."),
            "{ec:?}"
        );
        // openssl writes the key it read as PKCS#8 in its own layout: the same bytes.
        let rewritten = openssl::ok(
            &[
                "pkcs8", "-topk8", "-nocrypt", "-inform", "DER", "-outform", "DER",
            ],
            &pkcs8,
        );
        assert_eq!(rewritten, pkcs8);

        let mut spki = [0; SPKI_P256_LEN];
        let len = subject_public_key_info(&point(&key), &mut spki).unwrap();
        assert_eq!(len, SPKI_P256_LEN);
        let public = ["pkey", "-inform", "DER", "-pubout", "-outform", "DER"];
        assert_eq!(openssl::ok(&public, &pkcs8), spki);
    }
}

#[test]
fn a_key_with_the_wrong_public_point_fails_openssls_check() {
    let key = key(5);
    let scalar: [u8; 32] = key.to_bytes().into();
    let mut pkcs8 = [0; PKCS8_P256_LEN];
    pkcs8_private_key(&scalar, &point(&self::key(6)), &mut pkcs8).unwrap();
    let checked = openssl::run(&["pkey", "-inform", "DER", "-noout", "-check"], &pkcs8);
    assert!(!checked.status.success(), "{checked:?}");
}

#[test]
fn every_buffer_too_small_is_refused_in_words() {
    let key = key(4);
    let needed = der(&FULL, &key).len();
    for len in 0..needed {
        let mut out = vec![0; len];
        let made = csr_der(&FULL, &point(&key), sign(&key), &mut out);
        assert_eq!(made, Err(CsrError::TooSmall), "{len} bytes");
    }
    let mut work = vec![0; needed];
    let needed_pem = pem_len(needed);
    for len in 0..needed_pem {
        let mut pem = vec![0; len];
        let made = csr_pem(&FULL, &point(&key), sign(&key), &mut work, &mut pem);
        assert_eq!(made, Err(CsrError::TooSmall), "{len} bytes");
    }
    let mut pem = vec![0; needed_pem];
    let made = csr_pem(&FULL, &point(&key), sign(&key), &mut work, &mut pem);
    assert_eq!(made, Ok(needed_pem));
    for len in 0..PKCS8_P256_LEN {
        let made = pkcs8_private_key(&[1; 32], &point(&key), &mut vec![0; len]);
        assert!(made.is_err(), "{len} bytes");
    }
    for len in 0..SPKI_P256_LEN {
        assert!(subject_public_key_info(&point(&key), &mut vec![0; len]).is_err());
    }
    assert_eq!(
        CsrError::<&str>::TooSmall.to_string(),
        "the buffer is too small for the certificate request"
    );
}

#[test]
fn the_largest_subject_fits_the_largest_buffers_exactly() {
    let widest = "\u{1F600}".repeat(64);
    let subject = Subject {
        common_name: &widest,
        organization: Some(&widest),
        organizational_unit: Some(&widest),
        serial_number: Some(&"9".repeat(64)),
    };
    let key = key(7);
    let mut work = [0; MAX_CSR_DER];
    let mut pem = [0; MAX_CSR_PEM];
    let len = csr_pem(&subject, &point(&key), sign(&key), &mut work, &mut pem).unwrap();
    assert!(verifies(&pem[..len], "PEM"));
    // A signature with both numbers at their longest (33 bytes each).
    let longest = |_: &[u8]| Ok::<_, ()>([0xFF; 64]);
    let len = csr_der(&subject, &point(&key), longest, &mut work).unwrap();
    assert_eq!(len, MAX_CSR_DER);
}

#[test]
fn names_out_of_bounds_or_type_are_refused_in_words() {
    let long = "x".repeat(65);
    let cases = [
        (
            Subject {
                common_name: "",
                ..FULL
            },
            CsrError::NameLength(NameAttribute::CommonName),
        ),
        (
            Subject {
                common_name: &long,
                ..FULL
            },
            CsrError::NameLength(NameAttribute::CommonName),
        ),
        (
            Subject {
                organizational_unit: Some(&long),
                ..FULL
            },
            CsrError::NameLength(NameAttribute::OrganizationalUnit),
        ),
        (
            Subject {
                serial_number: Some("SN_42"),
                ..FULL
            },
            CsrError::NameCharacters(NameAttribute::SerialNumber),
        ),
        (
            Subject {
                serial_number: Some("SN-4ü"),
                ..FULL
            },
            CsrError::NameCharacters(NameAttribute::SerialNumber),
        ),
    ];
    for (subject, error) in cases {
        let made = csr_der(
            &subject,
            &point(&key(1)),
            sign(&key(1)),
            &mut [0; MAX_CSR_DER],
        );
        assert_eq!(made, Err(error), "{subject:?}");
    }
    let sixty_four = "ü".repeat(64);
    let fits = Subject {
        common_name: &sixty_four,
        ..FULL
    };
    assert!(csr_der(&fits, &point(&key(1)), sign(&key(1)), &mut [0; MAX_CSR_DER]).is_ok());
    assert_eq!(
        CsrError::<&str>::NameLength(NameAttribute::OrganizationalUnit).to_string(),
        "the organizational unit must have 1 to 64 characters"
    );
    assert_eq!(
        CsrError::<&str>::NameCharacters(NameAttribute::SerialNumber).to_string(),
        "the serial number holds a character a PrintableString does not allow"
    );
}

#[test]
fn a_signer_failure_is_kept_with_its_cause() {
    let refuse = |_: &[u8]| Err("the key is not in the key store");
    let made = csr_der(&CN_ONLY, &point(&key(1)), refuse, &mut [0; MAX_CSR_DER]);
    let error = made.unwrap_err();
    assert_eq!(error, CsrError::Signer("the key is not in the key store"));
    assert_eq!(
        error.to_string(),
        "signing the certificate request failed: the key is not in the key store"
    );
}

#[test]
fn the_committed_device_key_is_written_byte_for_byte() {
    let dev_set =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs/dev-only-insecure");
    let committed = std::fs::read(dev_set.join("device.key.der")).unwrap();
    // The ECPrivateKey's privateKey OCTET STRING, at its place in openssl's PKCS#8 layout.
    assert_eq!(committed[34..36], [0x04, 0x20]);
    let scalar: [u8; 32] = committed[36..68].try_into().unwrap();
    let key = SigningKey::from_bytes(&scalar.into()).unwrap();
    let mut pkcs8 = [0; PKCS8_P256_LEN];
    pkcs8_private_key(&scalar, &point(&key), &mut pkcs8).unwrap();
    assert_eq!(pkcs8[..], committed[..]);
    // Its certificate holds the SubjectPublicKeyInfo written for the same point.
    let certificate = std::fs::read(dev_set.join("device.crt.der")).unwrap();
    let mut spki = [0; SPKI_P256_LEN];
    subject_public_key_info(&point(&key), &mut spki).unwrap();
    assert!(certificate.windows(spki.len()).any(|w| w == spki));
}
