//! A credential set in RAM (the device's active set, which the TLS credential store points
//! into), and the former one-record format it was stored in ([`crate::store::migrate`] moves
//! such a record into the record-per-credential format of [`crate::store`]).
//!
//! Former record: `b"CRD1"`, then for the CA, the device certificate and the device key in that
//! order: a source byte (0 image, 1 provisioned, 2 deleted), a little-endian u16 length, and
//! that many DER bytes (0 unless provisioned). The CA's bytes are a bundle: one or more DER
//! certificates back to back (a record with one root reads as a bundle of one).

use crate::{ImageCredentials, Kind, MAX_CA_BUNDLE, MAX_CERTIFICATE, MAX_KEY};
use heapless::Vec;

const MAGIC: &[u8; 4] = b"CRD1";
const ENTRY_HEADER: usize = 3;
/// The largest record [`CredentialSet::encode`] writes.
pub const MAX_RECORD: usize =
    MAGIC.len() + 3 * ENTRY_HEADER + MAX_CA_BUNDLE + MAX_CERTIFICATE + MAX_KEY;

/// Why a stored record was not read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// Not a record of this format (another version, or corrupted).
    BadMagic,
    /// A source byte that is none of ours.
    BadSource,
    /// A length past the end of the record or over the kind's capacity.
    BadLength,
    /// Bytes left over after the three entries.
    TrailingBytes,
    /// A CA bundle of more roots than the device registers ([`crate::MAX_TRUST_ANCHORS`]).
    TooManyRoots,
    /// The output buffer is too small to encode the set.
    BufferTooSmall,
}

impl core::fmt::Display for StoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StoreError::BadMagic => "not a record of this format",
            StoreError::BadSource => "an unknown source byte",
            StoreError::BadLength => "a length past the record or over a credential's capacity",
            StoreError::TrailingBytes => "bytes after the last credential",
            StoreError::TooManyRoots => "a CA bundle of more roots than the device registers",
            StoreError::BufferTooSmall => "the buffer is too small for the record",
        })
    }
}

/// More DER bytes than the device keeps for that kind ([`Kind::capacity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverCapacity;

/// Where one credential comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// The one built into the image (if the image has one).
    Image,
    /// Provisioned at run time.
    Provisioned(&'a [u8]),
    /// Deleted: none, not even the image's.
    Removed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Image,
    Provisioned,
    Removed,
}

/// The three credentials, each from the image, provisioned, or deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSet {
    origins: [Origin; 3],
    ca: Vec<u8, MAX_CA_BUNDLE>,
    certificate: Vec<u8, MAX_CERTIFICATE>,
    key: Vec<u8, MAX_KEY>,
}

impl Default for CredentialSet {
    fn default() -> Self {
        Self::image()
    }
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Ca => 0,
        Kind::DeviceCertificate => 1,
        Kind::DeviceKey => 2,
    }
}

impl CredentialSet {
    /// Every credential from the image.
    pub const fn image() -> Self {
        Self {
            origins: [Origin::Image; 3],
            ca: Vec::new(),
            certificate: Vec::new(),
            key: Vec::new(),
        }
    }

    pub fn reset_to_image(&mut self) {
        self.origins = [Origin::Image; 3];
        self.ca.clear();
        self.certificate.clear();
        self.key.clear();
    }

    fn der(&self, kind: Kind) -> &[u8] {
        match kind {
            Kind::Ca => &self.ca,
            Kind::DeviceCertificate => &self.certificate,
            Kind::DeviceKey => &self.key,
        }
    }

    fn origin(&self, kind: Kind) -> Origin {
        self.origins
            .get(index(kind))
            .copied()
            .unwrap_or(Origin::Image)
    }

    pub fn source(&self, kind: Kind) -> Source<'_> {
        match self.origin(kind) {
            Origin::Image => Source::Image,
            Origin::Provisioned => Source::Provisioned(self.der(kind)),
            Origin::Removed => Source::Removed,
        }
    }

    /// The credential the device uses for `kind`, if any.
    pub fn effective<'a>(&'a self, kind: Kind, image: &ImageCredentials<'a>) -> Option<&'a [u8]> {
        match self.source(kind) {
            Source::Image => image.get(kind),
            Source::Provisioned(der) => Some(der),
            Source::Removed => None,
        }
    }

    /// Sets `kind`; refused (and no change) if the DER is over its capacity.
    pub fn set(&mut self, kind: Kind, source: Source<'_>) -> Result<(), OverCapacity> {
        let (origin, der): (Origin, &[u8]) = match source {
            Source::Image => (Origin::Image, &[]),
            Source::Provisioned(der) => (Origin::Provisioned, der),
            Source::Removed => (Origin::Removed, &[]),
        };
        // `replace` refuses what is over the field's capacity (the kind's) before changing it.
        match kind {
            Kind::Ca => replace(&mut self.ca, der)?,
            Kind::DeviceCertificate => replace(&mut self.certificate, der)?,
            Kind::DeviceKey => replace(&mut self.key, der)?,
        }
        if let Some(slot) = self.origins.get_mut(index(kind)) {
            *slot = origin;
        }
        Ok(())
    }

    /// `kind`'s buffer, all of its capacity, for a record to be read into; then
    /// [`CredentialSet::provisioned_in_buffer`] says how much of it was.
    pub(crate) fn buffer(&mut self, kind: Kind) -> &mut [u8] {
        fn full<const N: usize>(der: &mut Vec<u8, N>) -> &mut [u8] {
            der.clear();
            // Within capacity: cannot fail.
            let _ = der.resize(N, 0);
            &mut der[..]
        }
        match kind {
            Kind::Ca => full(&mut self.ca),
            Kind::DeviceCertificate => full(&mut self.certificate),
            Kind::DeviceKey => full(&mut self.key),
        }
    }

    /// `kind` is the first `len` bytes of its buffer, provisioned.
    pub(crate) fn provisioned_in_buffer(&mut self, kind: Kind, len: usize) {
        match kind {
            Kind::Ca => self.ca.truncate(len),
            Kind::DeviceCertificate => self.certificate.truncate(len),
            Kind::DeviceKey => self.key.truncate(len),
        }
        if let Some(slot) = self.origins.get_mut(index(kind)) {
            *slot = Origin::Provisioned;
        }
    }

    /// Copies `other` in place (no temporary: these sets live in statics on small stacks).
    pub fn copy_from(&mut self, other: &CredentialSet) {
        self.origins = other.origins;
        // Same capacities on both sides: these cannot fail.
        let _ = replace(&mut self.ca, &other.ca);
        let _ = replace(&mut self.certificate, &other.certificate);
        let _ = replace(&mut self.key, &other.key);
    }

    /// The length of the record [`CredentialSet::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        MAGIC.len()
            + Kind::ALL
                .iter()
                .map(|&kind| ENTRY_HEADER + self.der(kind).len())
                .sum::<usize>()
    }

    /// Writes the record into `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, StoreError> {
        let mut at = 0;
        put(out, &mut at, MAGIC)?;
        for kind in Kind::ALL {
            let der = self.der(kind);
            let source = match self.origin(kind) {
                Origin::Image => 0u8,
                Origin::Provisioned => 1,
                Origin::Removed => 2,
            };
            let len = u16::try_from(der.len()).map_err(|_| StoreError::BadLength)?;
            put(out, &mut at, &[source])?;
            put(out, &mut at, &len.to_le_bytes())?;
            put(out, &mut at, der)?;
        }
        Ok(at)
    }

    /// Replaces this set with the one in `record`; on error, this set is unspecified and the
    /// caller resets it.
    pub fn load(&mut self, record: &[u8]) -> Result<(), StoreError> {
        let rest = record
            .strip_prefix(MAGIC.as_slice())
            .ok_or(StoreError::BadMagic)?;
        let mut rest = rest;
        for kind in Kind::ALL {
            let (&source, after) = rest.split_first().ok_or(StoreError::BadLength)?;
            let (len, after) = split(after, 2).ok_or(StoreError::BadLength)?;
            let len = usize::from(u16::from_le_bytes([
                len.first().copied().unwrap_or(0),
                len.get(1).copied().unwrap_or(0),
            ]));
            let (der, after) = split(after, len).ok_or(StoreError::BadLength)?;
            let source = match (source, len) {
                (0, 0) => Source::Image,
                // An upload never stages more roots than these; a record that holds more was
                // not written by this firmware.
                (1, 1..)
                    if kind == Kind::Ca
                        && crate::bundle::certificates(der).count() > crate::MAX_TRUST_ANCHORS =>
                {
                    return Err(StoreError::TooManyRoots)
                }
                (1, 1..) => Source::Provisioned(der),
                (2, 0) => Source::Removed,
                (0 | 2, _) | (1, 0) => return Err(StoreError::BadLength),
                _ => return Err(StoreError::BadSource),
            };
            self.set(kind, source)
                .map_err(|OverCapacity| StoreError::BadLength)?;
            rest = after;
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(StoreError::TrailingBytes)
        }
    }
}

/// `slice::split_at_checked`, which is newer than our minimum Rust.
fn split(bytes: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    Some((bytes.get(..at)?, bytes.get(at..)?))
}

fn replace<const N: usize>(target: &mut Vec<u8, N>, der: &[u8]) -> Result<(), OverCapacity> {
    if der.len() > N {
        return Err(OverCapacity);
    }
    target.clear();
    target.extend_from_slice(der).map_err(|_| OverCapacity)
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) -> Result<(), StoreError> {
    let end = at
        .checked_add(bytes.len())
        .ok_or(StoreError::BufferTooSmall)?;
    out.get_mut(*at..end)
        .ok_or(StoreError::BufferTooSmall)?
        .copy_from_slice(bytes);
    *at = end;
    Ok(())
}
