//! Big-endian TLS fields read off a byte slice, every read checked: a
//! field that runs past the end is `None`, never a panic, whatever length
//! a peer wrote in front of it.

/// The bytes not read yet.
pub(super) struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Cursor(bytes)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(taken)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        let bytes: [u8; 2] = self.take(2)?.try_into().ok()?;
        Some(u16::from_be_bytes(bytes))
    }

    pub(super) fn u24(&mut self) -> Option<usize> {
        let [a, b, c]: [u8; 3] = self.take(3)?.try_into().ok()?;
        Some((usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c))
    }

    /// A vector with a one-byte length (`opaque x<0..2^8-1>`).
    pub(super) fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length (`opaque x<0..2^16-1>`).
    pub(super) fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn reads_fields_in_order_and_refuses_to_run_past_the_end() {
        let mut c = Cursor::new(&[1, 0, 2, 0, 0, 3, 2, b'h', b'2', 0, 5, 9]);
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.u16(), Some(2));
        assert_eq!(c.u24(), Some(3));
        assert_eq!(c.vec8(), Some(&b"h2"[..]));
        assert_eq!(c.vec16(), None, "5 bytes announced, 1 left");
        assert_eq!(c.take(2), None);
        assert_eq!(c.take(1), Some(&[9][..]));
        assert!(c.is_empty());
        assert_eq!((c.u8(), c.u16(), c.u24()), (None, None, None));
    }
}
