//! Run-time provisioning: the `cred` shell commands (`control.c`) drive the sans-IO
//! [`provisioning`] crate; the credentials are records in flash (Zephyr settings, through
//! [`crate::records`]): one per provisioned credential and an index that commits a set. The
//! MQTT thread registers the committed set at boot and again before the first connection
//! after a commit.
//!
//! Two sets, both used on the MQTT thread only. The operator's staged set is in flash:
//! [`Credentials`], which the MQTT thread's supervisor owns, holds its index and the buffer
//! of the one open upload. The active set (under [`ACTIVE`]) is what the TLS credential store
//! points into; it is rewritten only in [`Credentials::apply`], between connections.

use crate::credentials::{self, CredentialError, CredentialKind, Installed};
use crate::device_key::{self, KeyError};
use crate::ffi;
use crate::net::Errno;
use crate::records;
use crate::settings::Settings;
use crate::sync::lock;
use core::ffi::{c_int, CStr};
use core::fmt::{self, Write};
use fleet_provisioning::csr::{self, CsrError};
use fleet_provisioning::flow::Identity;
use fleet_provisioning::x509;
use log::{info, warn};
use provisioning::store::{self, migrate, Index, LoadError};
use provisioning::{
    bundle, check_usable, CredentialSet, ImageCredentials, Inspector, KeyType, Kind,
    ProvisionError, Provisioner, Record, Slot, Source, StorageError, Store, MAX_RECORD,
};
use static_cell::ConstStaticCell;
use zephyr::kconfig;
use zephyr::sync::Mutex;

/// The set registered in the TLS credential store, which keeps pointers into it: so it is a
/// `'static` of its own, never moved, whose bytes change only while nothing is registered
/// from it ([`Credentials::apply`]). Only the MQTT thread locks it.
static ACTIVE: Mutex<CredentialSet> = Mutex::new(CredentialSet::image());

/// The MQTT thread's credentials, owned by its supervisor from start on; made at compile time,
/// so that the upload buffer (3.3 KB) lies in `.bss` and never passes through a stack frame.
static CREDENTIALS: ConstStaticCell<Credentials> = ConstStaticCell::new(Credentials {
    operator: Provisioner::new(),
    committed: false,
    extra_cas: 0,
});

/// What the MQTT thread keeps of the credentials besides the active set: the operator's
/// session, a commit waiting to be applied, the further trust anchors registered. The shell's
/// `cred` requests reach it through `control`, served on the MQTT thread.
pub struct Credentials {
    /// The operator's session: the staged set's index and an open upload.
    operator: Provisioner,
    /// A commit is stored and waits for [`Credentials::apply`].
    committed: bool,
    /// How many further trust anchors are registered, under the tags after the base tag.
    extra_cas: usize,
}

/// The credential records in flash.
struct Flash;

fn key(record: Record) -> &'static CStr {
    match record {
        Record::Index => c"app/cred/index",
        Record::Credential(Kind::Ca, Slot::A) => c"app/cred/ca.a",
        Record::Credential(Kind::Ca, Slot::B) => c"app/cred/ca.b",
        Record::Credential(Kind::DeviceCertificate, Slot::A) => c"app/cred/cert.a",
        Record::Credential(Kind::DeviceCertificate, Slot::B) => c"app/cred/cert.b",
        Record::Credential(Kind::DeviceKey, Slot::A) => c"app/cred/key.a",
        Record::Credential(Kind::DeviceKey, Slot::B) => c"app/cred/key.b",
        Record::Legacy => c"app/creds",
    }
}

fn storage_error(Errno(errno): Errno) -> StorageError {
    StorageError(errno.saturating_neg())
}

impl Store for Flash {
    fn read(&mut self, record: Record, buf: &mut [u8]) -> Result<Option<usize>, StorageError> {
        records::load(key(record), buf).map_err(storage_error)
    }

    fn write(&mut self, record: Record, bytes: &[u8]) -> Result<(), StorageError> {
        records::save(key(record), bytes).map_err(storage_error)
    }

    fn delete(&mut self, record: Record) -> Result<(), StorageError> {
        records::delete(key(record)).map_err(storage_error)
    }
}

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

/// X.509 and key checks with mbedTLS (`shim.rs`).
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

impl Credentials {
    /// The MQTT thread's credentials; once only (a second call panics), at start.
    pub fn take() -> &'static mut Self {
        CREDENTIALS.take()
    }

    /// Boot: a set stored in the former one-record format is moved into records and an index
    /// (read into mbedTLS's heap, which no TLS session holds yet; the active set is scratch, as
    /// nothing is registered yet); then the operator's staged set starts as the stored one.
    pub fn init(&mut self) {
        // SAFETY: no arguments; the shim reads the settings storage on this thread only.
        if unsafe { ffi::app_records_unreadable_format() } > 0 {
            warn!(
                "settings: the flash holds records written without NVS's data CRC (by an image \
             before it was turned on); this image cannot read them: the stored credentials and \
             queued messages are ignored; provision the set again"
            );
        }
        migrate_former_record();
        if let Err(cause) = self.operator.load(&mut Flash) {
            warn!("credentials: stored set unreadable ({cause}); using the image's");
        }
    }
}

fn migrate_former_record() {
    // SAFETY: plain allocation from mbedTLS's heap; freed below, on every path.
    let buf = unsafe { ffi::app_scratch_alloc(MAX_RECORD) }.cast::<u8>();
    if buf.is_null() {
        return;
    }
    // SAFETY: `buf` is a fresh allocation of MAX_RECORD bytes, zeroed (calloc), used only
    // here and freed before this function returns.
    let record = unsafe { core::slice::from_raw_parts_mut(buf, MAX_RECORD) };
    match Flash.read(Record::Legacy, record) {
        Ok(None) => {}
        Err(cause) => warn!("credentials: a set in the former format is not readable ({cause})"),
        Ok(Some(len)) => {
            let mut scratch = lock(&ACTIVE);
            let moved = migrate(
                &mut Flash,
                record.get(..len).unwrap_or_default(),
                &mut scratch,
            );
            scratch.reset_to_image();
            match moved {
                Ok(_) => {
                    // After the index: a power cut before this delete migrates it again.
                    let _ = Flash.delete(Record::Legacy);
                    info!("credentials: stored set moved to the record-per-credential format");
                }
                Err(cause) => warn!("credentials: a set in the former format not moved ({cause})"),
            }
        }
    }
    // SAFETY: `buf` came from app_scratch_alloc and `record` is not used after this.
    unsafe { ffi::app_scratch_free(buf.cast()) };
}

impl Credentials {
    /// Whether a commit waits to be applied.
    pub fn commit_pending(&self) -> bool {
        self.committed
    }

    /// How many further trust anchors are registered now (for `credentials::sec_tags`).
    pub fn extra_cas(&self) -> usize {
        self.extra_cas
    }

    /// Registers the stored set (the image's credentials where nothing is provisioned). Runs on
    /// the MQTT thread only, at boot and between connections.
    pub fn apply(&mut self, sec_tag: i32) -> Result<Installed, (CredentialKind, CredentialError)> {
        self.committed = false;
        self.install(sec_tag, store::read_index(&mut Flash))
    }

    /// Registers the staged set, not committed: a new certificate is tried with a connection
    /// before it is committed. A power cut meanwhile boots with the stored set.
    pub fn apply_staged(
        &mut self,
        sec_tag: i32,
    ) -> Result<Installed, (CredentialKind, CredentialError)> {
        let staged = *self.operator.staged();
        self.install(sec_tag, Ok(staged))
    }

    fn install(
        &mut self,
        sec_tag: i32,
        index: Result<Index, LoadError>,
    ) -> Result<Installed, (CredentialKind, CredentialError)> {
        let image = image();
        let mut active = lock(&ACTIVE);
        for kind in Kind::ALL {
            credentials::unregister(sec_tag, kind_of(kind));
        }
        credentials::unregister_extra_cas(sec_tag, &mut self.extra_cas);
        let read = index.and_then(|index| store::read_set(&mut Flash, &index, &mut active));
        if let Err(cause) = read {
            warn!("credentials: stored set unreadable ({cause}); using the image's");
            active.reset_to_image();
        }
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
            let der: &'static [u8] =
                unsafe { core::slice::from_raw_parts(der.as_ptr(), der.len()) };
            let origin = match active.source(kind) {
                Source::Provisioned(_) => "provisioned",
                _ => "image",
            };
            if kind == Kind::Ca {
                let provisioned = matches!(active.source(kind), Source::Provisioned(_));
                register_roots(sec_tag, der, provisioned, &mut self.extra_cas)?;
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
}

/// The CA: its first root under the tag itself, the others of the bundle after it; the
/// image's further roots go with the image's CA only. `extra_cas` counts those after it.
fn register_roots(
    sec_tag: i32,
    der: &'static [u8],
    provisioned: bool,
    extra_cas: &mut usize,
) -> Result<(), (CredentialKind, CredentialError)> {
    let mut roots = bundle::certificates(der);
    let first = roots.next().unwrap_or(der);
    credentials::register(sec_tag, CredentialKind::Ca, first)
        .map_err(|e| (CredentialKind::Ca, e))?;
    let further = if provisioned {
        credentials::register_extra_cas(sec_tag, roots, extra_cas)
    } else {
        credentials::register_extra_cas(sec_tag, credentials::builtin_extra_cas(), extra_cas)
    }
    .map_err(|e| (CredentialKind::Ca, e))?;
    info!(
        "credentials: ca from the {} ({} bytes, {} root(s))",
        if provisioned { "provisioned" } else { "image" },
        der.len(),
        further + 1
    );
    Ok(())
}

/// The identity of the device certificate the last [`Credentials::apply`] or
/// [`Credentials::apply_staged`] registered, `None` without one: the device's own if its CN
/// is `client_id`, else a claim certificate (the image's or one provisioned by hand).
pub fn active_identity(client_id: &str) -> Option<Identity> {
    let active = lock(&ACTIVE);
    let der = match active.source(Kind::DeviceCertificate) {
        Source::Image => credentials::builtin(CredentialKind::DeviceCertificate)?,
        Source::Provisioned(der) => der,
        Source::Removed => return None,
    };
    // Unreadable here, it still passed mbedTLS's parse: a claim, to be replaced.
    Some(match x509::certificate_facts(der) {
        Ok(facts) => Identity::of(
            facts.common_name,
            client_id,
            facts.not_before,
            facts.not_after,
        ),
        Err(_) => Identity::Claim,
    })
}

impl Credentials {
    /// A new key made and staged as the device key, and a certificate request for it as PEM
    /// into `pem`: the request's length and the key's SubjectPublicKeyInfo.
    pub fn new_key_and_request(
        &mut self,
        subject: &csr::Subject<'_>,
        pem: &mut [u8],
    ) -> Result<(usize, [u8; csr::SPKI_P256_LEN]), CredError> {
        let (signing_key, _) = stage_new_key(&mut self.operator, |key| {
            device_key::SigningKey::from_der(key).map_err(CredError::Key)
        })?;
        let mut work = [0u8; CSR_DER_MAX];
        let len = csr::csr_pem(
            subject,
            signing_key.public_point(),
            |info| signing_key.sign(info),
            &mut work,
            pem,
        )
        .map_err(CredError::Request)?;
        let mut spki = [0u8; csr::SPKI_P256_LEN];
        csr::subject_public_key_info(signing_key.public_point(), &mut spki)
            .map_err(|_| CredError::Request(CsrError::TooSmall))?;
        Ok((len, spki))
    }

    /// Stages a device certificate that came over the network (checked as an upload is).
    pub fn stage_certificate(&mut self, der: &[u8]) -> Result<(), ProvisionError> {
        self.operator
            .stage(Kind::DeviceCertificate, der, &mut MbedTls, &mut Flash)
    }

    /// Commits the staged set, already in use (after [`Credentials::apply_staged`] connected
    /// with it).
    pub fn commit_staged(&mut self) -> Result<(), ProvisionError> {
        self.operator.commit(&image(), &mut MbedTls, &mut Flash)
    }

    /// Drops the staged changes: the stored set stays the device's. Not while an operator's
    /// upload is open: that session is theirs to end.
    pub fn drop_staged(&mut self) {
        if self.operator.upload().is_none() {
            self.operator.abort();
        }
    }
}

// The `cred` operations, by subcommand name (the shell's argv[0]).
const OP_BEGIN: c_int = 0;
const OP_DATA: c_int = 1;
const OP_END: c_int = 2;
const OP_ABORT: c_int = 3;
const OP_DELETE: c_int = 4;
const OP_IMAGE: c_int = 5;
const OP_COMMIT: c_int = 6;
const OP_LIST: c_int = 7;
const OP_ADD: c_int = 8;
const OP_KEYGEN: c_int = 9;
const OP_CSR: c_int = 10;
const OPS: [(&str, c_int); 11] = [
    ("begin", OP_BEGIN),
    ("data", OP_DATA),
    ("end", OP_END),
    ("abort", OP_ABORT),
    ("delete", OP_DELETE),
    ("image", OP_IMAGE),
    ("commit", OP_COMMIT),
    ("list", OP_LIST),
    ("add", OP_ADD),
    ("keygen", OP_KEYGEN),
    ("csr", OP_CSR),
];

/// The operation a `cred` subcommand names; unknown names get one that
/// [`Credentials::command`] refuses
/// like an unknown kind (the shell runs only registered subcommands).
pub fn op_named(name: &str) -> c_int {
    OPS.iter()
        .find(|(known, _)| *known == name)
        .map_or(c_int::MAX, |&(_, op)| op)
}

/// Why a `cred` operation was refused, in words.
#[derive(Debug)]
pub enum CredError {
    Provision(ProvisionError),
    Key(KeyError),
    Request(CsrError<KeyError>),
    /// The request's PEM is longer than the console's answer can carry.
    RequestTooLong,
}

impl CredError {
    /// A number for the fleet flow's failure line (the words are logged with it).
    pub fn code(&self) -> i32 {
        match self {
            Self::Key(KeyError::Generate(code) | KeyError::Export(code))
            | Self::Key(KeyError::Import(code) | KeyError::Sign(code)) => *code,
            _ => -1,
        }
    }
}

impl From<ProvisionError> for CredError {
    fn from(cause: ProvisionError) -> Self {
        Self::Provision(cause)
    }
}

impl fmt::Display for CredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provision(cause) => write!(f, "{cause}"),
            Self::Key(cause) => write!(f, "{cause}"),
            Self::Request(cause) => write!(f, "{cause}"),
            Self::RequestTooLong => f.write_str(
                "the certificate request is longer than the console's answer: shorten \
                 APP_CSR_ORGANIZATION, APP_CSR_ORGANIZATIONAL_UNIT or APP_CSR_SERIAL_NUMBER",
            ),
        }
    }
}

impl Credentials {
    /// Carries out one `cred` operation on the MQTT thread (`control` hands it over from the
    /// shell); `out` takes the answer line(s), or the refusal's reason on `Err`.
    pub fn command(&mut self, op: c_int, arg: &str, out: &mut impl Write) -> Result<(), CredError> {
        let provisioner = &mut self.operator;
        match op {
            OP_BEGIN | OP_ADD | OP_DATA | OP_END => upload(provisioner, op, arg, out)?,
            OP_ABORT | OP_DELETE | OP_IMAGE => stage_change(provisioner, op, arg, out)?,
            OP_COMMIT => self.commit(out)?,
            OP_LIST => self.list(out)?,
            OP_KEYGEN => {
                let fingerprint = keygen(provisioner)?;
                let _ = write!(
                    out,
                    "key made on the device (ECDSA P-256, public key sha256 {}) and staged; \
                 `cred csr` prints its certificate request, `cred commit` stores it with its \
                 certificate",
                    Hex(&fingerprint)
                );
            }
            OP_CSR => csr(provisioner, out)?,
            _ => return Err(ProvisionError::UnknownKind.into()),
        }
        Ok(())
    }

    /// `cred commit`: the staged set checked and its index stored; used from the next
    /// connection.
    fn commit(&mut self, out: &mut impl Write) -> Result<(), ProvisionError> {
        self.operator.commit(&image(), &mut MbedTls, &mut Flash)?;
        self.committed = true;
        info!("credentials: new set stored; used from the next connection on");
        let _ = write!(out, "stored; used from the next connection on");
        Ok(())
    }

    /// `cred list`: each credential of the staged set, then whether it is in use.
    fn list(&mut self, out: &mut impl Write) -> Result<(), ProvisionError> {
        self.operator
            .list(&image(), &mut MbedTls, &mut Flash, out)?;
        let _ = out.write_str(if self.operator.has_changes() {
            "staged changes not committed"
        } else if self.commit_pending() {
            "stored; used from the next connection on"
        } else {
            "in use"
        });
        Ok(())
    }
}

/// The kind a `cred` argument names.
fn kind_named(arg: &str) -> Result<Kind, ProvisionError> {
    Kind::from_name(arg).ok_or(ProvisionError::UnknownKind)
}

/// `cred begin`, `add`, `data` and `end`: one credential uploaded in base64 lines.
fn upload(
    provisioner: &mut Provisioner,
    op: c_int,
    arg: &str,
    out: &mut impl Write,
) -> Result<(), ProvisionError> {
    match op {
        OP_BEGIN => {
            let kind = kind_named(arg)?;
            provisioner.begin(kind)?;
            let _ = write!(
                out,
                "upload of {} open: send base64 lines with `cred data`, then `cred end`",
                kind.name()
            );
        }
        OP_ADD => {
            let kind = kind_named(arg)?;
            provisioner.add(kind, &mut Flash)?;
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
        _ => {
            let kind = provisioner.end(&mut MbedTls, &mut Flash)?;
            let _ = write!(
                out,
                "{} staged; `cred commit` stores the staged set",
                kind.name()
            );
        }
    }
    Ok(())
}

/// `cred abort`, `delete` and `image`: the staged set changed without an upload.
fn stage_change(
    provisioner: &mut Provisioner,
    op: c_int,
    arg: &str,
    out: &mut impl Write,
) -> Result<(), ProvisionError> {
    match op {
        OP_ABORT => {
            provisioner.abort();
            let _ = write!(
                out,
                "upload and staged changes dropped; stored set unchanged"
            );
        }
        OP_DELETE => {
            let kind = kind_named(arg)?;
            provisioner.delete(kind)?;
            let _ = write!(out, "{} deletion staged", kind.name());
        }
        _ => {
            let kind = kind_named(arg)?;
            provisioner.use_image(kind)?;
            let _ = write!(out, "{} from the image staged", kind.name());
        }
    }
    Ok(())
}

/// A new P-256 key staged as the device key (its private half goes to flash only);
/// `with_key` gets its PKCS#8 before the buffer that held it is wiped, like the scalar.
fn stage_new_key<T>(
    provisioner: &mut Provisioner,
    with_key: impl FnOnce(&[u8]) -> Result<T, CredError>,
) -> Result<(T, [u8; device_key::POINT_LEN]), CredError> {
    let (scalar, point) = device_key::generate().map_err(CredError::Key)?;
    let mut pkcs8 = [0u8; csr::PKCS8_P256_LEN];
    let made = csr::pkcs8_private_key(&scalar.0, &point, &mut pkcs8)
        .map_err(|_| CredError::Request(CsrError::TooSmall))
        .and_then(|len| {
            let key = pkcs8.get(..len).unwrap_or_default();
            provisioner.stage(Kind::DeviceKey, key, &mut MbedTls, &mut Flash)?;
            with_key(key)
        });
    device_key::wipe(&mut pkcs8);
    drop(scalar);
    Ok((made?, point))
}

/// `cred keygen`: a key made on the device and staged; the SHA-256 of its public half.
fn keygen(provisioner: &mut Provisioner) -> Result<[u8; 32], CredError> {
    let ((), point) = stage_new_key(provisioner, |_| Ok(()))?;
    let mut spki = [0u8; csr::SPKI_P256_LEN];
    let len = csr::subject_public_key_info(&point, &mut spki)
        .map_err(|_| CredError::Request(CsrError::TooSmall))?;
    let mut digest = [0u8; 32];
    // SAFETY: spki is a live slice of len bytes; digest has room for 32.
    unsafe { ffi::mbedtls_sha256(spki.as_ptr(), len, digest.as_mut_ptr(), 0) };
    Ok(digest)
}

/// `cred csr`: a PKCS#10 request for the staged key, CN the client id, as PEM.
fn csr(provisioner: &mut Provisioner, out: &mut impl Write) -> Result<(), CredError> {
    let mut key_der = [0u8; provisioning::MAX_KEY];
    let signing_key = {
        let der =
            provisioner.staged_credential(Kind::DeviceKey, &image(), &mut Flash, &mut key_der)?;
        device_key::SigningKey::from_der(der)
    };
    device_key::wipe(&mut key_der);
    let signing_key = signing_key.map_err(CredError::Key)?;
    let settings = Settings::current();
    let mut work = [0u8; CSR_DER_MAX];
    let mut pem = [0u8; CSR_PEM_MAX];
    let len = csr::csr_pem(
        &request_subject(&settings),
        signing_key.public_point(),
        |info| signing_key.sign(info),
        &mut work,
        &mut pem,
    )
    .map_err(|cause| match cause {
        CsrError::TooSmall => CredError::RequestTooLong,
        cause => CredError::Request(cause),
    })?;
    let text = core::str::from_utf8(pem.get(..len).unwrap_or_default()).unwrap_or_default();
    let _ = out.write_str(text.trim_end());
    Ok(())
}

/// The longest request the console's answer carries, and its DER.
const CSR_PEM_MAX: usize = 760;
const CSR_DER_MAX: usize = CSR_PEM_MAX * 3 / 4;

/// The subject of the device's certificate requests: the client id, and Kconfig's O, OU
/// and serial number.
pub fn request_subject<'s>(settings: &'s Settings) -> csr::Subject<'s> {
    let optional = |text: &'static str| (!text.is_empty()).then_some(text);
    csr::Subject {
        common_name: settings.client_id,
        organization: optional(kconfig::CONFIG_APP_CSR_ORGANIZATION),
        organizational_unit: optional(kconfig::CONFIG_APP_CSR_ORGANIZATIONAL_UNIT),
        serial_number: optional(kconfig::CONFIG_APP_CSR_SERIAL_NUMBER),
    }
}

/// Bytes as lowercase hex.
struct Hex<'b>(&'b [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}
