//! Credential provisioning without rebuilding, sans IO: an operator uploads the CA, the
//! device certificate or the device key as base64 DER lines, the upload is checked and
//! staged in flash, and a commit checks the whole set (a CA to trust, certificate and key as
//! a matching pair) before it writes the index that makes it the device's ([`store`]). The
//! firmware keeps the records in flash (Zephyr settings on NVS, behind [`Store`]), parses
//! X.509 and keys with mbedTLS through [`Inspector`], and applies the set at boot and before
//! the next connection.
//!
//! Nothing half-done takes effect: a malformed line drops its upload, a failed check leaves
//! the staged set as it was, and the set in use changes only by one write of the index.
#![no_std]
#![forbid(unsafe_code)]

pub mod base64;
pub mod bundle;
pub mod keyinfo;
pub mod nvs;
mod set;
pub mod store;

pub use bundle::MAX_TRUST_ANCHORS;
pub use keyinfo::KeyType;
pub use set::{CredentialSet, OverCapacity, Source, StoreError, MAX_RECORD};
pub use store::{Entry, Index, LoadError, Record, Slot, StorageError, Store};

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
    /// Flash refused a write; nothing changed.
    Storage(StorageError),
    /// A staged credential no longer reads back from flash as it was written.
    Unreadable(LoadError),
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
            ProvisionError::Storage(_) => "not stored: the flash write failed; nothing changed",
            ProvisionError::Unreadable(_) => {
                "a staged credential does not read back from flash: upload it again"
            }
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
            ProvisionError::Storage(cause) => write!(f, "{} ({cause})", self.as_str()),
            ProvisionError::Unreadable(cause) => write!(f, "{} ({cause})", self.as_str()),
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

/// The largest upload buffer: a CA bundle with the root being added, or at commit a device
/// certificate beside its key (for the check that they match).
const WORK: usize = MAX_CERTIFICATE + MAX_KEY;
const _: () = assert!(WORK >= MAX_CA_BUNDLE);

struct Upload {
    kind: Kind,
    /// `add`: the upload joins the staged CA bundle, whose bytes start `der`.
    adds: bool,
    /// Bytes of `der` that were there before the upload (the staged bundle for `add`).
    base: usize,
    decoder: Decoder,
    der: Vec<u8, WORK>,
}

/// The operator's session: an open upload, and the staged set (the stored one plus changes).
/// The staged credentials are in flash ([`store`]): an upload is written there when it ends,
/// into the slot the committed index does not use, and `commit` writes the index.
pub struct Provisioner {
    /// What flash's index says: the set in use from the next connection on.
    committed: Index,
    staged: Index,
    /// Whether something was staged since the last commit (even the set already committed:
    /// committing it again is how an operator says "try now").
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
            committed: Index::IMAGE,
            staged: Index::IMAGE,
            changed: false,
            uploading: false,
            upload: Upload {
                kind: Kind::Ca,
                adds: false,
                base: 0,
                decoder: Decoder::new(),
                der: Vec::new(),
            },
        }
    }

    /// Starts over from the stored index (boot). On error, the image's set.
    pub fn load(&mut self, store: &mut impl Store) -> Result<(), LoadError> {
        self.uploading = false;
        self.changed = false;
        let read = store::read_index(store);
        self.committed = *read.as_ref().unwrap_or(&Index::IMAGE);
        self.staged = self.committed;
        read.map(|_| ())
    }

    /// The staged set's index: what the device uses after the next commit.
    pub fn staged(&self) -> &Index {
        &self.staged
    }

    /// The committed set's index.
    pub fn committed(&self) -> &Index {
        &self.committed
    }

    /// Whether changes are staged and not committed.
    pub fn has_changes(&self) -> bool {
        self.changed
    }

    /// Drops the staged changes and any open upload: the committed set again.
    pub fn abort(&mut self) {
        self.uploading = false;
        self.changed = false;
        self.staged = self.committed;
    }

    /// Opens an upload of `kind`; it replaces the staged one.
    pub fn begin(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        self.open(kind, false);
        Ok(())
    }

    /// Opens an upload of one more root for the staged CA bundle (provisioned already).
    pub fn add(&mut self, kind: Kind, store: &mut impl Store) -> Result<(), ProvisionError> {
        if kind != Kind::Ca {
            return Err(ProvisionError::OnlyCaAdds);
        }
        self.reject_during_upload()?;
        let entry = self.staged.entry(Kind::Ca);
        if !matches!(entry, Entry::Provisioned { .. }) {
            return Err(ProvisionError::NoProvisionedCa);
        }
        self.open(kind, true);
        let der = &mut self.upload.der;
        // Within capacity: cannot fail.
        let _ = der.resize(WORK, 0);
        let staged = store::read_credential(store, Kind::Ca, entry, &mut der[..])
            .map_err(ProvisionError::Unreadable)
            .map(|bytes| bytes.map_or(0, <[u8]>::len));
        match staged {
            Ok(len) => {
                der.truncate(len);
                self.upload.base = len;
                Ok(())
            }
            Err(cause) => {
                self.uploading = false;
                Err(cause)
            }
        }
    }

    fn open(&mut self, kind: Kind, adds: bool) {
        // In place: an `Upload` is as large as a certificate and a key.
        self.upload.kind = kind;
        self.upload.adds = adds;
        self.upload.base = 0;
        self.upload.decoder = Decoder::new();
        self.upload.der.clear();
        self.uploading = true;
    }

    /// One line of base64. A bad line drops the whole upload.
    pub fn data(&mut self, line: &str) -> Result<(), ProvisionError> {
        if !self.uploading {
            return Err(ProvisionError::NoUpload);
        }
        let upload = &mut self.upload;
        let limit = upload.kind.upload_limit();
        let (base, adds) = (upload.base, upload.adds);
        let der = &mut upload.der;
        let fed = upload.decoder.feed(line.trim().as_bytes(), &mut |byte| {
            if der.len().saturating_sub(base) >= limit {
                return Err(ProvisionError::TooLarge { limit });
            }
            if adds && der.len() >= MAX_CA_BUNDLE {
                return Err(ProvisionError::BundleFull {
                    limit: MAX_CA_BUNDLE,
                });
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
        self.uploading.then(|| {
            (
                self.upload.kind,
                self.upload.der.len().saturating_sub(self.upload.base),
            )
        })
    }

    /// Closes the upload; if it is a well-formed credential of its kind, writes it to flash
    /// and stages it.
    pub fn end(
        &mut self,
        inspector: &mut impl Inspector,
        store: &mut impl Store,
    ) -> Result<Kind, ProvisionError> {
        if !core::mem::replace(&mut self.uploading, false) {
            return Err(ProvisionError::NoUpload);
        }
        let upload = &self.upload;
        upload.decoder.finish().map_err(ProvisionError::BadBase64)?;
        let der = upload.der.as_slice();
        let new = der.get(upload.base..).unwrap_or_default();
        if new.is_empty() {
            return Err(ProvisionError::Empty);
        }
        check_credential(upload.kind, new, inspector)?;
        if upload.kind == Kind::Ca
            && (der.len() > MAX_CA_BUNDLE || bundle::certificates(der).count() > MAX_TRUST_ANCHORS)
        {
            return Err(ProvisionError::BundleFull {
                limit: MAX_CA_BUNDLE,
            });
        }
        let kind = upload.kind;
        Self::write_staged(&self.committed, &mut self.staged, kind, der, store)?;
        self.changed = true;
        Ok(kind)
    }

    /// Drops an open upload, if any.
    pub fn abort_upload(&mut self) -> bool {
        core::mem::replace(&mut self.uploading, false)
    }

    /// Stages a device certificate or key made on the device or received over the network,
    /// with the checks an upload gets. A CA is staged by upload only (its bundle rules).
    pub fn stage(
        &mut self,
        kind: Kind,
        der: &[u8],
        inspector: &mut impl Inspector,
        store: &mut impl Store,
    ) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        if kind == Kind::Ca {
            return Err(ProvisionError::UnknownKind);
        }
        check_credential(kind, der, inspector)?;
        Self::write_staged(&self.committed, &mut self.staged, kind, der, store)?;
        self.changed = true;
        Ok(())
    }

    /// Writes `der` as the staged `kind`: never into the slot the committed index uses, as
    /// that set stays whole until the commit.
    fn write_staged(
        committed: &Index,
        staged: &mut Index,
        kind: Kind,
        der: &[u8],
        store: &mut impl Store,
    ) -> Result<(), ProvisionError> {
        if der.len() > kind.capacity() {
            return Err(ProvisionError::TooLarge {
                limit: kind.capacity(),
            });
        }
        let slot = match committed.entry(kind) {
            Entry::Provisioned { slot, .. } => slot.other(),
            _ => Slot::A,
        };
        store
            .write(Record::Credential(kind, slot), der)
            .map_err(ProvisionError::Storage)?;
        staged.set(kind, store::provisioned(slot, der));
        Ok(())
    }

    /// The staged `kind` (provisioned or the image's), read into `buf`.
    pub fn staged_credential<'b>(
        &self,
        kind: Kind,
        image: &ImageCredentials<'b>,
        store: &mut impl Store,
        buf: &'b mut [u8],
    ) -> Result<&'b [u8], ProvisionError> {
        effective(store, image, &self.staged, kind, buf)
    }

    /// Stages the removal of `kind`: not even the image's is used.
    pub fn delete(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        self.staged.set(kind, Entry::Removed);
        self.changed = true;
        Ok(())
    }

    /// Stages a return to the image's credential for `kind`.
    pub fn use_image(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        self.staged.set(kind, Entry::Image);
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

    /// Checks the staged set as the device would use it and writes its index: from then on
    /// (the next connection) it is the device's set. On any error nothing changes.
    pub fn commit(
        &mut self,
        image: &ImageCredentials<'_>,
        inspector: &mut impl Inspector,
        store: &mut impl Store,
    ) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        if !self.has_changes() {
            return Err(ProvisionError::NothingStaged);
        }
        let staged = self.staged;
        let provides = |kind| match staged.entry(kind) {
            Entry::Image => image.get(kind).is_some(),
            Entry::Removed => false,
            Entry::Provisioned { .. } => true,
        };
        if !provides(Kind::Ca) {
            return Err(ProvisionError::NoCa);
        }
        match (provides(Kind::DeviceCertificate), provides(Kind::DeviceKey)) {
            (false, false) => {}
            (true, true) => {
                // The upload buffer is free (no upload is open): certificate, then key.
                let der = &mut self.upload.der;
                let _ = der.resize(WORK, 0);
                let (certificate, key) = der.split_at_mut(MAX_CERTIFICATE);
                let certificate =
                    effective(store, image, &staged, Kind::DeviceCertificate, certificate)?;
                let key = effective(store, image, &staged, Kind::DeviceKey, key)?;
                let matches = inspector.key_matches_certificate(certificate, key);
                der.clear();
                if !matches {
                    return Err(ProvisionError::KeyDoesNotMatchCertificate);
                }
            }
            _ => return Err(ProvisionError::IncompletePair),
        }
        store
            .write(Record::Index, &staged.encode())
            .map_err(ProvisionError::Storage)?;
        let superseded = core::mem::replace(&mut self.committed, staged);
        self.changed = false;
        // The records the former index used are no one's now: deleted, so that no replaced
        // key stays readable and the flash holds one set and what is staged. A power cut
        // before this leaves them as garbage, which the next change of that kind overwrites.
        for kind in Kind::ALL {
            if let Entry::Provisioned { slot, .. } = superseded.entry(kind) {
                let kept =
                    matches!(staged.entry(kind), Entry::Provisioned { slot: s, .. } if s == slot);
                if !kept {
                    let _ = store.delete(Record::Credential(kind, slot));
                }
            }
        }
        Ok(())
    }

    /// `cred list`'s lines for the staged set: each credential's origin, size and
    /// fingerprint. Refused during an upload, whose buffer it reads the records into.
    pub fn list(
        &mut self,
        image: &ImageCredentials<'_>,
        inspector: &mut impl Inspector,
        store: &mut impl Store,
        out: &mut impl fmt::Write,
    ) -> Result<(), ProvisionError> {
        self.reject_during_upload()?;
        let der = &mut self.upload.der;
        let _ = der.resize(WORK, 0);
        for kind in Kind::ALL {
            let source = match self.staged.entry(kind) {
                Entry::Image => Source::Image,
                Entry::Removed => Source::Removed,
                entry => {
                    let read = store::read_credential(store, kind, entry, &mut der[..]);
                    match read {
                        Ok(Some(bytes)) => Source::Provisioned(bytes),
                        Ok(None) => Source::Removed,
                        Err(cause) => {
                            let _ = writeln!(out, "{}: unreadable ({cause})", kind.name());
                            continue;
                        }
                    }
                }
            };
            let _ = describe(source, kind, image, inspector, out);
            let _ = out.write_str("\n");
        }
        der.clear();
        Ok(())
    }
}

/// `kind`'s credential in the set `index` describes, read into `buf` if provisioned.
fn effective<'b>(
    store: &mut impl Store,
    image: &ImageCredentials<'b>,
    index: &Index,
    kind: Kind,
    buf: &'b mut [u8],
) -> Result<&'b [u8], ProvisionError> {
    let entry = index.entry(kind);
    match entry {
        Entry::Image => image.get(kind).ok_or(ProvisionError::IncompletePair),
        Entry::Removed => Err(ProvisionError::IncompletePair),
        Entry::Provisioned { .. } => store::read_credential(store, kind, entry, buf)
            .map_err(ProvisionError::Unreadable)?
            .ok_or(ProvisionError::IncompletePair),
    }
}
/// Whether `der` is a credential of `kind` the device can use: each root of a CA bundle, a
/// certificate, or a private key.
fn check_credential(
    kind: Kind,
    der: &[u8],
    inspector: &mut impl Inspector,
) -> Result<(), ProvisionError> {
    match kind {
        // A CA upload may hold several roots back to back; each is checked.
        Kind::Ca => bundle::certificates(der)
            .try_for_each(|certificate| check_certificate(certificate, inspector)),
        Kind::DeviceCertificate => check_certificate(der, inspector),
        Kind::DeviceKey => {
            if let Some(key) = keyinfo::private_key(der) {
                check_supported(key, inspector)?;
            }
            inspector
                .parse_private_key(der)
                .map_err(|code| ProvisionError::NotAPrivateKey { code })
        }
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
    source: Source<'_>,
    kind: Kind,
    image: &ImageCredentials<'_>,
    inspector: &mut impl Inspector,
    out: &mut impl fmt::Write,
) -> fmt::Result {
    let (origin, der) = match source {
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
