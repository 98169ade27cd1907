//! Bytes from the network → `FrameReader` → `framing::decode`: the boundary that keeps
//! malformed packets away from `mqttrs` 0.4.1's unchecked indexing. See
//! `tests/harness/framing.rs` for the input layout and the invariants.
#![no_main]

#[path = "../../tests/harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::framing::run(data));
