//! TLS credentials in Zephyr's credential store (`tls_credential_add`), under one security tag,
//! and the image's further trust anchors under the tags after it.
//!
//! The store keeps pointers, not copies, so everything registered here is `'static`: the
//! certificates built into the image live in flash (`include_bytes!`).
//!
//! The store holds one credential of each type per tag, and mbedTLS parses one certificate per
//! DER credential: so each further CA (`ca-2.crt.der` .. `ca-4.crt.der`) gets a tag of its own,
//! `APP_TLS_SEC_TAG + 1` on, and the socket's tag list names them all (Zephyr's TLS sockets add
//! the CA certificates of every listed tag to one chain of trust).

use crate::ffi;
use crate::net::{Errno, ErrnoKind};
use core::ffi::c_int;

/// At most this many further trust anchors: after the first of a bundle, provisioned or from
/// the image (CMakeLists.txt takes `ca-2.crt.der` .. `ca-4.crt.der`).
pub const MAX_EXTRA_CAS: usize = provisioning::MAX_TRUST_ANCHORS - 1;

/// Which credential; the numbers are `shim.rs`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The CA that must have signed the broker's certificate.
    Ca = ffi::APP_CREDENTIAL_CA as isize,
    /// The device's own certificate (mutual TLS).
    DeviceCertificate = ffi::APP_CREDENTIAL_DEVICE_CERT as isize,
    /// The device's private key (mutual TLS).
    DeviceKey = ffi::APP_CREDENTIAL_DEVICE_KEY as isize,
}

/// Why a credential could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// The store is full (`CONFIG_TLS_MAX_CREDENTIALS_NUMBER`).
    StoreFull,
    /// The credential is empty or the tag is invalid.
    Invalid,
    /// Any other failure, with its errno.
    Other(Errno),
}

impl core::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CredentialKind::Ca => "CA",
            CredentialKind::DeviceCertificate => "device certificate",
            CredentialKind::DeviceKey => "device key",
        })
    }
}

impl core::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CredentialError::StoreFull => {
                f.write_str("the TLS credential store is full (CONFIG_TLS_MAX_CREDENTIALS_NUMBER)")
            }
            CredentialError::Invalid => f.write_str("empty credential or invalid tag"),
            CredentialError::Other(errno) => write!(f, "{errno}"),
        }
    }
}

/// What was registered (`runtime_credentials::Credentials::apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// A device certificate and key are registered: the broker can authenticate the device.
    pub mutual_tls: bool,
}

/// The credentials directory the image was built with (CMakeLists.txt writes this file).
mod image {
    include!(concat!(env!("BUILD_DIR"), "/app_image_credentials.rs"));
}

/// The credential built into the image, if the build had one.
pub fn builtin(kind: CredentialKind) -> Option<&'static [u8]> {
    match kind {
        CredentialKind::Ca => Some(image::CA),
        CredentialKind::DeviceCertificate => image::DEVICE.map(|(cert, _)| cert),
        CredentialKind::DeviceKey => image::DEVICE.map(|(_, key)| key),
    }
}

/// The CA that issues device certificates (`device-ca.crt.der` in the credentials
/// directory), if the build had one: a certificate issued over MQTT must verify against it.
pub fn builtin_device_ca() -> Option<&'static [u8]> {
    image::DEVICE_CA
}

/// The MQTT password built into the image (`mqtt-password` in the credentials directory), if
/// the build had one. Never logged: it goes into CONNECT as a `mqtt_core::Password`.
pub fn builtin_mqtt_password() -> Option<&'static [u8]> {
    image::MQTT_PASSWORD
}

/// Registers `data` as `kind` under `sec_tag`, replacing what was there.
pub fn register(
    sec_tag: i32,
    kind: CredentialKind,
    data: &'static [u8],
) -> Result<(), CredentialError> {
    // SAFETY: plain call; deleting a credential that is not there fails harmlessly (-ENOENT).
    let _ = unsafe { ffi::app_credential_delete(sec_tag, kind as c_int) };
    // SAFETY: data is 'static, as the credential store keeps the pointer.
    let ret = unsafe { ffi::app_credential_add(sec_tag, kind as c_int, data.as_ptr(), data.len()) };
    if ret >= 0 {
        return Ok(());
    }
    let errno = Errno(ret.saturating_neg());
    Err(match errno.kind() {
        ErrnoKind::OutOfResources => CredentialError::StoreFull,
        ErrnoKind::InvalidArgument => CredentialError::Invalid,
        _ => CredentialError::Other(errno),
    })
}

/// The image's `index`-th further trust anchor (0: `ca-2.crt.der`), if it has one.
pub fn builtin_extra_ca(index: usize) -> Option<&'static [u8]> {
    image::EXTRA_CAS.get(index).copied()
}

/// The tag of the `index`-th further trust anchor.
fn extra_ca_tag(sec_tag: i32, index: usize) -> Option<i32> {
    sec_tag
        .checked_add(i32::try_from(index).ok()?)?
        .checked_add(1)
}

/// The image's further trust anchors. They go with the image's CA: a provisioned CA bundle
/// replaces them all.
pub fn builtin_extra_cas() -> impl Iterator<Item = &'static [u8]> {
    (0..MAX_EXTRA_CAS).map_while(builtin_extra_ca)
}

/// Registers further trust anchors under the tags after `sec_tag`; returns how many.
/// `registered` counts them as they go in (its owner keeps it for [`sec_tags`]). More than
/// [`MAX_EXTRA_CAS`] cannot come: the bundle's checks and CMakeLists.txt refuse them.
pub fn register_extra_cas(
    sec_tag: i32,
    cas: impl Iterator<Item = &'static [u8]>,
    registered: &mut usize,
) -> Result<usize, CredentialError> {
    unregister_extra_cas(sec_tag, registered);
    for (index, der) in cas.take(MAX_EXTRA_CAS).enumerate() {
        let tag = extra_ca_tag(sec_tag, index).ok_or(CredentialError::Invalid)?;
        register(tag, CredentialKind::Ca, der)?;
        *registered += 1;
    }
    Ok(*registered)
}

/// Removes the further trust anchors from the tags after `sec_tag`; `registered` drops to 0.
pub fn unregister_extra_cas(sec_tag: i32, registered: &mut usize) {
    for index in 0..MAX_EXTRA_CAS {
        if let Some(tag) = extra_ca_tag(sec_tag, index) {
            unregister(tag, CredentialKind::Ca);
        }
    }
    *registered = 0;
}

/// The tags a TLS socket lists: `sec_tag`, then those of the `extra_cas` further trust
/// anchors registered after it.
pub fn sec_tags(sec_tag: i32, extra_cas: usize) -> heapless::Vec<i32, { MAX_EXTRA_CAS + 1 }> {
    let mut tags = heapless::Vec::new();
    let _ = tags.push(sec_tag);
    for index in 0..extra_cas {
        if let Some(tag) = extra_ca_tag(sec_tag, index) {
            let _ = tags.push(tag);
        }
    }
    tags
}

/// Removes `kind` from under `sec_tag`, if it is there.
pub fn unregister(sec_tag: i32, kind: CredentialKind) {
    // SAFETY: plain call; deleting a credential that is not there fails harmlessly (-ENOENT).
    let _ = unsafe { ffi::app_credential_delete(sec_tag, kind as c_int) };
}
