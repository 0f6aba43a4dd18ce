//! A compact binary encoding for state one tcpipe process hands another
//! (a live upgrade): fixed-width little-endian integers and
//! length-prefixed byte strings, written in a fixed order and read back in
//! the same order.
//!
//! Why not serde: the library builds without it, and the state is a few
//! dozen fields a record (plus ring contents, which are raw bytes). Why not
//! a self-describing format: both ends of a handover check one version
//! number first and refuse what they do not know, so field names on the
//! wire would buy nothing but size. Every read is bounds-checked: a short
//! or corrupt message is an error, never a panic or an allocation the
//! message did not pay for.

use std::fmt;
use std::time::Duration;

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    /// The message ended inside a field.
    Truncated,
    /// A field holds a value its type does not allow.
    Invalid(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("message ends inside a field"),
            WireError::Invalid(what) => write!(f, "invalid {what}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends fields to a message.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Writer {
        self.bytes.push(value);
        self
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Writer {
        self.u8(u8::from(value))
    }

    pub(crate) fn u16(&mut self, value: u16) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Writer {
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A length (u32) then the bytes.
    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Writer {
        // A handover never carries a field of 4 GiB: rings are capped at 1g.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.bytes.extend_from_slice(&value[..len as usize]);
        self
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Writer {
        self.bytes(value.as_bytes())
    }

    /// Milliseconds, as u64 (a deadline's time left, never an `Instant`).
    pub(crate) fn duration(&mut self, value: Duration) -> &mut Writer {
        self.u64(u64::try_from(value.as_millis()).unwrap_or(u64::MAX))
    }

    /// A presence byte, then the value if present.
    pub(crate) fn option<T>(
        &mut self,
        value: Option<T>,
        put: impl FnOnce(&mut Writer, T),
    ) -> &mut Writer {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                put(self, value);
                self
            }
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Takes fields off the front of a message, in the order they were written.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid("boolean")),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }

    /// A length-prefixed field, borrowed from the message: its length is
    /// checked against what is left before anything is allocated.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Invalid("UTF-8 text"))
    }

    pub(crate) fn duration(&mut self) -> Result<Duration, WireError> {
        self.u64().map(Duration::from_millis)
    }

    pub(crate) fn option<T>(
        &mut self,
        get: impl FnOnce(&mut Reader<'a>) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => get(self).map(Some),
            _ => Err(WireError::Invalid("presence byte")),
        }
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The message must end here: trailing bytes mean the two ends
    /// disagree about the format.
    pub(crate) fn end(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Invalid("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Field {
        U8(u8),
        Bool(bool),
        U16(u16),
        U32(u32),
        U64(u64),
        Bytes(Vec<u8>),
        Str(String),
        Millis(u64),
        Maybe(Option<u32>),
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            any::<u8>().prop_map(Field::U8),
            any::<bool>().prop_map(Field::Bool),
            any::<u16>().prop_map(Field::U16),
            any::<u32>().prop_map(Field::U32),
            any::<u64>().prop_map(Field::U64),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Field::Bytes),
            ".{0,16}".prop_map(Field::Str),
            any::<u64>().prop_map(Field::Millis),
            any::<Option<u32>>().prop_map(Field::Maybe),
        ]
    }

    fn write(writer: &mut Writer, field: &Field) {
        match field {
            Field::U8(v) => writer.u8(*v),
            Field::Bool(v) => writer.bool(*v),
            Field::U16(v) => writer.u16(*v),
            Field::U32(v) => writer.u32(*v),
            Field::U64(v) => writer.u64(*v),
            Field::Bytes(v) => writer.bytes(v),
            Field::Str(v) => writer.str(v),
            Field::Millis(v) => writer.duration(Duration::from_millis(*v)),
            Field::Maybe(v) => writer.option(*v, |w, v| {
                w.u32(v);
            }),
        };
    }

    fn read(reader: &mut Reader<'_>, like: &Field) -> Result<Field, WireError> {
        Ok(match like {
            Field::U8(_) => Field::U8(reader.u8()?),
            Field::Bool(_) => Field::Bool(reader.bool()?),
            Field::U16(_) => Field::U16(reader.u16()?),
            Field::U32(_) => Field::U32(reader.u32()?),
            Field::U64(_) => Field::U64(reader.u64()?),
            Field::Bytes(_) => Field::Bytes(reader.bytes()?.to_vec()),
            Field::Str(_) => Field::Str(reader.str()?.to_string()),
            Field::Millis(_) => Field::Millis(reader.duration()?.as_millis() as u64),
            Field::Maybe(_) => Field::Maybe(reader.option(|r| r.u32())?),
        })
    }

    proptest! {
        #[test]
        fn every_sequence_of_fields_reads_back_as_written(
            fields in proptest::collection::vec(field(), 0..32)
        ) {
            let mut writer = Writer::new();
            for f in &fields {
                write(&mut writer, f);
            }
            let bytes = writer.finish();
            let mut reader = Reader::new(&bytes);
            for f in &fields {
                prop_assert_eq!(&read(&mut reader, f)?, f);
            }
            prop_assert!(reader.end().is_ok());
        }

        #[test]
        fn a_cut_message_is_an_error_never_a_panic(
            fields in proptest::collection::vec(field(), 1..16),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut writer = Writer::new();
            for f in &fields {
                write(&mut writer, f);
            }
            let bytes = writer.finish();
            let short = &bytes[..cut.index(bytes.len())];
            let mut reader = Reader::new(short);
            let whole = fields.iter().try_for_each(|f| read(&mut reader, f).map(drop));
            prop_assert!(whole.is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic_or_overallocate(
            bytes in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut reader = Reader::new(&bytes);
            while !reader.is_empty() {
                match reader.u8() {
                    Ok(0) => { let _ = reader.bytes(); }
                    Ok(1) => { let _ = reader.str(); }
                    Ok(2) => { let _ = reader.option(|r| r.u64()); }
                    Ok(_) => { let _ = reader.bool(); }
                    Err(_) => break,
                }
            }
        }
    }
}
