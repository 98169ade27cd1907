//! Harness code shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus replay (`tests/fuzz_corpus.rs`), so that a corpus file means the same thing to both.
//! Each `run` takes the raw fuzzer input and panics on a broken invariant; it never panics on
//! input the crate is expected to refuse.
#![allow(dead_code)]

pub mod certificate_facts;
pub mod flow;
pub mod replies;
