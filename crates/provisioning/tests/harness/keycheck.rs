//! Key check harness: arbitrary DER-ish bytes through the reading that the credential checks
//! start with (`keyinfo::certificate_key`, `keyinfo::private_key`, `bundle::certificates`),
//! then `check_usable` and `describe` on a set made of them.
//!
//! The whole input, as it is:
//! - neither reader panics; without a whole outer TLV they name nothing, and bytes after it
//!   change nothing;
//! - what a reader names comes from a whole outer SEQUENCE: cut one byte short, it names
//!   nothing; an RSA size is at most the input's bits;
//! - the bundle's pieces are those of an independent splitter, none empty, and joined they are
//!   the input;
//! - `check_usable` and `describe` (one line per root of a provisioned bundle, each with its
//!   size) agree with the fake inspector.
//!
//! Then the input after its first byte, wrapped by a reference DER writer as chosen by that
//! byte (`mode % 4`), so that the fuzzer works on the fields the readers look at:
//! 0. an RSA modulus, in a certificate and in a PKCS#8 key: both name RSA with the modulus's
//!    significant bits (or `Other` for a zero or over-65,535-bit one);
//! 1. a curve OID of an EC key: P-256, P-384, P-521 exactly for theirs, another curve otherwise;
//! 2. an algorithm OID: RSA, EC, Ed25519 exactly for theirs, `Other` otherwise;
//! 3. pieces (a length byte, that many bytes, …) each wrapped as a SEQUENCE: the bundle splits
//!    into exactly them, with trailing bytes as one last piece.
//!
//! Bit 2 of `mode` leaves the certificate's optional version field out.

use super::{reference_split, Fake};
use provisioning::keyinfo::{certificate_key, private_key};
use provisioning::{
    bundle, check_usable, describe, CredentialSet, ImageCredentials, KeyType, Kind, ProvisionError,
    Source,
};

const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const SECP384R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
const SECP521R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
const ED25519: &[u8] = &[0x2B, 0x65, 0x70];

/// The fuzz entry point.
pub fn run(data: &[u8]) {
    check_readers(data);
    check_bundle(data);
    check_set(data);
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let version = mode & 4 == 0;
    match mode % 4 {
        0 => check_rsa_modulus(body, version),
        1 => check_curve(body, version),
        2 => check_algorithm(body, version),
        _ => check_wrapped_bundle(body),
    }
}

/// The end of the TLV at the start of `der` by the readers' rules (definite lengths of up to
/// three bytes), if it is whole.
pub fn tlv_end(der: &[u8]) -> Option<usize> {
    let first = *der.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 3 || der.len() < 2 + count {
            return None;
        }
        let len = der[2..2 + count]
            .iter()
            .fold(0, |len, &b| len * 256 + usize::from(b));
        (2 + count, len)
    };
    (der.len() >= header + len).then_some(header + len)
}

/// `keyinfo::certificate_key` or `keyinfo::private_key`.
type Reader = fn(&[u8]) -> Option<KeyType>;

fn check_readers(data: &[u8]) {
    let end = tlv_end(data);
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0x30, 0x00, 0xFF]);
    let readers: [Reader; 2] = [certificate_key, private_key];
    for read in readers {
        let found = read(data);
        let Some(end) = end else {
            assert_eq!(found, None, "named a key type without a whole outer TLV");
            continue;
        };
        assert_eq!(
            read(&data[..end]),
            found,
            "bytes after the outer TLV changed the key type"
        );
        assert_eq!(
            read(&longer),
            found,
            "bytes after the outer TLV changed the key type"
        );
        let Some(key) = found else {
            continue;
        };
        assert_eq!(data.first(), Some(&0x30));
        assert_eq!(
            read(&data[..end - 1]),
            None,
            "named {key:?} from a cut SEQUENCE"
        );
        if let KeyType::Rsa { bits } = key {
            assert!(bits >= 1 && usize::from(bits) <= 8 * data.len());
        }
    }
}

fn check_bundle(data: &[u8]) {
    let pieces: Vec<&[u8]> = bundle::certificates(data).collect();
    assert_eq!(pieces, reference_split(data));
    assert!(pieces.iter().all(|piece| !piece.is_empty()));
    assert_eq!(
        pieces.concat(),
        data,
        "the pieces do not make up the bundle"
    );
    if let Some((_, whole)) = pieces.split_last() {
        for piece in whole {
            assert_eq!(tlv_end(piece), Some(piece.len()));
        }
    }
}

/// A set of the input as CA bundle, its first piece as device certificate and the input as
/// device key, through `check_usable` and `describe`.
fn check_set(data: &[u8]) {
    const IMAGE: ImageCredentials<'static> = ImageCredentials {
        ca: Some(b"\x30\x01c"),
        device_certificate: None,
        device_key: None,
    };
    let pieces = reference_split(data);
    let Some(&first) = pieces.first() else {
        return;
    };
    let mut set = CredentialSet::image();
    assert_eq!(check_usable(&set, &IMAGE, &mut Fake), Ok(()));
    let fits = |kind: Kind, der: &[u8]| der.len() <= kind.capacity();
    if fits(Kind::Ca, data) {
        set.set(Kind::Ca, Source::Provisioned(data)).unwrap();
        let mut out = String::new();
        describe(set.source(Kind::Ca), Kind::Ca, &IMAGE, &mut Fake, &mut out).unwrap();
        let lines: Vec<&str> = out.split('\n').collect();
        assert_eq!(lines.len(), pieces.len(), "{out}");
        for (index, (line, piece)) in lines.iter().zip(&pieces).enumerate() {
            let label = if index == 0 {
                "ca: ".to_string()
            } else {
                format!("ca {}: ", index + 1)
            };
            let size = format!("{label}provisioned, {} bytes, sha256 ", piece.len());
            assert!(line.starts_with(&size), "{line:?} for {size:?}");
        }
    } else {
        assert!(set.set(Kind::Ca, Source::Provisioned(data)).is_err());
        assert_eq!(set, CredentialSet::image());
    }
    let certificate = fits(Kind::DeviceCertificate, first).then_some(first);
    let key = fits(Kind::DeviceKey, data).then_some(data);
    if let Some(certificate) = certificate {
        set.set(Kind::DeviceCertificate, Source::Provisioned(certificate))
            .unwrap();
    }
    if let Some(key) = key {
        set.set(Kind::DeviceKey, Source::Provisioned(key)).unwrap();
    }
    let expected = match (certificate, key) {
        (None, None) => Ok(()),
        (Some(c), Some(k)) if c.last() == k.last() => Ok(()),
        (Some(_), Some(_)) => Err(ProvisionError::KeyDoesNotMatchCertificate),
        _ => Err(ProvisionError::IncompletePair),
    };
    assert_eq!(check_usable(&set, &IMAGE, &mut Fake), expected);
    for kind in [Kind::DeviceCertificate, Kind::DeviceKey] {
        let mut out = String::new();
        describe(set.source(kind), kind, &IMAGE, &mut Fake, &mut out).unwrap();
        let der = match kind {
            Kind::DeviceCertificate => certificate,
            _ => key,
        };
        match der {
            Some(der) => {
                let start = format!("{}: provisioned, {} bytes, sha256 ", kind.name(), der.len());
                assert!(out.starts_with(&start) && !out.contains('\n'), "{out:?}");
                assert_eq!(out.ends_with(" (public key)"), kind == Kind::DeviceKey);
            }
            None => assert_eq!(out, format!("{}: none (image)", kind.name())),
        }
    }
    set.set(Kind::Ca, Source::Removed).unwrap();
    assert_eq!(
        check_usable(&set, &IMAGE, &mut Fake),
        Err(ProvisionError::NoCa)
    );
    let mut out = String::new();
    describe(set.source(Kind::Ca), Kind::Ca, &IMAGE, &mut Fake, &mut out).unwrap();
    assert_eq!(out, "ca: none (deleted)");
}

/// DER TLV, with the shortest length form.
pub fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = vec![tag];
    match len {
        0..=0x7F => out.push(len as u8),
        0x80..=0xFF => out.extend([0x81, len as u8]),
        0x100..=0xFFFF => out.extend([0x82, (len >> 8) as u8, len as u8]),
        _ => out.extend([0x83, (len >> 16) as u8, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// An X.509 certificate around a SubjectPublicKeyInfo of `algorithm` (AlgorithmIdentifier
/// content) and `key` (the BIT STRING's content after its unused-bits byte).
pub fn certificate(algorithm: &[u8], key: &[u8], version: bool) -> Vec<u8> {
    let name = sequence(&[&der(
        0x31,
        &sequence(&[&der(0x06, &[0x55, 4, 3]), &der(0x0C, b"x")]),
    )]);
    let validity = sequence(&[&der(0x17, b"260101000000Z"), &der(0x17, b"360101000000Z")]);
    let signature = sequence(&[&der(
        0x06,
        &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02],
    )]);
    let spki = sequence(&[&der(0x30, algorithm), &der(0x03, &[&[0][..], key].concat())]);
    let version = if version {
        der(0xA0, &der(0x02, &[2]))
    } else {
        Vec::new()
    };
    let tbs = sequence(&[
        &version,
        &der(0x02, &[0x01, 0x23]),
        &signature,
        &name,
        &validity,
        &name,
        &spki,
    ]);
    sequence(&[&tbs, &signature, &der(0x03, &[0, 0xAB])])
}

/// A PKCS#8 private key of `algorithm` around `private` (the OCTET STRING's content).
pub fn pkcs8(algorithm: &[u8], private: &[u8]) -> Vec<u8> {
    sequence(&[&der(0x02, &[0]), &der(0x30, algorithm), &der(0x04, private)])
}

fn rsa_algorithm() -> Vec<u8> {
    [der(0x06, RSA_ENCRYPTION), vec![0x05, 0x00]].concat()
}

/// The significant bits of an unsigned big-endian integer, by another route than the crate's.
fn reference_bits(content: &[u8]) -> Option<u16> {
    let mut bits: usize = 0;
    for (i, byte) in content.iter().enumerate() {
        if *byte != 0 {
            bits = (content.len() - i - 1) * 8 + (8 - byte.leading_zeros() as usize);
            break;
        }
    }
    (bits > 0)
        .then_some(bits)
        .and_then(|b| u16::try_from(b).ok())
}

fn check_rsa_modulus(modulus: &[u8], version: bool) {
    let expected = reference_bits(modulus).map_or(KeyType::Other, |bits| KeyType::Rsa { bits });
    let public = sequence(&[&der(0x02, modulus), &der(0x02, &[1, 0, 1])]);
    let cert = certificate(&rsa_algorithm(), &public, version);
    assert_eq!(certificate_key(&cert), Some(expected));
    let private = sequence(&[
        &der(0x02, &[0]),
        &der(0x02, modulus),
        &der(0x02, &[1, 0, 1]),
    ]);
    assert_eq!(
        private_key(&pkcs8(&rsa_algorithm(), &private)),
        Some(expected)
    );
    check_bundle(&cert);
}

fn check_curve(curve: &[u8], version: bool) {
    let expected = match curve {
        c if c == PRIME256V1 => KeyType::P256,
        c if c == SECP384R1 => KeyType::P384,
        c if c == SECP521R1 => KeyType::P521,
        _ => KeyType::OtherCurve,
    };
    let algorithm = [der(0x06, EC_PUBLIC_KEY), der(0x06, curve)].concat();
    let point = [&[4u8][..], &[0x11; 64]].concat();
    assert_eq!(
        certificate_key(&certificate(&algorithm, &point, version)),
        Some(expected)
    );
    let private = sequence(&[&der(0x02, &[1]), &der(0x04, &[0x22; 32])]);
    assert_eq!(private_key(&pkcs8(&algorithm, &private)), Some(expected));
}

fn check_algorithm(oid: &[u8], version: bool) {
    let modulus = [&[0x00, 0x80][..], &[0x5A; 255]].concat();
    let expected = match oid {
        o if o == RSA_ENCRYPTION => KeyType::Rsa { bits: 2048 },
        o if o == EC_PUBLIC_KEY => KeyType::OtherCurve,
        o if o == ED25519 => KeyType::Ed25519,
        _ => KeyType::Other,
    };
    let algorithm = der(0x06, oid);
    let public = sequence(&[&der(0x02, &modulus), &der(0x02, &[3])]);
    assert_eq!(
        certificate_key(&certificate(&algorithm, &public, version)),
        Some(expected)
    );
    let private = sequence(&[&der(0x02, &[0]), &der(0x02, &modulus)]);
    assert_eq!(private_key(&pkcs8(&algorithm, &private)), Some(expected));
}

fn check_wrapped_bundle(body: &[u8]) {
    let mut wrapped = Vec::new();
    let mut rest = body;
    while let Some((&len, after)) = rest.split_first() {
        if after.len() < usize::from(len) {
            break;
        }
        let (content, after) = after.split_at(usize::from(len));
        // Bit 0 of the length byte: the two-byte length form even for short content.
        wrapped.push(if len & 1 == 1 {
            [&[0x30, 0x82, 0, len][..], content].concat()
        } else {
            der(0x30, content)
        });
        rest = after;
    }
    let mut bundle = wrapped.concat();
    bundle.extend_from_slice(rest);
    let pieces: Vec<&[u8]> = bundle::certificates(&bundle).collect();
    let expected: Vec<&[u8]> = wrapped
        .iter()
        .map(Vec::as_slice)
        .chain((!rest.is_empty()).then_some(rest))
        .collect();
    // Trailing bytes that happen to start a whole SEQUENCE split further; the rest must match.
    assert_eq!(pieces[..wrapped.len()], expected[..wrapped.len()]);
    assert_eq!(pieces[wrapped.len()..].concat(), rest);
    check_bundle(&bundle);
}
