//! Upload harness: a script of operator steps against one `Provisioner`, checked step by step
//! against a model of the session (open upload, its text so far, staged changes).
//!
//! - `data`: the incremental decoder refuses no line after which the text so far is still the
//!   start of some base64 the reference decoder (the `base64` crate, strict) accepts, and
//!   accepts none whose complete groups are not such a start; it has then decoded exactly the
//!   bytes of the complete groups; a refused line drops the upload; no upload ever holds more
//!   than its kind's limit.
//! - `end`: refuses the text as base64 exactly when the reference does; otherwise the outcome
//!   (`Empty`, not a certificate or key, unsupported key, bundle full, or staged) is the one a
//!   model of the checks gives with the same inspector, and what is staged is exactly the
//!   reference's bytes (joined to the staged bundle for `add`).
//! - `begin`/`add`/`abort_upload`/`abort`/`delete`/`use_image`: the model's answer.
//! - `commit` against three images: the model's checks; after it, a reboot on the same flash
//!   loads exactly the staged set.
//! - A record of the former one-record format from the input, migrated: accepted exactly when
//!   a reference reading of that format accepts it, with its error; what migrates reads back
//!   as the record said and re-encodes to the same bytes; what does not writes nothing.
//! - After every step: each staged credential (read back from the flash) within its kind's
//!   capacity, an uploaded CA bundle within `MAX_TRUST_ANCHORS`, no step changes the staged
//!   set unless it should, `has_changes` and `upload` as the model says.
//!
//! Input layout: one byte per step (`op % 11`), then its arguments (see [`run`]).

use super::{reference_split, Fake, MemStore};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use provisioning::base64::Base64Error;
use provisioning::store::{migrate, read_set};
use provisioning::{
    keyinfo, CredentialSet, ImageCredentials, Kind, ProvisionError, Provisioner, Source,
    StoreError, MAX_CA_BUNDLE, MAX_CERTIFICATE, MAX_KEY, MAX_RECORD, MAX_TRUST_ANCHORS,
};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The images `prepare_commit` is checked against: all three credentials, none, a CA only.
const IMAGES: [ImageCredentials<'static>; 3] = [
    ImageCredentials {
        ca: Some(b"\x30\x01c"),
        device_certificate: Some(b"\x30\x01d"),
        device_key: Some(b"\x30\x01d"),
    },
    ImageCredentials {
        ca: None,
        device_certificate: None,
        device_key: None,
    },
    ImageCredentials {
        ca: Some(b"\x30\x01c"),
        device_certificate: None,
        device_key: None,
    },
];

/// The open upload, as the model sees it.
struct Open {
    kind: Kind,
    adds: bool,
    /// Every line so far, trimmed, joined.
    text: String,
    /// How much of `text` is checked: its complete groups so far.
    checked: usize,
    /// What they decode to, in bytes.
    decoded: usize,
    /// The last of them is padded.
    padded: bool,
    /// `add`: the bytes of the staged bundle the upload joins.
    base: usize,
}

struct Model {
    open: Option<Open>,
    changed: bool,
}

/// The staged set, read back from the flash.
fn staged_set(p: &Provisioner, flash: &mut MemStore) -> CredentialSet {
    let mut set = CredentialSet::image();
    read_set(flash, p.staged(), &mut set).expect("the staged set reads back");
    set
}

fn kind(arg: u8) -> Kind {
    Kind::ALL[usize::from(arg) % 3]
}

/// The most DER bytes one upload of `kind` takes.
pub fn upload_limit(kind: Kind) -> usize {
    match kind {
        Kind::Ca | Kind::DeviceCertificate => MAX_CERTIFICATE,
        Kind::DeviceKey => MAX_KEY,
    }
}

/// A line of text from fuzz bytes: mostly the base64 alphabet, sometimes padding, blanks,
/// line ends and characters outside the alphabet (ASCII and not).
fn line_from(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0..=191 => char::from(ALPHABET[usize::from(b) % 64]),
            192..=203 => '=',
            204..=215 => ' ',
            216..=223 => '\t',
            224..=231 => '\r',
            232..=239 => '\n',
            240..=247 => '-',
            248..=251 => '.',
            _ => 'é',
        })
        .collect()
}

/// Whether some base64 that the reference accepts starts with `text`.
pub fn valid_prefix(text: &str) -> bool {
    ["", "A", "AA", "AAA", "="]
        .iter()
        .any(|end| STANDARD.decode(format!("{text}{end}")).is_ok())
}

/// The fuzz entry point.
pub fn run(data: &[u8]) {
    let mut p = Provisioner::new();
    let mut flash = MemStore::default();
    let mut model = Model {
        open: None,
        changed: false,
    };
    let mut input = data.iter().copied();
    while let Some(op) = input.next() {
        let arg = input.next().unwrap_or(0);
        let before = staged_set(&p, &mut flash);
        match op % 11 {
            0 => {
                let result = p.begin(kind(arg));
                if model.open.is_some() {
                    assert_eq!(result, Err(ProvisionError::UploadInProgress));
                } else {
                    assert_eq!(result, Ok(()));
                    model.open = Some(Open {
                        kind: kind(arg),
                        adds: false,
                        text: String::new(),
                        checked: 0,
                        decoded: 0,
                        padded: false,
                        base: 0,
                    });
                }
            }
            1 => {
                let result = p.add(kind(arg), &mut flash);
                let expected = if kind(arg) != Kind::Ca {
                    Err(ProvisionError::OnlyCaAdds)
                } else if model.open.is_some() {
                    Err(ProvisionError::UploadInProgress)
                } else if !matches!(before.source(Kind::Ca), Source::Provisioned(_)) {
                    Err(ProvisionError::NoProvisionedCa)
                } else {
                    Ok(())
                };
                assert_eq!(result, expected);
                if let (Ok(()), Source::Provisioned(staged)) = (result, before.source(Kind::Ca)) {
                    model.open = Some(Open {
                        kind: Kind::Ca,
                        adds: true,
                        text: String::new(),
                        checked: 0,
                        decoded: 0,
                        padded: false,
                        base: staged.len(),
                    });
                }
            }
            2 => {
                let line: Vec<u8> = input.by_ref().take(usize::from(arg % 96)).collect();
                data_step(&mut p, &mut model, &line_from(&line));
            }
            3 => {
                // base64 of raw bytes from the input, in lines of 1..=128 characters.
                let width = usize::from(arg % 128) + 1;
                let hi = input.next().unwrap_or(0);
                let lo = input.next().unwrap_or(0);
                let len = (usize::from(hi) << 8 | usize::from(lo)) % (MAX_CERTIFICATE + 64);
                let raw: Vec<u8> = input.by_ref().take(len).collect();
                let text = if arg & 0x80 != 0 {
                    STANDARD_NO_PAD.encode(&raw)
                } else {
                    STANDARD.encode(&raw)
                };
                for line in text.as_bytes().chunks(width) {
                    data_step(&mut p, &mut model, std::str::from_utf8(line).unwrap());
                }
            }
            4 => end_step(&mut p, &mut flash, &mut model, &before),
            5 => assert_eq!(p.abort_upload(), model.open.take().is_some()),
            6 | 7 => {
                let (result, source) = if op % 11 == 6 {
                    (p.delete(kind(arg)), Source::Removed)
                } else {
                    (p.use_image(kind(arg)), Source::Image)
                };
                if model.open.is_some() {
                    assert_eq!(result, Err(ProvisionError::UploadInProgress));
                } else {
                    assert_eq!(result, Ok(()));
                    let after = staged_set(&p, &mut flash);
                    assert_eq!(after.source(kind(arg)), source);
                    for other in Kind::ALL.into_iter().filter(|k| *k != kind(arg)) {
                        assert_eq!(after.source(other), before.source(other));
                    }
                    model.changed = true;
                }
            }
            8 => commit_step(&mut p, &mut flash, &mut model, arg, &before),
            9 => {
                // A record of the former format: the next `arg * 32 + low` bytes.
                let low = input.next().unwrap_or(0);
                let len = usize::from(arg) * 32 + usize::from(low % 32);
                let record: Vec<u8> = input.by_ref().take(len).collect();
                migrate_step(&mut p, &mut flash, &mut model, &record);
            }
            _ => {
                p.abort();
                model.open = None;
                model.changed = false;
            }
        }
        if !matches!(op % 11, 4 | 6 | 7 | 9 | 10) {
            assert!(
                staged_set(&p, &mut flash) == before,
                "op {} changed the staged set",
                op % 11
            );
        }
        check(&p, &mut flash, &model);
    }
}

fn data_step(p: &mut Provisioner, model: &mut Model, line: &str) {
    let result = p.data(line);
    let Some(open) = model.open.as_mut() else {
        assert_eq!(result, Err(ProvisionError::NoUpload));
        return;
    };
    let line = line.trim();
    match result {
        Ok(()) => {
            assert!(
                line.bytes().all(|c| c == b'=' || ALPHABET.contains(&c)),
                "accepted {line:?}"
            );
            open.text.push_str(line);
            // The complete groups must be valid base64 (checked a group at a time, so that long
            // uploads in short lines stay linear); the unused bits of a padded group are only
            // checked when its last '=' comes, or at `end` (as `Truncated`).
            let complete = open.text.len() / 4 * 4;
            if complete > open.checked {
                let groups = &open.text[open.checked..complete];
                assert!(!open.padded, "accepted text after padding: {:?}", open.text);
                let decoded = STANDARD
                    .decode(groups)
                    .unwrap_or_else(|e| panic!("accepted {:?}: {e}", open.text));
                open.decoded += decoded.len();
                open.checked = complete;
                open.padded = groups.ends_with('=');
            }
            assert_eq!(p.upload(), Some((open.kind, open.decoded)));
            assert!(open.decoded <= upload_limit(open.kind));
            assert!(open.base + open.decoded <= MAX_CA_BUNDLE || !open.adds);
        }
        Err(ProvisionError::BadBase64(error)) => {
            let text = format!("{}{line}", open.text);
            assert!(!valid_prefix(&text), "refused {text:?} as {error:?}");
            match error {
                Base64Error::InvalidCharacter => {
                    assert!(text.bytes().any(|c| c != b'=' && !ALPHABET.contains(&c)))
                }
                Base64Error::BadPadding => assert!(text.contains('=')),
                Base64Error::Truncated => panic!("data() said truncated"),
            }
            model.open = None;
        }
        Err(ProvisionError::TooLarge { limit }) => {
            assert_eq!(limit, upload_limit(open.kind));
            assert!(!open.adds || limit <= MAX_CA_BUNDLE - open.base);
            let chars = open.text.len() + line.len();
            assert!(chars / 4 * 3 > limit, "{chars} characters too large");
            model.open = None;
        }
        Err(ProvisionError::BundleFull { limit }) => {
            // Joined to the staged bundle, the upload would pass the bundle's size first.
            assert_eq!(limit, MAX_CA_BUNDLE);
            assert!(open.adds && MAX_CA_BUNDLE - open.base < upload_limit(open.kind));
            let chars = open.text.len() + line.len();
            assert!(
                open.base + chars / 4 * 3 > MAX_CA_BUNDLE,
                "{chars} characters"
            );
            model.open = None;
        }
        Err(other) => panic!("data() gave {other:?}"),
    }
}

/// What `end` should answer for an upload of `der`, given the staged set before it.
fn model_end(before: &CredentialSet, open: &Open, der: &[u8]) -> Result<Kind, ProvisionError> {
    let certificate = |der: &[u8]| {
        if let Some(key) = keyinfo::certificate_key(der) {
            if !Fake::takes(key) {
                return Err(ProvisionError::UnsupportedKey {
                    key,
                    accepted: Fake::ACCEPTED,
                });
            }
        }
        if Fake::parses(der) {
            Ok(())
        } else {
            Err(ProvisionError::NotACertificate {
                code: Fake::NOT_A_CERTIFICATE,
            })
        }
    };
    if der.is_empty() {
        return Err(ProvisionError::Empty);
    }
    match open.kind {
        Kind::Ca => reference_split(der).into_iter().try_for_each(certificate)?,
        Kind::DeviceCertificate => certificate(der)?,
        Kind::DeviceKey => {
            if let Some(key) = keyinfo::private_key(der) {
                if !Fake::takes(key) {
                    return Err(ProvisionError::UnsupportedKey {
                        key,
                        accepted: Fake::ACCEPTED,
                    });
                }
            }
            if !Fake::parses(der) {
                return Err(ProvisionError::NotAPrivateKey {
                    code: Fake::NOT_A_KEY,
                });
            }
        }
    }
    let full = Err(ProvisionError::BundleFull {
        limit: MAX_CA_BUNDLE,
    });
    if open.adds {
        let Source::Provisioned(staged) = before.source(Kind::Ca) else {
            return Err(ProvisionError::NoProvisionedCa);
        };
        let joined = [staged, der].concat();
        if joined.len() > MAX_CA_BUNDLE || reference_split(&joined).len() > MAX_TRUST_ANCHORS {
            return full;
        }
    } else if open.kind == Kind::Ca && reference_split(der).len() > MAX_TRUST_ANCHORS {
        return full;
    }
    Ok(open.kind)
}

fn end_step(p: &mut Provisioner, flash: &mut MemStore, model: &mut Model, before: &CredentialSet) {
    let result = p.end(&mut Fake, flash);
    assert_eq!(p.upload(), None);
    let Some(open) = model.open.take() else {
        assert_eq!(result, Err(ProvisionError::NoUpload));
        return;
    };
    let der = match (STANDARD.decode(&open.text), result) {
        (Err(_), Err(ProvisionError::BadBase64(Base64Error::Truncated))) => {
            assert!(staged_set(p, flash) == *before);
            return;
        }
        (Err(e), other) => panic!(
            "the reference refuses {:?} ({e}); end gave {other:?}",
            open.text
        ),
        (Ok(der), result) => {
            assert_eq!(
                result,
                model_end(before, &open, &der),
                "upload of {der:02x?}"
            );
            if result.is_err() {
                assert!(
                    staged_set(p, flash) == *before,
                    "a refused upload changed the staged set"
                );
                return;
            }
            der
        }
    };
    let expected = match (open.adds, before.source(Kind::Ca)) {
        (true, Source::Provisioned(staged)) => [staged, &der].concat(),
        _ => der,
    };
    let after = staged_set(p, flash);
    assert_eq!(after.source(open.kind), Source::Provisioned(&expected));
    for other in Kind::ALL.into_iter().filter(|k| *k != open.kind) {
        assert_eq!(after.source(other), before.source(other));
    }
    model.changed = true;
}

fn commit_step(
    p: &mut Provisioner,
    flash: &mut MemStore,
    model: &mut Model,
    arg: u8,
    staged: &CredentialSet,
) {
    let image = &IMAGES[usize::from(arg >> 6) % IMAGES.len()];
    let result = p.commit(image, &mut Fake, flash);
    let effective = |kind| staged.effective(kind, image);
    let expected = if model.open.is_some() {
        Err(ProvisionError::UploadInProgress)
    } else if !model.changed {
        Err(ProvisionError::NothingStaged)
    } else if effective(Kind::Ca).is_none() {
        Err(ProvisionError::NoCa)
    } else {
        match (
            effective(Kind::DeviceCertificate),
            effective(Kind::DeviceKey),
        ) {
            (None, None) => Ok(()),
            (Some(c), Some(k)) if c.last() == k.last() => Ok(()),
            (Some(_), Some(_)) => Err(ProvisionError::KeyDoesNotMatchCertificate),
            _ => Err(ProvisionError::IncompletePair),
        }
    };
    assert_eq!(result, expected);
    if result.is_err() {
        return;
    }
    let mut rebooted = Provisioner::new();
    assert_eq!(rebooted.load(flash), Ok(()));
    assert!(
        staged_set(&rebooted, flash) == *staged,
        "the commit does not load back"
    );
    assert!(!rebooted.has_changes());
    model.changed = false;
}

/// An independent reading of the stored record (format in `src/set.rs`): the DER of each
/// kind (`None` for the image's, `Some(empty)` for deleted), or the error `load` gives.
pub fn reference_load(record: &[u8]) -> Result<[Option<&[u8]>; 3], StoreError> {
    if record.len() < 4 || &record[..4] != b"CRD1" {
        return Err(StoreError::BadMagic);
    }
    let mut out = [None; 3];
    let mut at = 4;
    for (i, kind) in Kind::ALL.into_iter().enumerate() {
        if record.len() < at + 3 {
            return Err(StoreError::BadLength);
        }
        let source = record[at];
        let len = usize::from(record[at + 1]) + 256 * usize::from(record[at + 2]);
        at += 3;
        if record.len() < at + len {
            return Err(StoreError::BadLength);
        }
        let der = &record[at..at + len];
        at += len;
        out[i] = match source {
            0 if len == 0 => None,
            2 if len == 0 => Some(&der[..0]),
            1 if kind == Kind::Ca && len > 0 && reference_split(der).len() > MAX_TRUST_ANCHORS => {
                return Err(StoreError::TooManyRoots)
            }
            1 if len > 0 && len <= kind.capacity() => Some(der),
            0..=2 => return Err(StoreError::BadLength),
            _ => return Err(StoreError::BadSource),
        };
    }
    if at == record.len() {
        Ok(out)
    } else {
        Err(StoreError::TrailingBytes)
    }
}

fn migrate_step(p: &mut Provisioner, flash: &mut MemStore, model: &mut Model, record: &[u8]) {
    let mut moved = MemStore::default();
    let mut scratch = CredentialSet::image();
    let result = migrate(&mut moved, record, &mut scratch);
    match reference_load(record) {
        Err(expected) => {
            assert_eq!(
                result.map(|_| ()),
                Err(provisioning::store::MigrateError::Unreadable(expected))
            );
            assert!(moved.writes.is_empty(), "a refused record wrote to flash");
        }
        Ok(entries) => {
            assert!(result.is_ok());
            // The device reboots on the migrated flash.
            *flash = moved;
            assert_eq!(p.load(flash), Ok(()));
            let loaded = staged_set(p, flash);
            for (kind, entry) in Kind::ALL.into_iter().zip(entries) {
                let expected = match entry {
                    None => Source::Image,
                    Some([]) => Source::Removed,
                    Some(der) => Source::Provisioned(der),
                };
                assert_eq!(loaded.source(kind), expected);
            }
            model.changed = false;
            model.open = None;
            let mut encoded = vec![0u8; MAX_RECORD];
            let len = loaded.encode(&mut encoded).unwrap();
            assert_eq!(
                &encoded[..len],
                record,
                "a migrated record re-encodes differently"
            );
        }
    }
}

/// The invariants that hold after every step.
fn check(p: &Provisioner, flash: &mut MemStore, model: &Model) {
    let staged = staged_set(p, flash);
    for kind in Kind::ALL {
        if let Source::Provisioned(der) = staged.source(kind) {
            assert!(!der.is_empty() && der.len() <= kind.capacity());
        }
    }
    assert!(staged.encoded_len() <= MAX_RECORD);
    assert_eq!(p.has_changes(), model.changed);
    match (&model.open, p.upload()) {
        (None, None) => {}
        (Some(open), Some((kind, len))) => {
            assert_eq!(kind, open.kind);
            assert!(len <= upload_limit(kind));
        }
        (expected, found) => panic!(
            "upload open: model {}, provisioner {found:?}",
            expected.is_some()
        ),
    }
}
