//! DER-ish bytes → the key type readers, the CA bundle splitter, `check_usable` and
//! `describe`. See `tests/harness/keycheck.rs` for the input layout and the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::keycheck::run(data));
