//! Harness code shared by the cargo-fuzz target (`fuzz/fuzz_targets/record.rs`) and the stable
//! corpus replay (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing to both.
//! Both include this directory with `#[path]`; nothing here is part of the crate.
//!
//! Each `run` takes the raw fuzzer input and panics on a broken invariant; it never panics on
//! input the crate is expected to reject.
#![allow(dead_code)]

pub mod record;
