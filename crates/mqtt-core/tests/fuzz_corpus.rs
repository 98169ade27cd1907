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
const MIN_FILES_PER_TARGET: usize = 40;

#[test]
fn framing_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("framing", MIN_FILES_PER_TARGET, harness::framing::run);
}

#[test]
fn session_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("session", MIN_FILES_PER_TARGET, harness::session::run);
}

/// Replays the files named in `HARNESS_REPLAY` (colon-separated) through the target named in
/// `HARNESS_TARGET` (`framing` or `session`); with `HARNESS_TRACE=1` the session harness
/// prints every step. For reading a crash without libFuzzer:
/// `HARNESS_TARGET=session HARNESS_REPLAY=fuzz/artifacts/session/crash-... HARNESS_TRACE=1
/// cargo test -p mqtt-core --test fuzz_corpus replay_named_inputs -- --nocapture`
#[test]
fn replay_named_inputs() {
    let Some(files) = std::env::var_os("HARNESS_REPLAY") else {
        return;
    };
    let run: fn(&[u8]) = match std::env::var("HARNESS_TARGET").as_deref() {
        Ok("framing") => harness::framing::run,
        _ => harness::session::run,
    };
    for file in std::env::split_paths(&files) {
        run(&std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
    }
}
