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
    pub fn app_builtin_extra_ca(index: c_int, data: *mut *const u8, len: *mut usize) -> c_int;
    pub fn app_builtin_mqtt_password(data: *mut *const u8, len: *mut usize) -> c_int;
    pub fn app_credential_add(sec_tag: c_int, kind: c_int, data: *const u8, len: usize) -> c_int;
    pub fn app_credential_delete(sec_tag: c_int, kind: c_int) -> c_int;

    pub fn app_resolve(
        host: *const c_char,
        port: u16,
        addrs: *mut [u8; crate::net::ADDRESS_SIZE],
        lens: *mut usize,
        max: usize,
    ) -> c_int;
    pub fn app_tls_socket(addr: *const u8) -> c_int;
    pub fn app_tls_require_peer_verification(fd: c_int) -> c_int;
    pub fn app_tls_set_sec_tags(fd: c_int, tags: *const i32, count: usize) -> c_int;
    pub fn app_tls_set_hostname(fd: c_int, host: *const c_char) -> c_int;
    pub fn app_tls_set_alpn(fd: c_int, list: *const c_char) -> c_int;
    pub fn app_tls_enable_session_cache(fd: c_int) -> c_int;
    pub fn app_tls_purge_session_cache(fd: c_int) -> c_int;
    pub fn app_wall_clock_s() -> i64;
    pub fn app_tls_heap_stats(used: *mut u32, peak: *mut u32, size: *mut u32) -> c_int;
    pub fn app_wall_clock_sync(server: *const c_char, timeout_ms: u32) -> c_int;
    pub fn app_tls_check_peer_certificate(fd: c_int) -> c_int;
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
    #[cfg(CONFIG_ARCH_POSIX)]
    pub fn app_text_override(option: c_int) -> *const c_char;
    pub fn app_network_wait(timeout_ms: i32) -> c_int;
    pub fn app_ipv4_address(text: *mut c_char, len: usize) -> c_int;
    pub fn app_network_went_down() -> bool;
    pub fn app_cpu_time_us(all_threads: *mut u64, this_thread: *mut u64) -> c_int;
    pub fn app_control_wake();
}

// --- control.c: the shell's requests and the status snapshot (see src/control.rs) ---------

/// Longest topic and payload of a shell publish (`APP_CONTROL_*_MAX` in control.c).
pub const CONTROL_TOPIC_MAX: usize = 128;
pub const CONTROL_PAYLOAD_MAX: usize = 192;

/// `struct app_publish_request` in control.c, same order.
#[repr(C)]
pub struct PublishRequest {
    pub ticket: u32,
    pub topic_len: u16,
    pub payload_len: u16,
    pub qos: u8,
    pub topic: [u8; CONTROL_TOPIC_MAX],
    pub payload: [u8; CONTROL_PAYLOAD_MAX],
}

/// `struct app_publish_answer` in control.c, same order.
#[repr(C)]
pub struct PublishAnswer {
    pub queued: u32,
    pub message_id: u32,
    pub outbox: u32,
    pub reason: [u8; 96],
}

/// `struct app_bench_request` in control.c, same order.
#[repr(C)]
pub struct BenchRequest {
    pub count: u32,
    pub payload_len: u16,
    pub qos: u8,
}

/// `struct app_mqtt_status` in control.c, same order; text fields are NUL-terminated.
#[repr(C)]
pub struct MqttStatus {
    pub inflight: u32,
    pub outbox: u32,
    pub reconnects: u32,
    pub published: u32,
    pub port: u16,
    pub state: [u8; 16],
    pub host: [u8; 64],
    pub tls_version: [u8; 16],
    pub cipher: [u8; 48],
    pub last_error: [u8; 96],
}

extern "C" {
    pub fn app_control_take_request(out: *mut PublishRequest, timeout_ms: i32) -> c_int;
    pub fn app_control_answer(ticket: u32, answer: *const PublishAnswer);
    pub fn app_control_set_status(status: *const MqttStatus);
    pub fn app_control_take_bench(out: *mut BenchRequest) -> bool;
    #[cfg(CONFIG_ARCH_POSIX)]
    pub fn app_keepalive_override() -> u16;
    #[cfg(CONFIG_ARCH_POSIX)]
    pub fn app_reconnect_cap_override() -> u32;

    // provisioning.c
    pub fn app_outbox_load(slot: c_int, buf: *mut u8, cap: usize) -> c_int;
    pub fn app_outbox_save(slot: c_int, record: *const u8, len: usize) -> c_int;
    pub fn app_outbox_delete(slot: c_int) -> c_int;
    pub fn app_credentials_load(buf: *mut u8, cap: usize) -> c_int;
    pub fn app_credentials_save(record: *const u8, len: usize) -> c_int;
    pub fn app_credentials_record_max() -> usize;
    pub fn app_parse_certificate(der: *const u8, len: usize) -> c_int;
    pub fn app_parse_private_key(der: *const u8, len: usize) -> c_int;
    pub fn app_key_matches_certificate(
        cert: *const u8,
        cert_len: usize,
        key: *const u8,
        key_len: usize,
    ) -> bool;
    pub fn app_fingerprint(is_key: bool, der: *const u8, len: usize, digest: *mut u8) -> c_int;
}
