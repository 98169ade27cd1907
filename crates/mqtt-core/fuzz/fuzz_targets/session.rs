//! A scripted broker and application against one `Session`. See `tests/harness/session.rs`
//! for the operations the input encodes and the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::session::run(data));
