//! Operator steps → `Provisioner`: base64 lines, uploads of every kind, commits and stored
//! records. See `tests/harness/upload.rs` for the input layout and the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::upload::run(data));
