//! `x509::certificate_facts` against what `openssl x509` reads from the same certificates:
//! the committed development set and certificates openssl makes here, among them one issued
//! by the development CA for a request `csr` wrote.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod openssl;

use std::path::PathBuf;
use std::process::Command;

use fleet_provisioning::csr::{csr_der, subject_public_key_info, Subject, MAX_CSR_DER};
use fleet_provisioning::issued::{self, Expected};
use fleet_provisioning::x509::{certificate_facts, CertificateFacts, Part, X509Error};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

fn dev_set(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../certs/dev-only-insecure")
        .join(file)
}

/// What openssl reads from a certificate (DER).
struct Seen {
    public_key: Vec<u8>,
    common_name: Option<String>,
    not_before: u64,
    not_after: u64,
}

/// Seconds since 1970 of an ISO 8601 date, as GNU `date` counts them.
fn unix_seconds(iso: &str) -> u64 {
    let output = Command::new("date")
        .args(["-u", "-d", iso, "+%s"])
        .output()
        .unwrap();
    assert!(output.status.success(), "date -d {iso}: {output:?}");
    String::from_utf8(output.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn seen_by_openssl(der: &[u8]) -> Seen {
    let x509 = ["x509", "-inform", "DER", "-noout"];
    let pem_key = openssl::ok(&[&x509[..], &["-pubkey"]].concat(), der);
    let public_key = openssl::ok(&["pkey", "-pubin", "-outform", "DER"], &pem_key);
    let dates = ["-dates", "-dateopt", "iso_8601"];
    let dates = openssl::text(&[&x509[..], &dates].concat(), der);
    let date = |name: &str| {
        let line = dates.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        unix_seconds(line)
    };
    let subject = ["-subject", "-nameopt", "RFC2253,-esc_msb"];
    let subject = openssl::text(&[&x509[..], &subject].concat(), der);
    let common_name = subject
        .trim_end()
        .trim_start_matches("subject=")
        .split(',')
        .find_map(|part| part.strip_prefix("CN="))
        .map(str::to_owned);
    Seen {
        public_key,
        common_name,
        not_before: date("notBefore="),
        not_after: date("notAfter="),
    }
}

fn assert_read_as_openssl_reads(der: &[u8]) -> CertificateFacts<'_> {
    let facts = certificate_facts(der).unwrap();
    let seen = seen_by_openssl(der);
    assert_eq!(facts.public_key, seen.public_key);
    assert_eq!(facts.common_name, seen.common_name.as_deref());
    assert_eq!(facts.not_before, seen.not_before);
    assert_eq!(facts.not_after, seen.not_after);
    facts
}

#[test]
fn the_committed_certificates_read_as_openssl_reads_them() {
    let ca = std::fs::read(dev_set("ca.crt.der")).unwrap();
    let ca_facts = assert_read_as_openssl_reads(&ca);
    assert_eq!(ca_facts.issuer, ca_facts.subject);
    for name in ["device", "broker", "observer"] {
        let der = std::fs::read(dev_set(&format!("{name}.crt.der"))).unwrap();
        let facts = assert_read_as_openssl_reads(&der);
        assert_eq!(facts.issuer, ca_facts.subject, "{name}");
        assert_ne!(facts.subject, ca_facts.subject, "{name}");
    }
}

/// A self-signed certificate openssl makes for a new key (DER).
fn self_signed(subject: &str, days: &str) -> Vec<u8> {
    openssl::ok(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-utf8",
            "-subj",
            subject,
            "-days",
            days,
            "-outform",
            "DER",
        ],
        b"",
    )
}

/// The offset of the last `part` in `der` (a subject's, not its issuer's, in a self-signed
/// certificate).
fn find(der: &[u8], part: &[u8]) -> usize {
    der.windows(part.len()).rposition(|w| w == part).unwrap()
}

#[test]
fn certificates_openssl_makes_read_as_it_reads_them() {
    let with_cn = self_signed("/O=Example Fleet/CN=dev-0042", "1");
    let facts = assert_read_as_openssl_reads(&with_cn);
    assert_eq!(facts.common_name, Some("dev-0042"));
    assert_eq!(facts.not_after - facts.not_before, 86_400);
    assert_eq!(facts.issuer, facts.subject);

    let without_cn = self_signed("/O=Example Fleet/OU=Sensors", "1");
    assert_eq!(assert_read_as_openssl_reads(&without_cn).common_name, None);

    // notAfter past 2049: a GeneralizedTime (openssl 3.0 has no -not_after).
    let long = self_signed("/CN=dev-long", "20000");
    let facts = assert_read_as_openssl_reads(&long);
    assert!(facts.not_after > unix_seconds("2050-01-01T00:00:00Z"));
    assert_eq!(facts.not_after - facts.not_before, 20_000 * 86_400);
    // A UTCTime's Z, then a GeneralizedTime of 15 characters.
    assert!(long.windows(3).any(|w| w == b"Z\x18\x0f"), "{long:02x?}");

    let utf8 = self_signed("/CN=Gerät-7 ☃", "1");
    assert_eq!(
        assert_read_as_openssl_reads(&utf8).common_name,
        Some("Gerät-7 ☃")
    );

    // The same name as a PrintableString: the signature breaks, the reading does not.
    let mut printable = with_cn.clone();
    let cn = find(&printable, b"\x0c\x08dev-0042");
    printable[cn] = 0x13;
    assert_eq!(
        assert_read_as_openssl_reads(&printable).common_name,
        Some("dev-0042")
    );
}

#[test]
fn a_certificate_the_ca_issues_for_our_request_is_ours() {
    let key = SigningKey::from_bytes(&[0x42; 32].into()).unwrap();
    let point: [u8; 65] = key
        .verifying_key()
        .to_encoded_point(false)
        .as_bytes()
        .try_into()
        .unwrap();
    let subject = Subject {
        common_name: "dev-0042",
        organization: Some("Example Fleet"),
        organizational_unit: None,
        serial_number: Some("0042"),
    };
    let sign = |info: &[u8]| {
        let signature: Signature = key.sign(info);
        Ok::<_, ()>(signature.to_bytes().into())
    };
    let mut request = [0; MAX_CSR_DER];
    let len = csr_der(&subject, &point, sign, &mut request).unwrap();
    let ca = dev_set("ca.crt.pem");
    let ca_key = dev_set("ca.key.pem");
    let issued = openssl::ok(
        &[
            "x509",
            "-req",
            "-inform",
            "DER",
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-set_serial",
            "7",
            "-days",
            "365",
            "-outform",
            "DER",
        ],
        &request[..len],
    );
    let facts = assert_read_as_openssl_reads(&issued);
    let ca_der = std::fs::read(dev_set("ca.crt.der")).unwrap();
    assert_eq!(facts.issuer, certificate_facts(&ca_der).unwrap().subject);
    // openssl copies the request's Name as it is.
    assert!(request[..len]
        .windows(facts.subject.len())
        .any(|w| w == facts.subject));

    let mut spki = [0; 91];
    subject_public_key_info(&point, &mut spki).unwrap();
    let expected = Expected {
        public_key: &spki,
        common_name: "dev-0042",
        now: Some(facts.not_before + 60),
    };
    assert_eq!(issued::check(&facts.issued(Some(true)), &expected), Ok(()));
    let other = Expected {
        common_name: "dev-0043",
        ..expected
    };
    assert!(issued::check(&facts.issued(Some(true)), &other).is_err());
}

#[test]
fn broken_certificates_are_refused_in_words() {
    let der = std::fs::read(dev_set("device.crt.der")).unwrap();
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(certificate_facts(&trailing), Err(X509Error::TrailingBytes));
    for len in 0..der.len() {
        assert!(certificate_facts(&der[..len]).is_err(), "{len} bytes");
    }
    let two_cns = self_signed("/CN=a/CN=b", "1");
    assert_eq!(
        certificate_facts(&two_cns),
        Err(X509Error::SeveralCommonNames)
    );
    let mut teletex = self_signed("/CN=dev-0042", "1");
    let cn = find(&teletex, b"\x0c\x08dev-0042");
    teletex[cn] = 0x14;
    assert_eq!(certificate_facts(&teletex), Err(X509Error::CommonNameType));
    let mut no_zone = der.clone();
    let not_after = find(&no_zone, b"450101000000Z");
    no_zone[not_after + 12] = b'0';
    assert_eq!(
        certificate_facts(&no_zone),
        Err(X509Error::Time(Part::NotAfter))
    );
    assert_eq!(
        X509Error::Time(Part::NotAfter).to_string(),
        "the certificate's notAfter is not a date in RFC 5280's UTCTime or GeneralizedTime"
    );
    assert_eq!(
        X509Error::Malformed(Part::PublicKey).to_string(),
        "the certificate's public key is not well-formed DER"
    );
}
