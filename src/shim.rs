//! The socket, TLS-verification, flash-record and mbedTLS calls of the Zephyr layer, over
//! bindgen's bindings of Zephyr's and mbedTLS's own headers (`src/ffi.h`). They keep the C
//! shim's contract, so `ffi` re-exports them under their former names: each `c_int` result is
//! `>= 0` or `-errno`, and [`crate::net::Errno`] maps the errno.
//!
//! The TLS option order follows Zephyr's `subsys/net/lib/mqtt/mqtt_transport_socket_tls.c`.

use crate::ffi;
use core::ffi::{c_char, c_int, c_void, CStr};
use core::fmt::Write as _;
use core::mem::size_of;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};

/// Bytes of one resolved address: a `struct sockaddr_in6` fits (asserted below).
pub const APP_ADDRESS_SIZE: u32 = 48;
const _: () = assert!(size_of::<ffi::sockaddr_in6>() <= APP_ADDRESS_SIZE as usize);

// mbedTLS's X.509 verify flags that `net` names a refusal by, and ours, bits mbedTLS does not
// use: the broker's key is not the pinned one; the verify callback ran; it saw a certificate
// mbedTLS could not read.
pub const APP_BADCERT_EXPIRED: u32 = ffi::MBEDTLS_X509_BADCERT_EXPIRED;
pub const APP_BADCERT_CN_MISMATCH: u32 = ffi::MBEDTLS_X509_BADCERT_CN_MISMATCH;
pub const APP_BADCERT_NOT_TRUSTED: u32 = ffi::MBEDTLS_X509_BADCERT_NOT_TRUSTED;
pub const APP_BADCERT_FUTURE: u32 = ffi::MBEDTLS_X509_BADCERT_FUTURE;
pub const APP_BADCERT_KEY_USAGE: u32 = ffi::MBEDTLS_X509_BADCERT_KEY_USAGE;
pub const APP_BADCERT_EXT_KEY_USAGE: u32 = ffi::MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
pub const APP_BADCERT_NS_CERT_TYPE: u32 = ffi::MBEDTLS_X509_BADCERT_NS_CERT_TYPE;
pub const APP_BADCERT_BAD_MD: u32 = ffi::MBEDTLS_X509_BADCERT_BAD_MD;
pub const APP_BADCERT_BAD_PK: u32 = ffi::MBEDTLS_X509_BADCERT_BAD_PK;
pub const APP_BADCERT_BAD_KEY: u32 = ffi::MBEDTLS_X509_BADCERT_BAD_KEY;
pub const APP_VERIFY_PINNED_KEY_MISMATCH: u32 = 0x8000_0000;
pub const APP_VERIFY_CHECKED: u32 = 0x4000_0000;
pub const APP_VERIFY_UNREADABLE: u32 = 0x2000_0000;
/// Every flag mbedTLS defines (x509.h): bits 0 to 19.
const _: () = assert!(
    (APP_VERIFY_PINNED_KEY_MISMATCH | APP_VERIFY_CHECKED | APP_VERIFY_UNREADABLE) & 0x000F_FFFF
        == 0
);

/// -errno after a Zephyr call that returned < 0 and set errno; the result otherwise.
fn check(ret: isize) -> c_int {
    if ret < 0 {
        // SAFETY: reads the calling thread's errno.
        unsafe { ffi::app_errno() }.saturating_neg()
    } else {
        c_int::try_from(ret).unwrap_or(c_int::MAX)
    }
}

/// Every address `host` resolves to for `port`, at most `max`: address i goes to addrs[i]
/// and its length to lens[i]. Returns how many.
///
/// # Safety
/// `host` is NUL-terminated; `addrs` and `lens` have `max` entries each.
pub unsafe fn app_resolve(
    host: *const c_char,
    port: u16,
    addrs: *mut [u8; APP_ADDRESS_SIZE as usize],
    lens: *mut usize,
    max: usize,
) -> c_int {
    // Five digits and the NUL.
    let mut port_text: heapless::String<6> = heapless::String::new();
    let _ = write!(port_text, "{port}\0");
    // SAFETY: zeroed is a valid addrinfo (integers and null pointers).
    let mut hints: ffi::zsock_addrinfo = unsafe { core::mem::zeroed() };
    hints.ai_family = ffi::AF_UNSPEC as c_int;
    hints.ai_socktype = ffi::SOCK_STREAM as c_int;
    let mut result: *mut ffi::zsock_addrinfo = ptr::null_mut();
    // SAFETY: host and port_text are NUL-terminated; result receives a list we free below.
    let ret =
        unsafe { ffi::zsock_getaddrinfo(host, port_text.as_ptr().cast(), &hints, &mut result) };
    if ret != 0 {
        // DNS_EAI_* codes are negative; they count as "no such host".
        return if ret == ffi::DNS_EAI_SYSTEM {
            check(-1)
        } else {
            -errno_values().ehostunreach
        };
    }
    let mut count = 0;
    let mut ai = result;
    while !ai.is_null() && count < max {
        // SAFETY: ai is an entry of the list getaddrinfo returned, not yet freed.
        let entry = unsafe { &*ai };
        let len = entry.ai_addrlen as usize;
        if len <= APP_ADDRESS_SIZE as usize {
            // SAFETY: ai_addr holds ai_addrlen bytes; addrs[count] has room for them and
            // count < max.
            unsafe {
                ptr::copy_nonoverlapping(
                    entry.ai_addr.cast::<u8>(),
                    (*addrs.add(count)).as_mut_ptr(),
                    len,
                );
                *lens.add(count) = len;
            }
            count += 1;
        }
        ai = entry.ai_next;
    }
    // SAFETY: result came from zsock_getaddrinfo and is freed once.
    unsafe { ffi::zsock_freeaddrinfo(result) };
    if count > 0 {
        c_int::try_from(count).unwrap_or(c_int::MAX)
    } else {
        -errno_values().ehostunreach
    }
}

/// errno values as shim.c was compiled: the C library's, which these bindings may not see.
pub(crate) fn errno_values() -> &'static ffi::app_errno_values {
    // SAFETY: shim.c returns a pointer to a `static const` struct: valid, immutable and alive
    // for the whole program.
    unsafe { &*ffi::app_errno_values() }
}

/// A TLS socket for the address family of `addr` (a `struct sockaddr`).
///
/// # Safety
/// `addr` points to a `struct sockaddr` written by [`app_resolve`].
pub unsafe fn app_tls_socket(addr: *const u8) -> c_int {
    // SAFETY: the caller passes a sockaddr; sa_family is its first field.
    let family = unsafe { (*addr.cast::<ffi::sockaddr>()).sa_family };
    // SAFETY: plain call.
    check(unsafe {
        ffi::zsock_socket(
            c_int::from(family),
            ffi::SOCK_STREAM as c_int,
            ffi::IPPROTO_TLS_1_2 as c_int,
        )
    } as isize)
}

fn set_option<T: ?Sized>(fd: c_int, level: u32, option: u32, value: &T) -> c_int {
    // SAFETY: value is a live object of size_of_val bytes; Zephyr copies it (or, for the
    // options whose pointers it keeps, the caller passes a static).
    check(unsafe {
        ffi::zsock_setsockopt(
            fd,
            level as c_int,
            option as c_int,
            (value as *const T).cast(),
            core::mem::size_of_val(value) as ffi::socklen_t,
        )
    } as isize)
    .min(0)
}

/// # Safety
/// Any `fd`: Zephyr checks it.
pub unsafe fn app_tls_require_peer_verification(fd: c_int) -> c_int {
    let verify: c_int = ffi::TLS_PEER_VERIFY_REQUIRED as c_int;
    set_option(fd, ffi::SOL_TLS, ffi::TLS_PEER_VERIFY, &verify)
}

/// The certificates behind the tags are DER in static storage (the image's, or the
/// provisioned set's), so mbedTLS may parse them in place instead of copying each into its
/// heap for the life of the connection.
///
/// # Safety
/// `tags` points to `count` tags.
pub unsafe fn app_tls_set_sec_tags(fd: c_int, tags: *const i32, count: usize) -> c_int {
    let nocopy: c_int = ffi::TLS_CERT_NOCOPY_OPTIONAL as c_int;
    let ret = set_option(fd, ffi::SOL_TLS, ffi::TLS_CERT_NOCOPY, &nocopy);
    if ret < 0 {
        return ret;
    }
    // SAFETY: the caller passes count tags.
    let tags = unsafe { core::slice::from_raw_parts(tags, count) };
    set_option(fd, ffi::SOL_TLS, ffi::TLS_SEC_TAG_LIST, tags)
}

/// # Safety
/// `host` is NUL-terminated.
pub unsafe fn app_tls_set_hostname(fd: c_int, host: *const c_char) -> c_int {
    // SAFETY: the caller passes a NUL-terminated string; the option takes it with its NUL.
    let host = unsafe { CStr::from_ptr(host) }.to_bytes_with_nul();
    set_option(fd, ffi::SOL_TLS, ffi::TLS_HOSTNAME, host)
}

/// # Safety
/// Any `fd`: Zephyr checks it.
pub unsafe fn app_tls_enable_session_cache(fd: c_int) -> c_int {
    let cache: c_int = ffi::TLS_SESSION_CACHE_ENABLED as c_int;
    set_option(fd, ffi::SOL_TLS, ffi::TLS_SESSION_CACHE, &cache)
}

/// Most ALPN names offered (at most `CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS`).
pub const APP_ALPN_MAX_NAMES: u32 = 2;
#[cfg(CONFIG_MBEDTLS_SSL_ALPN)]
const _: () = assert!(ffi::CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS >= APP_ALPN_MAX_NAMES);

/// ALPN: `count` protocol names (CONFIG_APP_TLS_ALPN, parsed by `net`), e.g. "x-amzn-mqtt-ca"
/// for AWS IoT Core on port 443. Zephyr copies the pointer array but keeps the pointers, so
/// the names must live as long as the socket. None sends no ALPN extension.
///
/// # Safety
/// `names` points to `count` NUL-terminated names that outlive the socket.
pub unsafe fn app_tls_set_alpn(fd: c_int, names: *const *const c_char, count: usize) -> c_int {
    if count == 0 {
        return 0;
    }
    if cfg!(CONFIG_MBEDTLS_SSL_ALPN) {
        // SAFETY: the caller passes count pointers.
        let names = unsafe { core::slice::from_raw_parts(names, count) };
        set_option(fd, ffi::SOL_TLS, ffi::TLS_ALPN_LIST, names)
    } else {
        einval()
    }
}

/// Forgets every cached TLS session (the option purges the whole cache).
///
/// # Safety
/// Any `fd`: Zephyr checks it.
pub unsafe fn app_tls_purge_session_cache(fd: c_int) -> c_int {
    let purge: c_int = 1;
    set_option(fd, ffi::SOL_TLS, ffi::TLS_SESSION_CACHE_PURGE, &purge)
}

// Why the broker's certificate was refused. Zephyr resets the mbedTLS context after a failed
// handshake, so TLS_CERT_VERIFY_RESULT reads 0 by then; instead a verification callback (it
// runs after mbedTLS's own checks of each certificate of the chain and sees their flags)
// records the flags. One connection attempt at a time, so one record. The callback never
// clears a flag: CA trust, validity and host name stay mbedTLS's. With a pinned broker key it
// also refuses a broker whose public key is another, on top of those checks.
static LAST_VERIFY_FLAGS: AtomicU32 = AtomicU32::new(0);
static KEY_PINNED: AtomicBool = AtomicBool::new(false);
static PINNED_KEY: [AtomicU8; 32] = [const { AtomicU8::new(0) }; 32];

/// The broker key pin for every handshake from now on: the SHA-256 of its
/// SubjectPublicKeyInfo (32 bytes, copied), or NULL for none.
///
/// # Safety
/// `sha256` is NULL or points to 32 bytes.
pub unsafe fn app_tls_pin_key(sha256: *const u8) {
    if !sha256.is_null() {
        // SAFETY: the caller passes 32 readable bytes.
        let digest = unsafe { core::slice::from_raw_parts(sha256, 32) };
        for (pin, &byte) in PINNED_KEY.iter().zip(digest) {
            pin.store(byte, Ordering::Relaxed);
        }
    }
    KEY_PINNED.store(!sha256.is_null(), Ordering::Release);
}

/// Whether the certificate's SubjectPublicKeyInfo hashes to the pinned SHA-256.
fn matches_pinned_key(crt: &ffi::mbedtls_x509_crt) -> bool {
    let mut digest = [0u8; 32];
    // SAFETY: pk_raw describes the key's DER inside the parsed certificate.
    if unsafe { ffi::mbedtls_sha256(crt.pk_raw.p, crt.pk_raw.len, digest.as_mut_ptr(), 0) } != 0 {
        return false;
    }
    digest
        .iter()
        .zip(&PINNED_KEY)
        .fold(0, |acc, (a, b)| acc | (a ^ b.load(Ordering::Relaxed)))
        == 0
}

/// id-kp-serverAuth, 1.3.6.1.5.5.7.3.1 (RFC 5280 §4.2.1.12), as DER.
const OID_SERVER_AUTH: [u8; 8] = [0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

unsafe extern "C" fn check_peer_certificate(
    _ctx: *mut c_void,
    crt: *mut ffi::mbedtls_x509_crt,
    depth: c_int,
    flags: *mut u32,
) -> c_int {
    // SAFETY: mbedTLS passes the certificate it verifies and its flags, alive for this call.
    let (crt, flags) = unsafe { (&mut *crt, &mut *flags) };
    let mut seen = APP_VERIFY_CHECKED;
    // mbedTLS skips a certificate it cannot parse (an algorithm the build lacks) and checks an
    // empty one in its place.
    if crt.version == 0 {
        seen |= APP_VERIFY_UNREADABLE;
    }
    // Depth 0 is the broker's own certificate; the pin is on its key, not the CA's.
    if depth == 0 && KEY_PINNED.load(Ordering::Acquire) && !matches_pinned_key(crt) {
        *flags |= ffi::MBEDTLS_X509_BADCERT_OTHER;
        seen |= APP_VERIFY_PINNED_KEY_MISMATCH;
    }
    // mbedTLS checks the leaf's usage only after this callback (and then fails the handshake
    // without a flag anyone can read): record the same verdict here, so the log names it.
    if depth == 0 {
        // SAFETY: crt is a parsed certificate; the OID is a live array.
        let server_auth = unsafe {
            ffi::mbedtls_x509_crt_check_extended_key_usage(
                crt,
                OID_SERVER_AUTH.as_ptr().cast(),
                OID_SERVER_AUTH.len(),
            )
        };
        if server_auth != 0 {
            seen |= ffi::MBEDTLS_X509_BADCERT_EXT_KEY_USAGE;
        }
        // ECDHE: the server signs its key share, so its key must be for digitalSignature.
        // SAFETY: crt is a parsed certificate.
        let signing = unsafe {
            ffi::mbedtls_x509_crt_check_key_usage(crt, ffi::MBEDTLS_X509_KU_DIGITAL_SIGNATURE)
        };
        if signing != 0 {
            seen |= ffi::MBEDTLS_X509_BADCERT_KEY_USAGE;
        }
    }
    LAST_VERIFY_FLAGS.fetch_or(seen | *flags, Ordering::AcqRel);
    0
}

/// # Safety
/// Any `fd`: Zephyr checks it.
pub unsafe fn app_tls_check_peer_certificate(fd: c_int) -> c_int {
    // Zephyr copies the struct; the type of `cb` is mbedTLS's verify callback.
    let callback = ffi::tls_cert_verify_cb {
        cb: check_peer_certificate as *mut c_void,
        ctx: ptr::null_mut(),
    };
    LAST_VERIFY_FLAGS.store(0, Ordering::Release);
    set_option(fd, ffi::SOL_TLS, ffi::TLS_CERT_VERIFY_CALLBACK, &callback)
}

/// MBEDTLS_X509_BADCERT_* flags (and our pin flag) seen during the last handshake.
///
/// # Safety
/// None: a plain read.
pub unsafe fn app_tls_last_verify_flags() -> u32 {
    LAST_VERIFY_FLAGS.load(Ordering::Acquire)
}

/// The IANA id of the cipher suite the handshake chose.
///
/// # Safety
/// Any `fd`: Zephyr checks it.
pub unsafe fn app_tls_ciphersuite(fd: c_int) -> c_int {
    let mut suite: c_int = 0;
    let mut len = size_of::<c_int>() as ffi::socklen_t;
    // SAFETY: suite and len are live locals of the sizes given.
    let ret = unsafe {
        ffi::zsock_getsockopt(
            fd,
            ffi::SOL_TLS as c_int,
            ffi::TLS_CIPHERSUITE_USED as c_int,
            (&mut suite as *mut c_int).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        check(-1)
    } else {
        suite
    }
}

/// Connects (and, for a TLS socket, runs the handshake).
///
/// # Safety
/// `addr` holds `addr_len` bytes of a `struct sockaddr`.
pub unsafe fn app_connect(fd: c_int, addr: *const u8, addr_len: usize) -> c_int {
    // SAFETY: the caller passes a sockaddr of addr_len bytes.
    check(unsafe { ffi::zsock_connect(fd, addr.cast(), addr_len as ffi::socklen_t) } as isize)
        .min(0)
}

/// # Safety
/// `data` holds `len` bytes.
pub unsafe fn app_send(fd: c_int, data: *const u8, len: usize) -> c_int {
    // SAFETY: the caller passes len readable bytes.
    check(unsafe { ffi::zsock_send(fd, data.cast(), len, 0) })
}

/// Bytes received, 0 at end of stream, -EAGAIN when nothing came within timeout_ms.
///
/// A blocking recv with SO_RCVTIMEO, not zsock_poll + recv: when the broker's TCP stream ends
/// without a TLS close_notify (broker killed), Zephyr's TLS poll sees readable bytes that
/// mbedtls_ssl_read turns into "0 bytes, no record yet" and polls again, spinning until the
/// timeout and never reporting the end of stream (on native_sim, where time stands still in a
/// busy loop, forever). recv itself returns 0 there, as it should.
///
/// # Safety
/// `buf` has room for `len` bytes.
pub unsafe fn app_recv(fd: c_int, buf: *mut u8, len: usize, timeout_ms: i32) -> c_int {
    // SAFETY: plain call.
    if timeout_ms > 0 && unsafe { ffi::app_set_recv_timeout(fd, timeout_ms) } < 0 {
        return check(-1);
    }
    let flags = if timeout_ms > 0 {
        0
    } else {
        ffi::ZSOCK_MSG_DONTWAIT as c_int
    };
    // SAFETY: the caller passes len writable bytes.
    check(unsafe { ffi::zsock_recv(fd, buf.cast(), len, flags) })
}

/// # Safety
/// `fd` is closed once.
pub unsafe fn app_close(fd: c_int) -> c_int {
    // SAFETY: plain call.
    check(unsafe { ffi::zsock_close(fd) } as isize).min(0)
}

// --- Credentials -----------------------------------------------------------------------------

/// Which credential; `credentials::CredentialKind` takes these values.
pub const APP_CREDENTIAL_CA: u32 = 0;
pub const APP_CREDENTIAL_DEVICE_CERT: u32 = 1;
pub const APP_CREDENTIAL_DEVICE_KEY: u32 = 2;

fn credential_type(kind: c_int) -> Option<ffi::tls_credential_type> {
    match u32::try_from(kind).ok()? {
        APP_CREDENTIAL_CA => Some(ffi::TLS_CREDENTIAL_CA_CERTIFICATE),
        // The "server" certificate is the socket's own certificate, client or server.
        APP_CREDENTIAL_DEVICE_CERT => Some(ffi::TLS_CREDENTIAL_PUBLIC_CERTIFICATE),
        APP_CREDENTIAL_DEVICE_KEY => Some(ffi::TLS_CREDENTIAL_PRIVATE_KEY),
        _ => None,
    }
}

fn einval() -> c_int {
    -errno_values().einval
}

/// # Safety
/// `data` holds `len` bytes that outlive the registration: the store keeps the pointer.
pub unsafe fn app_credential_add(
    sec_tag: c_int,
    kind: c_int,
    data: *const u8,
    len: usize,
) -> c_int {
    match credential_type(kind) {
        // SAFETY: the caller keeps data alive for as long as it is registered.
        Some(kind) => unsafe { ffi::tls_credential_add(sec_tag, kind, data.cast(), len) },
        None => einval(),
    }
}

/// # Safety
/// None: Zephyr checks the tag.
pub unsafe fn app_credential_delete(sec_tag: c_int, kind: c_int) -> c_int {
    match credential_type(kind) {
        // SAFETY: plain call.
        Some(kind) => unsafe { ffi::tls_credential_delete(sec_tag, kind) },
        None => einval(),
    }
}

// --- Records in flash --------------------------------------------------------------------------

struct LoadTarget {
    buf: *mut u8,
    cap: usize,
    len: c_int,
}

unsafe extern "C" fn load_record(
    key: *const c_char,
    len: usize,
    read_cb: ffi::settings_read_cb,
    cb_arg: *mut c_void,
    param: *mut c_void,
) -> c_int {
    // SAFETY: param is the LoadTarget app_record_load passes, alive for the load.
    let target = unsafe { &mut *param.cast::<LoadTarget>() };
    // settings_load_subtree_direct hands us the subtree root itself as key "" (or NULL).
    // SAFETY: a non-NULL key is NUL-terminated.
    if !key.is_null() && unsafe { *key } != 0 {
        return 0;
    }
    if len > target.cap {
        target.len = -errno_values().efbig;
        return 0;
    }
    if let Some(read) = read_cb {
        // SAFETY: target.buf has cap >= len bytes.
        target.len = unsafe { read(cb_arg, target.buf.cast(), len) } as c_int;
    }
    0
}

fn settings_ready() -> c_int {
    static INITIALIZED: AtomicBool = AtomicBool::new(false);
    if INITIALIZED.load(Ordering::Acquire) {
        return 0;
    }
    // SAFETY: plain call; settings keeps its own state.
    let mut ret = unsafe { ffi::settings_subsys_init() };
    if ret == -errno_values().edeadlk && erase_torn_sector().is_ok() {
        // SAFETY: as above.
        ret = unsafe { ffi::settings_subsys_init() };
    }
    if ret == 0 {
        INITIALIZED.store(true, Ordering::Release);
    }
    ret
}

/// The most sectors settings' NVS may span; a partition holds no more closing entries.
const MAX_NVS_SECTORS: usize = 32;

/// NVS's mount finishes an interrupted garbage collection by erasing the sector it was
/// copying into; a power cut inside that erase can leave the sector random, and then NVS
/// finds no open sector and refuses to mount (-EDEADLK). Erases that sector again when
/// `provisioning::nvs` finds it to be the only candidate; errors are negative errnos.
fn erase_torn_sector() -> Result<(), c_int> {
    // SAFETY: plain call returning a devicetree constant.
    let id = unsafe { ffi::app_settings_partition_id() };
    let mut area: *const ffi::flash_area = ptr::null();
    // SAFETY: area receives a pointer to the partition's static description.
    let ret = unsafe { ffi::flash_area_open(id, &mut area) };
    if ret < 0 || area.is_null() {
        return Err(ret.min(-1));
    }
    let outcome = erase_torn_sector_in(id, area);
    // SAFETY: area was opened above and is closed once.
    unsafe { ffi::flash_area_close(area) };
    outcome
}

fn erase_torn_sector_in(id: u8, area: *const ffi::flash_area) -> Result<(), c_int> {
    let mut count: u32 = 1;
    // SAFETY: flash_sector is plain data; zero is a valid value for it.
    let mut first: ffi::flash_sector = unsafe { core::mem::zeroed() };
    // SAFETY: room for one sector description, as count says; more sectors are -ENOMEM.
    let ret = unsafe { ffi::flash_area_get_sectors(c_int::from(id), &mut count, &mut first) };
    if ret < 0 && ret != -errno_values().enomem {
        return Err(ret);
    }
    let sector = zephyr::kconfig::CONFIG_SETTINGS_NVS_SECTOR_SIZE_MULT as usize * first.fs_size;
    // SAFETY: area points to the partition's static description (flash_area_open).
    let size = unsafe { (*area).fa_size };
    let sectors = (size / sector.max(1))
        .min(zephyr::kconfig::CONFIG_SETTINGS_NVS_SECTOR_COUNT as usize)
        .min(MAX_NVS_SECTORS);
    let mut entries: heapless::Vec<[u8; provisioning::nvs::ENTRY_SIZE], MAX_NVS_SECTORS> =
        heapless::Vec::new();
    for index in 0..sectors {
        let mut entry = [0u8; provisioning::nvs::ENTRY_SIZE];
        let at = (index + 1) * sector - entry.len();
        // SAFETY: entry has room for the bytes read; at is inside the partition.
        let ret =
            unsafe { ffi::flash_area_read(area, at as _, entry.as_mut_ptr().cast(), entry.len()) };
        if ret < 0 {
            return Err(ret);
        }
        let _ = entries.push(entry);
    }
    let torn = provisioning::nvs::sector_to_erase(entries).ok_or(-errno_values().edeadlk)?;
    log::warn!(
        "settings: the flash's sector {torn} of {sectors} reads neither erased nor written (an erase cut short by a power cut): erased again"
    );
    // SAFETY: the sector lies inside the partition.
    let ret = unsafe { ffi::flash_area_erase(area, (torn * sector) as _, sector) };
    if ret < 0 {
        return Err(ret);
    }
    Ok(())
}

/// The record's length, 0 when there is none (no record is empty), or a negative errno.
///
/// # Safety
/// `key` is NUL-terminated; `buf` has room for `cap` bytes.
pub unsafe fn app_record_load(key: *const c_char, buf: *mut u8, cap: usize) -> c_int {
    let ret = settings_ready();
    if ret < 0 {
        return ret;
    }
    let mut target = LoadTarget { buf, cap, len: 0 };
    // SAFETY: the callback and target live for the call; key is NUL-terminated.
    let ret = unsafe {
        ffi::settings_load_subtree_direct(
            key,
            Some(load_record),
            (&mut target as *mut LoadTarget).cast(),
        )
    };
    if ret < 0 {
        ret
    } else {
        target.len
    }
}

/// 1 if the storage holds records written without NVS's data CRC (by an image before it was
/// turned on), which this image cannot read: NVS takes their last 4 bytes for a CRC, and
/// reports settings' 2-byte name counter as absent though names are there. Else 0, or a
/// negative errno.
///
/// # Safety
/// None: reads the settings storage, on the MQTT thread only.
pub unsafe fn app_records_unreadable_format() -> c_int {
    #[cfg(all(CONFIG_NVS_DATA_CRC, CONFIG_SETTINGS_NVS))]
    {
        // settings' NVS ids (subsys/settings/include/settings/settings_nvs.h)
        const NAME_COUNTER_ID: u16 = 0x8000;
        let ret = settings_ready();
        if ret < 0 {
            return ret;
        }
        let mut storage: *mut c_void = ptr::null_mut();
        // SAFETY: storage receives settings' NVS file system, which lives for the program.
        let ret = unsafe { ffi::settings_storage_get(&mut storage) };
        if ret < 0 {
            return ret;
        }
        let mut count = 0u16;
        let count_ptr = (&mut count as *mut u16).cast::<c_void>();
        // SAFETY: storage is settings' mounted NVS; count is a live u16.
        let counter_readable =
            unsafe { ffi::nvs_read(storage.cast(), NAME_COUNTER_ID, count_ptr, size_of::<u16>()) }
                >= 0;
        // A read of no bytes skips the data CRC: does any of the first names exist?
        let a_name_exists = (NAME_COUNTER_ID + 1..=NAME_COUNTER_ID + 64)
            // SAFETY: as above; a read of no bytes writes nothing.
            .any(|id| unsafe { ffi::nvs_read(storage.cast(), id, count_ptr, 0) } >= 0);
        c_int::from(provisioning::nvs::written_without_data_crc(
            counter_readable,
            a_name_exists,
        ))
    }
    #[cfg(not(all(CONFIG_NVS_DATA_CRC, CONFIG_SETTINGS_NVS)))]
    0
}

/// One settings write: NVS writes the data, then the entry that makes it valid.
///
/// # Safety
/// `key` is NUL-terminated; `bytes` holds `len` bytes.
pub unsafe fn app_record_save(key: *const c_char, bytes: *const u8, len: usize) -> c_int {
    match settings_ready() {
        // SAFETY: the caller's pointers are valid; settings copies the bytes to flash.
        0 => unsafe { ffi::settings_save_one(key, bytes.cast(), len) },
        ret => ret,
    }
}

/// # Safety
/// `key` is NUL-terminated.
pub unsafe fn app_record_delete(key: *const c_char) -> c_int {
    match settings_ready() {
        // SAFETY: the caller's key is NUL-terminated.
        0 => unsafe { ffi::settings_delete(key) },
        ret => ret,
    }
}

// --- Checks with mbedTLS ---------------------------------------------------------------------

/// Room in mbedTLS's heap for a moment when no TLS session holds it (at boot, before the
/// first connection): a record of the former credential format is read into it to be moved.
///
/// # Safety
/// None: a plain allocation, freed with [`app_scratch_free`].
pub unsafe fn app_scratch_alloc(len: usize) -> *mut c_void {
    // SAFETY: plain call.
    unsafe { ffi::mbedtls_calloc(1, len) }
}

/// # Safety
/// `buf` came from [`app_scratch_alloc`] and is not used after.
pub unsafe fn app_scratch_free(buf: *mut c_void) {
    // SAFETY: the caller passes an allocation of mbedTLS's heap.
    unsafe { ffi::mbedtls_free(buf) }
}

/// A random 64-bit value from Zephyr's entropy source.
///
/// # Safety
/// None: a plain call.
pub unsafe fn app_random_u64() -> u64 {
    let mut value = 0u64;
    // SAFETY: value is a live local of the 8 bytes given.
    unsafe { ffi::sys_rand_get((&mut value as *mut u64).cast(), size_of::<u64>()) };
    value
}

unsafe extern "C" fn random_bytes(_ctx: *mut c_void, buf: *mut u8, len: usize) -> c_int {
    // SAFETY: mbedTLS passes len writable bytes.
    if unsafe { ffi::sys_csrand_get(buf.cast(), len) } == 0 {
        0
    } else {
        ffi::MBEDTLS_ERR_PK_BAD_INPUT_DATA
    }
}

/// A parsed certificate, freed when dropped.
struct Certificate(ffi::mbedtls_x509_crt);

impl Certificate {
    fn parse(der: *const u8, len: usize) -> (Self, c_int) {
        // SAFETY: zeroed is what mbedtls_x509_crt_init writes; init follows at once.
        let mut crt = Certificate(unsafe { core::mem::zeroed() });
        // SAFETY: crt is a live context; der holds len bytes (the callers' contract).
        let ret = unsafe {
            ffi::mbedtls_x509_crt_init(&mut crt.0);
            ffi::mbedtls_x509_crt_parse_der(&mut crt.0, der, len)
        };
        (crt, ret)
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        // SAFETY: initialized in parse; freed once.
        unsafe { ffi::mbedtls_x509_crt_free(&mut self.0) }
    }
}

/// A parsed private key, freed when dropped.
pub(crate) struct PrivateKey(ffi::mbedtls_pk_context);

impl PrivateKey {
    pub(crate) fn context(&self) -> &ffi::mbedtls_pk_context {
        &self.0
    }

    pub(crate) fn parse(der: *const u8, len: usize) -> (Self, c_int) {
        // SAFETY: zeroed is what mbedtls_pk_init writes; init follows at once.
        let mut pk = PrivateKey(unsafe { core::mem::zeroed() });
        // SAFETY: pk is a live context; der holds len bytes (the callers' contract).
        let ret = unsafe {
            ffi::mbedtls_pk_init(&mut pk.0);
            ffi::mbedtls_pk_parse_key(
                &mut pk.0,
                der,
                len,
                ptr::null(),
                0,
                Some(random_bytes),
                ptr::null_mut(),
            )
        };
        (pk, ret)
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        // SAFETY: initialized in parse; freed once.
        unsafe { ffi::mbedtls_pk_free(&mut self.0) }
    }
}

/// 0, or mbedTLS's (negative) error code: the `cred` refusal names it.
///
/// # Safety
/// `der` holds `len` bytes.
pub unsafe fn app_parse_certificate(der: *const u8, len: usize) -> c_int {
    Certificate::parse(der, len).1
}

/// 0, or mbedTLS's (negative) error code.
///
/// # Safety
/// `der` holds `len` bytes.
pub unsafe fn app_parse_private_key(der: *const u8, len: usize) -> c_int {
    PrivateKey::parse(der, len).1
}

/// # Safety
/// `cert` holds `cert_len` bytes, `key` `key_len`.
pub unsafe fn app_key_matches_certificate(
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> bool {
    let (crt, crt_ret) = Certificate::parse(cert, cert_len);
    let (pk, pk_ret) = PrivateKey::parse(key, key_len);
    // SAFETY: both contexts are parsed and alive for the call.
    crt_ret == 0
        && pk_ret == 0
        && unsafe {
            ffi::mbedtls_pk_check_pair(&crt.0.pk, &pk.0, Some(random_bytes), ptr::null_mut())
        } == 0
}

/// Whether the certificate `cert` is signed by the CA certificate `ca` (names, signature and
/// the CA's constraints; validity dates are the caller's, judged with its own clock).
///
/// # Safety
/// `cert` holds `cert_len` bytes, `ca` `ca_len`.
pub unsafe fn app_issued_by(
    cert: *const u8,
    cert_len: usize,
    ca: *const u8,
    ca_len: usize,
) -> bool {
    let (mut crt, crt_ret) = Certificate::parse(cert, cert_len);
    let (mut root, root_ret) = Certificate::parse(ca, ca_len);
    if crt_ret != 0 || root_ret != 0 {
        return false;
    }
    let mut flags = 0u32;
    // SAFETY: both certificates are parsed and alive for the call; flags is a live local; no
    // revocation list, no expected name, no callback.
    unsafe {
        ffi::mbedtls_x509_crt_verify(
            &mut crt.0,
            &mut root.0,
            ptr::null_mut(),
            ptr::null(),
            &mut flags,
            None,
            ptr::null_mut(),
        )
    };
    flags & !(APP_BADCERT_EXPIRED | APP_BADCERT_FUTURE) == 0
}

/// SHA-256 of a certificate's DER, or of the DER public key of a private key.
///
/// # Safety
/// `der` holds `len` bytes; `digest` has room for 32.
pub unsafe fn app_fingerprint(is_key: bool, der: *const u8, len: usize, digest: *mut u8) -> c_int {
    if !is_key {
        // SAFETY: the caller's pointers are valid for these lengths.
        return if unsafe { ffi::mbedtls_sha256(der, len, digest, 0) } == 0 {
            0
        } else {
            einval()
        };
    }
    let (pk, ret) = PrivateKey::parse(der, len);
    if ret != 0 {
        return einval();
    }
    // An uncompressed P-256 SubjectPublicKeyInfo is 91 bytes, an RSA-2048 one 294 (the largest
    // key `cred` takes, provisioning::MAX_KEY); RSA-4096 keys from the image, 550.
    let mut spki = [0u8; 600];
    // SAFETY: pk is parsed; spki is a live buffer of its length.
    let written = unsafe { ffi::mbedtls_pk_write_pubkey_der(&pk.0, spki.as_mut_ptr(), spki.len()) };
    // mbedtls_pk_write_pubkey_der writes at the end of the buffer.
    let Some(public) = usize::try_from(written)
        .ok()
        .filter(|&n| n > 0)
        .and_then(|n| spki.get(spki.len().saturating_sub(n)..))
    else {
        return einval();
    };
    // SAFETY: public is a live slice; the caller's digest has room for 32 bytes.
    if unsafe { ffi::mbedtls_sha256(public.as_ptr(), public.len(), digest, 0) } == 0 {
        0
    } else {
        einval()
    }
}
