//! TLS credentials in Zephyr's credential store (`tls_credential_add`), under one security tag.
//!
//! The store keeps pointers, not copies, so everything registered here is `'static`: the
//! certificates built into the image live in flash (`shim.c`).

use crate::ffi;
use crate::net::Errno;
use core::ffi::c_int;

/// Which credential; the numbers are shared with `shim.c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The CA that must have signed the broker's certificate.
    Ca = 0,
    /// The device's own certificate (mutual TLS).
    DeviceCertificate = 1,
    /// The device's private key (mutual TLS).
    DeviceKey = 2,
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

/// What was registered (`runtime_credentials::apply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// A device certificate and key are registered: the broker can authenticate the device.
    pub mutual_tls: bool,
}

/// The credential built into the image, if the build had one.
pub fn builtin(kind: CredentialKind) -> Option<&'static [u8]> {
    let mut data: *const u8 = core::ptr::null();
    let mut len = 0usize;
    // SAFETY: the shim writes a pointer to a static array and its length, or fails.
    let ret = unsafe { ffi::app_builtin_credential(kind as c_int, &mut data, &mut len) };
    if ret < 0 || data.is_null() || len == 0 {
        return None;
    }
    // SAFETY: data points to a `static const uint8_t[len]` in shim.c: valid, immutable and
    // alive for the whole program.
    Some(unsafe { core::slice::from_raw_parts(data, len) })
}

/// The MQTT password built into the image (`mqtt-password` in the credentials directory), if
/// the build had one. Never logged: it goes into CONNECT as a `mqtt_core::Password`.
pub fn builtin_mqtt_password() -> Option<&'static [u8]> {
    let mut data: *const u8 = core::ptr::null();
    let mut len = 0usize;
    // SAFETY: the shim writes a pointer to a static array and its length, or fails.
    let ret = unsafe { ffi::app_builtin_mqtt_password(&mut data, &mut len) };
    if ret < 0 || data.is_null() || len == 0 {
        return None;
    }
    // SAFETY: data points to a `static const uint8_t[len]` in shim.c: valid, immutable and
    // alive for the whole program.
    Some(unsafe { core::slice::from_raw_parts(data, len) })
}

/// Registers `data` as `kind` under `sec_tag`, replacing what was there.
pub fn register(sec_tag: i32, kind: CredentialKind, data: &'static [u8]) -> Result<(), CredentialError> {
    // SAFETY: plain call; deleting a credential that is not there fails harmlessly (-ENOENT).
    let _ = unsafe { ffi::app_credential_delete(sec_tag, kind as c_int) };
    // SAFETY: data is 'static, as the credential store keeps the pointer.
    let ret = unsafe { ffi::app_credential_add(sec_tag, kind as c_int, data.as_ptr(), data.len()) };
    if ret >= 0 {
        return Ok(());
    }
    let errno = ret.saturating_neg();
    let values = crate::net::errno_values();
    Err(if errno == values.enomem {
        CredentialError::StoreFull
    } else if errno == values.einval {
        CredentialError::Invalid
    } else {
        CredentialError::Other(Errno(errno))
    })
}

/// Removes `kind` from under `sec_tag`, if it is there.
pub fn unregister(sec_tag: i32, kind: CredentialKind) {
    // SAFETY: plain call; deleting a credential that is not there fails harmlessly (-ENOENT).
    let _ = unsafe { ffi::app_credential_delete(sec_tag, kind as c_int) };
}
