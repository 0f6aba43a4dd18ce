//! Reading a header from what a client sent so far.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{ProxyVersion, V1_MAX, V2_FIXED, V2_SIGNATURE};

/// A complete header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) version: ProxyVersion,
    /// The client's address and the address it connected to, as the
    /// sender saw them; `None` keeps the connection's own addresses (v2
    /// LOCAL, v1 UNKNOWN, v2 UNSPEC or UNIX).
    pub(crate) addresses: Option<(SocketAddr, SocketAddr)>,
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A valid header may still follow; `total` is its length once known
    /// (v2, after its fixed part).
    Incomplete { total: Option<usize> },
    /// A header of the first `len` bytes.
    Complete { header: Header, len: usize },
}

/// Why the bytes are not a header tcpipe accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub(crate) &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads a header from the start of `received`.
pub(crate) fn parse(received: &[u8]) -> Result<Parsed, Malformed> {
    const INCOMPLETE: Parsed = Parsed::Incomplete { total: None };
    let Some(&first) = received.first() else {
        return Ok(INCOMPLETE);
    };
    if first == V2_SIGNATURE[0] {
        let n = received.len().min(V2_SIGNATURE.len());
        if received[..n] != V2_SIGNATURE[..n] {
            return Err(Malformed("not a PROXY protocol header"));
        }
        if received.len() < V2_FIXED {
            return Ok(INCOMPLETE);
        }
        parse_v2(received)
    } else {
        const PREFIX: &[u8] = b"PROXY ";
        let n = received.len().min(PREFIX.len());
        if received[..n] != PREFIX[..n] {
            return Err(Malformed("not a PROXY protocol header"));
        }
        parse_v1(received)
    }
}

fn parse_v1(received: &[u8]) -> Result<Parsed, Malformed> {
    let window = &received[..received.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if window.len() == V1_MAX {
            return Err(Malformed("v1 header longer than 107 bytes"));
        }
        if window.contains(&b'\n') {
            return Err(Malformed("v1 header ends in LF without CR"));
        }
        return Ok(Parsed::Incomplete { total: None });
    };
    match received.get(cr + 1) {
        None if cr + 1 < V1_MAX => return Ok(Parsed::Incomplete { total: None }),
        Some(b'\n') => {}
        _ => return Err(Malformed("v1 header: CR not followed by LF")),
    }
    let len = cr + 2;
    if len > V1_MAX {
        return Err(Malformed("v1 header longer than 107 bytes"));
    }
    let line =
        std::str::from_utf8(&received[6..cr]).map_err(|_| Malformed("v1 header is not ASCII"))?;
    let addresses = v1_addresses(line)?;
    Ok(Parsed::Complete {
        header: Header {
            version: ProxyVersion::V1,
            addresses,
        },
        len,
    })
}

/// The fields after `PROXY `.
fn v1_addresses(line: &str) -> Result<Option<(SocketAddr, SocketAddr)>, Malformed> {
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // The sender could not tell; the rest of the line is to be ignored.
        return Ok(None);
    }
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(Malformed(
                "v1 header: protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = fields.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(Malformed("v1 header: expected 4 fields after the protocol"));
    };
    let ip = |text: &str| -> Result<IpAddr, Malformed> {
        let parsed = if v6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| Malformed("v1 header: address does not match the protocol"))
    };
    let port = |text: &str| -> Result<u16, Malformed> {
        let plain = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        plain
            .then(|| text.parse::<u16>().ok())
            .flatten()
            .ok_or(Malformed(
                "v1 header: port is not 0 to 65535 without leading zeros",
            ))
    };
    Ok(Some((
        SocketAddr::new(ip(src)?, port(sport)?),
        SocketAddr::new(ip(dst)?, port(dport)?),
    )))
}

fn parse_v2(received: &[u8]) -> Result<Parsed, Malformed> {
    let version_command = received[12];
    if version_command >> 4 != 2 {
        return Err(Malformed("v2 header: version is not 2"));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(Malformed("v2 header: command is neither LOCAL nor PROXY")),
    };
    let family = received[13];
    let rest = usize::from(u16::from_be_bytes([received[14], received[15]]));
    let total = V2_FIXED + rest;
    if received.len() < total {
        return Ok(Parsed::Incomplete { total: Some(total) });
    }
    let body = &received[V2_FIXED..total];
    let header = |addresses| Parsed::Complete {
        header: Header {
            version: ProxyVersion::V2,
            addresses,
        },
        len: total,
    };
    if local {
        // A health check or the balancer's own connection: whatever the
        // address block says (AWS NLB sends dummies), skip it all.
        return Ok(header(None));
    }
    let addresses = match family {
        0x00 => None,
        0x11 => {
            let a: &[u8; 12] = body
                .get(..12)
                .and_then(|a| a.try_into().ok())
                .ok_or(Malformed("v2 header: too short for TCP over IPv4"))?;
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        0x21 => {
            let a: &[u8; 36] = body
                .get(..36)
                .and_then(|a| a.try_into().ok())
                .ok_or(Malformed("v2 header: too short for TCP over IPv6"))?;
            let ip = |at: usize| {
                let octets: [u8; 16] = a[at..at + 16].try_into().unwrap_or([0; 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // A UNIX stream socket has no address a target could use: keep
        // the connection's own.
        0x31 => None,
        _ => {
            return Err(Malformed(
                "v2 header: not a TCP, UNIX stream or UNSPEC address",
            ))
        }
    };
    Ok(header(addresses))
}
