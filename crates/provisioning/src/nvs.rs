//! NVS's on-flash format, as far as the firmware must read it itself: to repair what NVS's
//! own mount cannot (an erase cut short by a power cut) and to recognise records written
//! by an image without NVS's data CRC. The firmware reads the bytes; the decisions are here.
//!
//! NVS ends each sector with an 8-byte allocation entry (`struct nvs_ate`: id, offset and
//! length as little-endian `u16`, a part byte, then a CRC-8 of the first seven bytes) that
//! closes it once full. A sector whose erase was cut short holds random bytes: its closing
//! entry almost never passes its CRC, while every closed sector's does.

/// Bytes of an NVS allocation entry.
pub const ENTRY_SIZE: usize = 8;

/// Zephyr's `crc8_ccitt` (polynomial 0x07, most significant bit first), which NVS uses for
/// its entries with an initial value of 0xff.
pub fn crc8_ccitt(initial: u8, bytes: &[u8]) -> u8 {
    bytes.iter().fold(initial, |crc, &byte| {
        (0..8).fold(crc ^ byte, |crc, _| {
            if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            }
        })
    })
}

/// Whether an allocation entry passes its CRC.
pub fn entry_is_valid(entry: &[u8; ENTRY_SIZE]) -> bool {
    let [body @ .., crc] = entry;
    crc8_ccitt(0xff, body) == *crc
}

/// After NVS refused to mount for want of an open sector: the sector to erase again, given
/// each sector's closing entry in order. Only when exactly one fails its CRC: that is the
/// sector a garbage collection was copying into when the power failed (it holds nothing the
/// sector it copies from lacks). With none or several, nothing is erased: that is not one
/// torn erase, and guessing could destroy records.
pub fn sector_to_erase(
    closing_entries: impl IntoIterator<Item = [u8; ENTRY_SIZE]>,
) -> Option<usize> {
    let mut torn = None;
    for (sector, entry) in closing_entries.into_iter().enumerate() {
        if !entry_is_valid(&entry) {
            if torn.is_some() {
                return None;
            }
            torn = Some(sector);
        }
    }
    torn
}

/// With NVS's data CRC on, a record written without it reads as corrupt, and settings' name
/// counter (a 2-byte record) as absent: names present without a readable counter mean the
/// flash was written by an image without the data CRC.
pub fn written_without_data_crc(counter_readable: bool, a_name_exists: bool) -> bool {
    !counter_readable && a_name_exists
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Closing entries NVS wrote on native_sim (id 0xffff, offset of the last entry).
    const CLOSED: [[u8; ENTRY_SIZE]; 4] = [
        [0xff, 0xff, 0x98, 0x0d, 0x00, 0x00, 0xff, 0x1e],
        [0xff, 0xff, 0x90, 0x0e, 0x00, 0x00, 0xff, 0x3d],
        [0xff, 0xff, 0x20, 0x0e, 0x00, 0x00, 0xff, 0xfc],
        [0xff, 0xff, 0x60, 0x0e, 0x00, 0x00, 0xff, 0x34],
    ];
    /// The garbage-collection-done entry NVS wrote (id 0xffff, offset 0, length 0).
    const GC_DONE: [u8; ENTRY_SIZE] = [0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0x5c];
    const ERASED: [u8; ENTRY_SIZE] = [0xff; ENTRY_SIZE];
    const RANDOM: [u8; ENTRY_SIZE] = [0x3a, 0x91, 0x07, 0xee, 0x52, 0x18, 0xc4, 0x6b];

    #[test]
    fn the_crc_is_zephyrs_on_entries_nvs_wrote() {
        for entry in CLOSED.iter().chain([&GC_DONE]) {
            assert!(entry_is_valid(entry), "{entry:02x?}");
        }
        // CRC-8 with polynomial 0x07 and initial value 0x00 (CRC-8/SMBUS) checks "123456789"
        // as 0xf4.
        assert_eq!(crc8_ccitt(0x00, b"123456789"), 0xf4);
        assert!(!entry_is_valid(&ERASED));
        assert!(!entry_is_valid(&RANDOM));
        let mut flipped = CLOSED[0];
        flipped[2] ^= 0x10;
        assert!(!entry_is_valid(&flipped));
    }

    #[test]
    fn only_one_torn_sector_among_closed_ones_is_erased() {
        let mut sectors = CLOSED.to_vec();
        sectors.insert(2, RANDOM);
        assert_eq!(sector_to_erase(sectors.iter().copied()), Some(2));
        assert_eq!(sector_to_erase(CLOSED), None);
        let two_torn = [CLOSED[0], RANDOM, CLOSED[1], ERASED];
        assert_eq!(sector_to_erase(two_torn), None);
        assert_eq!(sector_to_erase([]), None);
    }

    #[test]
    fn names_without_a_readable_counter_mean_no_data_crc() {
        assert!(written_without_data_crc(false, true));
        assert!(!written_without_data_crc(true, true));
        assert!(!written_without_data_crc(false, false));
        assert!(!written_without_data_crc(true, false));
    }
}
