//! Whether a certificate the signer issued is the device's to use: checked before it is
//! stored, whether it came by claim or by renewal.
//!
//! [`crate::x509::certificate_facts`] reads the facts from the certificate ([`IssuedFacts`]);
//! only whether it verifies against the device CA comes from mbedTLS in the firmware. The
//! decision is here. A certificate for another key is not an error of the signer's on a
//! broker where every claim-identity subscriber receives every reply: it is someone else's,
//! and the device keeps waiting for its own ([`IssuedProblem::is_someone_elses`]).

use core::fmt;

/// What the device read from an issued certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedFacts<'a> {
    /// The certificate's SubjectPublicKeyInfo (DER).
    pub public_key: &'a [u8],
    /// The subject's common name, `None` without one.
    pub common_name: Option<&'a str>,
    /// notBefore and notAfter, seconds since 1970.
    pub not_before: u64,
    pub not_after: u64,
    /// Whether it verifies against the device CA the device was configured with; `None`
    /// where none was configured (AWS IoT's own CA issues the certificate).
    pub issued_by_device_ca: Option<bool>,
}

/// What the device expects of its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The SubjectPublicKeyInfo of the key the device made (DER).
    pub public_key: &'a [u8],
    /// The client id: the CN the CSR asked for.
    pub common_name: &'a str,
    /// Now, seconds since 1970 (from SNTP); `None` if the clock is not set yet.
    pub now: Option<u64>,
}

/// Why an issued certificate is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuedProblem {
    /// It certifies another key than the one the device made.
    OtherKey,
    /// Its common name is not the client id (or it has none).
    OtherCommonName,
    /// It does not verify against the configured device CA.
    UntrustedIssuer,
    /// Valid only from a time still to come.
    NotYetValid { starts_in: u64 },
    /// Expired already.
    Expired { ago: u64 },
    /// notAfter before notBefore.
    EmptyValidity,
}

impl IssuedProblem {
    /// A reply for another device on a shared claim topic, not a refusal of this one's CSR.
    pub fn is_someone_elses(self) -> bool {
        self == IssuedProblem::OtherKey
    }
}

impl fmt::Display for IssuedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OtherKey => {
                f.write_str("the issued certificate is for another key than the device's")
            }
            Self::OtherCommonName => {
                f.write_str("the issued certificate's common name is not the client id")
            }
            Self::UntrustedIssuer => {
                f.write_str("the issued certificate does not verify against the device CA")
            }
            Self::NotYetValid { starts_in } => {
                write!(f, "the issued certificate is valid only in {starts_in} s")
            }
            Self::Expired { ago } => write!(f, "the issued certificate expired {ago} s ago"),
            Self::EmptyValidity => {
                f.write_str("the issued certificate's validity ends before it starts")
            }
        }
    }
}

/// Checks an issued certificate: the key first (someone else's reply is not a failure),
/// then the name, the issuer and the validity.
pub fn check(facts: &IssuedFacts<'_>, expected: &Expected<'_>) -> Result<(), IssuedProblem> {
    if facts.public_key != expected.public_key {
        return Err(IssuedProblem::OtherKey);
    }
    if facts.common_name != Some(expected.common_name) {
        return Err(IssuedProblem::OtherCommonName);
    }
    if facts.issued_by_device_ca == Some(false) {
        return Err(IssuedProblem::UntrustedIssuer);
    }
    if facts.not_after < facts.not_before {
        return Err(IssuedProblem::EmptyValidity);
    }
    // Without a clock the validity cannot be judged; the TLS handshake with the new set,
    // made before it is committed, is the final check.
    let Some(now) = expected.now else {
        return Ok(());
    };
    if now < facts.not_before {
        return Err(IssuedProblem::NotYetValid {
            starts_in: facts.not_before - now,
        });
    }
    if now > facts.not_after {
        return Err(IssuedProblem::Expired {
            ago: now - facts.not_after,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    const OWN_KEY: &[u8] = b"own key";
    const EXPECTED: Expected<'static> = Expected {
        public_key: OWN_KEY,
        common_name: "dev-0042",
        now: Some(1_000),
    };

    fn good() -> IssuedFacts<'static> {
        IssuedFacts {
            public_key: OWN_KEY,
            common_name: Some("dev-0042"),
            not_before: 900,
            not_after: 2_000,
            issued_by_device_ca: Some(true),
        }
    }

    #[test]
    fn a_certificate_for_the_own_key_and_name_valid_now_is_taken() {
        assert_eq!(check(&good(), &EXPECTED), Ok(()));
        let aws = IssuedFacts {
            issued_by_device_ca: None,
            ..good()
        };
        assert_eq!(check(&aws, &EXPECTED), Ok(()));
        let edges = IssuedFacts {
            not_before: 1_000,
            not_after: 1_000,
            ..good()
        };
        assert_eq!(check(&edges, &EXPECTED), Ok(()));
    }

    #[test]
    fn each_problem_is_named_and_the_key_is_checked_first() {
        let cases = [
            (
                IssuedFacts {
                    public_key: b"other",
                    common_name: None,
                    ..good()
                },
                IssuedProblem::OtherKey,
            ),
            (
                IssuedFacts {
                    common_name: Some("dev-0043"),
                    ..good()
                },
                IssuedProblem::OtherCommonName,
            ),
            (
                IssuedFacts {
                    common_name: None,
                    ..good()
                },
                IssuedProblem::OtherCommonName,
            ),
            (
                IssuedFacts {
                    issued_by_device_ca: Some(false),
                    ..good()
                },
                IssuedProblem::UntrustedIssuer,
            ),
            (
                IssuedFacts {
                    not_before: 1_030,
                    ..good()
                },
                IssuedProblem::NotYetValid { starts_in: 30 },
            ),
            (
                IssuedFacts {
                    not_after: 990,
                    not_before: 10,
                    ..good()
                },
                IssuedProblem::Expired { ago: 10 },
            ),
            (
                IssuedFacts {
                    not_after: 800,
                    ..good()
                },
                IssuedProblem::EmptyValidity,
            ),
        ];
        for (facts, problem) in cases {
            assert_eq!(check(&facts, &EXPECTED), Err(problem), "{facts:?}");
        }
        assert!(IssuedProblem::OtherKey.is_someone_elses());
        assert!(!IssuedProblem::OtherCommonName.is_someone_elses());
        assert_eq!(
            IssuedProblem::Expired { ago: 10 }.to_string(),
            "the issued certificate expired 10 s ago"
        );
    }

    #[test]
    fn without_a_clock_the_validity_is_left_to_the_handshake() {
        let expired = IssuedFacts {
            not_after: 950,
            ..good()
        };
        let no_clock = Expected {
            now: None,
            ..EXPECTED
        };
        assert_eq!(check(&expired, &no_clock), Ok(()));
        assert_eq!(
            check(&expired, &EXPECTED),
            Err(IssuedProblem::Expired { ago: 50 })
        );
    }
}
