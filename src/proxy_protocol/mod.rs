//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), versions 1 and
//! 2: parsing a header a client's balancer sent, and writing one for a
//! target. Pure functions over bytes; the reactor does the I/O.
//!
//! [`parse`] is given everything received so far and answers "not yet",
//! "a header of `len` bytes", or "not a valid header". It never looks past
//! the header, so the bytes after it belong to the stream, and a header
//! split over any number of segments is read the same as one in a single
//! segment: a prefix of a valid header is always [`Parsed::Incomplete`].

mod encode;
mod parse;

use std::fmt;

pub(crate) use encode::encode;
pub(crate) use parse::{parse, Header, Parsed};

/// The 12 bytes every v2 header starts with.
pub(crate) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, CRLF included.
pub(crate) const V1_MAX: usize = 107;
/// The fixed part of a v2 header, before its addresses and TLVs.
pub(crate) const V2_FIXED: usize = 16;

/// The protocol version a route sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "cli",
    derive(serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum ProxyVersion {
    /// The text form: `PROXY TCP4 src dst sport dport\r\n`.
    V1,
    /// The binary form.
    V2,
}

impl fmt::Display for ProxyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        })
    }
}

#[cfg(test)]
mod tests;
