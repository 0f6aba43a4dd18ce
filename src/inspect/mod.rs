//! Inspecting a client's first bytes to choose its route: the TLS
//! ClientHello's server name and ALPN, or the protocol it speaks.
//!
//! Inspection peeks and never consumes: the reactor reads with `MSG_PEEK`
//! (or keeps what it read) and hands these pure functions everything the
//! client has sent so far, as the PROXY protocol stage does; the target
//! later receives the client's bytes untouched, the hello included. Each
//! function answers "need more" for any prefix that could still become a
//! valid answer, so segmentation never changes the verdict.
//!
//! | module         | the idea                                                 |
//! |----------------|----------------------------------------------------------|
//! | `client_hello` | a ClientHello reassembled across records: SNI, ALPN, ECH |
//! | `sniff`        | TLS, SSH, HTTP or other, from the first bytes            |
//! | `cursor`       | checked big-endian reads of TLS fields                   |

mod client_hello;
mod cursor;
mod sniff;

pub(crate) use client_hello::{
    parse as parse_client_hello, ClientHello, Inspected, Malformed, DEFAULT_MAX_BYTES,
    MIN_MAX_BYTES,
};
pub(crate) use sniff::{sniff, Protocol, Sniffed, SNIFF_MAX};

#[cfg(test)]
mod tests;
