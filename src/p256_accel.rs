//! P-256 for mbedTLS on Cortex-M4: Emil Lenngren's P256-Cortex-M4 assembly (crate
//! `p256-cortex-m4-sys`) behind the two hooks that `zephyr/patches/mbedtls/` adds to mbedTLS
//! 3.6 (Kconfig `APP_P256_CORTEX_M4`, macros in `src/mbedtls/tls_profile_config.h`).
//!
//! - `mbedtls_ecp_p256_mul_accel`: the scalar multiplication `R = m * P` of
//!   `library/ecp.c`. Every P-256 operation of a handshake is one or two of them: ECDHE key
//!   generation and agreement, the ECDSA signature with the device key (`k * G`), deriving a
//!   public key, the verification's `u1 * G + u2 * Q` when the hook below does not decide.
//! - `mbedtls_ecdsa_p256_verify_accel`: ECDSA verification (SEC 1 4.1.4) in
//!   `library/ecdsa.c`, one combined multiplication instead of two.
//!
//! mbedTLS calls them for secp256r1 only, outside restartable operations, after its own
//! checks (scalar in 1..n-1, point on the curve, r and s in 1..n-1). Numbers cross the seam as
//! 32-byte little-endian strings. Anything but 0 sends mbedTLS on to its own code, so an input
//! the assembly does not take is handled, or refused, exactly as without it: the verification
//! hook can only accept a signature, and "invalid" is always mbedTLS's own verdict.
//!
//! The multiplications run in constant time with respect to the scalar (an ECDHE private key,
//! an ECDSA nonce: P256-Cortex-M4's README, "Security"); their copies here are wiped after use.
//! Verification handles public values only. The crate's assembly uses FPU registers as
//! scratch space when built for a hard-float target, which Kconfig allows only with
//! `FPU_SHARING`.
//!
//! The crate `p256-cortex-m4` wraps the same code in a safe API, but offers no multiplication
//! of an arbitrary point that returns both coordinates (its ECDH returns only x), which
//! `mbedtls_ecp_mul()` must: so the raw bindings, each call documented against
//! `p256-cortex-m4.h`.

use core::ffi::c_int;
use p256_cortex_m4_sys as p256;

/// `MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE` (`mbedtls/ecp.h`): the hooks' "use your own code".
const MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE: c_int = -0x4E80;

/// A 256-bit number as P256-Cortex-M4 takes it: eight 32-bit words, least significant first.
type Words = [u32; 8];

/// Words that hold a secret (a scalar, a shared point); set to zero when dropped.
struct Secret(Words);

impl Drop for Secret {
    fn drop(&mut self) {
        for word in self.0.iter_mut() {
            // SAFETY: `word` is a valid, aligned reference; a volatile write is not removed as
            // a dead store, so the secret does not outlive its use on the stack.
            unsafe { core::ptr::write_volatile(word, 0) };
        }
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

fn to_words(bytes: &[u8; 32]) -> Words {
    let mut words = [0u32; 8];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = chunk
            .iter()
            .rev()
            .fold(0, |acc, &byte| (acc << 8) | u32::from(byte));
    }
    words
}

fn write_bytes(words: &Words, bytes: &mut [u8; 32]) {
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
}

/// `R = m * P` on P-256; `p_is_g`: P is the generator (the fixed-base method, with its table).
/// Returns 0 with R written, or `MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE` when the assembly
/// refuses the input (a scalar outside 1..n-1, a point off the curve).
#[no_mangle]
extern "C" fn mbedtls_ecp_p256_mul_accel(
    rx: *mut [u8; 32],
    ry: *mut [u8; 32],
    m: *const [u8; 32],
    px: *const [u8; 32],
    py: *const [u8; 32],
    p_is_g: c_int,
) -> c_int {
    // SAFETY: the patched ecp.c (`ecp_p256_mul_accel`) passes five distinct 32-byte arrays of
    // one local buffer, valid for the whole call; `as_mut`/`as_ref` turn a null pointer into
    // None, and rx and ry are written only through these references.
    let arrays = unsafe {
        (
            rx.as_mut(),
            ry.as_mut(),
            m.as_ref(),
            px.as_ref(),
            py.as_ref(),
        )
    };
    let (Some(rx), Some(ry), Some(m), Some(px), Some(py)) = arrays else {
        return MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    };
    let scalar = Secret(to_words(m));
    let mut x = Secret([0; 8]);
    let mut y = Secret([0; 8]);
    let done = if p_is_g != 0 {
        // SAFETY: three distinct arrays of eight words, outputs first, as p256-cortex-m4.h
        // declares; the function checks the scalar's range itself and returns false outside it.
        unsafe { p256::p256_scalarmult_base(x.0.as_mut_ptr(), y.0.as_mut_ptr(), scalar.0.as_ptr()) }
    } else {
        let (px, py) = (to_words(px), to_words(py));
        // SAFETY: five distinct arrays of eight words, outputs first, as p256-cortex-m4.h
        // declares; the function checks the scalar's range and that the point is on the curve,
        // and returns false otherwise.
        unsafe {
            p256::p256_scalarmult_generic(
                x.0.as_mut_ptr(),
                y.0.as_mut_ptr(),
                scalar.0.as_ptr(),
                px.as_ptr(),
                py.as_ptr(),
            )
        }
    };
    if !done {
        return MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    }
    write_bytes(&x.0, rx);
    write_bytes(&y.0, ry);
    0
}

/// ECDSA verification on P-256 of the hash (`hash_len` bytes, truncated to 32 as SEC 1 4.1.4
/// step 3 does) against the public key Q and the signature (r, s). Returns 0 for a valid
/// signature; `MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE` leaves the decision to mbedTLS.
#[no_mangle]
extern "C" fn mbedtls_ecdsa_p256_verify_accel(
    hash: *const u8,
    hash_len: usize,
    qx: *const [u8; 32],
    qy: *const [u8; 32],
    r: *const [u8; 32],
    s: *const [u8; 32],
) -> c_int {
    let Ok(hash_len) = u32::try_from(hash_len) else {
        return MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    };
    if hash.is_null() && hash_len != 0 {
        return MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    }
    // SAFETY: the patched ecdsa.c (`ecdsa_p256_verify_accel`) passes four 32-byte arrays of one
    // local buffer, valid and unchanged for the whole call; `as_ref` turns null into None.
    let arrays = unsafe { (qx.as_ref(), qy.as_ref(), r.as_ref(), s.as_ref()) };
    let (Some(qx), Some(qy), Some(r), Some(s)) = arrays else {
        return MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE;
    };
    let (qx, qy, r, s) = (to_words(qx), to_words(qy), to_words(r), to_words(s));
    // SAFETY: four arrays of eight words as p256-cortex-m4.h declares, and the hash mbedTLS's
    // caller gave mbedtls_ecdsa_verify(): `hash_len` readable bytes, of which the function reads
    // at most 32. It checks the ranges of r and s and that Q is on the curve itself.
    let valid = unsafe {
        p256::p256_verify(
            qx.as_ptr(),
            qy.as_ptr(),
            hash,
            hash_len,
            r.as_ptr(),
            s.as_ptr(),
        )
    };
    if valid {
        0
    } else {
        MBEDTLS_ERR_ECP_FEATURE_UNAVAILABLE
    }
}
