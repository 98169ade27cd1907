//! Replays every file of `fuzz/corpus/record/` through the same harness the cargo-fuzz target
//! `record` runs, so the corpus (and every crash kept in it) is checked by a plain
//! `cargo test` on stable Rust.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "harness/mod.rs"]
mod harness;

#[path = "../../test-support/fuzz_replay.rs"]
mod fuzz_replay;

/// Fewer files than this means the corpus went missing (the named seeds alone are more).
const MIN_FILES: usize = 10;

#[test]
fn record_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("record", MIN_FILES, harness::record::run);
}

/// Replays the files named in `HARNESS_REPLAY` (colon-separated), for reading a crash without
/// libFuzzer: `HARNESS_REPLAY=fuzz/artifacts/record/crash-... cargo test -p outbox-journal
/// --test fuzz_corpus replay_named_inputs -- --nocapture`
#[test]
fn replay_named_inputs() {
    let Some(files) = std::env::var_os("HARNESS_REPLAY") else {
        return;
    };
    for file in std::env::split_paths(&files) {
        harness::record::run(
            &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
        );
    }
}
