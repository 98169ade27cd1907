//! The fleet-provisioning API's topics (JSON payload format).

use core::fmt::{self, Write};
use heapless::String;

/// The certificate request: the device publishes its CSR here.
pub const CREATE_FROM_CSR: &str = "$aws/certificates/create-from-csr/json";
/// The signer's certificate for a CSR.
pub const CREATE_FROM_CSR_ACCEPTED: &str = "$aws/certificates/create-from-csr/json/accepted";
/// The signer's refusal of a CSR.
pub const CREATE_FROM_CSR_REJECTED: &str = "$aws/certificates/create-from-csr/json/rejected";

/// The longest template name AWS IoT accepts.
pub const MAX_TEMPLATE_NAME: usize = 36;
/// The longest topic here: the template's `provision/json/accepted`.
pub const MAX_TOPIC: usize =
    PROVISION_PREFIX.len() + MAX_TEMPLATE_NAME + "/provision/json/accepted".len();

const PROVISION_PREFIX: &str = "$aws/provisioning-templates/";

/// Why a provisioning template name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateNameError {
    Empty,
    TooLong {
        length: usize,
    },
    /// A character outside `A-Z a-z 0-9 _ -` (a topic level needs no more, and `/`, `+`
    /// or `#` would change the topic's meaning).
    Character {
        position: usize,
    },
}

impl fmt::Display for TemplateNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("the provisioning template name is empty"),
            Self::TooLong { length } => write!(
                f,
                "the provisioning template name has {length} characters, at most {MAX_TEMPLATE_NAME} are allowed"
            ),
            Self::Character { position } => write!(
                f,
                "the provisioning template name has a character other than A-Z, a-z, 0-9, '_' or '-' at position {}",
                position + 1
            ),
        }
    }
}

/// A provisioning template's name, checked as AWS IoT checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateName<'a>(&'a str);

impl<'a> TemplateName<'a> {
    pub fn new(name: &'a str) -> Result<Self, TemplateNameError> {
        if name.is_empty() {
            return Err(TemplateNameError::Empty);
        }
        if let Some(position) = name
            .bytes()
            .position(|c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-'))
        {
            return Err(TemplateNameError::Character { position });
        }
        if name.len() > MAX_TEMPLATE_NAME {
            return Err(TemplateNameError::TooLong { length: name.len() });
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

/// A topic of the fleet-provisioning API.
pub type Topic = String<MAX_TOPIC>;

/// Where the device registers: `$aws/provisioning-templates/<template>/provision/json`.
pub fn provision(template: TemplateName<'_>) -> Topic {
    provision_topic(template, "")
}

/// The registration's answer.
pub fn provision_accepted(template: TemplateName<'_>) -> Topic {
    provision_topic(template, "/accepted")
}

/// The registration's refusal.
pub fn provision_rejected(template: TemplateName<'_>) -> Topic {
    provision_topic(template, "/rejected")
}

fn provision_topic(template: TemplateName<'_>, suffix: &str) -> Topic {
    let mut topic = Topic::new();
    // Cannot fail: MAX_TOPIC holds the longest name with the longest suffix.
    let _ = write!(
        topic,
        "{PROVISION_PREFIX}{}/provision/json{suffix}",
        template.0
    );
    topic
}

/// What an incoming message on one of the API's topics is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    CertificateAccepted,
    CertificateRejected,
    RegistrationAccepted,
    RegistrationRejected,
}

/// Which reply `topic` carries, `None` for any other topic.
pub fn reply(template: TemplateName<'_>, topic: &str) -> Option<Reply> {
    match topic {
        CREATE_FROM_CSR_ACCEPTED => return Some(Reply::CertificateAccepted),
        CREATE_FROM_CSR_REJECTED => return Some(Reply::CertificateRejected),
        _ => {}
    }
    let rest = topic
        .strip_prefix(PROVISION_PREFIX)?
        .strip_prefix(template.0)?
        .strip_prefix("/provision/json/")?;
    match rest {
        "accepted" => Some(Reply::RegistrationAccepted),
        "rejected" => Some(Reply::RegistrationRejected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn template_names_are_checked_as_aws_iot_checks_them() {
        assert!(TemplateName::new("fleet-template_1").is_ok());
        assert!(TemplateName::new(&"a".repeat(36)).is_ok());
        assert_eq!(
            TemplateName::new(&"a".repeat(37)),
            Err(TemplateNameError::TooLong { length: 37 })
        );
        assert_eq!(TemplateName::new(""), Err(TemplateNameError::Empty));
        for bad in ["a/b", "a+", "#", "a b", "é"] {
            assert!(
                matches!(
                    TemplateName::new(bad),
                    Err(TemplateNameError::Character { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            TemplateName::new("ab/c").unwrap_err().to_string(),
            "the provisioning template name has a character other than A-Z, a-z, 0-9, '_' or '-' at position 3"
        );
    }

    #[test]
    fn the_longest_template_name_fits_every_topic() {
        let name = "x".repeat(MAX_TEMPLATE_NAME);
        let template = TemplateName::new(&name).unwrap();
        let accepted = provision_accepted(template);
        assert_eq!(accepted.len(), MAX_TOPIC);
        assert!(accepted.ends_with("/provision/json/accepted"));
        assert_eq!(
            provision(template).as_str(),
            ["$aws/provisioning-templates/", &name, "/provision/json"].concat()
        );
    }

    #[test]
    fn replies_are_recognised_by_topic_and_only_for_our_template() {
        let template = TemplateName::new("fleet").unwrap();
        assert_eq!(
            reply(template, CREATE_FROM_CSR_ACCEPTED),
            Some(Reply::CertificateAccepted)
        );
        assert_eq!(
            reply(template, CREATE_FROM_CSR_REJECTED),
            Some(Reply::CertificateRejected)
        );
        assert_eq!(
            reply(template, &provision_accepted(template)),
            Some(Reply::RegistrationAccepted)
        );
        assert_eq!(
            reply(template, &provision_rejected(template)),
            Some(Reply::RegistrationRejected)
        );
        let other = TemplateName::new("fleet2").unwrap();
        assert_eq!(reply(template, &provision_accepted(other)), None);
        assert_eq!(reply(template, CREATE_FROM_CSR), None);
        assert_eq!(reply(template, &provision(template)), None);
        assert_eq!(reply(template, "devices/x/cmd/ping"), None);
    }
}
