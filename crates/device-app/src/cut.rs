//! Text that must fit a fixed buffer (a shell answer, a status field): what fits is kept,
//! and a cut is never silent: the text ends in [`CUT_MARKER`] instead, at a character
//! boundary, within the buffer.

use core::fmt;

/// Ends a text that did not fit.
pub const CUT_MARKER: &str = "...";

/// A `fmt::Write` into a fixed byte buffer that cuts what does not fit (see the module).
/// `B` is an owned array (`[u8; N]`, for a field that lives in a static) or a borrowed slice.
#[derive(Debug, Clone)]
pub struct CutText<B> {
    buf: B,
    len: usize,
    cut: bool,
}

impl<const N: usize> CutText<[u8; N]> {
    /// Empty, all zero bytes (a static of it lies in `.bss`).
    pub const fn new() -> Self {
        CutText {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }
}

impl<const N: usize> Default for CutText<[u8; N]> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> CutText<&'a mut [u8]> {
    /// Writes into `buf` from its start.
    pub fn over(buf: &'a mut [u8]) -> Self {
        CutText {
            buf,
            len: 0,
            cut: false,
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> CutText<B> {
    /// What was written (with the marker if it was cut).
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.as_ref().get(..self.len).unwrap_or_default();
        // Only whole characters are ever written.
        core::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some text did not fit.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// Empty again, with the whole buffer as room.
    pub fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> fmt::Write for CutText<B> {
    /// Never fails: a formatter goes on, and what does not fit is dropped.
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // One copy of the cutting for every buffer type: it is not generic.
        write_cut(self.buf.as_mut(), &mut self.len, &mut self.cut, s);
        Ok(())
    }
}

/// Appends `s` to the text in `buf[..*len]`, or cuts it (see the module).
fn write_cut(buf: &mut [u8], len: &mut usize, cut: &mut bool, s: &str) {
    if *cut {
        return;
    }
    let capacity = buf.len();
    if s.len() <= capacity - *len {
        append(buf, len, s);
        return;
    }
    *cut = true;
    let keep = capacity.saturating_sub(CUT_MARKER.len());
    if keep < *len {
        // What was written is whole characters: cut it at one of their boundaries.
        let written = core::str::from_utf8(buf.get(..*len).unwrap_or_default());
        *len = fitting(written.unwrap_or_default(), keep).len();
    } else {
        append(buf, len, fitting(s, keep - *len));
    }
    let room = capacity - *len;
    append(buf, len, fitting(CUT_MARKER, room));
}

fn append(buf: &mut [u8], len: &mut usize, text: &str) {
    let end = *len + text.len();
    if let Some(dst) = buf.get_mut(*len..end) {
        dst.copy_from_slice(text.as_bytes());
        *len = end;
    }
}

/// The longest start of `text` that fits in `room` bytes without splitting a character.
fn fitting(text: &str, room: usize) -> &str {
    let mut take = text.len().min(room);
    while !text.is_char_boundary(take) {
        take -= 1;
    }
    text.get(..take).unwrap_or_default()
}

/// Writes into `buf` as a C string: `write` gets every byte but the last as room, and the
/// text is NUL-terminated after. Nothing is written into an empty `buf`.
pub fn write_c_string<R>(buf: &mut [u8], write: impl FnOnce(&mut CutText<&mut [u8]>) -> R) -> R {
    let room = buf.len().saturating_sub(1);
    let mut writer = CutText::over(buf.get_mut(..room).unwrap_or_default());
    let result = write(&mut writer);
    let len = writer.len();
    if let Some(nul) = buf.get_mut(len) {
        *nul = 0;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn text_that_fits_is_kept_whole() {
        let mut text = CutText::<[u8; 16]>::new();
        write!(text, "state: {}", 1 + 1).unwrap();
        assert_eq!(text.as_str(), "state: 2");
        assert!(!text.is_cut());
    }

    #[test]
    fn an_exact_fit_is_not_cut() {
        let mut text = CutText::<[u8; 8]>::new();
        text.write_str("1234").unwrap();
        text.write_str("5678").unwrap();
        assert_eq!(text.as_str(), "12345678");
        assert!(!text.is_cut());
    }

    #[test]
    fn text_that_does_not_fit_ends_in_the_marker_within_the_buffer() {
        let mut text = CutText::<[u8; 10]>::new();
        text.write_str("0123456789A").unwrap();
        assert_eq!(text.as_str(), "0123456...");
        assert!(text.is_cut());
        // Later writes do not add to a cut text.
        text.write_str("B").unwrap();
        assert_eq!(text.as_str(), "0123456...");
    }

    #[test]
    fn a_cut_after_a_full_buffer_makes_room_for_the_marker() {
        let mut text = CutText::<[u8; 8]>::new();
        text.write_str("12345678").unwrap();
        text.write_str("9").unwrap();
        assert_eq!(text.as_str(), "12345...");
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: seven bytes of room for text end inside the third "é".
        let mut text = CutText::<[u8; 10]>::new();
        text.write_str("abééééé").unwrap();
        assert_eq!(text.as_str(), "abéé...");
        let mut earlier = CutText::<[u8; 5]>::new();
        earlier.write_str("aéé").unwrap();
        earlier.write_str("x").unwrap();
        assert_eq!(earlier.as_str(), "a...");
    }

    #[test]
    fn a_buffer_smaller_than_the_marker_keeps_what_of_it_fits() {
        let mut text = CutText::<[u8; 2]>::new();
        text.write_str("abc").unwrap();
        assert_eq!(text.as_str(), "..");
    }

    #[test]
    fn clear_gives_back_the_whole_room() {
        let mut text = CutText::<[u8; 4]>::new();
        text.write_str("abcdef").unwrap();
        text.clear();
        text.write_str("wxyz").unwrap();
        assert_eq!(text.as_str(), "wxyz");
    }

    #[test]
    fn a_c_string_is_nul_terminated_and_cut_before_its_last_byte() {
        let mut buf = [0xffu8; 8];
        write_c_string(&mut buf, |out| out.write_str("abc")).unwrap();
        assert_eq!(&buf[..4], b"abc\0");
        let mut buf = [0xffu8; 8];
        write_c_string(&mut buf, |out| out.write_str("0123456")).unwrap();
        assert_eq!(&buf, b"0123456\0");
        let mut buf = [0xffu8; 8];
        write_c_string(&mut buf, |out| out.write_str("01234567")).unwrap();
        assert_eq!(&buf, b"0123...\0");
        let mut empty: [u8; 0] = [];
        write_c_string(&mut empty, |out| out.write_str("abc")).unwrap();
    }
}
