//! Harness code shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus replay (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing to both.
//! Both include this directory with `#[path]`; nothing here is part of the crate.
//!
//! Each `run` takes the raw fuzzer input and panics on a broken invariant; it never panics on
//! input the core is expected to reject.
#![allow(dead_code)]

pub mod broker;
pub mod framing;
pub mod session;

/// The session type every harness and property test drives: 256 bytes of receive buffer, an
/// outbox of 4 slots of 128 bytes (the same shape as the unit tests in `src/session/tests.rs`).
pub type TestSession = mqtt_core::Session<'static, 256, 4, 128>;

/// Outbox slots of [`TestSession`].
pub const SLOTS: usize = 4;
/// Receive buffer of [`TestSession`].
pub const RX: usize = 256;

/// The length of the frame at the start of `bytes` by an independent reading of MQTT 3.1.1
/// §2.2.3, or why there is none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefHeader {
    /// The whole frame is this long (fixed header included).
    Frame(usize),
    /// The header is not complete yet.
    Incomplete,
    /// A fifth length byte, or a frame longer than the limit.
    TooLong,
    /// A continuation bit on the fourth length byte.
    Malformed,
}

/// Reference reader of the fixed header; deliberately written differently from the crate's.
pub fn reference_header(bytes: &[u8], limit: usize) -> RefHeader {
    let mut value: u64 = 0;
    let mut multiplier: u64 = 1;
    for (i, byte) in bytes.iter().skip(1).take(4).enumerate() {
        value += u64::from(byte & 0x7F) * multiplier;
        multiplier *= 128;
        if byte & 0x80 == 0 {
            let frame = value + 2 + i as u64;
            return if frame > limit as u64 {
                RefHeader::TooLong
            } else {
                RefHeader::Frame(frame as usize)
            };
        }
    }
    if bytes.len() >= 5 {
        RefHeader::Malformed
    } else {
        RefHeader::Incomplete
    }
}

/// A small deterministic generator for splitting and timing choices derived from one seed.
pub struct Rng(u64);

impl Rng {
    /// A generator from any seed.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value (xorshift64).
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `low..=high`.
    pub fn range(&mut self, low: usize, high: usize) -> usize {
        low + (self.next() % (high - low + 1) as u64) as usize
    }
}
