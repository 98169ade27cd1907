//! Replays every file of `fuzz/corpus/<target>/` through the same harness the cargo-fuzz
//! target of that name runs, so the corpus (and every crash kept in it) is checked by a plain
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
const MIN_FILES_PER_TARGET: usize = 8;

#[test]
fn replies_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("replies", MIN_FILES_PER_TARGET, harness::replies::run);
}

#[test]
fn flow_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("flow", MIN_FILES_PER_TARGET, harness::flow::run);
}

#[test]
fn certificate_facts_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay(
        "certificate_facts",
        MIN_FILES_PER_TARGET,
        harness::certificate_facts::run,
    );
}
