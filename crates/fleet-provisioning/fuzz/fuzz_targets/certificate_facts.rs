//! See `tests/harness/certificate_facts.rs` for the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::certificate_facts::run(data));
