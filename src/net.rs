//! Zephyr TLS sockets (`IPPROTO_TLS_1_2` with mbedTLS underneath) as an MQTT transport.
//!
//! The connect sequence follows `subsys/net/lib/mqtt/mqtt_transport_socket_tls.c`: socket,
//! peer verification required, security tag list, host name, session cache, connect (which
//! runs the handshake), and close on any error. Verification is never optional: a broker whose
//! certificate does not chain to our CA or does not carry the broker's host name is refused.

use crate::ffi;
use crate::shim::errno_values;
use crate::sync::lock;
use core::ffi::{c_char, c_int, CStr};
use device_app::{AlpnNames, CertificateProblem, LeaseWatch, MAX_ALPN_NAMES};
use mqtt_core::driver::ReadTimeout;
use mqtt_core::Recovery;

/// An errno value, as the shim returns it negated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// What an errno means to this firmware: the one place errno values are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrnoKind {
    /// Nothing yet (a read timed out with no data).
    WouldBlock,
    ConnectionRefused,
    /// No route, or the network or interface is down.
    Unreachable,
    TimedOut,
    /// The connection was reset, aborted or dropped by the stack.
    ConnectionReset,
    /// Out of sockets, buffers or memory (the credential store too).
    OutOfResources,
    /// An argument or option the stack refused.
    InvalidArgument,
    Other,
}

impl Errno {
    pub fn kind(self) -> ErrnoKind {
        let e = errno_values();
        let is = |candidates: &[i32]| candidates.contains(&self.0);
        if is(&[e.eagain]) {
            ErrnoKind::WouldBlock
        } else if is(&[e.econnrefused]) {
            ErrnoKind::ConnectionRefused
        } else if is(&[e.ehostunreach, e.enetunreach, e.enetdown]) {
            ErrnoKind::Unreachable
        } else if is(&[e.etimedout]) {
            ErrnoKind::TimedOut
        } else if is(&[
            e.econnreset,
            e.econnaborted,
            e.epipe,
            e.enotconn,
            e.enetreset,
        ]) {
            ErrnoKind::ConnectionReset
        } else if is(&[e.enomem, e.enfile, e.emfile, e.enobufs]) {
            ErrnoKind::OutOfResources
        } else if is(&[e.einval, e.enoprotoopt, e.eprotonosupport]) {
            ErrnoKind::InvalidArgument
        } else {
            ErrnoKind::Other
        }
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let words = match self.kind() {
            ErrnoKind::WouldBlock => "no data yet",
            ErrnoKind::ConnectionRefused => "connection refused",
            ErrnoKind::Unreachable => "network unreachable or down",
            ErrnoKind::TimedOut => "timed out",
            ErrnoKind::ConnectionReset => "connection reset or dropped",
            ErrnoKind::OutOfResources => "out of sockets, buffers or memory",
            ErrnoKind::InvalidArgument => "invalid argument",
            ErrnoKind::Other => "error",
        };
        write!(f, "{words} (errno {})", self.0)
    }
}

/// Why a network operation failed, grouped the way the reconnect policy cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// DNS could not resolve the broker's name.
    NameNotResolved,
    /// The broker's port refused the TCP connection.
    ConnectionRefused,
    /// No route to the broker, or the network is down.
    Unreachable,
    /// The connection or handshake timed out.
    TimedOut,
    /// The TLS handshake failed; the certificate check says why.
    Handshake(CertificateProblem),
    /// The wall clock is not set (and SNTP did not set it): certificate dates cannot be
    /// checked, so the device does not connect.
    ClockNotSet,
    /// The peer reset or aborted the connection.
    ConnectionReset,
    /// Out of sockets, TLS contexts or memory.
    OutOfResources,
    /// A setting was rejected (a bug or a bad configuration).
    InvalidArgument,
    /// The TLS layer refused one step of setting up the socket, named here; the errno says
    /// nothing more than "invalid".
    Rejected(TlsSetup),
    /// Anything else, with its errno.
    Other(Errno),
}

/// The steps of setting up a TLS socket, in order (see [`TlsSocket::connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSetup {
    /// Opening the socket.
    Socket,
    /// Requiring peer verification.
    PeerVerify,
    /// Loading the credentials (CA, device certificate and key): Zephyr parses them here.
    Credentials,
    /// Setting the broker's host name (SNI and certificate check).
    HostName,
    /// The session cache.
    SessionCache,
    /// The certificate verification callback.
    VerifyCallback,
    /// The ALPN protocol list (`CONFIG_APP_TLS_ALPN`).
    Alpn,
}

impl TlsSetup {
    fn as_str(self) -> &'static str {
        match self {
            TlsSetup::Socket => "opening a TLS socket",
            TlsSetup::PeerVerify => "requiring peer verification",
            TlsSetup::Credentials => {
                "loading the CA, device certificate and key (one of them has an algorithm, curve or size this build cannot use)"
            }
            TlsSetup::HostName => "setting the broker host name",
            TlsSetup::SessionCache => "the TLS session cache",
            TlsSetup::VerifyCallback => "the certificate check",
            TlsSetup::Alpn => "setting the ALPN list (this build has no MBEDTLS_SSL_ALPN)",
        }
    }
}

/// The verify flags are mbedTLS's, taken from its headers in `shim.rs` (by
/// bindgen) and in `device_app` (which tells the problem from them): the same values.
const _: () = {
    use device_app::verify_flags as f;
    assert!(ffi::APP_BADCERT_EXPIRED == f::EXPIRED);
    assert!(ffi::APP_BADCERT_CN_MISMATCH == f::CN_MISMATCH);
    assert!(ffi::APP_BADCERT_NOT_TRUSTED == f::NOT_TRUSTED);
    assert!(ffi::APP_BADCERT_FUTURE == f::FUTURE);
    assert!(ffi::APP_BADCERT_KEY_USAGE == f::KEY_USAGE);
    assert!(ffi::APP_BADCERT_EXT_KEY_USAGE == f::EXT_KEY_USAGE);
    assert!(ffi::APP_BADCERT_NS_CERT_TYPE == f::NS_CERT_TYPE);
    assert!(ffi::APP_BADCERT_BAD_MD == f::BAD_MD);
    assert!(ffi::APP_BADCERT_BAD_PK == f::BAD_PK);
    assert!(ffi::APP_BADCERT_BAD_KEY == f::BAD_KEY);
    assert!(ffi::APP_VERIFY_PINNED_KEY_MISMATCH == f::PINNED_KEY_MISMATCH);
    assert!(ffi::APP_VERIFY_CHECKED == f::CHECKED);
    assert!(ffi::APP_VERIFY_UNREADABLE == f::UNREADABLE);
    assert!(ffi::APP_ALPN_MAX_NAMES as usize == device_app::MAX_ALPN_NAMES);
};

impl NetError {
    pub fn from_errno(errno: Errno) -> Self {
        match errno.kind() {
            ErrnoKind::ConnectionRefused => NetError::ConnectionRefused,
            ErrnoKind::Unreachable => NetError::Unreachable,
            ErrnoKind::TimedOut => NetError::TimedOut,
            ErrnoKind::ConnectionReset => NetError::ConnectionReset,
            ErrnoKind::OutOfResources => NetError::OutOfResources,
            ErrnoKind::InvalidArgument => NetError::InvalidArgument,
            ErrnoKind::WouldBlock | ErrnoKind::Other => NetError::Other(errno),
        }
    }

    /// Whether the failure goes away by itself, or needs a person: a refused certificate or
    /// credential, or a rejected setting (still retried, rarely: see `mqtt_core::backoff`).
    pub fn recovery(&self) -> Recovery {
        match self {
            // Where the certificate is not the cause, the failure may be the network's.
            NetError::Handshake(
                CertificateProblem::NotChecked | CertificateProblem::PassedChecks,
            ) => Recovery::Retry,
            NetError::Handshake(_) | NetError::InvalidArgument | NetError::Rejected(_) => {
                Recovery::NeedsAttention
            }
            _ => Recovery::Retry,
        }
    }
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NameNotResolved => f.write_str("broker host name not resolved"),
            NetError::ConnectionRefused => f.write_str("connection refused"),
            NetError::Unreachable => f.write_str("broker unreachable"),
            NetError::TimedOut => f.write_str("timed out"),
            NetError::Handshake(problem) => write!(f, "{problem}"),
            NetError::ClockNotSet => {
                f.write_str("wall clock not set (SNTP failed): certificate dates cannot be checked")
            }
            NetError::ConnectionReset => f.write_str("connection reset"),
            NetError::OutOfResources => f.write_str("out of sockets or memory"),
            NetError::InvalidArgument => f.write_str("socket option rejected"),
            NetError::Rejected(step) => write!(f, "tls: rejected while {}", step.as_str()),
            NetError::Other(errno) => write!(f, "socket error: {errno}"),
        }
    }
}

/// [`check`] for one step of setting up a TLS socket: "invalid argument" names the step.
fn step(setup: TlsSetup, ret: c_int) -> Result<c_int, NetError> {
    check(ret).map_err(|cause| match cause {
        NetError::InvalidArgument => NetError::Rejected(setup),
        other => other,
    })
}

fn check(ret: c_int) -> Result<c_int, NetError> {
    if ret >= 0 {
        Ok(ret)
    } else {
        Err(NetError::from_errno(Errno(ret.saturating_neg())))
    }
}

/// Bytes of one socket address from the shim.
pub const ADDRESS_SIZE: usize = ffi::APP_ADDRESS_SIZE as usize;
/// Most addresses of one host name that a connect attempt tries.
pub const MAX_ADDRESSES: usize = 4;

/// A resolved socket address, kept opaque (the shim copies a `struct sockaddr` into it).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct SocketAddress {
    bytes: [u8; ADDRESS_SIZE],
    len: usize,
}

/// Every address `host` resolves to (DNS, or a literal address) for `port`, at most
/// [`MAX_ADDRESSES`], in the resolver's order.
pub fn resolve(
    host: &CStr,
    port: u16,
) -> Result<heapless::Vec<SocketAddress, MAX_ADDRESSES>, NetError> {
    let mut bytes = [[0u8; ADDRESS_SIZE]; MAX_ADDRESSES];
    let mut lens = [0usize; MAX_ADDRESSES];
    // SAFETY: host is NUL-terminated; bytes and lens have MAX_ADDRESSES entries each and the
    // shim writes at most that many, each within ADDRESS_SIZE bytes.
    let ret = unsafe {
        ffi::app_resolve(
            host.as_ptr(),
            port,
            bytes.as_mut_ptr(),
            lens.as_mut_ptr(),
            MAX_ADDRESSES,
        )
    };
    let count = match check(ret) {
        Ok(count) => usize::try_from(count).unwrap_or(0).min(MAX_ADDRESSES),
        Err(NetError::Unreachable) | Err(NetError::Other(_)) => {
            return Err(NetError::NameNotResolved)
        }
        Err(other) => return Err(other),
    };
    Ok(bytes
        .iter()
        .zip(lens)
        .take(count)
        .map(|(bytes, len)| SocketAddress { bytes: *bytes, len })
        .collect())
}

/// Waits until the network can reach the broker (DHCPv4 bound on the board; at once with
/// host sockets).
pub fn wait_for_network(timeout_ms: i32) -> Result<(), NetError> {
    // SAFETY: plain call; the shim owns its static callback and semaphore.
    check(unsafe { ffi::app_network_wait(timeout_ms) }).map(|_| ())
}

/// Whether the network, or the address the connection uses, went away since the last call:
/// the connection manager reported L4 down, DHCPv4 stopped, or a new lease has another
/// address. Always false without Zephyr's IP stack (native_sim).
pub fn network_went_down() -> bool {
    // SAFETY: plain call; the shim clears an atomic flag that its event handler sets.
    unsafe { ffi::app_network_went_down() }
}

/// Pins the broker's key for every handshake from now on (`None`: no pin).
pub fn pin_broker_key(sha256: Option<&[u8; 32]>) {
    let pointer = sha256.map_or(core::ptr::null(), |digest| digest.as_ptr());
    // SAFETY: the pointer is NULL or 32 readable bytes, which the shim copies before
    // returning; no handshake runs concurrently (the MQTT thread calls this before its first).
    unsafe { ffi::app_tls_pin_key(pointer) }
}

/// The interface's IPv4 address as text (the DHCPv4 lease), when Zephyr's IP stack has one.
pub fn ipv4_address() -> Option<heapless::String<16>> {
    let mut text = [0u8; 16];
    // SAFETY: the buffer and its length describe a live local; the shim writes at most `len`
    // bytes including the NUL.
    let ret = unsafe { ffi::app_ipv4_address(text.as_mut_ptr().cast(), text.len()) };
    if ret < 0 {
        return None;
    }
    let text = CStr::from_bytes_until_nul(&text).ok()?.to_str().ok()?;
    let mut address = heapless::String::new();
    address.push_str(text).ok()?;
    Some(address)
}

/// CPU time used since boot, in microseconds: (all threads but idle, the calling thread);
/// `None` unless the image counts it (`CONFIG_THREAD_RUNTIME_STATS`, the emulated board).
pub fn cpu_time_us() -> Option<(u64, u64)> {
    let (mut all, mut mine) = (0u64, 0u64);
    // SAFETY: both pointers are to live locals the shim writes on success.
    let ret = unsafe { ffi::app_cpu_time_us(&mut all, &mut mine) };
    (ret == 0).then_some((all, mine))
}

/// A random 64-bit value from Zephyr's entropy source (the board's RNGA on the K64F).
pub fn random_u64() -> u64 {
    // SAFETY: plain call with no arguments.
    unsafe { ffi::app_random_u64() }
}

/// The address DHCPv4 last bound (see [`LeaseWatch`]).
static LEASE: zephyr::sync::Mutex<LeaseWatch> = zephyr::sync::Mutex::new(LeaseWatch::new());

/// DHCPv4 bound `address` (`shim.c`, on the net_mgmt thread): whether that ends the
/// connections on the previous lease's address.
#[no_mangle]
extern "C" fn app_dhcp_bound(address: *const u8) -> bool {
    if address.is_null() {
        return false;
    }
    // SAFETY: shim.c passes the 4 bytes of the lease's `struct in_addr`, alive for the call.
    let bytes = unsafe { core::ptr::read_unaligned(address.cast::<[u8; 4]>()) };
    lock(&LEASE).bound(bytes)
}

/// DHCPv4 stopped (`shim.c`, on the net_mgmt thread).
#[no_mangle]
extern "C" fn app_dhcp_stopped() {
    lock(&LEASE).stopped();
}

/// The certificate verdict of the last handshake.
fn last_verify_problem() -> CertificateProblem {
    // SAFETY: plain call; reads a word the verification callback wrote during connect.
    CertificateProblem::from_flags(unsafe { ffi::app_tls_last_verify_flags() })
}

/// Before this (2025-01-01 UTC) the wall clock has not been set: every certificate would look
/// "not yet valid" to mbedTLS.
const EARLIEST_PLAUSIBLE_TIME_S: i64 = 1_735_689_600;

/// Whether the wall clock is set, so that mbedTLS can check certificate dates.
pub fn wall_clock_is_set() -> bool {
    unix_time().is_some()
}

/// Seconds since 1970, once the wall clock is set.
pub fn unix_time() -> Option<u64> {
    // SAFETY: plain call; time(NULL).
    let now = unsafe { ffi::app_wall_clock_s() };
    u64::try_from(now)
        .ok()
        .filter(|_| now >= EARLIEST_PLAUSIBLE_TIME_S)
}

/// Sets the wall clock from `server` by SNTP (on images built with `CONFIG_SNTP`).
pub fn sync_wall_clock(server: &CStr, timeout_ms: u32) -> Result<(), NetError> {
    // SAFETY: server is NUL-terminated and outlives the call; the shim copies nothing.
    check(unsafe { ffi::app_wall_clock_sync(server.as_ptr(), timeout_ms) }).map(|_| ())
}

/// mbedTLS's heap: bytes in use, the peak so far, and its size; `None` unless the image
/// counts them (`CONFIG_MBEDTLS_MEMORY_DEBUG`, on native_sim).
pub fn tls_heap() -> Option<(u32, u32, u32)> {
    let (mut used, mut peak, mut size) = (0u32, 0u32, 0u32);
    // SAFETY: the three pointers are to live locals the shim writes on success.
    let ret = unsafe { ffi::app_tls_heap_stats(&mut used, &mut peak, &mut size) };
    (ret == 0).then_some((used, peak, size))
}

/// Free bytes of the system heap, if Zephyr keeps statistics.
pub fn heap_free_bytes() -> Option<u32> {
    // SAFETY: plain call; the shim reads the heap's statistics under the heap's lock.
    let free = unsafe { ffi::app_heap_free_bytes() };
    u32::try_from(free).ok()
}

/// A connected TLS socket; closed on drop. The MQTT driver's transport:
/// `embedded_io::{Read, Write}` with a read timeout.
pub struct TlsSocket {
    fd: c_int,
    read_timeout_ms: u32,
}

impl TlsSocket {
    /// Connects to `address` over TLS, verifying the peer against the credentials under
    /// `sec_tags` (the device's set, then the image's further trust anchors registered), and
    /// against `host_name`.
    /// `forget_sessions` drops every cached TLS session first, so this handshake is a full one.
    pub fn connect(
        address: &SocketAddress,
        host_name: &CStr,
        sec_tags: &[i32],
        alpn: &AlpnNames,
        forget_sessions: bool,
    ) -> Result<Self, NetError> {
        // SAFETY: address.bytes holds a struct sockaddr written by app_resolve.
        let fd = step(TlsSetup::Socket, unsafe {
            ffi::app_tls_socket(address.bytes.as_ptr())
        })?;
        // From here on, dropping `socket` closes the descriptor on every error path.
        let socket = TlsSocket {
            fd,
            read_timeout_ms: 0,
        };
        // SAFETY: fd is an open socket owned by `socket`.
        step(TlsSetup::PeerVerify, unsafe {
            ffi::app_tls_require_peer_verification(fd)
        })?;
        set_credentials(fd, sec_tags)?;
        // SAFETY: host_name is NUL-terminated; mbedTLS copies it.
        step(TlsSetup::HostName, unsafe {
            ffi::app_tls_set_hostname(fd, host_name.as_ptr())
        })?;
        set_alpn(fd, alpn)?;
        // SAFETY: fd is an open socket owned by `socket`.
        step(TlsSetup::SessionCache, unsafe {
            ffi::app_tls_enable_session_cache(fd)
        })?;
        if forget_sessions {
            // SAFETY: fd is an open socket owned by `socket`.
            step(TlsSetup::SessionCache, unsafe {
                ffi::app_tls_purge_session_cache(fd)
            })?;
        }
        // SAFETY: fd is an open socket owned by `socket`; the callback is a function in shim.rs.
        step(TlsSetup::VerifyCallback, unsafe {
            ffi::app_tls_check_peer_certificate(fd)
        })?;
        // SAFETY: address.bytes holds address.len bytes of a struct sockaddr.
        let connected = check(unsafe { ffi::app_connect(fd, address.bytes.as_ptr(), address.len) });
        match connected {
            Ok(_) => Ok(socket),
            Err(NetError::ConnectionReset) => Err(NetError::Handshake(last_verify_problem())),
            Err(other) => Err(other),
        }
    }
}

/// The credentials under `sec_tags` (the device's set, then the image's further trust
/// anchors) for the socket `fd`.
fn set_credentials(fd: c_int, sec_tags: &[i32]) -> Result<(), NetError> {
    // SAFETY: the pointer and count describe the caller's live slice; Zephyr copies the tags.
    step(TlsSetup::Credentials, unsafe {
        ffi::app_tls_set_sec_tags(fd, sec_tags.as_ptr(), sec_tags.len())
    })
    .map(|_| ())
}

/// The ALPN names offered on the socket `fd`; `alpn` must outlive the socket (Zephyr keeps
/// pointers to the names).
fn set_alpn(fd: c_int, alpn: &AlpnNames) -> Result<(), NetError> {
    let mut names = [core::ptr::null::<c_char>(); MAX_ALPN_NAMES];
    for (slot, name) in names.iter_mut().zip(alpn.nul_terminated()) {
        *slot = name.as_ptr().cast();
    }
    // SAFETY: the first alpn.len() pointers are to NUL-terminated names in `alpn`, which the
    // caller keeps for as long as the socket lives; the shim copies the array.
    step(TlsSetup::Alpn, unsafe {
        ffi::app_tls_set_alpn(fd, names.as_ptr(), alpn.len())
    })
    .map(|_| ())
}

impl TlsSocket {
    /// The cipher suite the handshake chose, and the TLS version it implies.
    pub fn cipher_suite(&self) -> CipherSuite {
        // SAFETY: fd is an open, connected socket owned by self.
        let id = unsafe { ffi::app_tls_ciphersuite(self.fd) };
        CipherSuite(u16::try_from(id).unwrap_or(0))
    }
}

/// An IANA TLS cipher suite id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CipherSuite(pub u16);

impl CipherSuite {
    /// The TLS version: TLS 1.3 suites are 0x13xx (RFC 8446 §B.4).
    pub fn version(&self) -> &'static str {
        match self.0 {
            0 => "unknown",
            0x1300..=0x13FF => "TLSv1.3",
            _ => "TLSv1.2",
        }
    }

    /// The IANA name of the suites this firmware can negotiate.
    pub fn name(&self) -> &'static str {
        match self.0 {
            0x1301 => "TLS_AES_128_GCM_SHA256",
            0x1302 => "TLS_AES_256_GCM_SHA384",
            0xC02B => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            0xC02C => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            0xC02F => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            0xC030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            _ => "other",
        }
    }
}

impl Drop for TlsSocket {
    fn drop(&mut self) {
        // SAFETY: fd was opened by app_tls_socket and is closed exactly once, here.
        let _ = unsafe { ffi::app_close(self.fd) };
    }
}

impl embedded_io::Error for NetError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind;
        match self {
            NetError::TimedOut => ErrorKind::TimedOut,
            NetError::ConnectionRefused => ErrorKind::ConnectionRefused,
            NetError::ConnectionReset => ErrorKind::ConnectionReset,
            NetError::OutOfResources => ErrorKind::OutOfMemory,
            NetError::InvalidArgument => ErrorKind::InvalidInput,
            _ => ErrorKind::Other,
        }
    }
}

impl embedded_io::ErrorType for TlsSocket {
    type Error = NetError;
}

impl embedded_io::Write for TlsSocket {
    fn write(&mut self, bytes: &[u8]) -> Result<usize, NetError> {
        // SAFETY: the pointer and length describe `bytes`, which outlives the call.
        let sent = check(unsafe { ffi::app_send(self.fd, bytes.as_ptr(), bytes.len()) })?;
        let sent = usize::try_from(sent).unwrap_or(0);
        if sent == 0 && !bytes.is_empty() {
            // embedded_io: a write of nothing is an error, never Ok(0).
            return Err(NetError::ConnectionReset);
        }
        Ok(sent)
    }

    fn flush(&mut self) -> Result<(), NetError> {
        // Zephyr's TLS send encrypts and hands the record to TCP before returning.
        Ok(())
    }
}

impl embedded_io::Read for TlsSocket {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        let timeout = i32::try_from(self.read_timeout_ms).unwrap_or(i32::MAX);
        // SAFETY: the pointer and length describe `buf`, which outlives the call.
        let ret = unsafe { ffi::app_recv(self.fd, buf.as_mut_ptr(), buf.len(), timeout) };
        if ret < 0 && Errno(ret.saturating_neg()).kind() == ErrnoKind::WouldBlock {
            return Err(NetError::TimedOut);
        }
        check(ret).map(|n| usize::try_from(n).unwrap_or(0))
    }
}

impl ReadTimeout for TlsSocket {
    fn set_read_timeout(&mut self, timeout_ms: u32) -> Result<(), NetError> {
        self.read_timeout_ms = timeout_ms;
        Ok(())
    }
}
