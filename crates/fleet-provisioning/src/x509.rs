//! What the device reads from an issued X.509 certificate (RFC 5280 4.1) to decide whether it
//! is its own ([`crate::issued`]): the key, the subject's common name, the names and the
//! validity. The signature is not checked here: mbedTLS verifies the certificate against the
//! device CA in the firmware.
//!
//! It walks the DER of the TBSCertificate as far as the SubjectPublicKeyInfo and validates no
//! more than it reads: extensions and the signature are left alone.

use core::fmt;

use crate::issued::IssuedFacts;

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0C;
const PRINTABLE_STRING: u8 = 0x13;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// `[0]` EXPLICIT: the TBSCertificate's version.
const VERSION_TAG: u8 = 0xA0;
/// id-at-commonName, 2.5.4.3
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The facts of a certificate, its parts borrowed from its DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateFacts<'a> {
    /// The SubjectPublicKeyInfo, tag and length included: what
    /// [`crate::csr::subject_public_key_info`] writes for the same key.
    pub public_key: &'a [u8],
    /// The subject's common name (UTF8String or PrintableString), `None` without one.
    pub common_name: Option<&'a str>,
    /// The issuer's Name, tag and length included.
    pub issuer: &'a [u8],
    /// The subject's Name, tag and length included.
    pub subject: &'a [u8],
    /// notBefore and notAfter, seconds since 1970; dates before 1970 read as 1970.
    pub not_before: u64,
    pub not_after: u64,
}

impl<'a> CertificateFacts<'a> {
    /// The facts [`crate::issued::check`] judges, with whether mbedTLS verified the
    /// certificate against the device CA (`None` where none is configured).
    pub fn issued(&self, issued_by_device_ca: Option<bool>) -> IssuedFacts<'a> {
        IssuedFacts {
            public_key: self.public_key,
            common_name: self.common_name,
            not_before: self.not_before,
            not_after: self.not_after,
            issued_by_device_ca,
        }
    }
}

/// A part of a certificate, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Certificate,
    TbsCertificate,
    Version,
    SerialNumber,
    SignatureAlgorithm,
    Issuer,
    Validity,
    NotBefore,
    NotAfter,
    Subject,
    PublicKey,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Certificate => "certificate",
            Self::TbsCertificate => "to-be-signed part",
            Self::Version => "version",
            Self::SerialNumber => "serial number",
            Self::SignatureAlgorithm => "signature algorithm",
            Self::Issuer => "issuer",
            Self::Validity => "validity",
            Self::NotBefore => "notBefore",
            Self::NotAfter => "notAfter",
            Self::Subject => "subject",
            Self::PublicKey => "public key",
        })
    }
}

/// Why a certificate could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X509Error {
    /// A part is missing, cut short or not the DER it should be.
    Malformed(Part),
    /// Bytes follow the certificate.
    TrailingBytes,
    /// A time is not a UTCTime or GeneralizedTime of RFC 5280 (seconds, `Z`), or no date.
    Time(Part),
    /// The subject's common name is neither a UTF8String nor a PrintableString.
    CommonNameType,
    /// The subject's common name is not valid UTF-8.
    CommonNameEncoding,
    /// The subject has more than one common name.
    SeveralCommonNames,
}

impl fmt::Display for X509Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(part) => write!(f, "the certificate's {part} is not well-formed DER"),
            Self::TrailingBytes => f.write_str("bytes follow the certificate's DER"),
            Self::Time(part) => write!(
                f,
                "the certificate's {part} is not a date in RFC 5280's UTCTime or GeneralizedTime"
            ),
            Self::CommonNameType => f.write_str(
                "the certificate's common name is neither a UTF8String nor a PrintableString",
            ),
            Self::CommonNameEncoding => f.write_str("the certificate's common name is not UTF-8"),
            Self::SeveralCommonNames => {
                f.write_str("the certificate's subject has more than one common name")
            }
        }
    }
}

/// One TLV read from DER.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    /// The whole TLV, tag and length included.
    whole: &'a [u8],
}

/// The first TLV of `der` and the bytes after it. Lengths take the definite form in at most
/// three octets (16 MiB: more than any certificate).
fn tlv(der: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7F => (usize::from(first), rest),
        0x81..=0x83 => {
            let (octets, rest) = split(rest, usize::from(first & 0x7F))?;
            let len = octets.iter().fold(0, |len, &b| len << 8 | usize::from(b));
            (len, rest)
        }
        _ => return None,
    };
    let (content, after) = split(rest, len)?;
    let whole = der.get(..der.len() - after.len())?;
    Some((
        Tlv {
            tag,
            content,
            whole,
        },
        after,
    ))
}

fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    Some((bytes.get(..at)?, bytes.get(at..)?))
}

/// The TLV of `der` with `tag`, else the part malformed; and the bytes after it.
fn expect(der: &[u8], tag: u8, part: Part) -> Result<(Tlv<'_>, &[u8]), X509Error> {
    match tlv(der) {
        Some((found, rest)) if found.tag == tag => Ok((found, rest)),
        _ => Err(X509Error::Malformed(part)),
    }
}

/// The facts of an X.509 certificate in DER, which must hold nothing else.
pub fn certificate_facts(der: &[u8]) -> Result<CertificateFacts<'_>, X509Error> {
    let (certificate, after) = expect(der, SEQUENCE, Part::Certificate)?;
    if !after.is_empty() {
        return Err(X509Error::TrailingBytes);
    }
    let (tbs, _) = expect(certificate.content, SEQUENCE, Part::TbsCertificate)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&VERSION_TAG) {
        rest = expect(rest, VERSION_TAG, Part::Version)?.1;
    }
    rest = expect(rest, INTEGER, Part::SerialNumber)?.1;
    rest = expect(rest, SEQUENCE, Part::SignatureAlgorithm)?.1;
    let (issuer, rest) = expect(rest, SEQUENCE, Part::Issuer)?;
    let (validity, rest) = expect(rest, SEQUENCE, Part::Validity)?;
    let (subject, rest) = expect(rest, SEQUENCE, Part::Subject)?;
    let (public_key, _) = expect(rest, SEQUENCE, Part::PublicKey)?;
    let (not_before, not_after) = validity_times(validity.content)?;
    Ok(CertificateFacts {
        public_key: public_key.whole,
        common_name: common_name(subject.content)?,
        issuer: issuer.whole,
        subject: subject.whole,
        not_before,
        not_after,
    })
}

/// Validity ::= SEQUENCE { notBefore Time, notAfter Time }
fn validity_times(validity: &[u8]) -> Result<(u64, u64), X509Error> {
    let (not_before, rest) = tlv(validity).ok_or(X509Error::Malformed(Part::NotBefore))?;
    let (not_after, _) = tlv(rest).ok_or(X509Error::Malformed(Part::NotAfter))?;
    let not_before = time(&not_before).ok_or(X509Error::Time(Part::NotBefore))?;
    let not_after = time(&not_after).ok_or(X509Error::Time(Part::NotAfter))?;
    Ok((not_before, not_after))
}

/// The one common name of a Name's RDNSequence content, if any.
fn common_name(rdns: &[u8]) -> Result<Option<&str>, X509Error> {
    let mut found = None;
    let mut rest = rdns;
    while !rest.is_empty() {
        let (rdn, after) = expect(rest, SET, Part::Subject)?;
        rest = after;
        let mut attributes = rdn.content;
        while !attributes.is_empty() {
            let (attribute, after) = expect(attributes, SEQUENCE, Part::Subject)?;
            attributes = after;
            let (oid, value) = expect(attribute.content, OID, Part::Subject)?;
            if oid.content != COMMON_NAME {
                continue;
            }
            if found.is_some() {
                return Err(X509Error::SeveralCommonNames);
            }
            found = Some(name_string(value)?);
        }
    }
    Ok(found)
}

/// An attribute value that is a UTF8String or PrintableString, as text.
fn name_string(value: &[u8]) -> Result<&str, X509Error> {
    let (string, _) = tlv(value).ok_or(X509Error::Malformed(Part::Subject))?;
    if string.tag != UTF8_STRING && string.tag != PRINTABLE_STRING {
        return Err(X509Error::CommonNameType);
    }
    core::str::from_utf8(string.content).map_err(|_| X509Error::CommonNameEncoding)
}

/// A Time (RFC 5280 4.1.2.5) as seconds since 1970: UTCTime `YYMMDDHHMMSSZ` (YY of 50 and
/// more in the 1900s) or GeneralizedTime `YYYYMMDDHHMMSSZ`, nothing else.
fn time(value: &Tlv<'_>) -> Option<u64> {
    let (year, rest) = match value.tag {
        UTC_TIME => {
            let (yy, rest) = digits(value.content, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        GENERALIZED_TIME => digits(value.content, 4)?,
        _ => return None,
    };
    let (month, rest) = digits(rest, 2)?;
    let (day, rest) = digits(rest, 2)?;
    let (hour, rest) = digits(rest, 2)?;
    let (minute, rest) = digits(rest, 2)?;
    let (second, rest) = digits(rest, 2)?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60
        && rest == b"Z";
    if !valid {
        return None;
    }
    let seconds =
        days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3_600 + minute * 60 + second);
    Some(u64::try_from(seconds).unwrap_or(0))
}

/// `count` decimal digits as a number, and the bytes after them.
fn digits(text: &[u8], count: usize) -> Option<(u32, &[u8])> {
    let (number, rest) = split(text, count)?;
    let value = number.iter().try_fold(0, |value: u32, &c| {
        c.is_ascii_digit().then(|| value * 10 + u32::from(c - b'0'))
    })?;
    Some((value, rest))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (H. Hinnant's
/// `days_from_civil`), for years 0 to 9999.
fn days_from_civil(year: u32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> Option<u64> {
        let content = text.as_bytes();
        time(&Tlv {
            tag: UTC_TIME,
            content,
            whole: content,
        })
    }

    fn generalized(text: &str) -> Option<u64> {
        let content = text.as_bytes();
        time(&Tlv {
            tag: GENERALIZED_TIME,
            content,
            whole: content,
        })
    }

    // The seconds are GNU `date -u -d <date> +%s`'s.
    #[test]
    fn times_read_as_gnu_date_counts_them() {
        assert_eq!(utc("700101000000Z"), Some(0));
        assert_eq!(utc("991231235959Z"), Some(946_684_799));
        assert_eq!(utc("000229120000Z"), Some(951_825_600));
        assert_eq!(utc("491231235959Z"), Some(2_524_607_999));
        assert_eq!(generalized("20500101000000Z"), Some(2_524_608_000));
        assert_eq!(generalized("20600101000000Z"), Some(2_840_140_800));
        assert_eq!(generalized("99991231235959Z"), Some(253_402_300_799));
        // 1950 to 1969: before the clock starts, read as its start.
        assert_eq!(utc("500101000000Z"), Some(0));
        assert_eq!(generalized("19691231235959Z"), Some(0));
    }

    #[test]
    fn times_rfc_5280_does_not_allow_are_refused() {
        for bad in [
            "700101000000",
            "7001010000Z",
            "700101000000+0100",
            "010229000000Z",
            "001301000000Z",
            "000100000000Z",
            "000431000000Z",
            "000101240000Z",
            "000101006000Z",
            "000101000060Z",
            "0001010000 0Z",
            "000101000000Z ",
        ] {
            assert_eq!(utc(bad), None, "{bad}");
        }
        assert_eq!(generalized("20600101000000.5Z"), None);
        assert_eq!(generalized("210002290000000Z"), None);
        assert_eq!(generalized("21000229000000Z"), None);
        assert_eq!(generalized("20000229000000Z"), Some(951_782_400));
        let other_tag = Tlv {
            tag: 0x04,
            content: b"700101000000Z",
            whole: &[],
        };
        assert_eq!(time(&other_tag), None);
    }
}
