//! The fleet-provisioning API's payloads (JSON): the requests the device publishes and the
//! replies it takes apart. Strings in replies are read escaped and unescaped into bounded
//! buffers; the certificate goes from its PEM text straight to DER.

use core::fmt;
use heapless::{String, Vec};
use provisioning::base64::{Base64Error, Decoder, FeedError};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde::Deserialize;
use serde_json_core::str::{EscapedStr, EscapedStringFragment};

/// An AWS IoT certificate id: 64 hexadecimal characters.
pub const MAX_CERTIFICATE_ID: usize = 64;
/// The longest thing name AWS IoT allows.
pub const MAX_THING_NAME: usize = 128;
/// Enough of a refusal's error code to name it.
pub const MAX_ERROR_CODE: usize = 48;
/// Enough of a refusal's message for a log line; longer ones are cut.
pub const MAX_ERROR_MESSAGE: usize = 120;

/// Why a request did not fit its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTooLong;

impl fmt::Display for RequestTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the provisioning request does not fit its buffer")
    }
}

#[derive(serde::Serialize)]
struct CreateFromCsrRequest<'a> {
    #[serde(rename = "certificateSigningRequest")]
    csr: &'a str,
}

/// `{"certificateSigningRequest": "<PEM>"}` into `out`: its length.
pub fn create_from_csr(csr_pem: &str, out: &mut [u8]) -> Result<usize, RequestTooLong> {
    serde_json_core::to_slice(&CreateFromCsrRequest { csr: csr_pem }, out)
        .map_err(|_| RequestTooLong)
}

/// A template's parameters, as a JSON object of strings.
struct Parameters<'a>(&'a [(&'a str, &'a str)]);

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(serde::Serialize)]
struct RegisterThingRequest<'a> {
    #[serde(rename = "certificateOwnershipToken")]
    token: &'a str,
    parameters: Parameters<'a>,
}

/// `{"certificateOwnershipToken": …, "parameters": {…}}` into `out`: its length.
pub fn register_thing(
    ownership_token: &str,
    parameters: &[(&str, &str)],
    out: &mut [u8],
) -> Result<usize, RequestTooLong> {
    let request = RegisterThingRequest {
        token: ownership_token,
        parameters: Parameters(parameters),
    };
    serde_json_core::to_slice(&request, out).map_err(|_| RequestTooLong)
}

/// Why a reply was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyError {
    /// Not JSON, or a field missing or of the wrong type.
    Malformed,
    /// A string field longer than the device keeps.
    FieldTooLong(&'static str),
    /// `certificatePem` is not one PEM certificate.
    Pem(PemError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str(
                "the reply is not the JSON the API sends (a field missing or of the wrong type)",
            ),
            Self::FieldTooLong(field) => {
                write!(f, "the reply's {field} is longer than the device keeps")
            }
            Self::Pem(cause) => write!(f, "the reply's certificatePem: {cause}"),
        }
    }
}

/// Why `certificatePem` was not a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemError {
    NoBeginLine,
    NoEndLine,
    /// Text after the certificate (a second certificate, a key): the device takes exactly one.
    TextAfterEnd,
    Base64(Base64Error),
    /// A line longer than PEM's 64 characters (with room for a header line).
    LineTooLong,
    /// Larger than the buffer for the certificate.
    TooLarge,
    /// A `\u` escape or other character PEM text never holds.
    NotPemText,
}

impl fmt::Display for PemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBeginLine => f.write_str("no -----BEGIN CERTIFICATE----- line"),
            Self::NoEndLine => f.write_str("no -----END CERTIFICATE----- line"),
            Self::TextAfterEnd => {
                f.write_str("text after the certificate (the device takes exactly one)")
            }
            Self::Base64(Base64Error::InvalidCharacter) => {
                f.write_str("a character that is not base64")
            }
            Self::Base64(Base64Error::BadPadding) => {
                f.write_str("base64 padding in the wrong place")
            }
            Self::Base64(Base64Error::Truncated) => {
                f.write_str("the base64 text ends inside a group")
            }
            Self::LineTooLong => f.write_str("a line longer than PEM allows"),
            Self::TooLarge => f.write_str("the certificate is larger than the device keeps"),
            Self::NotPemText => f.write_str("characters that PEM text never holds"),
        }
    }
}

#[derive(Deserialize)]
struct CertificateAcceptedFields<'a> {
    #[serde(rename = "certificateId", borrow)]
    certificate_id: EscapedStr<'a>,
    #[serde(rename = "certificatePem", borrow)]
    certificate_pem: EscapedStr<'a>,
    #[serde(rename = "certificateOwnershipToken", borrow)]
    ownership_token: EscapedStr<'a>,
}

/// The signer's certificate for the device's CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateAccepted<'b> {
    pub certificate_id: String<MAX_CERTIFICATE_ID>,
    /// The certificate, DER, in the caller's buffer.
    pub certificate: &'b [u8],
    /// Proof for the registration, in the caller's buffer; expires (an hour on AWS IoT).
    pub ownership_token: &'b str,
}

/// Takes apart a reply on `create-from-csr/json/accepted`: the certificate goes to
/// `certificate_out` as DER, the ownership token to `token_out`.
pub fn certificate_accepted<'b>(
    payload: &[u8],
    certificate_out: &'b mut [u8],
    token_out: &'b mut [u8],
) -> Result<CertificateAccepted<'b>, ReplyError> {
    let (fields, _): (CertificateAcceptedFields<'_>, usize) =
        serde_json_core::from_slice(payload).map_err(|_| ReplyError::Malformed)?;
    let certificate_id = unescape_whole(fields.certificate_id, "certificateId")?;
    let length =
        pem_certificate_to_der(fields.certificate_pem, certificate_out).map_err(ReplyError::Pem)?;
    let ownership_token = unescape_into(fields.ownership_token, token_out)
        .ok_or(ReplyError::FieldTooLong("certificateOwnershipToken"))?;
    let certificate = certificate_out
        .get(..length)
        .ok_or(ReplyError::Pem(PemError::TooLarge))?;
    Ok(CertificateAccepted {
        certificate_id,
        certificate,
        ownership_token,
    })
}

#[derive(Deserialize)]
struct RejectedFields<'a> {
    #[serde(rename = "statusCode")]
    status_code: u16,
    #[serde(rename = "errorCode", borrow)]
    error_code: EscapedStr<'a>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: EscapedStr<'a>,
}

/// A refusal on a `…/rejected` topic, kept to be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status_code: u16,
    pub error_code: String<MAX_ERROR_CODE>,
    /// Cut to [`MAX_ERROR_MESSAGE`] bytes at a character boundary.
    pub error_message: String<MAX_ERROR_MESSAGE>,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refused with status {} ({}): {}",
            self.status_code, self.error_code, self.error_message
        )
    }
}

/// Takes apart a reply on a `…/rejected` topic.
pub fn rejected(payload: &[u8]) -> Result<Rejected, ReplyError> {
    let (fields, _): (RejectedFields<'_>, usize) =
        serde_json_core::from_slice(payload).map_err(|_| ReplyError::Malformed)?;
    Ok(Rejected {
        status_code: fields.status_code,
        error_code: unescape_cut(fields.error_code)?,
        error_message: unescape_cut(fields.error_message)?,
    })
}

#[derive(Deserialize)]
struct RegistrationAcceptedFields<'a> {
    #[serde(rename = "thingName", borrow)]
    thing_name: EscapedStr<'a>,
}

/// Takes apart a reply on the template's `provision/json/accepted`: the thing's name (the
/// device configuration the template may add is not used).
pub fn registration_accepted(payload: &[u8]) -> Result<String<MAX_THING_NAME>, ReplyError> {
    let (fields, _): (RegistrationAcceptedFields<'_>, usize) =
        serde_json_core::from_slice(payload).map_err(|_| ReplyError::Malformed)?;
    unescape_whole(fields.thing_name, "thingName")
}

/// The characters of an escaped JSON string, `None` at an invalid escape.
fn chars<'a>(text: EscapedStr<'a>) -> impl Iterator<Item = Option<char>> + 'a {
    text.fragments().flat_map(|fragment| {
        let (plain, escaped) = match fragment {
            Ok(EscapedStringFragment::NotEscaped(plain)) => (plain, None),
            Ok(EscapedStringFragment::Escaped(c)) => ("", Some(Some(c))),
            Err(_) => ("", Some(None)),
        };
        plain.chars().map(Some).chain(escaped)
    })
}

fn unescape_into<'b>(text: EscapedStr<'_>, out: &'b mut [u8]) -> Option<&'b str> {
    let mut length = 0;
    for c in chars(text) {
        let mut utf8 = [0; 4];
        let encoded = c?.encode_utf8(&mut utf8).as_bytes();
        out.get_mut(length..length + encoded.len())?
            .copy_from_slice(encoded);
        length += encoded.len();
    }
    core::str::from_utf8(out.get(..length)?).ok()
}

fn unescape_whole<const N: usize>(
    text: EscapedStr<'_>,
    field: &'static str,
) -> Result<String<N>, ReplyError> {
    let mut out = String::new();
    for c in chars(text) {
        out.push(c.ok_or(ReplyError::Malformed)?)
            .map_err(|()| ReplyError::FieldTooLong(field))?;
    }
    Ok(out)
}

/// Unescaped and cut at a character boundary to fit.
fn unescape_cut<const N: usize>(text: EscapedStr<'_>) -> Result<String<N>, ReplyError> {
    let mut out = String::new();
    for c in chars(text) {
        if out.push(c.ok_or(ReplyError::Malformed)?).is_err() {
            break;
        }
    }
    Ok(out)
}

/// The longest PEM line kept: 64 characters of base64, or a header.
const MAX_PEM_LINE: usize = 76;
const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

#[derive(Clone, Copy, PartialEq, Eq)]
enum PemPart {
    BeforeBegin,
    Body,
    AfterEnd,
}

/// One PEM certificate (as a JSON string) to DER in `out`: its length.
pub fn pem_certificate_to_der(pem: EscapedStr<'_>, out: &mut [u8]) -> Result<usize, PemError> {
    let mut part = PemPart::BeforeBegin;
    let mut decoder = Decoder::new();
    let mut length = 0;
    let mut line: Vec<u8, MAX_PEM_LINE> = Vec::new();
    // A final newline ends the last line; text without one is ended by the chain's '\n'.
    for c in chars(pem).chain(core::iter::once(Some('\n'))) {
        let c = c.ok_or(PemError::NotPemText)?;
        if c != '\n' {
            let byte = u8::try_from(c)
                .ok()
                .filter(u8::is_ascii)
                .ok_or(PemError::NotPemText)?;
            line.push(byte).map_err(|_| PemError::LineTooLong)?;
            continue;
        }
        let text = line.strip_suffix(b"\r").unwrap_or(&line).trim_ascii();
        part = match part {
            PemPart::BeforeBegin if text.is_empty() => PemPart::BeforeBegin,
            PemPart::BeforeBegin if text == BEGIN.as_bytes() => PemPart::Body,
            PemPart::BeforeBegin => return Err(PemError::NoBeginLine),
            PemPart::Body if text == END.as_bytes() => {
                decoder.finish().map_err(PemError::Base64)?;
                PemPart::AfterEnd
            }
            PemPart::Body => {
                decoder
                    .feed(text, &mut |byte| {
                        let slot = out.get_mut(length).ok_or(())?;
                        *slot = byte;
                        length += 1;
                        Ok(())
                    })
                    .map_err(|e| match e {
                        FeedError::Base64(cause) => PemError::Base64(cause),
                        FeedError::Sink(()) => PemError::TooLarge,
                    })?;
                PemPart::Body
            }
            PemPart::AfterEnd if text.is_empty() => PemPart::AfterEnd,
            PemPart::AfterEnd => return Err(PemError::TextAfterEnd),
        };
        line.clear();
    }
    match part {
        PemPart::AfterEnd => Ok(length),
        PemPart::Body => Err(PemError::NoEndLine),
        PemPart::BeforeBegin => Err(PemError::NoBeginLine),
    }
}
