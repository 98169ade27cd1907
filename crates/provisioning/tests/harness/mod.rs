//! Harness code shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus replay (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing to both.
//! Both include this directory with `#[path]`; nothing here is part of the crate.
//!
//! Each `run` takes the raw fuzzer input and panics on a broken invariant; it never panics on
//! input the crate is expected to reject.
#![allow(dead_code)]

pub mod keycheck;
pub mod upload;

use provisioning::{Inspector, KeyType, Kind};

/// A deterministic stand-in for mbedTLS, permissive enough that the fuzzer reaches every
/// branch after it: a certificate or key "parses" when it is a SEQUENCE (first byte 0x30) whose
/// last byte is not 0xFF; the build takes P-256, P-384, Ed25519 and RSA of 1024 to 4096 bits;
/// a key matches a certificate whose last byte is its own; the fingerprint is a checksum.
pub struct Fake;

impl Fake {
    /// The error codes mbedTLS gives for what it cannot parse.
    pub const NOT_A_CERTIFICATE: i32 = -0x2180;
    pub const NOT_A_KEY: i32 = -0x3D00;
    pub const ACCEPTED: &'static str = "this build takes P-256, P-384, Ed25519 and RSA-1024..4096";

    pub fn parses(der: &[u8]) -> bool {
        der.first() == Some(&0x30) && der.last() != Some(&0xFF)
    }

    pub fn takes(key: KeyType) -> bool {
        match key {
            KeyType::P256 | KeyType::P384 | KeyType::Ed25519 => true,
            KeyType::Rsa { bits } => (1024..=4096).contains(&bits),
            _ => false,
        }
    }

    pub fn digest(der: &[u8]) -> Option<[u8; 32]> {
        if der.is_empty() {
            return None;
        }
        let mut digest = [0u8; 32];
        for (i, byte) in der.iter().enumerate() {
            digest[i % 32] = digest[i % 32].wrapping_mul(31).wrapping_add(*byte);
        }
        Some(digest)
    }
}

impl Inspector for Fake {
    fn parse_certificate(&mut self, der: &[u8]) -> Result<(), i32> {
        if Self::parses(der) {
            Ok(())
        } else {
            Err(Self::NOT_A_CERTIFICATE)
        }
    }
    fn parse_private_key(&mut self, der: &[u8]) -> Result<(), i32> {
        if Self::parses(der) {
            Ok(())
        } else {
            Err(Self::NOT_A_KEY)
        }
    }
    fn supports(&mut self, key: KeyType) -> Result<(), &'static str> {
        if Self::takes(key) {
            Ok(())
        } else {
            Err(Self::ACCEPTED)
        }
    }
    fn key_matches_certificate(&mut self, certificate: &[u8], key: &[u8]) -> bool {
        certificate.last() == key.last()
    }
    fn fingerprint(&mut self, _kind: Kind, der: &[u8]) -> Option<[u8; 32]> {
        Self::digest(der)
    }
}

/// An independent reading of a CA bundle (see `provisioning::bundle`): DER SEQUENCEs with a
/// short, one-byte or two-byte length, back to back; whatever does not start a whole one is
/// the last piece.
pub fn reference_split(bundle: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < bundle.len() {
        let rest = &bundle[at..];
        let whole = match rest {
            [0x30, n, ..] if *n < 0x80 => Some(2 + usize::from(*n)),
            [0x30, 0x81, n, ..] => Some(3 + usize::from(*n)),
            [0x30, 0x82, hi, lo, ..] => Some(4 + usize::from(*hi) * 256 + usize::from(*lo)),
            _ => None,
        }
        .filter(|&len| len <= rest.len())
        .unwrap_or(rest.len());
        pieces.push(&rest[..whole]);
        at += whole;
    }
    pieces
}

/// A small deterministic generator for choices derived from one seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Flash as records, in memory: each write replaces a record whole (NVS's guarantee), and
/// writes can be made to fail from the `fail_after`-th on, as a power cut would stop them.
#[derive(Clone, Default)]
pub struct MemStore {
    records: Vec<(provisioning::Record, Vec<u8>)>,
    /// Every write and delete that reached the flash, in order.
    pub writes: Vec<provisioning::Record>,
    /// Writes after this many fail (`None`: none fail).
    pub fail_after: Option<usize>,
}

impl MemStore {
    pub fn get(&self, record: provisioning::Record) -> Option<&Vec<u8>> {
        self.records
            .iter()
            .find(|(r, _)| *r == record)
            .map(|(_, b)| b)
    }

    pub fn get_mut(&mut self, record: provisioning::Record) -> Option<&mut Vec<u8>> {
        self.records
            .iter_mut()
            .find(|(r, _)| *r == record)
            .map(|(_, b)| b)
    }

    fn reach(&mut self, record: provisioning::Record) -> Result<(), provisioning::StorageError> {
        if self.fail_after.is_some_and(|n| self.writes.len() >= n) {
            return Err(provisioning::StorageError(-5));
        }
        self.writes.push(record);
        Ok(())
    }
}

impl provisioning::Store for MemStore {
    fn read(
        &mut self,
        record: provisioning::Record,
        buf: &mut [u8],
    ) -> Result<Option<usize>, provisioning::StorageError> {
        match self.get(record) {
            None => Ok(None),
            Some(bytes) if bytes.len() > buf.len() => Err(provisioning::StorageError(-27)),
            Some(bytes) => {
                buf[..bytes.len()].copy_from_slice(bytes);
                Ok(Some(bytes.len()))
            }
        }
    }

    fn write(
        &mut self,
        record: provisioning::Record,
        bytes: &[u8],
    ) -> Result<(), provisioning::StorageError> {
        self.reach(record)?;
        match self.get_mut(record) {
            Some(old) => *old = bytes.to_vec(),
            None => self.records.push((record, bytes.to_vec())),
        }
        Ok(())
    }

    fn delete(&mut self, record: provisioning::Record) -> Result<(), provisioning::StorageError> {
        self.reach(record)?;
        self.records.retain(|(r, _)| *r != record);
        Ok(())
    }
}
