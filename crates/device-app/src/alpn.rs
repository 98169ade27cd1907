//! The ALPN protocol names the device offers in its TLS handshake (RFC 7301), from the list
//! in its settings (`host:port`-style text: names separated by spaces or commas), kept as
//! the NUL-terminated strings the socket API points at.

use heapless::Vec;

/// Most names offered: Zephyr's `CONFIG_NET_SOCKETS_TLS_MAX_APP_PROTOCOLS`.
pub const MAX_ALPN_NAMES: usize = 2;
/// Bytes of the names together, each with its NUL.
pub const ALPN_BYTES: usize = 64;

/// Why an ALPN list was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlpnError {
    /// More names than [`MAX_ALPN_NAMES`].
    TooMany,
    /// The names with their NULs need more than [`ALPN_BYTES`] bytes.
    TooLong,
    /// A name holds a NUL byte or a character outside printable ASCII.
    BadName,
}

impl core::fmt::Display for AlpnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            AlpnError::TooMany => "more than 2 names",
            AlpnError::TooLong => "longer than 63 bytes in all",
            AlpnError::BadName => "a name holds a character outside printable ASCII",
        })
    }
}

/// The parsed names: NUL-terminated, back to back, with where each starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpnNames {
    bytes: [u8; ALPN_BYTES],
    starts: Vec<usize, MAX_ALPN_NAMES>,
}

impl AlpnNames {
    /// The names of `list` (separated by spaces or commas); a blank list offers none.
    pub fn parse(list: &str) -> Result<Self, AlpnError> {
        let mut names = AlpnNames {
            bytes: [0; ALPN_BYTES],
            starts: Vec::new(),
        };
        let mut end = 0;
        for name in list.split([' ', ',']).filter(|name| !name.is_empty()) {
            if !name.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(AlpnError::BadName);
            }
            let slot = names
                .bytes
                .get_mut(end..end + name.len() + 1)
                .ok_or(AlpnError::TooLong)?;
            let (text, nul) = slot.split_at_mut(name.len());
            text.copy_from_slice(name.as_bytes());
            nul.fill(0);
            names.starts.push(end).map_err(|_| AlpnError::TooMany)?;
            end += name.len() + 1;
        }
        Ok(names)
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether no name is offered (no ALPN extension in the handshake).
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Each name with its terminating NUL, in order.
    pub fn nul_terminated(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.starts.iter().filter_map(|&start| {
            let rest = self.bytes.get(start..)?;
            let nul = rest.iter().position(|&b| b == 0)?;
            rest.get(..=nul)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec as StdVec;

    fn names(list: &str) -> StdVec<StdVec<u8>> {
        let parsed = AlpnNames::parse(list).unwrap();
        parsed.nul_terminated().map(|n| n.to_vec()).collect()
    }

    #[test]
    fn names_are_separated_by_spaces_or_commas_and_each_ends_in_nul() {
        assert_eq!(names("x-amzn-mqtt-ca"), [b"x-amzn-mqtt-ca\0".to_vec()]);
        assert_eq!(
            names(" mqtt, ,x-amzn-mqtt-ca "),
            [b"mqtt\0".to_vec(), b"x-amzn-mqtt-ca\0".to_vec()]
        );
    }

    #[test]
    fn a_blank_list_offers_no_name() {
        assert!(AlpnNames::parse("").unwrap().is_empty());
        assert!(AlpnNames::parse(" , ").unwrap().is_empty());
    }

    #[test]
    fn refuses_more_names_than_zephyr_takes() {
        assert_eq!(AlpnNames::parse("a b c"), Err(AlpnError::TooMany));
        assert_eq!(AlpnNames::parse("a b").unwrap().len(), 2);
    }

    #[test]
    fn the_names_with_their_nuls_must_fit_in_64_bytes() {
        let fits = "a".repeat(ALPN_BYTES - 1);
        assert_eq!(AlpnNames::parse(&fits).unwrap().len(), 1);
        let too_long = "a".repeat(ALPN_BYTES);
        assert_eq!(AlpnNames::parse(&too_long), Err(AlpnError::TooLong));
        // Two names: 31 + 1 + 31 + 1 = 64 fits, one byte more does not.
        let two = [&"b".repeat(31), " ", &"c".repeat(31)].concat();
        assert_eq!(AlpnNames::parse(&two).unwrap().len(), 2);
        let two_long = [&"b".repeat(32), " ", &"c".repeat(31)].concat();
        assert_eq!(AlpnNames::parse(&two_long), Err(AlpnError::TooLong));
    }

    #[test]
    fn refuses_a_name_with_a_nul_or_non_ascii_character() {
        assert_eq!(AlpnNames::parse("mq\0tt"), Err(AlpnError::BadName));
        assert_eq!(AlpnNames::parse("mqtt\u{e9}"), Err(AlpnError::BadName));
    }
}
