//! Flash record bytes → `Message::decode` / `encode` and `Journal::restore`, with the journal's
//! slot bookkeeping scripted around them. See `tests/harness/record.rs` for the input layout
//! and the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::record::run(data));
