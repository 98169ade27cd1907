//! The corpus replay of every crate's `tests/fuzz_corpus.rs`, which includes this file with
//! `#[path]`: each file of `fuzz/corpus/<target>/` of the including crate goes through the
//! harness its cargo-fuzz target runs.

use std::path::{Path, PathBuf};

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

/// Runs every corpus file of `target` through `run`, naming the file that fails; fewer than
/// `min_files` files means the corpus went missing.
pub fn replay(target: &str, min_files: usize, run: fn(&[u8])) {
    let files = corpus_files(target);
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        if let Err(panic) = outcome {
            eprintln!("corpus file {} failed", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    assert!(
        files.len() >= min_files,
        "only {} files in fuzz/corpus/{target}",
        files.len()
    );
    println!("replayed {} files of fuzz/corpus/{target}", files.len());
}
