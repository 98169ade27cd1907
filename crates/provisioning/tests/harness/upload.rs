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
//! - `begin`/`add`/`abort_upload`/`delete`/`use_image`/`committed`: the model's answer.
//! - `prepare_commit` into buffers of many sizes: the model's checks; a record written loads
//!   back (into a fresh `CredentialSet` and a fresh `Provisioner`) equal to the staged set.
//! - `load` of record bytes from the input: accepted exactly when a reference reading of the
//!   record format accepts them, with its error; what loads re-encodes to the same bytes; what
//!   does not leaves the image's set.
//! - After every step: each staged credential within its kind's capacity, an uploaded CA
//!   bundle within `MAX_TRUST_ANCHORS`, the staged set within `MAX_RECORD`, no step changes the
//!   staged set unless it should, `has_changes` and `upload` as the model says.
//!
//! Input layout: one byte per step (`op % 11`), then its arguments (see [`run`]).

use super::{reference_split, Fake};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use provisioning::base64::Base64Error;
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
}

struct Model {
    open: Option<Open>,
    changed: bool,
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
    let mut model = Model {
        open: None,
        changed: false,
    };
    let mut input = data.iter().copied();
    while let Some(op) = input.next() {
        let arg = input.next().unwrap_or(0);
        let before = p.staged().clone();
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
                    });
                }
            }
            1 => {
                let result = p.add(kind(arg));
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
                if result.is_ok() {
                    model.open = Some(Open {
                        kind: Kind::Ca,
                        adds: true,
                        text: String::new(),
                        checked: 0,
                        decoded: 0,
                        padded: false,
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
            4 => end_step(&mut p, &mut model, &before),
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
                    assert_eq!(p.staged().source(kind(arg)), source);
                    for other in Kind::ALL.into_iter().filter(|k| *k != kind(arg)) {
                        assert_eq!(p.staged().source(other), before.source(other));
                    }
                    model.changed = true;
                }
            }
            8 => commit_step(&mut p, &mut model, arg),
            9 => {
                // A stored record: the next `arg * 32 + low` bytes, or nothing at all.
                let low = input.next().unwrap_or(0);
                let len = usize::from(arg) * 32 + usize::from(low % 32);
                let record: Vec<u8> = input.by_ref().take(len).collect();
                load_step(&mut p, &mut model, (arg != 0xFF).then_some(&record[..]));
            }
            _ => {
                p.committed();
                model.changed = false;
            }
        }
        if !matches!(op % 11, 4 | 6 | 7 | 9) {
            assert_eq!(p.staged(), &before, "op {} changed the staged set", op % 11);
        }
        check(&p, &model);
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
            let chars = open.text.len() + line.len();
            assert!(chars / 4 * 3 > limit, "{chars} characters too large");
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

fn end_step(p: &mut Provisioner, model: &mut Model, before: &CredentialSet) {
    let result = p.end(&mut Fake);
    assert_eq!(p.upload(), None);
    let Some(open) = model.open.take() else {
        assert_eq!(result, Err(ProvisionError::NoUpload));
        return;
    };
    let der = match (STANDARD.decode(&open.text), result) {
        (Err(_), Err(ProvisionError::BadBase64(Base64Error::Truncated))) => {
            assert!(p.staged() == before);
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
                    p.staged() == before,
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
    assert_eq!(p.staged().source(open.kind), Source::Provisioned(&expected));
    for other in Kind::ALL.into_iter().filter(|k| *k != open.kind) {
        assert_eq!(p.staged().source(other), before.source(other));
    }
    model.changed = true;
}

fn commit_step(p: &mut Provisioner, model: &mut Model, arg: u8) {
    let image = &IMAGES[usize::from(arg >> 6) % IMAGES.len()];
    // Buffers of the record's full size, or of 0..=7,936 bytes in steps of 256.
    let size = if arg & 0x20 != 0 {
        MAX_RECORD
    } else {
        usize::from(arg & 0x1F) * 256
    };
    let mut record = vec![0u8; size];
    let result = p.prepare_commit(image, &mut Fake, &mut record);
    let staged = p.staged();
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
        .and_then(|()| {
            if staged.encoded_len() > size {
                Err(ProvisionError::SetTooLarge {
                    len: staged.encoded_len(),
                    limit: size,
                })
            } else {
                Ok(staged.encoded_len())
            }
        })
    };
    assert_eq!(result, expected);
    let Ok(len) = result else {
        return;
    };
    assert!(len <= MAX_RECORD);
    let mut loaded = CredentialSet::image();
    assert_eq!(loaded.load(&record[..len]), Ok(()));
    assert_eq!(&loaded, staged, "the record does not load back");
    let mut rebooted = Provisioner::new();
    assert_eq!(rebooted.load(Some(&record[..len])), Ok(()));
    assert_eq!(rebooted.staged(), staged);
    assert!(!rebooted.has_changes());
    if arg & 0x10 != 0 {
        p.committed();
        model.changed = false;
    }
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

fn load_step(p: &mut Provisioner, model: &mut Model, record: Option<&[u8]>) {
    let result = p.load(record);
    model.open = None;
    model.changed = false;
    let Some(record) = record else {
        assert_eq!(result, Ok(()));
        assert_eq!(p.staged(), &CredentialSet::image());
        return;
    };
    match reference_load(record) {
        Err(expected) => {
            assert_eq!(result, Err(expected));
            assert_eq!(p.staged(), &CredentialSet::image());
        }
        Ok(entries) => {
            assert_eq!(result, Ok(()));
            for (kind, entry) in Kind::ALL.into_iter().zip(entries) {
                let expected = match entry {
                    None => Source::Image,
                    Some([]) => Source::Removed,
                    Some(der) => Source::Provisioned(der),
                };
                assert_eq!(p.staged().source(kind), expected);
            }
            let mut encoded = vec![0u8; MAX_RECORD];
            let len = p.staged().encode(&mut encoded).unwrap();
            assert_eq!(
                &encoded[..len],
                record,
                "a loaded record re-encodes differently"
            );
        }
    }
}

/// The invariants that hold after every step.
fn check(p: &Provisioner, model: &Model) {
    let staged = p.staged();
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
