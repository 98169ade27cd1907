//! The `openssl` command as the outside judge of what the crate writes and reads. Missing,
//! it fails the test: scripts/setup installs it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `openssl args…` with `input` on its standard input.
pub fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("openssl cannot be run ({e}); scripts/setup installs it"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `openssl args…` and gives its standard output; it must succeed.
pub fn ok(args: &[&str], input: &[u8]) -> Vec<u8> {
    let output = run(args, input);
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// As [`ok`], as text.
pub fn text(args: &[&str], input: &[u8]) -> String {
    String::from_utf8(ok(args, input)).unwrap()
}
