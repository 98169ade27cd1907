//! The credentials in flash: one record per provisioned credential and an index that says
//! which record is in use for each kind. A change is staged by writing the new credential's
//! record into the slot the index does not point at, and committed by writing the index: one
//! small record, so a power cut leaves either the old index or the new one, and the records
//! each points at are whole. Nothing of the set is held in RAM for staging: the device keeps
//! only the index (28 bytes) and the buffer of the one upload that is open.
//!
//! Index record: `b"CRD2"`, then for the CA, the device certificate and the device key in
//! that order: a source byte (0 image, 1 provisioned, 2 deleted), the slot (0 or 1), the
//! record's length (u16, little-endian) and its CRC-32 (u32, little-endian; 0 unless
//! provisioned). The CRC catches a record that no longer reads as it was written.
//!
//! The former format ([`crate::CredentialSet::load`], `b"CRD1"`) held the whole set in one
//! record; [`migrate`] moves such a record into this one.

use crate::{bundle, CredentialSet, Kind, Source, StoreError, MAX_TRUST_ANCHORS};
use core::fmt;

const MAGIC: &[u8; 4] = b"CRD2";
const ENTRY_LEN: usize = 8;
/// The length of the index record.
pub const INDEX_LEN: usize = MAGIC.len() + 3 * ENTRY_LEN;

/// One of the two records each kind of credential can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// A record in flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// Which credential record is in use for each kind: the commit point.
    Index,
    /// One credential's DER bytes.
    Credential(Kind, Slot),
    /// The whole set in the former format (read once, to migrate it).
    Legacy,
}

/// The storage's own error code (a negative errno on the device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageError(pub i32);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            // Also what NVS answers for a record whose data fails its CRC (NVS_DATA_CRC).
            -5 => write!(
                f,
                "I/O error (the flash failed, or a record failed its data CRC)"
            ),
            code => write!(f, "flash error {code}"),
        }
    }
}

/// Flash as records that are each written whole (Zephyr settings on NVS on the device).
pub trait Store {
    /// Reads `record` into `buf`: its length, `None` if there is none. A record longer
    /// than `buf` is an error.
    fn read(&mut self, record: Record, buf: &mut [u8]) -> Result<Option<usize>, StorageError>;
    /// Replaces `record` with `bytes`: after a power cut, either the old or the new bytes.
    fn write(&mut self, record: Record, bytes: &[u8]) -> Result<(), StorageError>;
    /// Removes `record` (nothing if there is none).
    fn delete(&mut self, record: Record) -> Result<(), StorageError>;
}

/// Where one kind's credential comes from, as the index records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The image's (if the image has one).
    Image,
    /// None, not even the image's.
    Removed,
    /// The record in `slot`, of `len` bytes whose CRC-32 is `crc`.
    Provisioned { slot: Slot, len: u16, crc: u32 },
}

/// Each kind's [`Entry`]: what the device uses (committed) or will use (staged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    entries: [Entry; 3],
}

fn position(kind: Kind) -> usize {
    match kind {
        Kind::Ca => 0,
        Kind::DeviceCertificate => 1,
        Kind::DeviceKey => 2,
    }
}

impl Default for Index {
    fn default() -> Self {
        Self::IMAGE
    }
}

impl Index {
    /// Nothing provisioned: every credential from the image.
    pub const IMAGE: Index = Index {
        entries: [Entry::Image; 3],
    };

    pub fn entry(&self, kind: Kind) -> Entry {
        self.entries
            .get(position(kind))
            .copied()
            .unwrap_or(Entry::Image)
    }

    pub fn set(&mut self, kind: Kind, entry: Entry) {
        if let Some(slot) = self.entries.get_mut(position(kind)) {
            *slot = entry;
        }
    }

    pub fn encode(&self) -> [u8; INDEX_LEN] {
        let mut out = [0u8; INDEX_LEN];
        let mut bytes = MAGIC
            .iter()
            .copied()
            .chain(self.entries.iter().flat_map(|entry| {
                let (source, slot, len, crc) = match *entry {
                    Entry::Image => (0u8, 0u8, 0u16, 0u32),
                    Entry::Provisioned { slot, len, crc } => (1, slot as u8, len, crc),
                    Entry::Removed => (2, 0, 0, 0),
                };
                let mut entry = [0u8; ENTRY_LEN];
                entry[0] = source;
                entry[1] = slot;
                entry[2..4].copy_from_slice(&len.to_le_bytes());
                entry[4..].copy_from_slice(&crc.to_le_bytes());
                entry
            }));
        for byte in out.iter_mut() {
            *byte = bytes.next().unwrap_or(0);
        }
        out
    }

    pub fn decode(record: &[u8]) -> Result<Index, StoreError> {
        let rest = record
            .strip_prefix(MAGIC.as_slice())
            .ok_or(StoreError::BadMagic)?;
        if rest.len() != 3 * ENTRY_LEN {
            return Err(StoreError::BadLength);
        }
        let mut index = Index::IMAGE;
        for (kind, entry) in Kind::ALL.into_iter().zip(rest.chunks_exact(ENTRY_LEN)) {
            let &[source, slot, l0, l1, c0, c1, c2, c3] = entry else {
                return Err(StoreError::BadLength);
            };
            let len = u16::from_le_bytes([l0, l1]);
            let crc = u32::from_le_bytes([c0, c1, c2, c3]);
            let entry = match (source, slot, len, crc) {
                (0, 0, 0, 0) => Entry::Image,
                (2, 0, 0, 0) => Entry::Removed,
                (1, 0 | 1, 1.., _) if usize::from(len) <= kind.capacity() => Entry::Provisioned {
                    slot: if slot == 0 { Slot::A } else { Slot::B },
                    len,
                    crc,
                },
                (0..=2, ..) => return Err(StoreError::BadLength),
                _ => return Err(StoreError::BadSource),
            };
            index.set(kind, entry);
        }
        Ok(index)
    }
}

/// Why the stored credentials were not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// The flash itself failed.
    Storage(StorageError),
    /// A credential's record did not read (its data CRC failed, or the flash).
    Unreadable(Kind, StorageError),
    /// The index is not one this firmware writes.
    Index(StoreError),
    /// The index points at a record that is not there.
    Missing(Kind),
    /// A record whose length or CRC differs from what the index says: torn or rotted.
    Corrupt(Kind),
    /// A CA bundle of more roots than the device registers.
    TooManyRoots,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Storage(cause) => write!(f, "{cause}"),
            LoadError::Unreadable(kind, cause) => {
                write!(f, "the {} record is unreadable: {cause}", kind.name())
            }
            LoadError::Index(cause) => write!(f, "index: {cause}"),
            LoadError::Missing(kind) => write!(f, "the {} record is missing", kind.name()),
            LoadError::Corrupt(kind) => write!(
                f,
                "the {} record does not read back as written (length or CRC)",
                kind.name()
            ),
            LoadError::TooManyRoots => write!(f, "{}", StoreError::TooManyRoots),
        }
    }
}

/// Reads the committed index; the image's set when nothing is stored.
pub fn read_index(store: &mut impl Store) -> Result<Index, LoadError> {
    let mut buf = [0u8; INDEX_LEN];
    match store.read(Record::Index, &mut buf) {
        Ok(None) => Ok(Index::IMAGE),
        Ok(Some(len)) => {
            Index::decode(buf.get(..len).unwrap_or_default()).map_err(LoadError::Index)
        }
        // A record longer than an index is not an index.
        Err(cause) => Err(LoadError::Storage(cause)),
    }
}

/// Reads `kind`'s record per `entry` into `buf` (as long as its capacity at least): its
/// bytes, checked against the entry's length and CRC. `None` unless provisioned.
pub fn read_credential<'b>(
    store: &mut impl Store,
    kind: Kind,
    entry: Entry,
    buf: &'b mut [u8],
) -> Result<Option<&'b [u8]>, LoadError> {
    let Entry::Provisioned { slot, len, crc } = entry else {
        return Ok(None);
    };
    let read = store
        .read(Record::Credential(kind, slot), buf)
        .map_err(|cause| LoadError::Unreadable(kind, cause))?
        .ok_or(LoadError::Missing(kind))?;
    let der = buf.get(..read).ok_or(LoadError::Corrupt(kind))?;
    if read != usize::from(len) || crc32(der) != crc {
        return Err(LoadError::Corrupt(kind));
    }
    if kind == Kind::Ca && bundle::certificates(der).count() > MAX_TRUST_ANCHORS {
        return Err(LoadError::TooManyRoots);
    }
    Ok(Some(der))
}

/// Reads the set `index` describes into `set` (the device's active set). On error `set` is
/// unspecified and the caller resets it.
pub fn read_set(
    store: &mut impl Store,
    index: &Index,
    set: &mut CredentialSet,
) -> Result<(), LoadError> {
    for kind in Kind::ALL {
        let entry = index.entry(kind);
        let source = match entry {
            Entry::Image => Source::Image,
            Entry::Removed => Source::Removed,
            Entry::Provisioned { .. } => {
                let buf = set.buffer(kind);
                let read = read_credential(store, kind, entry, buf)?.map(<[u8]>::len);
                set.provisioned_in_buffer(kind, read.unwrap_or(0));
                continue;
            }
        };
        // Image and Removed carry no bytes: this cannot be over capacity.
        let _ = set.set(kind, source);
    }
    Ok(())
}

/// Moves a record of the former format into records and an index of this one: each
/// provisioned credential into slot A, then the index. `set` is scratch (the active set,
/// which is not registered yet at boot). The caller deletes the former record afterwards;
/// a power cut before the index is written leaves the former record to migrate again.
pub fn migrate(
    store: &mut impl Store,
    legacy: &[u8],
    set: &mut CredentialSet,
) -> Result<Index, MigrateError> {
    set.load(legacy).map_err(MigrateError::Unreadable)?;
    let mut index = Index::IMAGE;
    for kind in Kind::ALL {
        let entry = match set.source(kind) {
            Source::Image => Entry::Image,
            Source::Removed => Entry::Removed,
            Source::Provisioned(der) => {
                store
                    .write(Record::Credential(kind, Slot::A), der)
                    .map_err(MigrateError::Storage)?;
                provisioned(Slot::A, der)
            }
        };
        index.set(kind, entry);
    }
    store
        .write(Record::Index, &index.encode())
        .map_err(MigrateError::Storage)?;
    Ok(index)
}

/// Why a record of the former format was not migrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrateError {
    Unreadable(StoreError),
    Storage(StorageError),
}

impl fmt::Display for MigrateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MigrateError::Unreadable(cause) => write!(f, "{cause}"),
            MigrateError::Storage(cause) => write!(f, "{cause}"),
        }
    }
}

/// The entry for `der` written into `slot` (at most a kind's capacity, which fits a u16).
pub(crate) fn provisioned(slot: Slot, der: &[u8]) -> Entry {
    Entry::Provisioned {
        slot,
        len: u16::try_from(der.len()).unwrap_or(u16::MAX),
        crc: crc32(der),
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it), bit by bit: the records are read rarely and a
/// table would cost 1 KiB of flash.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}
