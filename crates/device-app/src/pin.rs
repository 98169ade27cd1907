//! The broker key pin (`CONFIG_APP_TLS_PINNED_KEY_SHA256`): the SHA-256 of the broker's
//! SubjectPublicKeyInfo as 64 hex digits, or empty for no pin.

/// Why a pin is not 32 bytes of hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinError {
    /// Not 64 characters.
    Length(usize),
    /// A character that is not a hex digit.
    NotHex,
}

impl core::fmt::Display for PinError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PinError::Length(len) => write!(f, "a pin is 64 hex digits, not {len} characters"),
            PinError::NotHex => f.write_str("a pin is hex digits only (0-9, a-f)"),
        }
    }
}

/// The pinned SHA-256, `None` for no pin (empty text).
pub fn parse_pin(text: &str) -> Result<Option<[u8; 32]>, PinError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() != 64 {
        return Err(PinError::Length(text.len()));
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16).ok_or(PinError::NotHex);
        let (high, low) = match pair {
            [high, low] => (digit(*high)?, digit(*low)?),
            _ => return Err(PinError::NotHex),
        };
        *byte = (high << 4 | low) as u8;
    }
    Ok(Some(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn sixty_four_hex_digits_in_either_case_are_the_digest_and_empty_is_no_pin() {
        let text = "bdd4a8ca09de957b4378afb887fded610c7a9a41cae4b973c4e1db23c884145A";
        let digest = parse_pin(text).unwrap().unwrap();
        assert_eq!(digest[0], 0xbd);
        assert_eq!(digest[31], 0x5a);
        assert_eq!(parse_pin(""), Ok(None));
    }

    #[test]
    fn a_short_or_non_hex_pin_is_refused_in_words() {
        assert_eq!(parse_pin("abcd"), Err(PinError::Length(4)));
        let not_hex = "g".repeat(64);
        assert_eq!(parse_pin(&not_hex), Err(PinError::NotHex));
        assert!(PinError::Length(4).to_string().contains("64 hex digits"));
    }
}
