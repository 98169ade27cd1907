//! Records in flash by key: Zephyr settings on NVS (the board's storage partition, the flash
//! simulator on native_sim), through `shim.rs`. A save replaces a record whole: NVS
//! writes the data, then the allocation entry that makes it valid, so a power cut leaves the
//! old record or the new one. Used by the credential store and the persistent outbox, on the
//! MQTT thread.

use crate::ffi;
use crate::net::Errno;
use core::ffi::CStr;

fn result(ret: i32) -> Result<usize, Errno> {
    usize::try_from(ret).map_err(|_| Errno(ret.saturating_neg()))
}

/// Reads the record `key` into `buf`: its length, `None` if there is none. A record longer
/// than `buf` is `EFBIG`.
pub fn load(key: &CStr, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    // SAFETY: `key` is NUL-terminated; `buf` is writable for its length and the shim writes
    // at most that many bytes; nothing is kept after the call.
    let ret = unsafe { ffi::app_record_load(key.as_ptr(), buf.as_mut_ptr(), buf.len()) };
    // The shim never reports more than buf.len(); were it to, the record counts as too big.
    match result(ret)? {
        0 => Ok(None),
        len if len <= buf.len() => Ok(Some(len)),
        _ => Err(Errno(27)),
    }
}

/// Replaces the record `key` with `bytes`.
pub fn save(key: &CStr, bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: `key` is NUL-terminated and `bytes` a live slice; settings copies them to
    // flash before returning.
    result(unsafe { ffi::app_record_save(key.as_ptr(), bytes.as_ptr(), bytes.len()) }).map(drop)
}

/// Removes the record `key`; nothing if there is none.
pub fn delete(key: &CStr) -> Result<(), Errno> {
    // SAFETY: `key` is NUL-terminated; nothing is kept after the call.
    result(unsafe { ffi::app_record_delete(key.as_ptr()) }).map(drop)
}
