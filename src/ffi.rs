//! Declarations of the C shim (`shim.c`). Each function returns `>= 0` or `-errno`; callers in
//! [`crate::net`] and [`crate::credentials`] map the result with [`crate::net::Errno`].

use core::ffi::{c_char, c_int};

/// errno values as the C side was compiled (`struct app_errno_values` in shim.c, same order).
#[repr(C)]
pub struct ErrnoValues {
    pub eagain: i32,
    pub econnrefused: i32,
    pub ehostunreach: i32,
    pub enetunreach: i32,
    pub enetdown: i32,
    pub etimedout: i32,
    pub econnreset: i32,
    pub econnaborted: i32,
    pub epipe: i32,
    pub enotconn: i32,
    pub enomem: i32,
    pub enfile: i32,
    pub emfile: i32,
    pub enobufs: i32,
    pub einval: i32,
    pub enoprotoopt: i32,
    pub eprotonosupport: i32,
}

extern "C" {
    pub fn app_builtin_credential(kind: c_int, data: *mut *const u8, len: *mut usize) -> c_int;
    pub fn app_credential_add(sec_tag: c_int, kind: c_int, data: *const u8, len: usize) -> c_int;
    pub fn app_credential_delete(sec_tag: c_int, kind: c_int) -> c_int;

    pub fn app_resolve(host: *const c_char, port: u16, addr: *mut u8, addr_len: *mut usize) -> c_int;
    pub fn app_tls_socket(addr: *const u8) -> c_int;
    pub fn app_tls_require_peer_verification(fd: c_int) -> c_int;
    pub fn app_tls_set_sec_tags(fd: c_int, tags: *const i32, count: usize) -> c_int;
    pub fn app_tls_set_hostname(fd: c_int, host: *const c_char) -> c_int;
    pub fn app_tls_enable_session_cache(fd: c_int) -> c_int;
    pub fn app_tls_record_verify_flags(fd: c_int) -> c_int;
    pub fn app_tls_ciphersuite(fd: c_int) -> c_int;
    pub fn app_tls_last_verify_flags() -> u32;
    pub fn app_connect(fd: c_int, addr: *const u8, addr_len: usize) -> c_int;
    pub fn app_send(fd: c_int, data: *const u8, len: usize) -> c_int;
    pub fn app_recv(fd: c_int, buf: *mut u8, len: usize, timeout_ms: i32) -> c_int;
    pub fn app_close(fd: c_int) -> c_int;

    pub fn app_errno_values() -> *const ErrnoValues;
    pub fn app_random_u64() -> u64;
    pub fn app_heap_free_bytes() -> i64;
    #[cfg(CONFIG_ARCH_POSIX)]
    pub fn app_broker_port_override() -> u16;
    pub fn app_network_wait(timeout_ms: i32) -> c_int;
}
