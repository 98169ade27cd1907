//! The provisioning steps an operator takes, against a fake inspector: "certificates" are
//! `CERT:<key id>`, keys are `KEY:<key id>`, and a key matches a certificate with its id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "harness/mod.rs"]
mod harness;

use base64::Engine as _;
use harness::MemStore;
use provisioning::base64::Base64Error;
use provisioning::store::{migrate, read_index, read_set, MigrateError};
use provisioning::{
    check_usable, describe, CredentialSet, Entry, ImageCredentials, Inspector, KeyType, Kind,
    LoadError, ProvisionError, Provisioner, Record, Slot, Source, StorageError, StoreError,
    MAX_CA_BUNDLE, MAX_CERTIFICATE, MAX_KEY, MAX_TRUST_ANCHORS,
};
use std::ops::{Deref, DerefMut};

/// A fake certificate framed as DER (a SEQUENCE around `CERT:<id>`), as bundles need.
fn framed(id: &str, pad: usize) -> Vec<u8> {
    let body = [format!("CERT:{id}").as_bytes(), &vec![b'.'; pad]].concat();
    let mut der = vec![0x30, 0x82, (body.len() >> 8) as u8, body.len() as u8];
    der.extend(body);
    der
}

/// What a framed fake certificate holds.
fn body(der: &[u8]) -> &[u8] {
    match der {
        [0x30, 0x82, _, _, rest @ ..] => rest,
        other => other,
    }
}

struct Fake;

impl Inspector for Fake {
    fn parse_certificate(&mut self, der: &[u8]) -> Result<(), i32> {
        if body(der).starts_with(b"CERT:") {
            Ok(())
        } else {
            Err(-0x2180)
        }
    }
    fn parse_private_key(&mut self, der: &[u8]) -> Result<(), i32> {
        if der.starts_with(b"KEY:") {
            Ok(())
        } else {
            Err(-0x3D00)
        }
    }
    fn supports(&mut self, key: KeyType) -> Result<(), &'static str> {
        match key {
            KeyType::P256 => Ok(()),
            _ => Err("this build takes only ECDSA P-256"),
        }
    }
    fn key_matches_certificate(&mut self, certificate: &[u8], key: &[u8]) -> bool {
        certificate.strip_prefix(b"CERT:") == key.strip_prefix(b"KEY:")
    }
    fn fingerprint(&mut self, _kind: Kind, der: &[u8]) -> Option<[u8; 32]> {
        let mut digest = [0u8; 32];
        digest[0] = der.len() as u8;
        Some(digest)
    }
}

const IMAGE: ImageCredentials<'static> = ImageCredentials {
    ca: Some(b"CERT:image-ca"),
    device_certificate: Some(b"CERT:image-device"),
    device_key: Some(b"KEY:image-device"),
};

fn b64(der: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(der)
}

/// A device's provisioning session and its flash.
struct Bench {
    p: Provisioner,
    flash: MemStore,
}

impl Deref for Bench {
    type Target = Provisioner;
    fn deref(&self) -> &Provisioner {
        &self.p
    }
}

impl DerefMut for Bench {
    fn deref_mut(&mut self) -> &mut Provisioner {
        &mut self.p
    }
}

impl Bench {
    fn new() -> Self {
        Bench {
            p: Provisioner::new(),
            flash: MemStore::default(),
        }
    }

    fn end(&mut self) -> Result<Kind, ProvisionError> {
        self.p.end(&mut Fake, &mut self.flash)
    }

    fn add(&mut self, kind: Kind) -> Result<(), ProvisionError> {
        self.p.add(kind, &mut self.flash)
    }

    fn commit(&mut self) -> Result<(), ProvisionError> {
        self.p.commit(&IMAGE, &mut Fake, &mut self.flash)
    }

    /// The staged set, read back from flash.
    fn staged(&mut self) -> CredentialSet {
        let mut set = CredentialSet::image();
        let index = *self.p.staged();
        read_set(&mut self.flash, &index, &mut set).unwrap();
        set
    }

    /// The same flash after a reboot: the committed set, staged changes gone.
    fn reboot(&self) -> Bench {
        let mut rebooted = Bench {
            p: Provisioner::new(),
            flash: self.flash.clone(),
        };
        rebooted.p.load(&mut rebooted.flash).unwrap();
        rebooted
    }

    fn list(&mut self) -> Vec<String> {
        let mut out = String::new();
        self.p
            .list(&IMAGE, &mut Fake, &mut self.flash, &mut out)
            .unwrap();
        out.lines().map(str::to_owned).collect()
    }
}

/// Uploads `der` as `kind` in lines of `width` characters, as an operator pastes it.
fn upload(p: &mut Bench, kind: Kind, der: &[u8], width: usize) -> Result<Kind, ProvisionError> {
    p.begin(kind)?;
    let text = b64(der);
    for line in text.as_bytes().chunks(width) {
        p.data(std::str::from_utf8(line).unwrap())?;
    }
    p.end()
}

fn commit(p: &mut Bench) -> Result<(), ProvisionError> {
    p.commit()
}

#[test]
fn a_new_ca_and_device_pair_is_committed_as_one_record_that_loads_back() {
    let mut p = Bench::new();
    assert_eq!(upload(&mut p, Kind::Ca, b"CERT:new-ca", 64), Ok(Kind::Ca));
    assert_eq!(
        upload(&mut p, Kind::DeviceCertificate, b"CERT:k2", 5),
        Ok(Kind::DeviceCertificate)
    );
    assert_eq!(
        upload(&mut p, Kind::DeviceKey, b"KEY:k2", 3),
        Ok(Kind::DeviceKey)
    );
    commit(&mut p).unwrap();
    assert!(!p.has_changes());

    let set = p.reboot().staged();
    assert_eq!(set.effective(Kind::Ca, &IMAGE), Some(&b"CERT:new-ca"[..]));
    assert_eq!(
        set.effective(Kind::DeviceCertificate, &IMAGE),
        Some(&b"CERT:k2"[..])
    );
    assert_eq!(set.effective(Kind::DeviceKey, &IMAGE), Some(&b"KEY:k2"[..]));
}

#[test]
fn nothing_stored_means_the_image_credentials() {
    let mut p = Bench::new();
    let mut flash = MemStore::default();
    p.load(&mut flash).unwrap();
    assert_eq!(p.staged().effective(Kind::Ca, &IMAGE), IMAGE.ca);
    assert_eq!(
        p.staged().effective(Kind::DeviceKey, &IMAGE),
        IMAGE.device_key
    );
    assert_eq!(commit(&mut p), Err(ProvisionError::NothingStaged));
}

#[test]
fn a_certificate_alone_that_does_not_match_the_key_is_refused_at_commit_and_kept_staged() {
    let mut p = Bench::new();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:other", 64).unwrap();
    assert_eq!(
        commit(&mut p),
        Err(ProvisionError::KeyDoesNotMatchCertificate)
    );
    assert!(p.has_changes(), "the staged change waits for its key");
    upload(&mut p, Kind::DeviceKey, b"KEY:other", 64).unwrap();
    assert!(commit(&mut p).is_ok());
}

#[test]
fn each_malformed_upload_is_refused_and_changes_nothing() {
    let mut p = Bench::new();
    let before = p.staged();
    let cases: [(Kind, &str, ProvisionError); 6] = [
        (
            Kind::Ca,
            "not base64!",
            ProvisionError::BadBase64(Base64Error::InvalidCharacter),
        ),
        (
            Kind::Ca,
            "QUJD=",
            ProvisionError::BadBase64(Base64Error::BadPadding),
        ),
        (
            Kind::Ca,
            "QUJDRA",
            ProvisionError::BadBase64(Base64Error::Truncated),
        ),
        (
            Kind::Ca,
            &b64(b"-----BEGIN CERTIFICATE-----"),
            ProvisionError::NotACertificate { code: -0x2180 },
        ),
        (
            Kind::DeviceKey,
            &b64(b"CERT:k"),
            ProvisionError::NotAPrivateKey { code: -0x3D00 },
        ),
        (
            Kind::DeviceKey,
            &b64(&[b'K'; MAX_KEY + 1]),
            ProvisionError::TooLarge { limit: MAX_KEY },
        ),
    ];
    for (kind, text, expected) in cases {
        p.begin(kind).unwrap();
        let outcome = p.data(text).and_then(|()| p.end().map(|_| ()));
        assert_eq!(outcome, Err(expected), "{text}");
        assert_eq!(p.staged(), before, "{text}");
        assert!(!p.has_changes());
        // The upload is gone: a new one can start.
        assert_eq!(p.end(), Err(ProvisionError::NoUpload));
    }
    p.begin(Kind::Ca).unwrap();
    assert_eq!(p.end(), Err(ProvisionError::Empty));
    assert_eq!(
        upload(&mut p, Kind::Ca, &[b'C'; MAX_CERTIFICATE + 1], 64),
        Err(ProvisionError::TooLarge {
            limit: MAX_CERTIFICATE
        })
    );
    assert_eq!(p.staged(), before);
}

#[test]
fn uploads_do_not_nest_and_steps_need_an_upload() {
    let mut p = Bench::new();
    assert_eq!(p.data("QUJD"), Err(ProvisionError::NoUpload));
    p.begin(Kind::Ca).unwrap();
    assert_eq!(
        p.begin(Kind::DeviceKey),
        Err(ProvisionError::UploadInProgress)
    );
    assert_eq!(p.delete(Kind::Ca), Err(ProvisionError::UploadInProgress));
    assert_eq!(p.commit(), Err(ProvisionError::UploadInProgress));
    assert!(p.abort_upload());
    assert!(!p.abort_upload());
}

#[test]
fn deleting_the_device_pair_turns_mutual_tls_off_but_deleting_half_is_refused() {
    let mut p = Bench::new();
    p.delete(Kind::DeviceKey).unwrap();
    assert_eq!(commit(&mut p), Err(ProvisionError::IncompletePair));
    p.delete(Kind::DeviceCertificate).unwrap();
    commit(&mut p).unwrap();
    let mut rebooted = p.reboot();
    assert_eq!(
        rebooted.staged().effective(Kind::DeviceCertificate, &IMAGE),
        None
    );
    assert_eq!(rebooted.staged().effective(Kind::DeviceKey, &IMAGE), None);
    assert_eq!(rebooted.staged().effective(Kind::Ca, &IMAGE), IMAGE.ca);
}

#[test]
fn the_ca_cannot_be_deleted_into_trusting_nothing_but_can_go_back_to_the_image() {
    let mut p = Bench::new();
    upload(&mut p, Kind::Ca, b"CERT:new-ca", 64).unwrap();
    commit(&mut p).unwrap();
    p.delete(Kind::Ca).unwrap();
    assert_eq!(commit(&mut p), Err(ProvisionError::NoCa));
    p.use_image(Kind::Ca).unwrap();
    commit(&mut p).unwrap();
    let mut rebooted = p.reboot();
    assert_eq!(rebooted.staged().source(Kind::Ca), Source::Image);
}

#[test]
fn an_image_without_device_credentials_accepts_a_provisioned_pair() {
    let image = ImageCredentials {
        ca: Some(b"CERT:ca"),
        ..ImageCredentials::default()
    };
    let mut set = CredentialSet::image();
    assert_eq!(check_usable(&set, &image, &mut Fake), Ok(()));
    set.set(Kind::DeviceCertificate, Source::Provisioned(b"CERT:d"))
        .unwrap();
    assert_eq!(
        check_usable(&set, &image, &mut Fake),
        Err(ProvisionError::IncompletePair)
    );
    set.set(Kind::DeviceKey, Source::Provisioned(b"KEY:d"))
        .unwrap();
    assert_eq!(check_usable(&set, &image, &mut Fake), Ok(()));
}

#[test]
fn abort_goes_back_to_the_committed_set() {
    let mut p = Bench::new();
    upload(&mut p, Kind::Ca, b"CERT:first", 64).unwrap();
    commit(&mut p).unwrap();
    upload(&mut p, Kind::Ca, b"CERT:second", 64).unwrap();
    p.abort();
    assert!(!p.has_changes());
    assert_eq!(
        p.staged().effective(Kind::Ca, &IMAGE),
        Some(&b"CERT:first"[..])
    );
}

#[test]
fn a_corrupted_index_is_refused_at_boot_and_leaves_the_image_set() {
    let mut p = Bench::new();
    upload(&mut p, Kind::Ca, b"CERT:new-ca", 64).unwrap();
    commit(&mut p).unwrap();
    let index = p.flash.get(Record::Index).unwrap().clone();
    let mut bad_magic = index.clone();
    bad_magic[0] = b'X';
    let mut bad_length = index.clone();
    bad_length[7] = 0xff;
    let mut bad_source = index.clone();
    bad_source[4] = 7;
    let mut trailing = index.clone();
    trailing.push(0);
    let cuts = (0..index.len()).map(|cut| (index[..cut].to_vec(), "cut"));
    for (bytes, name) in [
        (bad_magic, "magic"),
        (bad_length, "length"),
        (bad_source, "source"),
        (trailing, "trailing"),
    ]
    .into_iter()
    .chain(cuts)
    {
        let mut flash = p.flash.clone();
        *flash.get_mut(Record::Index).unwrap() = bytes;
        let mut q = Provisioner::new();
        assert!(q.load(&mut flash).is_err(), "{name}");
        assert_eq!(*q.staged(), provisioning::Index::IMAGE, "{name}");
    }
}

#[test]
fn a_credential_record_torn_rotted_or_missing_is_named_not_used() {
    let mut p = Bench::new();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:k1", 64).unwrap();
    upload(&mut p, Kind::DeviceKey, b"KEY:k1", 64).unwrap();
    commit(&mut p).unwrap();
    let index = read_index(&mut p.flash).unwrap();
    let Entry::Provisioned { slot, .. } = index.entry(Kind::DeviceKey) else {
        panic!("the key is provisioned");
    };
    let key = Record::Credential(Kind::DeviceKey, slot);

    let mut rotted = p.flash.clone();
    rotted.get_mut(key).unwrap()[2] ^= 0x04;
    let mut torn = p.flash.clone();
    torn.get_mut(key).unwrap().pop();
    let mut missing = p.flash.clone();
    provisioning::Store::delete(&mut missing, key).unwrap();
    for (mut flash, expected) in [
        (rotted, LoadError::Corrupt(Kind::DeviceKey)),
        (torn, LoadError::Corrupt(Kind::DeviceKey)),
        (missing, LoadError::Missing(Kind::DeviceKey)),
    ] {
        let mut set = CredentialSet::image();
        assert_eq!(read_set(&mut flash, &index, &mut set), Err(expected));
        assert!(expected.to_string().contains("key record"), "{expected}");
    }
}

#[test]
fn staging_never_writes_the_records_the_committed_index_points_at() {
    let mut p = Bench::new();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:k1", 64).unwrap();
    upload(&mut p, Kind::DeviceKey, b"KEY:k1", 64).unwrap();
    commit(&mut p).unwrap();
    for round in 2..6 {
        let committed = p.flash.clone();
        let index = read_index(&mut p.flash).unwrap();
        let id = format!("k{round}");
        upload(
            &mut p,
            Kind::DeviceCertificate,
            format!("CERT:{id}").as_bytes(),
            64,
        )
        .unwrap();
        upload(&mut p, Kind::DeviceKey, format!("KEY:{id}").as_bytes(), 64).unwrap();
        for kind in [Kind::DeviceCertificate, Kind::DeviceKey] {
            let Entry::Provisioned { slot, .. } = index.entry(kind) else {
                panic!("provisioned");
            };
            let record = Record::Credential(kind, slot);
            assert_eq!(p.flash.get(record), committed.get(record), "round {round}");
        }
        assert_eq!(p.flash.get(Record::Index), committed.get(Record::Index));
        commit(&mut p).unwrap();
        for kind in [Kind::DeviceCertificate, Kind::DeviceKey] {
            let Entry::Provisioned { slot, .. } = index.entry(kind) else {
                panic!("provisioned");
            };
            assert_eq!(
                p.flash.get(Record::Credential(kind, slot)),
                None,
                "the replaced {} is deleted",
                kind.name()
            );
        }
        let set = p.reboot().staged();
        assert_eq!(
            set.effective(Kind::DeviceKey, &IMAGE),
            Some(format!("KEY:{id}").as_bytes())
        );
    }
}

/// Every write of a staging and commit stopped at each point, as a power cut stops it (NVS
/// writes a record whole or not at all): after a reboot the set is the old one or the new
/// one, whole, and the new one only once the index is written.
#[test]
fn a_power_cut_at_any_write_of_a_change_leaves_the_old_or_the_new_set() {
    let mut p = Bench::new();
    upload(&mut p, Kind::Ca, b"CERT:ca-1", 64).unwrap();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:k1", 64).unwrap();
    upload(&mut p, Kind::DeviceKey, b"KEY:k1", 64).unwrap();
    commit(&mut p).unwrap();
    let old = p.reboot().staged();
    let change = |p: &mut Bench| -> Result<(), ProvisionError> {
        upload(p, Kind::Ca, b"CERT:ca-2", 64)?;
        upload(p, Kind::DeviceCertificate, b"CERT:k2", 64)?;
        upload(p, Kind::DeviceKey, b"KEY:k2", 64)?;
        p.commit()
    };
    let mut whole = p.reboot();
    let before = whole.flash.writes.len();
    change(&mut whole).unwrap();
    let new = whole.reboot().staged();
    let writes = whole.flash.writes.len() - before;
    assert_eq!(
        whole.flash.writes[before..],
        [
            Record::Credential(Kind::Ca, Slot::B),
            Record::Credential(Kind::DeviceCertificate, Slot::B),
            Record::Credential(Kind::DeviceKey, Slot::B),
            Record::Index,
            Record::Credential(Kind::Ca, Slot::A),
            Record::Credential(Kind::DeviceCertificate, Slot::A),
            Record::Credential(Kind::DeviceKey, Slot::A),
        ],
        "three records, the index, then the three records it replaced deleted"
    );
    for cut in 0..=writes {
        let mut device = p.reboot();
        device.flash.fail_after = Some(device.flash.writes.len() + cut);
        let outcome = change(&mut device);
        // The commit answers once the index is written; the deletes after it are tidying.
        assert_eq!(outcome.is_ok(), cut >= 4, "cut after {cut} writes");
        device.flash.fail_after = None;
        let after = device.reboot().staged();
        let expected = if cut >= 4 { &new } else { &old };
        assert_eq!(&after, expected, "cut after {cut} writes");
    }
}

#[test]
fn a_failed_flash_write_leaves_the_staged_and_the_committed_set_as_they_were() {
    let mut p = Bench::new();
    upload(&mut p, Kind::Ca, b"CERT:ca-1", 64).unwrap();
    p.flash.fail_after = Some(p.flash.writes.len());
    let staged = p.staged();
    let refused = upload(&mut p, Kind::Ca, b"CERT:ca-2", 64).unwrap_err();
    assert_eq!(refused, ProvisionError::Storage(StorageError(-5)));
    assert!(refused
        .to_string()
        .starts_with("not stored: the flash write failed"));
    assert_eq!(p.staged(), staged);
    assert_eq!(
        commit(&mut p),
        Err(ProvisionError::Storage(StorageError(-5)))
    );
    assert!(p.has_changes(), "kept staged for another try");
    assert_eq!(*p.committed(), provisioning::Index::IMAGE);
    p.flash.fail_after = None;
    commit(&mut p).unwrap();
    assert_eq!(
        p.reboot().staged().effective(Kind::Ca, &IMAGE),
        Some(&b"CERT:ca-1"[..])
    );
}

#[test]
fn the_list_shows_origin_size_and_fingerprint_never_key_bytes() {
    let mut p = Bench::new();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:k9", 64).unwrap();
    upload(&mut p, Kind::DeviceKey, b"KEY:k9", 64).unwrap();
    p.delete(Kind::Ca).unwrap();
    let lines = p.list();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "ca: none (deleted)");
    assert!(
        lines[1].starts_with("cert: provisioned, 7 bytes, sha256 07000000"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("key: provisioned, 6 bytes, sha256 06000000"),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with(" (public key)"));
    assert!(!lines[2].contains("k9"));

    // Refused while an upload is open: its buffer is the one the records are read into.
    p.begin(Kind::Ca).unwrap();
    let mut out = String::new();
    assert_eq!(
        p.p.list(&IMAGE, &mut Fake, &mut p.flash, &mut out),
        Err(ProvisionError::UploadInProgress)
    );
}

#[test]
fn a_certificate_with_a_key_this_build_cannot_use_is_refused_naming_the_key() {
    let mut p = Bench::new();
    let root = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rsa4096-root.crt.der"
    ))
    .unwrap();
    let refused = upload(&mut p, Kind::Ca, &root, 64).unwrap_err();
    assert_eq!(
        refused,
        ProvisionError::UnsupportedKey {
            key: KeyType::Rsa { bits: 4096 },
            accepted: "this build takes only ECDSA P-256"
        }
    );
    assert_eq!(
        refused.to_string(),
        "its key is RSA-4096; this build takes only ECDSA P-256"
    );
    assert!(!p.has_changes());
}

#[test]
fn several_roots_are_added_to_the_ca_bundle_and_stored_as_one_record() {
    let mut p = Bench::new();
    let (first, second, third) = (
        framed("root-1", 0),
        framed("root-2", 0),
        framed("root-3", 0),
    );
    upload(&mut p, Kind::Ca, &first, 64).unwrap();
    p.add(Kind::Ca).unwrap();
    for line in b64(&second).as_bytes().chunks(64) {
        p.data(std::str::from_utf8(line).unwrap()).unwrap();
    }
    assert_eq!(p.end(), Ok(Kind::Ca));
    commit(&mut p).unwrap();

    let mut rebooted = p.reboot();
    let set = rebooted.staged();
    let bundle = set.effective(Kind::Ca, &IMAGE).unwrap();
    let roots: Vec<&[u8]> = provisioning::bundle::certificates(bundle).collect();
    assert_eq!(roots, [&first[..], &second[..]]);

    let mut listed = String::new();
    describe(
        set.source(Kind::Ca),
        Kind::Ca,
        &IMAGE,
        &mut Fake,
        &mut listed,
    )
    .unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("ca: provisioned, "), "{listed}");
    assert!(lines[1].starts_with("ca 2: provisioned, "), "{listed}");

    // One upload may also carry a bundle; `begin` replaces what was staged.
    let both = [second.clone(), third.clone()].concat();
    upload(&mut rebooted, Kind::Ca, &both, 64).unwrap();
    let set = rebooted.staged();
    assert_eq!(set.effective(Kind::Ca, &IMAGE).unwrap(), &both[..]);
}

#[test]
fn a_bundle_refuses_a_bad_root_more_roots_or_bytes_than_kept_and_adds_to_nothing_else() {
    let mut p = Bench::new();
    // Nothing provisioned to add to, and only the CA takes several.
    assert_eq!(p.add(Kind::Ca), Err(ProvisionError::NoProvisionedCa));
    assert_eq!(
        p.add(Kind::DeviceCertificate),
        Err(ProvisionError::OnlyCaAdds)
    );
    upload(&mut p, Kind::Ca, &framed("root-1", 0), 64).unwrap();
    let staged = p.staged();

    // A bundle whose second item is not a certificate is refused whole.
    let bad = [framed("root-2", 0), b"\x30\x03KEY".to_vec()].concat();
    assert!(matches!(
        upload(&mut p, Kind::Ca, &bad, 64),
        Err(ProvisionError::NotACertificate { .. })
    ));
    assert_eq!(p.staged(), staged);

    // Up to MAX_TRUST_ANCHORS roots; one more is refused and changes nothing.
    for n in 2..=MAX_TRUST_ANCHORS {
        p.add(Kind::Ca).unwrap();
        p.data(&b64(&framed(&format!("root-{n}"), 0))).unwrap();
        p.end().unwrap();
    }
    let full = p.staged();
    p.add(Kind::Ca).unwrap();
    p.data(&b64(&framed("one-too-many", 0))).unwrap();
    assert_eq!(
        p.end(),
        Err(ProvisionError::BundleFull {
            limit: MAX_CA_BUNDLE
        })
    );
    assert_eq!(p.staged(), full);

    // Bytes: a root near the upload limit and one that takes the bundle past its size.
    let mut q = Bench::new();
    let big = |id| framed(id, MAX_CERTIFICATE - 20 - id.len());
    upload(&mut q, Kind::Ca, &big("a"), 64).unwrap();
    q.add(Kind::Ca).unwrap();
    // Refused as soon as the bundle would pass its size, the upload dropped.
    assert_eq!(
        q.data(&b64(&framed("b", MAX_CA_BUNDLE - MAX_CERTIFICATE + 10))),
        Err(ProvisionError::BundleFull {
            limit: MAX_CA_BUNDLE
        })
    );
    assert_eq!(q.upload(), None);
    let refused = ProvisionError::BundleFull {
        limit: MAX_CA_BUNDLE,
    }
    .to_string();
    assert!(
        refused.contains("at most 4 roots and 3072 bytes"),
        "{refused}"
    );
}

/// A stored record as the firmware writes it: a provisioned CA bundle, the image's device
/// certificate and key.
fn record_with_ca(bundle: &[u8]) -> std::vec::Vec<u8> {
    let len = u16::try_from(bundle.len()).unwrap().to_le_bytes();
    [
        b"CRD1".as_slice(),
        &[1, len[0], len[1]],
        bundle,
        &[0, 0, 0, 0, 0, 0],
    ]
    .concat()
}

#[test]
fn a_stored_bundle_of_more_roots_than_the_device_registers_is_refused() {
    let root = b"\x30\x03abc";
    let mut flash = MemStore::default();
    let mut set = CredentialSet::image();
    let most = root.repeat(MAX_TRUST_ANCHORS);
    let index = migrate(&mut flash, &record_with_ca(&most), &mut set).unwrap();
    assert_eq!(read_set(&mut flash, &index, &mut set), Ok(()));
    assert_eq!(set.effective(Kind::Ca, &IMAGE), Some(most.as_slice()));

    // Written past the index's back: a record of more roots than the device registers.
    let too_many = root.repeat(MAX_TRUST_ANCHORS + 1);
    *flash
        .get_mut(Record::Credential(Kind::Ca, Slot::A))
        .unwrap() = too_many.clone();
    let mut index_with = index;
    index_with.set(
        Kind::Ca,
        Entry::Provisioned {
            slot: Slot::A,
            len: too_many.len() as u16,
            crc: provisioning::store::crc32(&too_many),
        },
    );
    assert_eq!(
        read_set(&mut flash, &index_with, &mut set),
        Err(LoadError::TooManyRoots)
    );
    assert_eq!(
        migrate(
            &mut MemStore::default(),
            &record_with_ca(&too_many),
            &mut set
        ),
        Err(MigrateError::Unreadable(StoreError::TooManyRoots))
    );
}

#[test]
fn a_set_stored_in_the_former_one_record_format_is_migrated_whole() {
    let mut old = CredentialSet::image();
    old.set(Kind::Ca, Source::Provisioned(b"CERT:old-ca"))
        .unwrap();
    old.set(Kind::DeviceCertificate, Source::Removed).unwrap();
    old.set(Kind::DeviceKey, Source::Removed).unwrap();
    let mut record = vec![0u8; provisioning::MAX_RECORD];
    let len = old.encode(&mut record).unwrap();

    let mut flash = MemStore::default();
    let mut scratch = CredentialSet::image();
    let index = migrate(&mut flash, &record[..len], &mut scratch).unwrap();
    assert_eq!(read_index(&mut flash), Ok(index));
    assert_eq!(
        flash.writes,
        [Record::Credential(Kind::Ca, Slot::A), Record::Index],
        "the credential before the index that points at it"
    );
    let mut p = Provisioner::new();
    p.load(&mut flash).unwrap();
    let mut set = CredentialSet::image();
    read_set(&mut flash, p.committed(), &mut set).unwrap();
    assert_eq!(set, old);

    // A record that does not parse is not migrated, and nothing is written.
    let mut flash = MemStore::default();
    assert!(migrate(&mut flash, &record[..len - 1], &mut scratch).is_err());
    assert!(flash.writes.is_empty());
}

#[test]
fn a_record_failing_its_data_crc_is_named_in_words() {
    let unreadable = LoadError::Unreadable(Kind::DeviceCertificate, StorageError(-5)).to_string();
    assert!(
        unreadable.starts_with("the cert record is unreadable"),
        "{unreadable}"
    );
    assert!(unreadable.contains("failed its data CRC"), "{unreadable}");
    assert_eq!(StorageError(-28).to_string(), "flash error -28");
}

#[test]
fn a_key_made_on_the_device_and_its_certificate_are_staged_without_upload_and_committed_as_a_pair()
{
    let mut p = Bench::new();
    p.p.stage(Kind::DeviceKey, b"KEY:born", &mut Fake, &mut p.flash)
        .unwrap();
    // The key alone does not make a set.
    assert_eq!(p.commit(), Err(ProvisionError::KeyDoesNotMatchCertificate));
    let mut buf = [0u8; 64];
    let staged =
        p.p.staged_credential(Kind::DeviceKey, &IMAGE, &mut p.flash, &mut buf)
            .unwrap();
    assert_eq!(staged, b"KEY:born");
    p.p.stage(
        Kind::DeviceCertificate,
        b"CERT:born",
        &mut Fake,
        &mut p.flash,
    )
    .unwrap();
    p.commit().unwrap();
    let stored = p.reboot().staged();
    assert_eq!(
        stored.source(Kind::DeviceKey),
        Source::Provisioned(b"KEY:born")
    );
    assert_eq!(
        stored.source(Kind::DeviceCertificate),
        Source::Provisioned(b"CERT:born")
    );
}

#[test]
fn staging_without_upload_gets_the_uploads_checks_and_keeps_the_committed_records() {
    let mut p = Bench::new();
    assert_eq!(
        p.p.stage(
            Kind::DeviceCertificate,
            b"not a certificate",
            &mut Fake,
            &mut p.flash
        ),
        Err(ProvisionError::NotACertificate { code: -0x2180 })
    );
    assert_eq!(
        p.p.stage(Kind::DeviceKey, b"KEY", &mut Fake, &mut p.flash),
        Err(ProvisionError::NotAPrivateKey { code: -0x3D00 })
    );
    let oversized = [b"KEY:".as_slice(), &[b'.'; MAX_KEY]].concat();
    assert_eq!(
        p.p.stage(Kind::DeviceKey, &oversized, &mut Fake, &mut p.flash),
        Err(ProvisionError::TooLarge { limit: MAX_KEY })
    );
    assert_eq!(
        p.p.stage(Kind::Ca, &framed("ca", 0), &mut Fake, &mut p.flash),
        Err(ProvisionError::UnknownKind)
    );
    assert!(!p.has_changes());
    p.p.stage(Kind::DeviceKey, b"KEY:one", &mut Fake, &mut p.flash)
        .unwrap();
    p.p.stage(
        Kind::DeviceCertificate,
        b"CERT:one",
        &mut Fake,
        &mut p.flash,
    )
    .unwrap();
    p.commit().unwrap();
    // The renewal's key goes beside the committed one, which stays whole until the commit.
    p.p.stage(Kind::DeviceKey, b"KEY:two", &mut Fake, &mut p.flash)
        .unwrap();
    assert_eq!(
        p.reboot().staged().source(Kind::DeviceKey),
        Source::Provisioned(b"KEY:one")
    );
    // An upload open refuses it: the upload buffer is in use.
    p.begin(Kind::Ca).unwrap();
    assert_eq!(
        p.p.stage(Kind::DeviceKey, b"KEY:three", &mut Fake, &mut p.flash),
        Err(ProvisionError::UploadInProgress)
    );
}
