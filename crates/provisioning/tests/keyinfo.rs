//! Key types read from real certificates (made by certs/mkcerts, in tests/data) and keys, as
//! the `cred` refusals name them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use provisioning::keyinfo::{certificate_key, private_key};
use provisioning::KeyType;

const DEV: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../certs/dev-only-insecure");

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// DER TLV with a short or long length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7F => out.push(n as u8),
        n @ 0x80..=0xFF => out.extend([0x81, n as u8]),
        n => out.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// A PKCS#8 RSA key skeleton with a `bits`-bit modulus (the rest of RSAPrivateKey left out).
fn rsa_pkcs8(bits: usize) -> Vec<u8> {
    let mut modulus = vec![0u8; bits / 8 + 1];
    modulus[1] = 0x80; // leading zero octet, then the top bit set
    let rsa = der(0x30, &[der(0x02, &[0]), der(0x02, &modulus)].concat());
    let algorithm = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01],
            ),
            vec![0x05, 0],
        ]
        .concat(),
    );
    der(
        0x30,
        &[der(0x02, &[0]), algorithm, der(0x04, &rsa)].concat(),
    )
}

#[test]
fn names_the_key_of_rsa_and_p384_roots_and_an_rsa_leaf() {
    assert_eq!(
        certificate_key(&data("rsa4096-root.crt.der")),
        Some(KeyType::Rsa { bits: 4096 })
    );
    assert_eq!(
        certificate_key(&data("rsa2048-broker.crt.der")),
        Some(KeyType::Rsa { bits: 2048 })
    );
    assert_eq!(
        certificate_key(&data("p384-root.crt.der")),
        Some(KeyType::P384)
    );
}

#[test]
fn names_the_key_of_the_development_set() {
    let ca = std::fs::read(format!("{DEV}/ca.crt.der")).unwrap();
    let key = std::fs::read(format!("{DEV}/device.key.der")).unwrap();
    assert_eq!(certificate_key(&ca), Some(KeyType::P256));
    assert_eq!(private_key(&key), Some(KeyType::P256));
}

#[test]
fn names_the_size_of_an_rsa_private_key() {
    assert_eq!(
        private_key(&rsa_pkcs8(2048)),
        Some(KeyType::Rsa { bits: 2048 })
    );
    assert_eq!(
        private_key(&rsa_pkcs8(1024)),
        Some(KeyType::Rsa { bits: 1024 })
    );
    assert_eq!(KeyType::Rsa { bits: 4096 }.to_string(), "RSA-4096");
}

#[test]
fn what_is_not_shaped_like_a_certificate_or_key_has_no_key_type() {
    assert_eq!(certificate_key(b"an X.509 certificate this is not"), None);
    assert_eq!(private_key(b"KEY:x"), None);
    let ca = data("rsa4096-root.crt.der");
    for cut in [1, 4, 100, ca.len() - 1] {
        assert_eq!(certificate_key(&ca[..cut]), None, "cut at {cut}");
    }
}
