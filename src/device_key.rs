//! Keys born on the device: a P-256 key pair from PSA's random generator (the board's entropy
//! source), and ECDSA signatures for certificate requests. The DER encodings are
//! `fleet_provisioning`'s; this module only makes and uses keys through PSA.
//!
//! A key lives in PSA's volatile key store only while it is made or used, and is destroyed
//! when its handle drops; the private scalar leaves PSA once, to be written to flash as the
//! staged key record, and the buffer that carried it is wiped.

use crate::ffi;
use core::ffi::c_int;
use core::fmt;
use core::ptr;

// PSA's usage flags (psa/crypto_values.h; macros with casts, which bindgen does not bind).
const PSA_KEY_USAGE_EXPORT: u32 = 0x0000_0001;
const PSA_KEY_USAGE_SIGN_MESSAGE: u32 = 0x0000_0400;
const PSA_SUCCESS: i32 = 0;

/// The length of an uncompressed P-256 public point (0x04, X, Y).
pub const POINT_LEN: usize = 65;
/// The length of a P-256 private scalar.
pub const SCALAR_LEN: usize = 32;

/// A PSA or mbedTLS call that failed, with its status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// psa_generate_key failed (PSA status).
    Generate(i32),
    /// Reading the new key's halves out of PSA failed (PSA status).
    Export(i32),
    /// The stored key does not parse, or is not one PSA can sign with (mbedTLS code).
    Import(i32),
    /// The stored key is of another type than P-256.
    NotP256,
    /// psa_sign_message failed (PSA status).
    Sign(i32),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Generate(code) => write!(f, "the key generator failed (PSA status {code})"),
            Self::Export(code) => {
                write!(f, "the new key could not be read out (PSA status {code})")
            }
            Self::Import(code) => write!(f, "the staged key does not load (mbedTLS error {code})"),
            Self::NotP256 => {
                f.write_str("the staged key is not a P-256 key (`cred keygen` makes one)")
            }
            Self::Sign(code) => write!(f, "signing failed (PSA status {code})"),
        }
    }
}

/// A private scalar, wiped when dropped.
pub struct Scalar(pub [u8; SCALAR_LEN]);

impl Drop for Scalar {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes a buffer that held private key bytes; volatile, so that the wipe of a buffer about
/// to die is not optimised away.
pub fn wipe(buf: &mut [u8]) {
    for byte in buf.iter_mut() {
        // SAFETY: a plain write to a live byte.
        unsafe { ptr::write_volatile(byte, 0) };
    }
}

/// A key in PSA's volatile store, destroyed when dropped.
struct PsaKey(ffi::mbedtls_svc_key_id_t);

impl Drop for PsaKey {
    fn drop(&mut self) {
        // SAFETY: the id names a key this handle made; destroyed once.
        unsafe { ffi::psa_destroy_key(self.0) };
    }
}

impl PsaKey {
    fn public_point(&self) -> Result<[u8; POINT_LEN], i32> {
        let mut point = [0u8; POINT_LEN];
        let mut len = 0usize;
        // SAFETY: point is a live buffer of the length given; len a live local.
        let status = unsafe {
            ffi::psa_export_public_key(self.0, point.as_mut_ptr(), point.len(), &mut len)
        };
        match (status, len) {
            (PSA_SUCCESS, POINT_LEN) => Ok(point),
            (PSA_SUCCESS, _) => Err(-1),
            (status, _) => Err(status),
        }
    }
}

fn crypto_init() -> Result<(), i32> {
    // SAFETY: no arguments; PSA's initialisation is idempotent (TLS calls it too).
    match unsafe { ffi::psa_crypto_init() } {
        PSA_SUCCESS => Ok(()),
        status => Err(status),
    }
}

/// A new P-256 key pair: its private scalar and public point.
pub fn generate() -> Result<(Scalar, [u8; POINT_LEN]), KeyError> {
    crypto_init().map_err(KeyError::Generate)?;
    // SAFETY: the attributes are a local value, initialised by PSA's own initialiser; the
    // setters write its fields.
    let attributes = unsafe {
        let mut attributes = ffi::psa_key_attributes_init();
        ffi::psa_set_key_type(&mut attributes, ffi::app_psa_p256_key_pair());
        ffi::psa_set_key_bits(&mut attributes, 256);
        ffi::psa_set_key_usage_flags(&mut attributes, PSA_KEY_USAGE_EXPORT);
        attributes
    };
    let mut id: ffi::mbedtls_svc_key_id_t = 0;
    // SAFETY: attributes and id are live locals.
    let status = unsafe { ffi::psa_generate_key(&attributes, &mut id) };
    if status != PSA_SUCCESS {
        return Err(KeyError::Generate(status));
    }
    let key = PsaKey(id);
    let mut scalar = Scalar([0; SCALAR_LEN]);
    let mut len = 0usize;
    // SAFETY: scalar's buffer is live for the length given; len a live local.
    let status =
        unsafe { ffi::psa_export_key(key.0, scalar.0.as_mut_ptr(), scalar.0.len(), &mut len) };
    if status != PSA_SUCCESS || len != SCALAR_LEN {
        return Err(KeyError::Export(status));
    }
    let point = key.public_point().map_err(KeyError::Export)?;
    Ok((scalar, point))
}

/// A stored private key, in PSA for signing while this lives.
pub struct SigningKey {
    key: PsaKey,
    point: [u8; POINT_LEN],
}

impl SigningKey {
    /// The key of a DER record (SEC1 or PKCS#8), which must be P-256.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        crypto_init().map_err(KeyError::Import)?;
        let (pk, ret) = crate::shim::PrivateKey::parse(der.as_ptr(), der.len());
        if ret != 0 {
            return Err(KeyError::Import(ret));
        }
        // SAFETY: attributes is a live local, initialised by PSA's own initialiser; pk is a
        // parsed key alive for both calls; id a live local.
        let (ret, id) = unsafe {
            let mut attributes = ffi::psa_key_attributes_init();
            let ret = ffi::mbedtls_pk_get_psa_attributes(
                pk.context(),
                PSA_KEY_USAGE_SIGN_MESSAGE,
                &mut attributes,
            );
            if ret != 0 {
                return Err(KeyError::Import(ret));
            }
            let p256 = ffi::psa_get_key_type(&attributes) == ffi::app_psa_p256_key_pair()
                && ffi::psa_get_key_bits(&attributes) == 256;
            if !p256 {
                return Err(KeyError::NotP256);
            }
            let mut id: ffi::mbedtls_svc_key_id_t = 0;
            let ret = ffi::mbedtls_pk_import_into_psa(pk.context(), &attributes, &mut id);
            (ret, id)
        };
        if ret != 0 {
            return Err(KeyError::Import(ret));
        }
        let key = PsaKey(id);
        let point = key.public_point().map_err(KeyError::Import)?;
        Ok(Self { key, point })
    }

    pub fn public_point(&self) -> &[u8; POINT_LEN] {
        &self.point
    }

    /// ECDSA with SHA-256 over `message`: r and s, 32 bytes each.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let mut signature = [0u8; 64];
        let mut len = 0usize;
        // SAFETY: message and signature are live buffers of the lengths given; len a local.
        let status: c_int = unsafe {
            ffi::psa_sign_message(
                self.key.0,
                ffi::app_psa_ecdsa_sha256(),
                message.as_ptr(),
                message.len(),
                signature.as_mut_ptr(),
                signature.len(),
                &mut len,
            )
        };
        match (status, len) {
            (PSA_SUCCESS, 64) => Ok(signature),
            (PSA_SUCCESS, _) => Err(KeyError::Sign(-1)),
            (status, _) => Err(KeyError::Sign(status)),
        }
    }
}
