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

use std::path::{Path, PathBuf};

/// Fewer files than this means the corpus went missing (the named seeds alone are more).
const MIN_FILES: usize = 10;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn record_corpus_replays_without_a_broken_invariant() {
    let files = corpus_files("record");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| harness::record::run(&data));
        if let Err(panic) = outcome {
            eprintln!("corpus file {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    assert!(
        files.len() >= MIN_FILES,
        "only {} files in fuzz/corpus/record",
        files.len()
    );
    println!("replayed {} files of fuzz/corpus/record", files.len());
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
