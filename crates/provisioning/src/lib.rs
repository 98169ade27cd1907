//! Credential provisioning without rebuilding, sans IO: an operator uploads the CA, the
//! device certificate or the device key as base64 DER lines, the upload is checked, changes
//! are staged, and a commit checks the whole set (a CA to trust, certificate and key as a
//! matching pair) before it is written as one record. The firmware stores that record in
//! flash (Zephyr settings on NVS), parses X.509 and keys with mbedTLS through [`Inspector`],
//! and applies the set at boot and before the next connection.
//!
//! Nothing half-done takes effect: a malformed line drops its upload, a failed check leaves
//! the staged set as it was, and the stored record changes only by a whole write.
#![no_std]
#![forbid(unsafe_code)]

pub mod base64;
pub mod bundle;
pub mod keyinfo;
mod set;

pub use bundle::MAX_TRUST_ANCHORS;
pub use keyinfo::KeyType;
pub use set::{CredentialSet, OverCapacity, Source, StoreError, MAX_RECORD};

use base64::{Base64Error, Decoder, FeedError};
use core::fmt;
use heapless::Vec;

/// The largest certificate (DER) the device keeps: a P-256 certificate is about 500 bytes, an
/// RSA-4096 root about 1,400 (ISRG Root X1: 1,391), so this leaves room for long names.
pub const MAX_CERTIFICATE: usize = 2048;
/// The largest CA bundle (several roots, so that a broker can move from one to another): two
/// RSA-4096 roots, or up to [`MAX_TRUST_ANCHORS`] ECDSA ones.
pub const MAX_CA_BUNDLE: usize = 3072;
/// The largest private key (DER): a P-256 PKCS#8 key is 138 bytes, an RSA-2048 one about
/// 1,220. Larger RSA device keys come with the image (`APP_CERTS_DIR`) only.
pub const MAX_KEY: usize = 1280;

/// Which credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The CAs of which one must have signed the broker's certificate: a bundle of one to
    /// [`MAX_TRUST_ANCHORS`] roots.
    Ca,
    /// The device's certificate (mutual TLS).
    DeviceCertificate,
    /// The device's private key (mutual TLS).
    DeviceKey,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Ca, Kind::DeviceCertificate, Kind::DeviceKey];

    /// The shell's name for it: `ca`, `cert`, `key`.
    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "ca" => Some(Kind::Ca),
            "cert" => Some(Kind::DeviceCertificate),
            "key" => Some(Kind::DeviceKey),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Ca => "ca",
            Kind::DeviceCertificate => "cert",
            Kind::DeviceKey => "key",
        }
    }

    /// The most DER bytes the device keeps for it.
    pub fn capacity(self) -> usize {
        match self {
            Kind::Ca => MAX_CA_BUNDLE,
            Kind::DeviceCertificate => MAX_CERTIFICATE,
            Kind::DeviceKey => MAX_KEY,
        }
    }

    /// The most DER bytes one upload of it takes.
    fn upload_limit(self) -> usize {
        match self {
            Kind::Ca | Kind::DeviceCertificate => MAX_CERTIFICATE,
            Kind::DeviceKey => MAX_KEY,
        }
    }
}

/// The X.509 and key parsing the checks need; mbedTLS on the device.
pub trait Inspector {
    /// Parses `der` as an X.509 certificate as the TLS stack does; `Err` holds its error code.
    fn parse_certificate(&mut self, der: &[u8]) -> Result<(), i32>;
    /// Parses `der` as a private key as the TLS stack does; `Err` holds its error code.
    fn parse_private_key(&mut self, der: &[u8]) -> Result<(), i32>;
    /// Whether this build can use a key of this type; `Err` says what it takes instead, and
    /// how to get a build that takes this one.
    fn supports(&mut self, key: KeyType) -> Result<(), &'static str>;
    /// Whether `key` is the private key of `certificate`'s public key.
    fn key_matches_certificate(&mut self, certificate: &[u8], key: &[u8]) -> bool;
    /// SHA-256 of a certificate's DER, or of a key's public half (never of private bytes).
    fn fingerprint(&mut self, kind: Kind, der: &[u8]) -> Option<[u8; 32]>;
}

/// Why a provisioning step was refused. Each leaves the stored and staged sets unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionError {
    /// Not `ca`, `cert` or `key`.
    UnknownKind,
    /// `add` of a credential other than the CA bundle.
    OnlyCaAdds,
    /// `add ca` while the staged CA is the image's or deleted: nothing provisioned to add to.
    NoProvisionedCa,
    /// The CA bundle would hold more roots or bytes than the device keeps.
    BundleFull { limit: usize },
    /// `begin` while another upload is open.
    UploadInProgress,
    /// `data` or `end` without `begin`.
    NoUpload,
    /// The text is not base64 (the upload is dropped).
    BadBase64(Base64Error),
    /// More DER bytes than the device keeps for this kind (the upload is dropped).
    TooLarge { limit: usize },
    /// An upload of nothing.
    Empty,
    /// Uploaded as `ca` or `cert`, but not an X.509 certificate the TLS stack can parse
    /// (its error code).
    NotACertificate { code: i32 },
    /// Uploaded as `key`, but not a private key the TLS stack can parse (its error code).
    NotAPrivateKey { code: i32 },
    /// A certificate or key whose algorithm, curve or size this build cannot use; `accepted`
    /// names what it takes.
    UnsupportedKey {
        key: KeyType,
        accepted: &'static str,
    },
    /// The staged set does not fit the record that flash holds.
    SetTooLarge { len: usize, limit: usize },
    /// The device key is not the key of the device certificate.
    KeyDoesNotMatchCertificate,
    /// A device certificate without a key, or a key without a certificate.
    IncompletePair,
    /// No CA: the device would trust no broker.
    NoCa,
    /// Nothing staged to commit.
    NothingStaged,
}

impl ProvisionError {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProvisionError::UnknownKind => "unknown credential: use ca, cert or key",
            ProvisionError::UploadInProgress => "an upload is open: end or abort it first",
            ProvisionError::OnlyCaAdds => {
                "only ca takes several: cert and key are one each (use begin)"
            }
            ProvisionError::NoProvisionedCa => {
                "no provisioned ca to add to: upload the first root with begin ca"
            }
            ProvisionError::BundleFull { .. } => "the CA bundle is full",
            ProvisionError::NoUpload => "no upload open: start one with begin",
            ProvisionError::BadBase64(Base64Error::InvalidCharacter) => {
                "not base64: a character outside the alphabet; upload dropped"
            }
            ProvisionError::BadBase64(Base64Error::BadPadding) => {
                "not base64: misplaced padding; upload dropped"
            }
            ProvisionError::BadBase64(Base64Error::Truncated) => {
                "not base64: the text ends inside a group; upload dropped"
            }
            ProvisionError::TooLarge { .. } => "too large for this credential; upload dropped",
            ProvisionError::Empty => "empty upload",
            ProvisionError::NotACertificate { .. } => "not an X.509 certificate (DER)",
            ProvisionError::NotAPrivateKey { .. } => "not a private key (DER)",
            ProvisionError::UnsupportedKey { .. } => "a key this build cannot use",
            ProvisionError::SetTooLarge { .. } => "the set is larger than the record in flash",
            ProvisionError::KeyDoesNotMatchCertificate => {
                "the device key does not match the device certificate"
            }
            ProvisionError::IncompletePair => {
                "the device certificate and key go together: provide or delete both"
            }
            ProvisionError::NoCa => "no CA: the device would trust no broker",
            ProvisionError::NothingStaged => "nothing staged",
        }
    }
}

impl fmt::Display for ProvisionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProvisionError::TooLarge { limit } => {
                write!(f, "{} (limit {limit} bytes)", self.as_str())
            }
            ProvisionError::BundleFull { limit } => write!(
                f,
                "{}: at most {MAX_TRUST_ANCHORS} roots and {limit} bytes",
                self.as_str()
            ),
            ProvisionError::NotACertificate { code } | ProvisionError::NotAPrivateKey { code } => {
                write!(
                    f,
                    "{} that mbedTLS can parse (error -0x{:04x})",
                    self.as_str(),
                    code.unsigned_abs()
                )
            }
            ProvisionError::UnsupportedKey { key, accepted } => {
                write!(f, "its key is {key}; {accepted}")
            }
            ProvisionError::SetTooLarge { len, limit } => write!(
                f,
                "the set needs {len} bytes of flash, the record holds {limit}: use smaller \
                 credentials (ECDSA keys), or the image's for some of them"
            ),
            other => f.write_str(other.as_str()),
        }
    }
}

/// What the image carries for each kind (the build's `APP_CERTS_DIR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ImageCredentials<'a> {
    pub ca: Option<&'a [u8]>,
    pub device_certificate: Option<&'a [u8]>,
    pub device_key: Option<&'a [u8]>,
}

impl<'a> ImageCredentials<'a> {
    pub fn get(&self, kind: Kind) -> Option<&'a [u8]> {
        match kind {
            Kind::Ca => self.ca,
            Kind::DeviceCertificate => self.device_certificate,
            Kind::DeviceKey => self.device_key,
        }
    }
}

struct Upload {
    kind: Kind,
    /// `add`: the upload joins the staged CA bundle instead of replacing it.
    adds: bool,
    decoder: Decoder,
    der: Vec<u8, MAX_CERTIFICATE>,
}

/// The operator's session: an open upload, and the staged set (the stored one plus changes).
pub struct Provisioner {
    staged: CredentialSet,
    changed: bool,
    /// Whether `upload` is open. Not an `Option<Upload>`: its `None` is a non-zero byte, and
    /// a non-zero initial value puts the device's static of this type in `.data`, whose
    /// initial image costs its whole size in flash; all zeros, it goes to `.bss`.
    uploading: bool,
    upload: Upload,
}

impl Default for Provisioner {
    fn default() -> Self {
        Self::new()
    }
}

impl Provisioner {
    /// Nothing stored yet: every credential from the image.
    pub const fn new() -> Self {
        Self {
            staged: CredentialSet::image(),
            changed: false,
            uploading: false,
            upload: Upload {
                kind: Kind::Ca,
                adds: false,
                decoder: Decoder::new(),
                der: Vec::new(),
            },
        }
    }

    /// Starts over from the stored record (boot, abort, after a commit failed to write).
    pub fn load(&mut self, record: Option<&[u8]>) -> Result<(), StoreError> {
        self.uploading = false;
        self.changed = false;
        match record {
            None => {
                self.staged.reset_to_image();
                Ok(())
            }
            Some(bytes) => {
                let loaded = self.staged.load(bytes);
                if loaded.is_err() {
                    self.staged.reset_to_image();
                }
                loaded
            }
        }
    }

    /// The staged set: what the device uses after the next commit.
    pub fn staged(&self) -> &CredentialSet {
        &self.staged
    }

    /// Whether changes are staged and not committed.
    pub fn has_changes(&self) -> bool {
        self.changed
    }

    /// Opens an upload of `kind`; it replaces the staged one.
    pub fn begin(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.open(kind, false)
    }

    /// Opens an upload of one more root for the staged CA bundle (provisioned already).
    pub fn add(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        if kind != Kind::Ca {
            return Err(ProvisionError::OnlyCaAdds);
        }
        self.reject_during_upload()?;
        if !matches!(self.staged.source(Kind::Ca), Source::Provisioned(_)) {
            return Err(ProvisionError::NoProvisionedCa);
        }
        self.open(kind, true)
    }

    fn open(&mut self, kind: Kind, adds: bool) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        // In place: an `Upload` is as large as a certificate.
        self.upload.kind = kind;
        self.upload.adds = adds;
        self.upload.decoder = Decoder::new();
        self.upload.der.clear();
        self.uploading = true;
        Ok(())
    }

    /// One line of base64. A bad line drops the whole upload.
    pub fn data(&mut self, line: &str) -> Result<(), ProvisionError> {
        if !self.uploading {
            return Err(ProvisionError::NoUpload);
        }
        let upload = &mut self.upload;
        let limit = upload.kind.upload_limit();
        let der = &mut upload.der;
        let fed = upload.decoder.feed(line.trim().as_bytes(), &mut |byte| {
            if der.len() >= limit {
                return Err(ProvisionError::TooLarge { limit });
            }
            der.push(byte)
                .map_err(|_| ProvisionError::TooLarge { limit })
        });
        fed.map_err(|e| {
            self.uploading = false;
            match e {
                FeedError::Base64(e) => ProvisionError::BadBase64(e),
                FeedError::Sink(e) => e,
            }
        })
    }

    /// The open upload: its kind and the DER bytes decoded so far.
    pub fn upload(&self) -> Option<(Kind, usize)> {
        self.uploading
            .then_some((self.upload.kind, self.upload.der.len()))
    }

    /// Closes the upload; stages it if it is a well-formed credential of its kind.
    pub fn end(&mut self, inspector: &mut impl Inspector) -> Result<Kind, ProvisionError> {
        if !core::mem::replace(&mut self.uploading, false) {
            return Err(ProvisionError::NoUpload);
        }
        let upload = &self.upload;
        upload.decoder.finish().map_err(ProvisionError::BadBase64)?;
        let der = upload.der.as_slice();
        if der.is_empty() {
            return Err(ProvisionError::Empty);
        }
        match upload.kind {
            // A CA upload may hold several roots back to back; each is checked.
            Kind::Ca => bundle::certificates(der)
                .try_for_each(|certificate| check_certificate(certificate, inspector))?,
            Kind::DeviceCertificate => check_certificate(der, inspector)?,
            Kind::DeviceKey => {
                if let Some(key) = keyinfo::private_key(der) {
                    check_supported(key, inspector)?;
                }
                inspector
                    .parse_private_key(der)
                    .map_err(|code| ProvisionError::NotAPrivateKey { code })?;
            }
        }
        let full = ProvisionError::BundleFull {
            limit: MAX_CA_BUNDLE,
        };
        if upload.adds {
            let Source::Provisioned(staged) = self.staged.source(Kind::Ca) else {
                return Err(ProvisionError::NoProvisionedCa);
            };
            let mut joined: Vec<u8, MAX_CA_BUNDLE> = Vec::new();
            joined.extend_from_slice(staged).map_err(|_| full)?;
            joined.extend_from_slice(der).map_err(|_| full)?;
            if bundle::certificates(&joined).count() > MAX_TRUST_ANCHORS {
                return Err(full);
            }
            self.staged
                .set(Kind::Ca, Source::Provisioned(&joined))
                .map_err(|_| full)?;
        } else {
            if upload.kind == Kind::Ca && bundle::certificates(der).count() > MAX_TRUST_ANCHORS {
                return Err(full);
            }
            self.staged
                .set(upload.kind, Source::Provisioned(der))
                .map_err(|_| ProvisionError::TooLarge {
                    limit: upload.kind.capacity(),
                })?;
        }
        self.changed = true;
        Ok(upload.kind)
    }

    /// Drops an open upload, if any.
    pub fn abort_upload(&mut self) -> bool {
        core::mem::replace(&mut self.uploading, false)
    }

    /// Stages the removal of `kind`: not even the image's is used.
    pub fn delete(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        self.staged
            .set(kind, Source::Removed)
            .map_err(|_| ProvisionError::Empty)?;
        self.changed = true;
        Ok(())
    }

    /// Stages a return to the image's credential for `kind`.
    pub fn use_image(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        self.staged
            .set(kind, Source::Image)
            .map_err(|_| ProvisionError::Empty)?;
        self.changed = true;
        Ok(())
    }

    fn reject_during_upload(&self) -> Result<(), ProvisionError> {
        if self.uploading {
            Err(ProvisionError::UploadInProgress)
        } else {
            Ok(())
        }
    }

    /// Checks the staged set as the device would use it, and encodes the record to store
    /// into `record`, which is as long as the record flash holds.
    /// The caller writes it, then calls [`Provisioner::committed`]; on a failed write it
    /// calls [`Provisioner::load`] with what is still stored.
    pub fn prepare_commit(
        &self,
        image: &ImageCredentials<'_>,
        inspector: &mut impl Inspector,
        record: &mut [u8],
    ) -> Result<usize, ProvisionError> {
        self.reject_during_upload()?;
        if !self.changed {
            return Err(ProvisionError::NothingStaged);
        }
        check_usable(&self.staged, image, inspector)?;
        let limit = record.len();
        self.staged
            .encode(record)
            .map_err(|_| ProvisionError::SetTooLarge {
                len: self.staged.encoded_len(),
                limit,
            })
    }

    /// The record from [`Provisioner::prepare_commit`] is stored.
    pub fn committed(&mut self) {
        self.changed = false;
    }
}

/// The key type first: mbedTLS cannot parse what its build leaves out, and would only say
/// "not parsed".
fn check_certificate(der: &[u8], inspector: &mut impl Inspector) -> Result<(), ProvisionError> {
    if let Some(key) = keyinfo::certificate_key(der) {
        check_supported(key, inspector)?;
    }
    inspector
        .parse_certificate(der)
        .map_err(|code| ProvisionError::NotACertificate { code })
}

fn check_supported(key: KeyType, inspector: &mut impl Inspector) -> Result<(), ProvisionError> {
    inspector
        .supports(key)
        .map_err(|accepted| ProvisionError::UnsupportedKey { key, accepted })
}

/// The checks a set must pass before the device uses it.
pub fn check_usable(
    set: &CredentialSet,
    image: &ImageCredentials<'_>,
    inspector: &mut impl Inspector,
) -> Result<(), ProvisionError> {
    if set.effective(Kind::Ca, image).is_none() {
        return Err(ProvisionError::NoCa);
    }
    match (
        set.effective(Kind::DeviceCertificate, image),
        set.effective(Kind::DeviceKey, image),
    ) {
        (None, None) => Ok(()),
        (Some(certificate), Some(key)) => {
            if inspector.key_matches_certificate(certificate, key) {
                Ok(())
            } else {
                Err(ProvisionError::KeyDoesNotMatchCertificate)
            }
        }
        _ => Err(ProvisionError::IncompletePair),
    }
}

/// One line of `cred list` for `kind`: where it comes from, its size and fingerprint.
pub fn describe(
    set: &CredentialSet,
    kind: Kind,
    image: &ImageCredentials<'_>,
    inspector: &mut impl Inspector,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    let (origin, der) = match set.source(kind) {
        Source::Image => ("image", image.get(kind)),
        Source::Provisioned(der) => ("provisioned", Some(der)),
        Source::Removed => ("deleted", None),
    };
    let Some(der) = der else {
        return write!(out, "{}: none ({origin})", kind.name());
    };
    if kind != Kind::Ca {
        write!(out, "{}: ", kind.name())?;
        return describe_one(kind, der, origin, inspector, out);
    }
    // One line per root of the bundle: `ca:`, then `ca 2:` and so on.
    for (index, certificate) in bundle::certificates(der).enumerate() {
        if index == 0 {
            out.write_str("ca: ")?;
        } else {
            write!(out, "\nca {}: ", index + 1)?;
        }
        describe_one(kind, certificate, origin, inspector, out)?;
    }
    Ok(())
}

fn describe_one(
    kind: Kind,
    der: &[u8],
    origin: &str,
    inspector: &mut impl Inspector,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    write!(out, "{origin}, {} bytes, sha256 ", der.len())?;
    match inspector.fingerprint(kind, der) {
        Some(digest) => {
            for byte in digest {
                write!(out, "{byte:02x}")?;
            }
            if kind == Kind::DeviceKey {
                out.write_str(" (public key)")?;
            }
            Ok(())
        }
        None => out.write_str("unreadable"),
    }
}
