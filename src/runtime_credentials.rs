//! Run-time provisioning: the `cred` shell commands (`provisioning.c`) drive the sans-IO
//! [`provisioning`] crate; the committed set is one record in flash (Zephyr settings), and
//! the MQTT thread registers it at boot and again before the first connection after a
//! commit.
//!
//! Two sets, two owners. The operator's staged set (under [`OPERATOR`]) is edited from the
//! shell thread. The active set (under [`ACTIVE`]) is what the TLS credential store points
//! into; only the MQTT thread rewrites it, in [`apply`], between connections.

use crate::credentials::{self, CredentialError, CredentialKind, Installed};
use crate::ffi;
use crate::net::Errno;
use crate::sync::lock;
use core::ffi::{c_char, c_int};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use log::{info, warn};
use provisioning::{
    bundle, check_usable, describe, CredentialSet, ImageCredentials, Inspector, KeyType, Kind,
    ProvisionError, Provisioner, Source, MAX_RECORD,
};
use zephyr::sync::Mutex;

/// The shell's side: the staged set, an open upload, and the record buffer for flash.
struct Operator {
    provisioner: Provisioner,
    record: [u8; MAX_RECORD],
}

static OPERATOR: Mutex<Operator> = Mutex::new(Operator {
    provisioner: Provisioner::new(),
    record: [0; MAX_RECORD],
});

/// The set registered in the TLS credential store, which keeps pointers into it.
static ACTIVE: Mutex<CredentialSet> = Mutex::new(CredentialSet::image());

/// A commit is stored and waits for [`apply`].
static COMMITTED: AtomicBool = AtomicBool::new(false);

fn kind_of(kind: Kind) -> CredentialKind {
    match kind {
        Kind::Ca => CredentialKind::Ca,
        Kind::DeviceCertificate => CredentialKind::DeviceCertificate,
        Kind::DeviceKey => CredentialKind::DeviceKey,
    }
}

fn image() -> ImageCredentials<'static> {
    ImageCredentials {
        ca: credentials::builtin(CredentialKind::Ca),
        device_certificate: credentials::builtin(CredentialKind::DeviceCertificate),
        device_key: credentials::builtin(CredentialKind::DeviceKey),
    }
}

/// X.509 and key checks with mbedTLS (`provisioning.c`).
struct MbedTls;

/// What the TLS profile takes (Kconfig `APP_TLS_PROFILE`), as `cred` names it in a refusal.
#[cfg(CONFIG_APP_TLS_PROFILE_INTEROP)]
const ACCEPTED: &str =
    "this build (APP_TLS_PROFILE_INTEROP) takes RSA 2048-4096, ECDSA P-256 and P-384";
#[cfg(not(CONFIG_APP_TLS_PROFILE_INTEROP))]
const ACCEPTED: &str =
    "this build (APP_TLS_PROFILE_COMPACT) takes only ECDSA P-256; fix: build with CONFIG_APP_TLS_PROFILE_INTEROP=y";

/// Whether the TLS profile can use a key of this type. RSA below 2048 bits is refused as
/// mbedTLS's default X.509 profile refuses it in a chain.
fn profile_supports(key: KeyType) -> bool {
    let interop = cfg!(CONFIG_APP_TLS_PROFILE_INTEROP);
    match key {
        KeyType::P256 => true,
        KeyType::P384 => interop,
        KeyType::Rsa { bits } => interop && (2048..=4096).contains(&bits),
        _ => false,
    }
}

impl Inspector for MbedTls {
    fn parse_certificate(&mut self, der: &[u8]) -> Result<(), i32> {
        // SAFETY: pointer and length describe `der`; mbedTLS copies what it parses.
        let ret = unsafe { ffi::app_parse_certificate(der.as_ptr(), der.len()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ret)
        }
    }

    fn parse_private_key(&mut self, der: &[u8]) -> Result<(), i32> {
        // SAFETY: pointer and length describe `der`; mbedTLS copies what it parses.
        let ret = unsafe { ffi::app_parse_private_key(der.as_ptr(), der.len()) };
        if ret == 0 {
            Ok(())
        } else {
            Err(ret)
        }
    }

    fn supports(&mut self, key: KeyType) -> Result<(), &'static str> {
        if profile_supports(key) {
            Ok(())
        } else {
            Err(ACCEPTED)
        }
    }

    fn key_matches_certificate(&mut self, certificate: &[u8], key: &[u8]) -> bool {
        // SAFETY: both pointer/length pairs describe live slices; nothing is kept.
        unsafe {
            ffi::app_key_matches_certificate(
                certificate.as_ptr(),
                certificate.len(),
                key.as_ptr(),
                key.len(),
            )
        }
    }

    fn fingerprint(&mut self, kind: Kind, der: &[u8]) -> Option<[u8; 32]> {
        let mut digest = [0u8; 32];
        // SAFETY: `der` is a live slice and `digest` has the 32 bytes the shim writes.
        let ret = unsafe {
            ffi::app_fingerprint(
                kind == Kind::DeviceKey,
                der.as_ptr(),
                der.len(),
                digest.as_mut_ptr(),
            )
        };
        (ret == 0).then_some(digest)
    }
}

/// Reads the stored record into `buf`: its length, `None` if nothing is stored.
fn read_record(buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    // SAFETY: `buf` is writable for its length; the shim writes at most that many bytes.
    let ret = unsafe { ffi::app_credentials_load(buf.as_mut_ptr(), buf.len()) };
    match usize::try_from(ret) {
        Ok(0) => Ok(None),
        Ok(len) => Ok(Some(len)),
        Err(_) => Err(Errno(ret.saturating_neg())),
    }
}

/// Boot: the operator's staged set starts as the stored one.
pub fn init() {
    let mut operator = lock(&OPERATOR);
    let Operator {
        provisioner,
        record,
    } = &mut *operator;
    let loaded = match read_record(record) {
        Ok(Some(len)) => provisioner.load(record.get(..len)),
        Ok(None) => provisioner.load(None),
        Err(cause) => {
            warn!("credentials: cannot read the stored set ({cause}); using the image's");
            provisioner.load(None)
        }
    };
    if let Err(cause) = loaded {
        warn!("credentials: stored set unreadable ({cause}); using the image's");
    }
}

/// Whether a commit waits to be applied.
pub fn commit_pending() -> bool {
    COMMITTED.load(Ordering::Acquire)
}

/// Registers the stored set (the image's credentials where nothing is provisioned). Runs on
/// the MQTT thread only, at boot and between connections.
pub fn apply(sec_tag: i32) -> Result<Installed, (CredentialKind, CredentialError)> {
    COMMITTED.store(false, Ordering::Release);
    let image = image();
    let mut operator = lock(&OPERATOR);
    let mut active = lock(&ACTIVE);
    for kind in Kind::ALL {
        credentials::unregister(sec_tag, kind_of(kind));
    }
    credentials::unregister_extra_cas(sec_tag);
    let stored = match read_record(&mut operator.record) {
        Ok(Some(len)) => operator.record.get(..len).map(|record| active.load(record)),
        Ok(None) => None,
        Err(cause) => {
            warn!("credentials: cannot read the stored set ({cause}); using the image's");
            None
        }
    };
    match stored {
        None => active.reset_to_image(),
        Some(Ok(())) => {}
        Some(Err(cause)) => {
            warn!("credentials: stored set unreadable ({cause}); using the image's");
            active.reset_to_image();
        }
    }
    drop(operator);
    if let Err(cause) = check_usable(&active, &image, &mut MbedTls) {
        // Committed sets pass this; an image built with other credentials may not.
        warn!("credentials: stored set unusable with this image ({cause}); using the image's");
        active.reset_to_image();
    }
    let mut installed = Installed { mutual_tls: false };
    for kind in Kind::ALL {
        let Some(der) = active.effective(kind, &image) else {
            continue;
        };
        // SAFETY: `der` is either in the image (static) or in ACTIVE, a static whose bytes
        // change only here, on the MQTT thread, after every registration was removed above;
        // sockets are set up on this thread too, and mbedTLS copies what it parses when a
        // handshake starts. So the credential store never reads bytes being rewritten.
        let der: &'static [u8] = unsafe { core::slice::from_raw_parts(der.as_ptr(), der.len()) };
        let origin = match active.source(kind) {
            Source::Provisioned(_) => "provisioned",
            _ => "image",
        };
        if kind == Kind::Ca {
            // The first root under the tag itself, the others of the bundle after it; the
            // image's further roots go with the image's CA only.
            let mut roots = bundle::certificates(der);
            let first = roots.next().unwrap_or(der);
            credentials::register(sec_tag, CredentialKind::Ca, first)
                .map_err(|e| (CredentialKind::Ca, e))?;
            let further = match active.source(kind) {
                Source::Provisioned(_) => credentials::register_extra_cas(sec_tag, roots),
                _ => credentials::register_extra_cas(sec_tag, credentials::builtin_extra_cas()),
            }
            .map_err(|e| (CredentialKind::Ca, e))?;
            info!(
                "credentials: ca from the {origin} ({} bytes, {} root(s))",
                der.len(),
                further + 1
            );
            continue;
        }
        credentials::register(sec_tag, kind_of(kind), der).map_err(|e| (kind_of(kind), e))?;
        info!(
            "credentials: {} from the {origin} ({} bytes)",
            kind.name(),
            der.len()
        );
        installed.mutual_tls |= kind == Kind::DeviceKey;
    }
    Ok(installed)
}

/// Why a `cred` command was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    Provision(ProvisionError),
    /// Writing the record to flash failed; the staged set is kept for another try.
    Storage(Errno),
}

impl From<ProvisionError> for CommandError {
    fn from(cause: ProvisionError) -> Self {
        CommandError::Provision(cause)
    }
}

impl core::fmt::Display for CommandError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CommandError::Provision(cause) => write!(f, "{cause}"),
            CommandError::Storage(Errno(errno)) => {
                write!(
                    f,
                    "not stored: flash write failed (errno {errno}); staged set kept"
                )
            }
        }
    }
}

// The `cred` operations, numbered in shim.h.
const OP_BEGIN: c_int = ffi::APP_CRED_BEGIN as c_int;
const OP_DATA: c_int = ffi::APP_CRED_DATA as c_int;
const OP_END: c_int = ffi::APP_CRED_END as c_int;
const OP_ABORT: c_int = ffi::APP_CRED_ABORT as c_int;
const OP_DELETE: c_int = ffi::APP_CRED_DELETE as c_int;
const OP_IMAGE: c_int = ffi::APP_CRED_IMAGE as c_int;
const OP_COMMIT: c_int = ffi::APP_CRED_COMMIT as c_int;
const OP_LIST: c_int = ffi::APP_CRED_LIST as c_int;
const OP_ADD: c_int = ffi::APP_CRED_ADD as c_int;

/// Carries out one `cred` operation on the MQTT thread (`control` hands it over from the
/// shell); `out` takes the answer line(s), or the refusal's reason on `Err`.
pub fn command(op: c_int, arg: &str, out: &mut impl Write) -> Result<(), CommandError> {
    let mut operator = lock(&OPERATOR);
    let Operator {
        provisioner,
        record,
    } = &mut *operator;
    let kind = || Kind::from_name(arg).ok_or(CommandError::Provision(ProvisionError::UnknownKind));
    match op {
        OP_BEGIN => {
            let kind = kind()?;
            provisioner.begin(kind)?;
            let _ = write!(
                out,
                "upload of {} open: send base64 lines with `cred data`, then `cred end`",
                kind.name()
            );
        }
        OP_ADD => {
            let kind = kind()?;
            provisioner.add(kind)?;
            let _ = write!(
                out,
                "upload of {} open (one more root): send base64 lines with `cred data`, then `cred end`",
                kind.name()
            );
        }
        OP_DATA => {
            provisioner.data(arg)?;
            if let Some((kind, len)) = provisioner.upload() {
                let _ = write!(out, "{}: {len} bytes so far", kind.name());
            }
        }
        OP_END => {
            let kind = provisioner.end(&mut MbedTls)?;
            let _ = write!(
                out,
                "{} staged; `cred commit` stores the staged set",
                kind.name()
            );
        }
        OP_ABORT => {
            provisioner.abort_upload();
            let stored = read_record(record).ok().flatten();
            let _ = provisioner.load(stored.and_then(|len| record.get(..len)));
            let _ = write!(
                out,
                "upload and staged changes dropped; stored set unchanged"
            );
        }
        OP_DELETE => {
            let kind = kind()?;
            provisioner.delete(kind)?;
            let _ = write!(out, "{} deletion staged", kind.name());
        }
        OP_IMAGE => {
            let kind = kind()?;
            provisioner.use_image(kind)?;
            let _ = write!(out, "{} from the image staged", kind.name());
        }
        OP_COMMIT => commit(provisioner, record, out)?,
        OP_LIST => list(provisioner, out),
        _ => return Err(ProvisionError::UnknownKind.into()),
    }
    Ok(())
}

/// `cred commit`: the staged set checked, encoded and stored; used from the next connection.
fn commit(
    provisioner: &mut Provisioner,
    record: &mut [u8],
    out: &mut impl Write,
) -> Result<(), CommandError> {
    // SAFETY: plain call; the size follows from the devicetree and Kconfig.
    let limit = unsafe { ffi::app_credentials_record_max() };
    let record = record.get_mut(..limit.min(MAX_RECORD)).unwrap_or_default();
    let len = provisioner.prepare_commit(&image(), &mut MbedTls, record)?;
    // SAFETY: `record` holds `len` initialized bytes; settings copies them to flash.
    let saved = unsafe { ffi::app_credentials_save(record.as_ptr(), len) };
    if saved < 0 {
        return Err(CommandError::Storage(Errno(saved.saturating_neg())));
    }
    provisioner.committed();
    COMMITTED.store(true, Ordering::Release);
    crate::control::wake();
    info!("credentials: new set stored ({len} bytes); used from the next connection on");
    let _ = write!(
        out,
        "stored ({len} bytes); used from the next connection on"
    );
    Ok(())
}

/// `cred list`: each credential of the staged set, then whether it is in use.
fn list(provisioner: &Provisioner, out: &mut impl Write) {
    let image = image();
    for kind in Kind::ALL {
        let _ = describe(provisioner.staged(), kind, &image, &mut MbedTls, out);
        let _ = out.write_str("\n");
    }
    let _ = out.write_str(if provisioner.has_changes() {
        "staged changes not committed"
    } else if commit_pending() {
        "stored; used from the next connection on"
    } else {
        "in use"
    });
}

/// The `cred` shell commands' entry point (provisioning.c), on the shell's thread: the
/// operation goes to the MQTT thread, which owns the credential sets; >= 0 done, < 0 refused;
/// `out` holds the answer.
#[no_mangle]
extern "C" fn app_cred_command(
    op: c_int,
    arg: *const c_char,
    arg_len: usize,
    out: *mut u8,
    out_cap: usize,
) -> c_int {
    let arg = if arg.is_null() {
        ""
    } else {
        // SAFETY: arg points to the shell's argv word of arg_len bytes (strlen), alive for
        // this call.
        let bytes = unsafe { core::slice::from_raw_parts(arg.cast::<u8>(), arg_len) };
        core::str::from_utf8(bytes).unwrap_or("\u{fffd}")
    };
    // SAFETY: provisioning.c passes its static answer buffer of out_cap bytes, held under a
    // mutex for the duration of this call.
    unsafe { crate::control::ask_cred(op, arg, out, out_cap) }
}
