//! An `Option` whose `None` is zero bytes, so that a session made at compile time
//! ([`Session::unconfigured`]) is all zero bytes and a `static` of it lies in `.bss`.
//!
//! `Option<T>` keeps `None` in a niche of `T`, the first value an enum inside `T` does not
//! use: 4 for an outbox slot (its stage), 5 for an [`Error`]. One such byte puts the whole
//! static, buffers and outbox included (7.7 KB in the firmware), into `.data`, which costs its
//! size again in flash. A `#[repr(u8)]` enum is laid out as its tag followed by the fields of
//! its variant (RFC 2195, "primitive representation"), so `None` here is a 0 tag and no other
//! initialised byte, whatever `T` is.
//!
//! [`Session::unconfigured`]: super::Session::unconfigured
//! [`Error`]: crate::Error

#[repr(u8)]
pub(super) enum ZeroOption<T> {
    None = 0,
    Some(T) = 1,
}

impl<T> ZeroOption<T> {
    pub(super) fn is_none(&self) -> bool {
        matches!(self, ZeroOption::None)
    }

    pub(super) fn as_ref(&self) -> Option<&T> {
        match self {
            ZeroOption::Some(value) => Some(value),
            ZeroOption::None => None,
        }
    }

    pub(super) fn as_mut(&mut self) -> Option<&mut T> {
        match self {
            ZeroOption::Some(value) => Some(value),
            ZeroOption::None => None,
        }
    }

    pub(super) fn take(&mut self) -> Option<T> {
        match core::mem::replace(self, ZeroOption::None) {
            ZeroOption::Some(value) => Some(value),
            ZeroOption::None => None,
        }
    }
}

/// So that a table of them reads like a table of `Option`s: `slots.iter().flatten()`.
impl<'s, T> IntoIterator for &'s ZeroOption<T> {
    type Item = &'s T;
    type IntoIter = core::option::IntoIter<&'s T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_ref().into_iter()
    }
}

impl<'s, T> IntoIterator for &'s mut ZeroOption<T> {
    type Item = &'s mut T;
    type IntoIter = core::option::IntoIter<&'s mut T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_mut().into_iter()
    }
}
