//! A device-born P-256 key as the device stores it and asks for a certificate: the private
//! key as PKCS#8 (RFC 5208; what `provisioning::keyinfo` and mbedTLS read), the public key as
//! a SubjectPublicKeyInfo (RFC 5280 4.1.2.7) and a PKCS#10 certificate request (RFC 2986) in
//! PEM, signed by the caller (PSA keeps the key; this module never sees a signature key).
//!
//! DER is written into the caller's buffers, with no heap: each TLV's content is written
//! first and moved right by the size of its header once its length is known.

use core::fmt;

/// A P-256 public key as SEC1 encodes it uncompressed: `04 || x || y`.
pub type PublicPoint = [u8; 65];

/// The PKCS#8 form of a P-256 key with its public key: 138 bytes.
pub const PKCS8_P256_LEN: usize = 138;
/// A P-256 SubjectPublicKeyInfo: 91 bytes.
pub const SPKI_P256_LEN: usize = 91;
/// The most characters RFC 5280's upper bounds allow each name attribute (ub-common-name,
/// ub-organization-name, ub-organizational-unit-name, ub-serial-number: all 64).
pub const MAX_NAME_CHARS: usize = 64;
/// The largest request [`csr_der`] writes: every attribute at 64 four-byte characters.
pub const MAX_CSR_DER: usize = 1_089;
/// The largest PEM [`csr_pem`] writes, for [`MAX_CSR_DER`] bytes of DER.
pub const MAX_CSR_PEM: usize = pem_len(MAX_CSR_DER);

// DER content of the object identifiers (X.690 8.19).
/// id-ecPublicKey, 1.2.840.10045.2.1
const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7
const PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
/// ecdsa-with-SHA256, 1.2.840.10045.4.3.2
const ECDSA_WITH_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];

const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0C;
const PRINTABLE_STRING: u8 = 0x13;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0]` constructed: the request's attributes (RFC 2986 4.1).
const CONTEXT_0: u8 = 0xA0;
/// `[1]` constructed: the public key in an ECPrivateKey (RFC 5915 3).
const CONTEXT_1: u8 = 0xA1;

/// A buffer too small for what was to be written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

impl fmt::Display for TooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the buffer is too small for the key or request")
    }
}

/// Bytes (DER, then PEM) written into a caller's buffer.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl<'a> Writer<'a> {
    fn new(out: &'a mut [u8]) -> Self {
        Writer { out, len: 0 }
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), TooSmall> {
        let end = self.len.checked_add(bytes.len()).ok_or(TooSmall)?;
        self.out
            .get_mut(self.len..end)
            .ok_or(TooSmall)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    /// A TLV whose content `content` writes.
    fn tlv<E: From<TooSmall>>(
        &mut self,
        tag: u8,
        content: impl FnOnce(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        let start = self.len;
        content(self)?;
        let (header, header_len) = header(tag, self.len - start)?;
        let end = self.len + header_len;
        if end > self.out.len() {
            return Err(TooSmall.into());
        }
        self.out.copy_within(start..self.len, start + header_len);
        self.len = start;
        self.bytes(header.get(..header_len).ok_or(TooSmall)?)?;
        self.len = end;
        Ok(())
    }

    fn primitive(&mut self, tag: u8, content: &[u8]) -> Result<(), TooSmall> {
        self.tlv(tag, |der| der.bytes(content))
    }

    /// The bytes written since `start`.
    fn since(&self, start: usize) -> &[u8] {
        self.out.get(start..self.len).unwrap_or_default()
    }
}

/// A TLV header (X.690 8.1.3, definite form) and its size; lengths past 65,535 do not occur
/// here.
fn header(tag: u8, len: usize) -> Result<([u8; 4], usize), TooSmall> {
    let [_, _, high, low] = u32::try_from(len).map_err(|_| TooSmall)?.to_be_bytes();
    match len {
        0..=0x7F => Ok(([tag, low, 0, 0], 2)),
        0x80..=0xFF => Ok(([tag, 0x81, low, 0], 3)),
        0x100..=0xFFFF => Ok(([tag, 0x82, high, low], 4)),
        _ => Err(TooSmall),
    }
}

/// `SEQUENCE { id-ecPublicKey, prime256v1 }` (RFC 5480 2.1.1).
fn p256_algorithm(der: &mut Writer<'_>) -> Result<(), TooSmall> {
    der.tlv(SEQUENCE, |der| {
        der.primitive(OID, EC_PUBLIC_KEY)?;
        der.primitive(OID, PRIME256V1)
    })
}

/// The public key as a BIT STRING with no unused bits.
fn point_bits(der: &mut Writer<'_>, public_point: &PublicPoint) -> Result<(), TooSmall> {
    der.tlv(BIT_STRING, |der| {
        der.bytes(&[0])?;
        der.bytes(public_point)
    })
}

/// The SubjectPublicKeyInfo of a P-256 key ([`SPKI_P256_LEN`] bytes) into `out`: its length.
/// A certificate for the key holds the same bytes.
pub fn subject_public_key_info(
    public_point: &PublicPoint,
    out: &mut [u8],
) -> Result<usize, TooSmall> {
    let mut der = Writer::new(out);
    spki(&mut der, public_point)?;
    Ok(der.len)
}

fn spki(der: &mut Writer<'_>, public_point: &PublicPoint) -> Result<(), TooSmall> {
    der.tlv(SEQUENCE, |der| {
        p256_algorithm(der)?;
        point_bits(der, public_point)
    })
}

/// A P-256 private key as PKCS#8 (RFC 5208 5; [`PKCS8_P256_LEN`] bytes) into `out`, as
/// `openssl genpkey` writes it: the ECPrivateKey of RFC 5915 inside, with the public key and
/// without the curve (the outer AlgorithmIdentifier names it). Its length.
pub fn pkcs8_private_key(
    scalar: &[u8; 32],
    public_point: &PublicPoint,
    out: &mut [u8],
) -> Result<usize, TooSmall> {
    let mut der = Writer::new(out);
    der.tlv(SEQUENCE, |der| {
        der.primitive(INTEGER, &[0])?;
        p256_algorithm(der)?;
        der.tlv(OCTET_STRING, |der| {
            der.tlv(SEQUENCE, |der| {
                der.primitive(INTEGER, &[1])?;
                der.primitive(OCTET_STRING, scalar)?;
                der.tlv(CONTEXT_1, |der| point_bits(der, public_point))
            })
        })
    })?;
    Ok(der.len)
}

/// The name a request asks for. The common name is the client id; the rest is optional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject<'a> {
    pub common_name: &'a str,
    pub organization: Option<&'a str>,
    pub organizational_unit: Option<&'a str>,
    /// A PrintableString: letters, digits, space and `'()+,-./:=?`.
    pub serial_number: Option<&'a str>,
}

/// One attribute of a [`Subject`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameAttribute {
    CommonName,
    Organization,
    OrganizationalUnit,
    SerialNumber,
}

impl NameAttribute {
    /// Its object identifier's content: id-at-commonName 2.5.4.3 and its siblings.
    fn oid(self) -> [u8; 3] {
        let last = match self {
            Self::CommonName => 3,
            Self::SerialNumber => 5,
            Self::Organization => 10,
            Self::OrganizationalUnit => 11,
        };
        [0x55, 0x04, last]
    }

    fn string_tag(self) -> u8 {
        match self {
            Self::SerialNumber => PRINTABLE_STRING,
            _ => UTF8_STRING,
        }
    }

    /// Whether the attribute's string type holds `c`; UTF8String holds every `char`.
    fn allows(self, c: char) -> bool {
        let printable = c.is_ascii_alphanumeric()
            || matches!(
                c,
                ' ' | '\'' | '(' | ')' | '+' | ',' | '-' | '.' | '/' | ':' | '=' | '?'
            );
        self.string_tag() == UTF8_STRING || printable
    }
}

impl fmt::Display for NameAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CommonName => "common name",
            Self::Organization => "organization",
            Self::OrganizationalUnit => "organizational unit",
            Self::SerialNumber => "serial number",
        })
    }
}

impl<'a> Subject<'a> {
    /// The attributes present, in the order the Name holds them (RFC 2253 prints them
    /// backwards).
    fn attributes(&self) -> impl Iterator<Item = (NameAttribute, &'a str)> {
        [
            (NameAttribute::Organization, self.organization),
            (NameAttribute::OrganizationalUnit, self.organizational_unit),
            (NameAttribute::CommonName, Some(self.common_name)),
            (NameAttribute::SerialNumber, self.serial_number),
        ]
        .into_iter()
        .filter_map(|(attribute, value)| Some((attribute, value?)))
    }

    fn check<E>(&self) -> Result<(), CsrError<E>> {
        for (attribute, value) in self.attributes() {
            if !(1..=MAX_NAME_CHARS).contains(&value.chars().count()) {
                return Err(CsrError::NameLength(attribute));
            }
            if !value.chars().all(|c| attribute.allows(c)) {
                return Err(CsrError::NameCharacters(attribute));
            }
        }
        Ok(())
    }
}

/// Why no request was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrError<E> {
    /// A buffer is too small for the request.
    TooSmall,
    /// An attribute is empty or longer than [`MAX_NAME_CHARS`] characters.
    NameLength(NameAttribute),
    /// An attribute holds a character its string type does not allow.
    NameCharacters(NameAttribute),
    /// The signer failed.
    Signer(E),
}

impl<E> From<TooSmall> for CsrError<E> {
    fn from(_: TooSmall) -> Self {
        CsrError::TooSmall
    }
}

impl<E: fmt::Display> fmt::Display for CsrError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall => f.write_str("the buffer is too small for the certificate request"),
            Self::NameLength(attribute) => write!(
                f,
                "the {attribute} must have 1 to {MAX_NAME_CHARS} characters"
            ),
            Self::NameCharacters(attribute) => write!(
                f,
                "the {attribute} holds a character a PrintableString does not allow"
            ),
            Self::Signer(cause) => write!(f, "signing the certificate request failed: {cause}"),
        }
    }
}

/// The subject as a Name (RFC 5280 4.1.2.4): one attribute to each RelativeDistinguishedName.
fn name(der: &mut Writer<'_>, subject: &Subject<'_>) -> Result<(), TooSmall> {
    der.tlv(SEQUENCE, |der| {
        subject.attributes().try_for_each(|(attribute, value)| {
            der.tlv(SET, |der| {
                der.tlv(SEQUENCE, |der| {
                    der.primitive(OID, &attribute.oid())?;
                    der.primitive(attribute.string_tag(), value.as_bytes())
                })
            })
        })
    })
}

/// The CertificationRequestInfo (RFC 2986 4.1): version 1 (0), no attributes.
fn request_info(
    der: &mut Writer<'_>,
    subject: &Subject<'_>,
    public_point: &PublicPoint,
) -> Result<(), TooSmall> {
    der.tlv(SEQUENCE, |der| {
        der.primitive(INTEGER, &[0])?;
        name(der, subject)?;
        spki(der, public_point)?;
        der.primitive(CONTEXT_0, &[])
    })
}

/// An unsigned big-endian number as a minimal DER INTEGER (X.690 8.3.2): no leading zero
/// byte unless the top bit would make it negative.
fn unsigned_integer(der: &mut Writer<'_>, number: &[u8]) -> Result<(), TooSmall> {
    let start = number.iter().position(|&b| b != 0).unwrap_or(number.len());
    let magnitude = number.get(start..).unwrap_or_default();
    der.tlv(INTEGER, |der| {
        match magnitude.first() {
            Some(&top) if top < 0x80 => {}
            _ => der.bytes(&[0])?,
        }
        der.bytes(magnitude)
    })
}

/// Raw `r || s` as an ECDSA-Sig-Value (RFC 5480 / RFC 3279 2.2.3).
fn ecdsa_signature(der: &mut Writer<'_>, raw: &[u8; 64]) -> Result<(), TooSmall> {
    let (r, s) = raw.split_at(32);
    der.tlv(SEQUENCE, |der| {
        unsigned_integer(der, r)?;
        unsigned_integer(der, s)
    })
}

/// A PKCS#10 certificate request (RFC 2986 4) for `subject` and the key, in DER, into `out`:
/// its length. `sign` gets the CertificationRequestInfo's bytes and gives the raw `r || s` of
/// ECDSA with SHA-256 over them (what PSA's `psa_sign_message` gives).
pub fn csr_der<E>(
    subject: &Subject<'_>,
    public_point: &PublicPoint,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
    out: &mut [u8],
) -> Result<usize, CsrError<E>> {
    subject.check()?;
    let mut der = Writer::new(out);
    der.tlv(SEQUENCE, |der| {
        let start = der.len;
        request_info(der, subject, public_point)?;
        let signature = sign(der.since(start)).map_err(CsrError::Signer)?;
        der.tlv(SEQUENCE, |der| der.primitive(OID, ECDSA_WITH_SHA256))?;
        der.tlv(BIT_STRING, |der| {
            der.bytes(&[0])?;
            ecdsa_signature(der, &signature)
        })?;
        Ok::<_, CsrError<E>>(())
    })?;
    Ok(der.len)
}

/// The request of [`csr_der`], made in `work`, as PEM into `pem` (64 characters a line, `\n`
/// line ends, no NUL): its length. [`MAX_CSR_DER`] and [`MAX_CSR_PEM`] bytes are enough for
/// any subject.
pub fn csr_pem<E>(
    subject: &Subject<'_>,
    public_point: &PublicPoint,
    sign: impl FnOnce(&[u8]) -> Result<[u8; 64], E>,
    work: &mut [u8],
    pem: &mut [u8],
) -> Result<usize, CsrError<E>> {
    let len = csr_der(subject, public_point, sign, work)?;
    let der = work.get(..len).ok_or(TooSmall)?;
    Ok(pem_encode(PEM_LABEL, der, pem)?)
}

const PEM_LABEL: &str = "CERTIFICATE REQUEST";
/// DER bytes to a line of 64 base64 characters.
const PEM_LINE_BYTES: usize = 48;

/// The length of the PEM of `der_len` bytes of request.
pub const fn pem_len(der_len: usize) -> usize {
    let text = der_len.div_ceil(3) * 4;
    let lines = der_len.div_ceil(PEM_LINE_BYTES);
    "-----BEGIN -----\n".len() + "-----END -----\n".len() + 2 * PEM_LABEL.len() + text + lines
}

/// RFC 7468 PEM of `der` with `label`: its length.
fn pem_encode(label: &str, der: &[u8], out: &mut [u8]) -> Result<usize, TooSmall> {
    let mut pem = Writer::new(out);
    for part in ["-----BEGIN ", label, "-----\n"] {
        pem.bytes(part.as_bytes())?;
    }
    for line in der.chunks(PEM_LINE_BYTES) {
        for group in line.chunks(3) {
            pem.bytes(&base64_group(group))?;
        }
        pem.bytes(b"\n")?;
    }
    for part in ["-----END ", label, "-----\n"] {
        pem.bytes(part.as_bytes())?;
    }
    Ok(pem.len)
}

/// Up to three bytes as four base64 characters (RFC 4648 4), `=` padded.
fn base64_group(group: &[u8]) -> [u8; 4] {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let byte = |i: usize| group.get(i).copied().unwrap_or(0);
    let bits = u32::from(byte(0)) << 16 | u32::from(byte(1)) << 8 | u32::from(byte(2));
    let mut text = [b'='; 4];
    for (i, c) in text.iter_mut().enumerate().take(group.len() + 1) {
        let index = (bits >> (18 - 6 * i)) & 0x3F;
        *c = ALPHABET.get(index as usize).copied().unwrap_or(b'=');
    }
    text
}
