//! Why a TLS handshake with the broker failed, from what mbedTLS's certificate verification
//! saw: the `MBEDTLS_X509_BADCERT_*` flags of `include/mbedtls/x509.h` that the firmware's
//! verification callback records, plus two bits of its own (the callback ran at all; the
//! broker's key is not the pinned one; a certificate mbedTLS could not read). The callback
//! runs once per certificate of the chain after mbedTLS's checks of it; mbedTLS checks the
//! leaf's key usage after it, so the callback records that verdict too.
//!
//! The handshake's own mbedTLS error stays inside Zephyr's socket layer (the socket reports
//! `ECONNABORTED` for all of them), so a failure the flags do not explain is named by where it
//! happened: before the certificate was checked, or after it passed.

use core::fmt;

/// The flags (mbedTLS's values; `src/shim.h` declares the same and the firmware checks them).
pub mod flags {
    /// `MBEDTLS_X509_BADCERT_EXPIRED`.
    pub const EXPIRED: u32 = 0x01;
    /// `MBEDTLS_X509_BADCERT_CN_MISMATCH`: not issued for the broker's host name.
    pub const CN_MISMATCH: u32 = 0x04;
    /// `MBEDTLS_X509_BADCERT_NOT_TRUSTED`: no chain to a trusted CA.
    pub const NOT_TRUSTED: u32 = 0x08;
    /// `MBEDTLS_X509_BADCERT_FUTURE`.
    pub const FUTURE: u32 = 0x200;
    /// `MBEDTLS_X509_BADCERT_KEY_USAGE`: keyUsage lacks digitalSignature.
    pub const KEY_USAGE: u32 = 0x800;
    /// `MBEDTLS_X509_BADCERT_EXT_KEY_USAGE`: extendedKeyUsage lacks serverAuth.
    pub const EXT_KEY_USAGE: u32 = 0x1000;
    /// `MBEDTLS_X509_BADCERT_NS_CERT_TYPE`: Netscape certificate type is not an SSL server.
    pub const NS_CERT_TYPE: u32 = 0x2000;
    /// `MBEDTLS_X509_BADCERT_BAD_MD`: signed with a hash the build does not accept.
    pub const BAD_MD: u32 = 0x4000;
    /// `MBEDTLS_X509_BADCERT_BAD_PK`: a key type the build does not accept.
    pub const BAD_PK: u32 = 0x8000;
    /// `MBEDTLS_X509_BADCERT_BAD_KEY`: a key size or curve the build does not accept.
    pub const BAD_KEY: u32 = 0x10000;
    /// Ours: a certificate of the chain could not be read (mbedTLS skips one signed with a
    /// hash, or carrying a key type, that the build lacks, and checks an empty one).
    pub const UNREADABLE: u32 = 0x2000_0000;
    /// Ours: the verification callback ran (the chain was read and checked).
    pub const CHECKED: u32 = 0x4000_0000;
    /// Ours: the broker's public key is not the pinned one.
    pub const PINNED_KEY_MISMATCH: u32 = 0x8000_0000;
}

/// Which field of the broker's certificate does not allow a TLS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageField {
    /// keyUsage without digitalSignature (ECDHE needs the server to sign).
    KeyUsage,
    /// extendedKeyUsage without serverAuth.
    ExtendedKeyUsage,
    /// A Netscape certificate type that is not an SSL server.
    NetscapeCertType,
}

/// What in the chain this build does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The signature's hash.
    Hash,
    /// The key type.
    KeyType,
    /// The key size, or the curve.
    KeySize,
}

/// What was wrong with the broker's certificate, or where the handshake failed around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// The handshake failed before any certificate was checked: no TLS version, cipher suite
    /// or signature algorithm in common (a TLS 1.3 broker whose certificate is signed with a
    /// hash this build does not offer, such as SHA-1, gives up here).
    NotChecked,
    /// A certificate of the chain could not be read: signed with a hash, or carrying a key
    /// type, that this build lacks (SHA-1 over TLS 1.2).
    Unreadable,
    /// The broker's certificate passed every check and the handshake failed after it (the
    /// broker's handshake signature, or the broker refused this device). Kept short: the log
    /// line may add a hint to it.
    PassedChecks,
    /// The certificate has expired.
    Expired,
    /// The certificate does not carry the broker's host name.
    HostNameMismatch,
    /// The certificate does not chain to our CA.
    NotTrusted,
    /// A trusted certificate, but its public key is not the pinned one.
    PinnedKeyMismatch,
    /// The certificate is not valid yet (or the wall clock is behind).
    NotYetValid,
    /// A usage field does not allow a TLS server.
    WrongUsage(UsageField),
    /// Signed with a hash, or carrying a key type or size, that this build does not accept.
    UnsupportedAlgorithm(Algorithm),
    /// Other verification flags.
    Other(u32),
}

impl CertificateProblem {
    /// The problem the recorded `flags` name. Most specific first: an expired certificate
    /// from another CA is "not our CA"; one from our CA is "expired", not "untrusted"; a
    /// name mismatch on a trusted certificate is a name mismatch.
    pub fn from_flags(flags: u32) -> Self {
        use self::flags::*;
        let order: [(u32, CertificateProblem); 11] = [
            // Unreadable, the chain cannot be trusted either: the cause comes first.
            (UNREADABLE, CertificateProblem::Unreadable),
            (NOT_TRUSTED, CertificateProblem::NotTrusted),
            (EXPIRED, CertificateProblem::Expired),
            (FUTURE, CertificateProblem::NotYetValid),
            (
                BAD_MD,
                CertificateProblem::UnsupportedAlgorithm(Algorithm::Hash),
            ),
            (
                BAD_PK,
                CertificateProblem::UnsupportedAlgorithm(Algorithm::KeyType),
            ),
            (
                BAD_KEY,
                CertificateProblem::UnsupportedAlgorithm(Algorithm::KeySize),
            ),
            (
                KEY_USAGE,
                CertificateProblem::WrongUsage(UsageField::KeyUsage),
            ),
            (
                EXT_KEY_USAGE,
                CertificateProblem::WrongUsage(UsageField::ExtendedKeyUsage),
            ),
            (
                NS_CERT_TYPE,
                CertificateProblem::WrongUsage(UsageField::NetscapeCertType),
            ),
            (CN_MISMATCH, CertificateProblem::HostNameMismatch),
        ];
        if let Some((_, problem)) = order.iter().find(|(flag, _)| flags & flag != 0) {
            return *problem;
        }
        match flags & !CHECKED {
            0 if flags & CHECKED != 0 => CertificateProblem::PassedChecks,
            0 => CertificateProblem::NotChecked,
            _ if flags & PINNED_KEY_MISMATCH != 0 => CertificateProblem::PinnedKeyMismatch,
            other => CertificateProblem::Other(other),
        }
    }
}

impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CertificateProblem as P;
        match self {
            P::NotChecked => f.write_str(
                "tls: handshake failed before the certificate check: no TLS version, cipher suite or signature algorithm in common (e.g. SHA-1 signed)",
            ),
            P::Unreadable => f.write_str(
                "tls: broker certificate chain unreadable: signed with a hash (e.g. SHA-1) or a key type this build lacks",
            ),
            P::PassedChecks => f.write_str(
                "tls: handshake failed after the broker certificate passed its checks",
            ),
            P::NotTrusted => f.write_str("tls: broker certificate not signed by our CA"),
            P::Expired => f.write_str("tls: broker certificate expired"),
            P::HostNameMismatch => f.write_str("tls: broker certificate is for another host name"),
            P::PinnedKeyMismatch => {
                f.write_str("tls: broker public key does not match the pinned key")
            }
            P::NotYetValid => {
                f.write_str("tls: broker certificate not valid yet (or the wall clock is behind)")
            }
            P::WrongUsage(field) => {
                let field = match field {
                    UsageField::KeyUsage => "keyUsage lacks digitalSignature",
                    UsageField::ExtendedKeyUsage => "extendedKeyUsage lacks serverAuth",
                    UsageField::NetscapeCertType => "Netscape certificate type is not SSL server",
                };
                write!(f, "tls: broker certificate's key usage does not allow a TLS server ({field})")
            }
            P::UnsupportedAlgorithm(what) => {
                let what = match what {
                    Algorithm::Hash => "is signed with a hash",
                    Algorithm::KeyType => "has a key type",
                    Algorithm::KeySize => "has a key size or curve",
                };
                write!(f, "tls: broker certificate chain {what} this build does not accept")
            }
            P::Other(flags) => {
                write!(f, "tls: broker certificate rejected (verify flags {flags:#x})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;
    use std::string::ToString;

    fn problem(flags: u32) -> CertificateProblem {
        CertificateProblem::from_flags(flags)
    }

    #[test]
    fn no_flags_tells_whether_the_certificate_was_checked_at_all() {
        assert_eq!(problem(0), CertificateProblem::NotChecked);
        assert_eq!(problem(CHECKED), CertificateProblem::PassedChecks);
    }

    #[test]
    fn a_failed_handshake_is_never_called_accepted() {
        for flags in [0, CHECKED] {
            let text = problem(flags).to_string();
            assert!(!text.contains("accepted"), "{text}");
            assert!(text.starts_with("tls: handshake failed "), "{text}");
        }
        assert!(problem(0).to_string().contains("SHA-1"));
    }

    #[test]
    fn an_unreadable_certificate_is_named_before_the_trust_it_cannot_have() {
        let unreadable = CHECKED | UNREADABLE | NOT_TRUSTED | PINNED_KEY_MISMATCH;
        assert_eq!(problem(unreadable), CertificateProblem::Unreadable);
        assert!(problem(unreadable).to_string().contains("SHA-1"));
    }

    #[test]
    fn every_cause_fits_a_log_line_with_a_long_host_name() {
        // Zephyr's log lines end at 255 bytes: "WARN:rustapp::app: ", then
        // "connect to HOST:PORT failed: " with a 64-byte host leave 142 bytes for the cause,
        // and for the client certificate hint after a handshake that failed past the check.
        const ROOM: usize = 255 - 19 - 94;
        let hint = "; this device has no client certificate, which the broker may require";
        assert!(problem(CHECKED).to_string().len() + hint.len() <= ROOM);
        for flags in [
            0,
            UNREADABLE,
            NOT_TRUSTED,
            FUTURE,
            BAD_MD,
            BAD_KEY,
            KEY_USAGE,
        ] {
            let text = problem(flags).to_string();
            assert!(text.len() <= ROOM, "{} bytes: {text}", text.len());
        }
        let text = problem(NS_CERT_TYPE).to_string();
        assert!(text.len() <= ROOM, "{} bytes: {text}", text.len());
    }

    #[test]
    fn another_ca_wins_over_every_other_flag() {
        let all = EXPIRED | CN_MISMATCH | FUTURE | KEY_USAGE | BAD_MD | PINNED_KEY_MISMATCH;
        assert_eq!(
            problem(CHECKED | NOT_TRUSTED | all),
            CertificateProblem::NotTrusted
        );
    }

    #[test]
    fn dates_come_before_algorithms_usage_and_name() {
        let rest = BAD_KEY | EXT_KEY_USAGE | CN_MISMATCH;
        assert_eq!(
            problem(EXPIRED | FUTURE | rest),
            CertificateProblem::Expired
        );
        assert_eq!(problem(FUTURE | rest), CertificateProblem::NotYetValid);
    }

    #[test]
    fn an_algorithm_the_build_lacks_is_named_before_usage_and_name() {
        let rest = KEY_USAGE | CN_MISMATCH;
        let unsupported = CertificateProblem::UnsupportedAlgorithm;
        assert_eq!(
            problem(BAD_MD | BAD_PK | rest),
            unsupported(Algorithm::Hash)
        );
        assert_eq!(problem(BAD_PK | rest), unsupported(Algorithm::KeyType));
        assert_eq!(problem(BAD_KEY | rest), unsupported(Algorithm::KeySize));
        assert_eq!(
            problem(BAD_MD).to_string(),
            "tls: broker certificate chain is signed with a hash this build does not accept"
        );
    }

    #[test]
    fn key_usage_and_extended_key_usage_are_told_apart() {
        let usage = CertificateProblem::WrongUsage;
        assert_eq!(problem(KEY_USAGE | CHECKED), usage(UsageField::KeyUsage));
        assert_eq!(problem(EXT_KEY_USAGE), usage(UsageField::ExtendedKeyUsage));
        assert_eq!(problem(NS_CERT_TYPE), usage(UsageField::NetscapeCertType));
        assert_eq!(
            problem(KEY_USAGE).to_string(),
            "tls: broker certificate's key usage does not allow a TLS server (keyUsage lacks digitalSignature)"
        );
        assert_eq!(
            problem(EXT_KEY_USAGE).to_string(),
            "tls: broker certificate's key usage does not allow a TLS server (extendedKeyUsage lacks serverAuth)"
        );
    }

    #[test]
    fn a_name_mismatch_comes_before_the_pin() {
        let name = CertificateProblem::HostNameMismatch;
        assert_eq!(problem(CN_MISMATCH | PINNED_KEY_MISMATCH), name);
        // The callback also sets MBEDTLS_X509_BADCERT_OTHER (0x100) so that mbedTLS refuses.
        assert_eq!(
            problem(CHECKED | PINNED_KEY_MISMATCH | 0x100),
            CertificateProblem::PinnedKeyMismatch
        );
    }

    #[test]
    fn unknown_flags_are_shown_without_our_checked_bit() {
        assert_eq!(problem(CHECKED | 0x2), CertificateProblem::Other(0x2));
        assert_eq!(
            problem(0x2).to_string(),
            "tls: broker certificate rejected (verify flags 0x2)"
        );
    }
}
