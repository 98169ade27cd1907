//! Replays every file of `fuzz/corpus/<target>/` through the same harness the cargo-fuzz
//! target of that name runs, so the corpus (and every crash kept in it) is checked by a plain
//! `cargo test` on stable Rust. Also checks the key type read from each real certificate and
//! key of the keycheck seeds against what openssl said when `fuzz/make_seeds.sh` made them.
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

use provisioning::keyinfo::{certificate_key, private_key};
use provisioning::KeyType;
use std::path::{Path, PathBuf};

/// Fewer files than this means the corpus went missing (the named seeds alone are more).
const MIN_FILES_PER_TARGET: usize = 15;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn upload_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("upload", MIN_FILES_PER_TARGET, harness::upload::run);
}

#[test]
fn keycheck_corpus_replays_without_a_broken_invariant() {
    fuzz_replay::replay("keycheck", MIN_FILES_PER_TARGET, harness::keycheck::run);
}

/// The key type openssl named, in the words of `fuzz/keycheck_seeds.txt`.
fn openssl_says(algorithm: &str, detail: &str) -> Option<KeyType> {
    match (algorithm, detail) {
        ("-", "-") => None,
        ("rsaEncryption", bits) => Some(KeyType::Rsa {
            bits: bits.parse().unwrap(),
        }),
        ("id-ecPublicKey", "prime256v1") => Some(KeyType::P256),
        ("id-ecPublicKey", "secp384r1") => Some(KeyType::P384),
        ("id-ecPublicKey", "secp521r1") => Some(KeyType::P521),
        ("ED25519", "-") => Some(KeyType::Ed25519),
        other => panic!("keycheck_seeds.txt: {other:?}"),
    }
}

#[test]
fn real_certificates_and_keys_have_the_key_type_openssl_names() {
    let list = std::fs::read_to_string(fuzz_dir().join("keycheck_seeds.txt")).unwrap();
    let mut checked = 0;
    for line in list.lines() {
        let [name, algorithm, detail] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("keycheck_seeds.txt: {line:?}");
        };
        let der = std::fs::read(fuzz_dir().join("corpus/keycheck").join(name)).unwrap();
        let expected = openssl_says(algorithm, detail);
        if name.contains("_key_") {
            assert_eq!(private_key(&der), expected, "{name}");
            assert_eq!(certificate_key(&der), None, "{name}");
        } else {
            assert_eq!(certificate_key(&der), expected, "{name}");
            assert_eq!(private_key(&der), None, "{name}");
        }
        checked += 1;
    }
    // Certificates and PKCS#8 keys of six key types, two traditional keys, three of tests/data.
    assert!(checked >= 17, "only {checked} seeds listed");
}

/// Replays the files named in `HARNESS_REPLAY` (colon-separated) through the target named in
/// `HARNESS_TARGET` (`upload` or `keycheck`), for reading a crash without libFuzzer:
/// `HARNESS_TARGET=upload HARNESS_REPLAY=fuzz/artifacts/upload/crash-...
/// cargo test -p provisioning --test fuzz_corpus replay_named_inputs -- --nocapture`
#[test]
fn replay_named_inputs() {
    let Some(files) = std::env::var_os("HARNESS_REPLAY") else {
        return;
    };
    let run: fn(&[u8]) = match std::env::var("HARNESS_TARGET").as_deref() {
        Ok("keycheck") => harness::keycheck::run,
        _ => harness::upload::run,
    };
    for file in std::env::split_paths(&files) {
        run(&std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())));
    }
}
