//! The provisioning steps an operator takes, against a fake inspector: "certificates" are
//! `CERT:<key id>`, keys are `KEY:<key id>`, and a key matches a certificate with its id.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use base64::Engine as _;
use provisioning::base64::Base64Error;
use provisioning::{
    check_usable, describe, CredentialSet, ImageCredentials, Inspector, KeyType, Kind,
    ProvisionError, Provisioner, Source, StoreError, MAX_CA_BUNDLE, MAX_CERTIFICATE, MAX_KEY,
    MAX_RECORD, MAX_TRUST_ANCHORS,
};

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

/// Uploads `der` as `kind` in lines of `width` characters, as an operator pastes it.
fn upload(
    p: &mut Provisioner,
    kind: Kind,
    der: &[u8],
    width: usize,
) -> Result<Kind, ProvisionError> {
    p.begin(kind)?;
    let text = b64(der);
    for line in text.as_bytes().chunks(width) {
        p.data(std::str::from_utf8(line).unwrap())?;
    }
    p.end(&mut Fake)
}

fn commit(p: &mut Provisioner) -> Result<Vec<u8>, ProvisionError> {
    let mut record = [0u8; MAX_RECORD];
    let n = p.prepare_commit(&IMAGE, &mut Fake, &mut record)?;
    p.committed();
    Ok(record[..n].to_vec())
}

#[test]
fn a_new_ca_and_device_pair_is_committed_as_one_record_that_loads_back() {
    let mut p = Provisioner::new();
    assert_eq!(upload(&mut p, Kind::Ca, b"CERT:new-ca", 64), Ok(Kind::Ca));
    assert_eq!(
        upload(&mut p, Kind::DeviceCertificate, b"CERT:k2", 5),
        Ok(Kind::DeviceCertificate)
    );
    assert_eq!(
        upload(&mut p, Kind::DeviceKey, b"KEY:k2", 3),
        Ok(Kind::DeviceKey)
    );
    let record = commit(&mut p).unwrap();
    assert!(!p.has_changes());

    let mut rebooted = Provisioner::new();
    rebooted.load(Some(&record)).unwrap();
    let set = rebooted.staged();
    assert_eq!(set.effective(Kind::Ca, &IMAGE), Some(&b"CERT:new-ca"[..]));
    assert_eq!(
        set.effective(Kind::DeviceCertificate, &IMAGE),
        Some(&b"CERT:k2"[..])
    );
    assert_eq!(set.effective(Kind::DeviceKey, &IMAGE), Some(&b"KEY:k2"[..]));
}

#[test]
fn nothing_stored_means_the_image_credentials() {
    let mut p = Provisioner::new();
    p.load(None).unwrap();
    assert_eq!(p.staged().effective(Kind::Ca, &IMAGE), IMAGE.ca);
    assert_eq!(
        p.staged().effective(Kind::DeviceKey, &IMAGE),
        IMAGE.device_key
    );
    assert_eq!(commit(&mut p), Err(ProvisionError::NothingStaged));
}

#[test]
fn a_certificate_alone_that_does_not_match_the_key_is_refused_at_commit_and_kept_staged() {
    let mut p = Provisioner::new();
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
    let mut p = Provisioner::new();
    let before = p.staged().clone();
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
        let outcome = p.data(text).and_then(|()| p.end(&mut Fake).map(|_| ()));
        assert_eq!(outcome, Err(expected), "{text}");
        assert_eq!(p.staged(), &before, "{text}");
        assert!(!p.has_changes());
        // The upload is gone: a new one can start.
        assert_eq!(p.end(&mut Fake), Err(ProvisionError::NoUpload));
    }
    p.begin(Kind::Ca).unwrap();
    assert_eq!(p.end(&mut Fake), Err(ProvisionError::Empty));
    assert_eq!(
        upload(&mut p, Kind::Ca, &[b'C'; MAX_CERTIFICATE + 1], 64),
        Err(ProvisionError::TooLarge {
            limit: MAX_CERTIFICATE
        })
    );
    assert_eq!(p.staged(), &before);
}

#[test]
fn uploads_do_not_nest_and_steps_need_an_upload() {
    let mut p = Provisioner::new();
    assert_eq!(p.data("QUJD"), Err(ProvisionError::NoUpload));
    p.begin(Kind::Ca).unwrap();
    assert_eq!(
        p.begin(Kind::DeviceKey),
        Err(ProvisionError::UploadInProgress)
    );
    assert_eq!(p.delete(Kind::Ca), Err(ProvisionError::UploadInProgress));
    let mut record = [0u8; MAX_RECORD];
    assert_eq!(
        p.prepare_commit(&IMAGE, &mut Fake, &mut record),
        Err(ProvisionError::UploadInProgress)
    );
    assert!(p.abort_upload());
    assert!(!p.abort_upload());
}

#[test]
fn deleting_the_device_pair_turns_mutual_tls_off_but_deleting_half_is_refused() {
    let mut p = Provisioner::new();
    p.delete(Kind::DeviceKey).unwrap();
    assert_eq!(commit(&mut p), Err(ProvisionError::IncompletePair));
    p.delete(Kind::DeviceCertificate).unwrap();
    let record = commit(&mut p).unwrap();
    let mut rebooted = Provisioner::new();
    rebooted.load(Some(&record)).unwrap();
    assert_eq!(
        rebooted.staged().effective(Kind::DeviceCertificate, &IMAGE),
        None
    );
    assert_eq!(rebooted.staged().effective(Kind::DeviceKey, &IMAGE), None);
    assert_eq!(rebooted.staged().effective(Kind::Ca, &IMAGE), IMAGE.ca);
}

#[test]
fn the_ca_cannot_be_deleted_into_trusting_nothing_but_can_go_back_to_the_image() {
    let mut p = Provisioner::new();
    upload(&mut p, Kind::Ca, b"CERT:new-ca", 64).unwrap();
    commit(&mut p).unwrap();
    p.delete(Kind::Ca).unwrap();
    assert_eq!(commit(&mut p), Err(ProvisionError::NoCa));
    p.use_image(Kind::Ca).unwrap();
    let record = commit(&mut p).unwrap();
    let mut rebooted = Provisioner::new();
    rebooted.load(Some(&record)).unwrap();
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
fn abort_goes_back_to_the_stored_record() {
    let mut p = Provisioner::new();
    upload(&mut p, Kind::Ca, b"CERT:first", 64).unwrap();
    let record = commit(&mut p).unwrap();
    upload(&mut p, Kind::Ca, b"CERT:second", 64).unwrap();
    p.load(Some(&record)).unwrap();
    assert!(!p.has_changes());
    assert_eq!(
        p.staged().effective(Kind::Ca, &IMAGE),
        Some(&b"CERT:first"[..])
    );
}

#[test]
fn corrupted_records_are_refused_and_leave_the_image_set() {
    let mut p = Provisioner::new();
    upload(&mut p, Kind::Ca, b"CERT:new-ca", 64).unwrap();
    let record = commit(&mut p).unwrap();
    let mut bad_magic = record.clone();
    bad_magic[0] = b'X';
    let mut bad_length = record.clone();
    bad_length[5] = 0xff;
    let mut trailing = record.clone();
    trailing.push(0);
    for (bytes, name) in [
        (&bad_magic, "magic"),
        (&bad_length, "length"),
        (&trailing, "trailing"),
    ] {
        let mut q = Provisioner::new();
        assert!(q.load(Some(bytes)).is_err(), "{name}");
        assert_eq!(q.staged(), &CredentialSet::image(), "{name}");
    }
    for cut in 0..record.len() {
        let mut q = Provisioner::new();
        assert!(q.load(Some(&record[..cut])).is_err(), "cut at {cut}");
    }
}

#[test]
fn the_list_shows_origin_size_and_fingerprint_never_key_bytes() {
    let mut p = Provisioner::new();
    upload(&mut p, Kind::DeviceCertificate, b"CERT:k9", 64).unwrap();
    upload(&mut p, Kind::DeviceKey, b"KEY:k9", 64).unwrap();
    p.delete(Kind::Ca).unwrap();
    let mut lines = Vec::new();
    for kind in Kind::ALL {
        let mut line = String::new();
        describe(p.staged(), kind, &IMAGE, &mut Fake, &mut line).unwrap();
        lines.push(line);
    }
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
}

#[test]
fn a_certificate_with_a_key_this_build_cannot_use_is_refused_naming_the_key() {
    let mut p = Provisioner::new();
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
fn a_set_larger_than_the_flash_record_is_refused_at_commit_and_kept_staged() {
    let mut p = Provisioner::new();
    upload(
        &mut p,
        Kind::Ca,
        &[b"CERT:".as_slice(), &[b'c'; 1500]].concat(),
        64,
    )
    .unwrap();
    let mut record = [0u8; 1000];
    let refused = p
        .prepare_commit(&IMAGE, &mut Fake, &mut record)
        .unwrap_err();
    assert_eq!(
        refused,
        ProvisionError::SetTooLarge {
            len: 4 + 9 + 1505,
            limit: 1000
        }
    );
    assert!(p.has_changes());
    assert!(commit(&mut p).is_ok());
}

#[test]
fn several_roots_are_added_to_the_ca_bundle_and_stored_as_one_record() {
    let mut p = Provisioner::new();
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
    assert_eq!(p.end(&mut Fake), Ok(Kind::Ca));
    let record = commit(&mut p).unwrap();

    let mut rebooted = Provisioner::new();
    rebooted.load(Some(&record)).unwrap();
    let bundle = rebooted.staged().effective(Kind::Ca, &IMAGE).unwrap();
    let roots: Vec<&[u8]> = provisioning::bundle::certificates(bundle).collect();
    assert_eq!(roots, [&first[..], &second[..]]);

    let mut listed = String::new();
    describe(rebooted.staged(), Kind::Ca, &IMAGE, &mut Fake, &mut listed).unwrap();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("ca: provisioned, "), "{listed}");
    assert!(lines[1].starts_with("ca 2: provisioned, "), "{listed}");

    // One upload may also carry a bundle; `begin` replaces what was staged.
    let both = [second.clone(), third.clone()].concat();
    upload(&mut rebooted, Kind::Ca, &both, 64).unwrap();
    let bundle = rebooted.staged().effective(Kind::Ca, &IMAGE).unwrap();
    assert_eq!(bundle, &both[..]);
}

#[test]
fn a_bundle_refuses_a_bad_root_more_roots_or_bytes_than_kept_and_adds_to_nothing_else() {
    let mut p = Provisioner::new();
    // Nothing provisioned to add to, and only the CA takes several.
    assert_eq!(p.add(Kind::Ca), Err(ProvisionError::NoProvisionedCa));
    assert_eq!(
        p.add(Kind::DeviceCertificate),
        Err(ProvisionError::OnlyCaAdds)
    );
    upload(&mut p, Kind::Ca, &framed("root-1", 0), 64).unwrap();
    let staged = p.staged().clone();

    // A bundle whose second item is not a certificate is refused whole.
    let bad = [framed("root-2", 0), b"\x30\x03KEY".to_vec()].concat();
    assert!(matches!(
        upload(&mut p, Kind::Ca, &bad, 64),
        Err(ProvisionError::NotACertificate { .. })
    ));
    assert_eq!(p.staged(), &staged);

    // Up to MAX_TRUST_ANCHORS roots; one more is refused and changes nothing.
    for n in 2..=MAX_TRUST_ANCHORS {
        p.add(Kind::Ca).unwrap();
        p.data(&b64(&framed(&format!("root-{n}"), 0))).unwrap();
        p.end(&mut Fake).unwrap();
    }
    let full = p.staged().clone();
    p.add(Kind::Ca).unwrap();
    p.data(&b64(&framed("one-too-many", 0))).unwrap();
    assert_eq!(
        p.end(&mut Fake),
        Err(ProvisionError::BundleFull {
            limit: MAX_CA_BUNDLE
        })
    );
    assert_eq!(p.staged(), &full);

    // Bytes: a root near the upload limit and one that takes the bundle past its size.
    let mut q = Provisioner::new();
    let big = |id| framed(id, MAX_CERTIFICATE - 20 - id.len());
    upload(&mut q, Kind::Ca, &big("a"), 64).unwrap();
    q.add(Kind::Ca).unwrap();
    q.data(&b64(&framed("b", MAX_CA_BUNDLE - MAX_CERTIFICATE + 10)))
        .unwrap();
    assert_eq!(
        q.end(&mut Fake),
        Err(ProvisionError::BundleFull {
            limit: MAX_CA_BUNDLE
        })
    );
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
    let most = root.repeat(MAX_TRUST_ANCHORS);
    let mut p = Provisioner::new();
    p.load(Some(&record_with_ca(&most))).unwrap();
    assert_eq!(
        p.staged().effective(Kind::Ca, &IMAGE),
        Some(most.as_slice())
    );

    let too_many = root.repeat(MAX_TRUST_ANCHORS + 1);
    assert_eq!(
        p.load(Some(&record_with_ca(&too_many))),
        Err(StoreError::TooManyRoots)
    );
    assert_eq!(p.staged().effective(Kind::Ca, &IMAGE), IMAGE.ca);
}
