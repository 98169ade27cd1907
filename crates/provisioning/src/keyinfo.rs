//! The public key of an X.509 certificate (RFC 5280 4.1, SubjectPublicKeyInfo) or a PKCS#8
//! private key (RFC 5208 5), read far enough to name its algorithm, curve and size.
//!
//! mbedTLS cannot parse a certificate whose key algorithm its build leaves out (an RSA root in
//! an ECDSA-only image, a P-384 key without the curve): it reports only "not parsed". This
//! reader walks the DER itself, so the refusal can say "RSA-4096" instead. It validates no
//! more than it needs: mbedTLS still parses every credential the device keeps.

use core::fmt;

/// A key's algorithm and size, as the checks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with a modulus of this many bits.
    Rsa { bits: u16 },
    /// ECDSA on NIST P-256 (secp256r1).
    P256,
    /// ECDSA on NIST P-384 (secp384r1).
    P384,
    /// ECDSA on NIST P-521 (secp521r1).
    P521,
    /// An elliptic curve key on another curve.
    OtherCurve,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// Another algorithm.
    Other,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyType::P256 => f.write_str("ECDSA P-256"),
            KeyType::P384 => f.write_str("ECDSA P-384"),
            KeyType::P521 => f.write_str("ECDSA P-521"),
            KeyType::OtherCurve => f.write_str("ECDSA on a curve other than P-256/P-384"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::Other => f.write_str("an unknown key algorithm"),
        }
    }
}

// DER content of the object identifiers (X.690 8.19).
/// rsaEncryption, 1.2.840.113549.1.1.1
const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1
const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7
const PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34
const SECP384R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
/// secp521r1, 1.3.132.0.35
const SECP521R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x23];
/// id-Ed25519, 1.3.101.112
const ED25519: &[u8] = &[0x2B, 0x65, 0x70];

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const VERSION_TAG: u8 = 0xA0;

/// One TLV: its tag, its content, and the bytes after it.
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 3 {
            return None;
        }
        let (bytes, rest) = split(rest, count)?;
        (
            bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b)),
            rest,
        )
    };
    let (content, rest) = split(rest, len)?;
    Some((tag, content, rest))
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    Some((bytes.get(..at)?, bytes.get(at..)?))
}

/// The content of a TLV with `tag`, and the bytes after it.
fn expect(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, content, rest) = tlv(der)?;
    (found == tag).then_some((content, rest))
}

/// The bits of an unsigned big-endian INTEGER's content.
fn integer_bits(content: &[u8]) -> Option<u16> {
    let start = content.iter().position(|&b| b != 0)?;
    let significant = content.get(start..)?;
    let first = significant.first()?;
    let bits = significant.len() * 8 - first.leading_zeros() as usize;
    u16::try_from(bits).ok()
}

/// The key type from an AlgorithmIdentifier's content (RFC 5280 4.1.1.2) and, for RSA, the
/// RSAPublicKey or RSAPrivateKey (RFC 8017 A.1) holding the modulus.
fn key_type(algorithm: &[u8], rsa_key: impl FnOnce() -> Option<u16>) -> KeyType {
    let Some((oid, params)) = expect(algorithm, OID) else {
        return KeyType::Other;
    };
    if oid == RSA_ENCRYPTION {
        rsa_key().map_or(KeyType::Other, |bits| KeyType::Rsa { bits })
    } else if oid == EC_PUBLIC_KEY {
        match expect(params, OID) {
            Some((curve, _)) if curve == PRIME256V1 => KeyType::P256,
            Some((curve, _)) if curve == SECP384R1 => KeyType::P384,
            Some((curve, _)) if curve == SECP521R1 => KeyType::P521,
            _ => KeyType::OtherCurve,
        }
    } else if oid == ED25519 {
        KeyType::Ed25519
    } else {
        KeyType::Other
    }
}

/// The key type of an X.509 certificate (DER), or `None` if it is not shaped like one.
pub fn certificate_key(der: &[u8]) -> Option<KeyType> {
    let (certificate, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    // version [0] EXPLICIT, optional; serialNumber, signature, issuer, validity, subject.
    let mut rest = tbs;
    if rest.first() == Some(&VERSION_TAG) {
        rest = tlv(rest)?.2;
    }
    rest = expect(rest, INTEGER)?.1;
    for _ in 0..4 {
        rest = expect(rest, SEQUENCE)?.1;
    }
    let (spki, _) = expect(rest, SEQUENCE)?;
    let (algorithm, rest) = expect(spki, SEQUENCE)?;
    let (bits, _) = expect(rest, BIT_STRING)?;
    Some(key_type(algorithm, || {
        // The BIT STRING starts with its count of unused bits, then RSAPublicKey.
        let (public_key, _) = expect(bits.get(1..)?, SEQUENCE)?;
        integer_bits(expect(public_key, INTEGER)?.0)
    }))
}

/// The key type of a PKCS#8 private key (DER), or `None` if it is not shaped like one.
pub fn private_key(der: &[u8]) -> Option<KeyType> {
    let (key, _) = expect(der, SEQUENCE)?;
    let (_, rest) = expect(key, INTEGER)?;
    let (algorithm, rest) = expect(rest, SEQUENCE)?;
    let (private, _) = expect(rest, OCTET_STRING)?;
    Some(key_type(algorithm, || {
        // RSAPrivateKey: version, then the modulus.
        let (rsa, _) = expect(private, SEQUENCE)?;
        let (_, rest) = expect(rsa, INTEGER)?;
        integer_bits(expect(rest, INTEGER)?.0)
    }))
}
