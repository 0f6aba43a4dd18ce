//! The PROXY protocol (HAProxy's `doc/proxy-protocol.txt`), versions 1 and
//! 2: parsing a header a client's balancer sent, and writing one for a
//! target. Pure functions over bytes; the reactor does the I/O.
//!
//! [`parse`] is given everything received so far and answers "not yet",
//! "a header of `len` bytes", or "not a valid header". It never looks past
//! the header, so the bytes after it belong to the stream, and a header
//! split over any number of segments is read the same as one in a single
//! segment: a prefix of a valid header is always [`Parsed::Incomplete`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it
/// is: receivers reject mapped addresses in a header (haproxy#2963).
pub(crate) fn unmapped(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// The header that tells a target a client at `src` connected to `dst`.
/// Mapped addresses go as IPv4; if one address is IPv4 and the other IPv6
/// even so, both go as IPv6, the only way one header can carry them.
pub(crate) fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = match (unmapped(src), unmapped(dst)) {
        (s @ SocketAddr::V4(_), d @ SocketAddr::V4(_)) => (s, d),
        (s, d) => (as_v6(s), as_v6(d)),
    };
    match version {
        ProxyVersion::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            format!(
                "PROXY {family} {} {} {} {}\r\n",
                src.ip(),
                dst.ip(),
                src.port(),
                dst.port()
            )
            .into_bytes()
        }
        ProxyVersion::V2 => {
            let mut out = Vec::with_capacity(V2_FIXED + 36);
            out.extend_from_slice(&V2_SIGNATURE);
            out.push(0x21); // version 2, PROXY
            match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6_octets(s));
                    out.extend_from_slice(&v6_octets(d));
                }
            }
            out.extend_from_slice(&src.port().to_be_bytes());
            out.extend_from_slice(&dst.port().to_be_bytes());
            out
        }
    }
}

fn as_v6(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(v6_of(addr.ip())), addr.port())
}

fn v6_of(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    v6_of(ip).octets()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn complete(bytes: &[u8]) -> (Header, usize) {
        match parse(bytes) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    fn malformed(bytes: &[u8]) -> &'static str {
        match parse(bytes) {
            Err(Malformed(reason)) => reason,
            other => panic!("expected malformed, got {other:?}"),
        }
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_both_addresses_and_stop_at_crlf() {
        let text = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /";
        let (header, len) = complete(text);
        assert_eq!(len, text.len() - 5);
        assert_eq!(header.version, ProxyVersion::V1);
        assert_eq!(
            header.addresses,
            Some((sa("192.168.0.1:56324"), sa("192.168.0.11:443")))
        );
        let (header, _) = complete(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n");
        assert_eq!(
            header.addresses,
            Some((sa("[2001:db8::1]:1"), sa("[::1]:65535")))
        );
    }

    #[test]
    fn v1_unknown_keeps_the_connection_addresses_whatever_follows() {
        assert_eq!(complete(b"PROXY UNKNOWN\r\n").0.addresses, None);
        let (header, len) = complete(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nx");
        assert_eq!((header.addresses, len), (None, 31));
    }

    #[test]
    fn v1_is_incomplete_until_its_crlf_and_at_most_107_bytes() {
        for prefix in [
            &b"P"[..],
            b"PROXY",
            b"PROXY TCP4 1.2.3.4",
            b"PROXY UNKNOWN\r",
        ] {
            assert_eq!(parse(prefix), Ok(Parsed::Incomplete { total: None }));
        }
        // The spec's worst case: UNKNOWN with two full IPv6 addresses.
        let longest = format!(
            "PROXY UNKNOWN {0} {0} 65535 65535\r\n",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        assert_eq!(longest.len(), V1_MAX);
        complete(longest.as_bytes());
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX, b'a');
        assert!(malformed(&long).contains("107"));
        long.truncate(V1_MAX - 1);
        assert_eq!(parse(&long), Ok(Parsed::Incomplete { total: None }));
        long.extend_from_slice(b"\r\n");
        assert!(malformed(&long).contains("107"));
    }

    #[test]
    fn v1_rejects_what_the_spec_forbids() {
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rx",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY\r\n",
            b"GET / HTTP/1.0\r\n",
            b"SSH-2.0-OpenSSH\r\n",
            b"\x16\x03\x01",
        ] {
            malformed(bad);
        }
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    const TCP4_BODY: [u8; 12] = [10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x01, 0xbb];

    #[test]
    fn v2_proxy_over_tcp4_and_tcp6() {
        let bytes = v2(1, 0x11, &TCP4_BODY);
        let (header, len) = complete(&bytes);
        assert_eq!(len, 28);
        assert_eq!(header.version, ProxyVersion::V2);
        assert_eq!(
            header.addresses,
            Some((sa("10.0.0.1:8080"), sa("10.0.0.2:443")))
        );
        let mut body = [0u8; 36];
        body[15] = 1; // ::1
        body[16] = 0x20;
        body[17] = 0x01; // 2001::
        body[32..36].copy_from_slice(&[0, 80, 0, 81]);
        let (header, _) = complete(&v2(1, 0x21, &body));
        assert_eq!(header.addresses, Some((sa("[::1]:80"), sa("[2001::]:81"))));
    }

    #[test]
    fn v2_skips_tlvs_by_the_length_and_leaves_the_stream() {
        let mut body = TCP4_BODY.to_vec();
        body.extend_from_slice(&[0x05, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_UNIQUE_ID
        body.extend_from_slice(&[0x04, 0x00, 0x02, 0, 0]); // NOOP
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"payload");
        let (header, len) = complete(&bytes);
        assert_eq!(len, bytes.len() - 7);
        assert!(header.addresses.is_some());
    }

    #[test]
    fn v2_local_keeps_the_connection_addresses_and_skips_its_body() {
        // AWS NLB health checks: LOCAL with a dummy address block.
        let bytes = v2(0, 0x11, &TCP4_BODY);
        assert_eq!(
            complete(&bytes),
            (
                Header {
                    version: ProxyVersion::V2,
                    addresses: None
                },
                28
            )
        );
        assert_eq!(complete(&v2(0, 0x00, &[])).1, 16);
        // LOCAL need not carry a family it could use.
        assert_eq!(complete(&v2(0, 0x12, &[1, 2, 3])).1, 19);
    }

    #[test]
    fn v2_unspec_and_unix_keep_the_connection_addresses() {
        assert_eq!(complete(&v2(1, 0x00, &[])).0.addresses, None);
        assert_eq!(complete(&v2(1, 0x31, &[0; 216])).0.addresses, None);
    }

    #[test]
    fn v2_says_how_long_it_is_once_the_fixed_part_is_in() {
        let bytes = v2(1, 0x11, &TCP4_BODY);
        for n in 0..V2_FIXED {
            assert_eq!(parse(&bytes[..n]), Ok(Parsed::Incomplete { total: None }));
        }
        for n in V2_FIXED..bytes.len() {
            assert_eq!(
                parse(&bytes[..n]),
                Ok(Parsed::Incomplete { total: Some(28) })
            );
        }
    }

    #[test]
    fn v2_rejects_versions_commands_and_families_it_cannot_use() {
        let mut bytes = v2(1, 0x11, &TCP4_BODY);
        bytes[12] = 0x11;
        assert!(malformed(&bytes).contains("version"));
        bytes[12] = 0x22;
        assert!(malformed(&bytes).contains("command"));
        for family in [0x12, 0x22, 0x32, 0x10, 0x41] {
            malformed(&v2(1, family, &[0; 216]));
        }
        assert!(malformed(&v2(1, 0x11, &[0; 11])).contains("too short"));
        assert!(malformed(&v2(1, 0x21, &[0; 35])).contains("too short"));
        let mut bad_signature = v2(1, 0x11, &TCP4_BODY);
        bad_signature[11] = b'X';
        malformed(&bad_signature);
        malformed(b"\r\n\r\nHTTP");
    }

    #[test]
    fn encoded_headers_are_what_haproxy_expects() {
        assert_eq!(
            encode(ProxyVersion::V1, sa("1.2.3.4:5"), sa("6.7.8.9:10")),
            b"PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n"
        );
        assert_eq!(
            encode(
                ProxyVersion::V1,
                sa("[::ffff:1.2.3.4]:5"),
                sa("[::ffff:6.7.8.9]:10")
            ),
            b"PROXY TCP4 1.2.3.4 6.7.8.9 5 10\r\n",
            "mapped addresses go as IPv4"
        );
        assert_eq!(
            encode(ProxyVersion::V1, sa("1.2.3.4:5"), sa("[::1]:10")),
            b"PROXY TCP6 ::ffff:1.2.3.4 ::1 5 10\r\n"
        );
        assert_eq!(
            encode(ProxyVersion::V2, sa("10.0.0.1:8080"), sa("10.0.0.2:443")),
            v2(1, 0x11, &TCP4_BODY)
        );
        assert_eq!(
            encode(
                ProxyVersion::V2,
                sa("[::ffff:10.0.0.1]:8080"),
                sa("10.0.0.2:443")
            )
            .len(),
            28
        );
    }

    fn any_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        let v4 = (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(s, d, sp, dp)| {
                (
                    SocketAddr::new(IpAddr::from(s), sp),
                    SocketAddr::new(IpAddr::from(d), dp),
                )
            });
        let v6 = (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>(),
        )
            .prop_map(|(s, d, sp, dp)| {
                (
                    SocketAddr::new(IpAddr::from(s), sp),
                    SocketAddr::new(IpAddr::from(d), dp),
                )
            });
        prop_oneof![v4, v6]
    }

    /// 4096 cases per property in every `cargo test`; a long run sets
    /// `TCPIPE_PROPTEST_CASES` (the README says what ran).
    fn cases() -> u32 {
        std::env::var("TCPIPE_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4096)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// Whatever arrives, the parser answers without panicking, and a
        /// header it accepts lies within what arrived.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        /// The same after a valid start, where most of the parser's paths are.
        #[test]
        fn a_valid_start_then_garbage_never_panics(
            v2_start in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut bytes = if v2_start { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            bytes.extend_from_slice(&tail);
            if let Ok(Parsed::Complete { len, .. }) = parse(&bytes) {
                prop_assert!(len <= bytes.len());
            }
        }

        /// A valid header, with TLVs and stream bytes behind it, read at
        /// every split: each prefix is incomplete, and the whole gives the
        /// addresses sent and exactly the header's length.
        #[test]
        fn a_valid_header_parses_at_every_split(
            (src, dst) in any_pair(),
            version in prop_oneof![Just(ProxyVersion::V1), Just(ProxyVersion::V2)],
            tlvs in proptest::collection::vec(any::<u8>(), 0..64),
            stream in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut header = encode(version, src, dst);
            if version == ProxyVersion::V2 {
                // Append the TLV bytes, raw, and count them in the length:
                // a receiver skips them by length whatever they hold.
                let rest = u16::from_be_bytes([header[14], header[15]]) as usize + tlvs.len();
                header[14..16].copy_from_slice(&(rest as u16).to_be_bytes());
                header.extend_from_slice(&tlvs);
            }
            let mut bytes = header.clone();
            bytes.extend_from_slice(&stream);
            for n in 0..header.len() {
                let prefix = parse(&bytes[..n]);
                prop_assert!(matches!(prefix, Ok(Parsed::Incomplete { .. })), "{n}: {prefix:?}");
            }
            for n in header.len()..=bytes.len() {
                let (parsed, len) = match parse(&bytes[..n]) {
                    Ok(Parsed::Complete { header, len }) => (header, len),
                    other => return Err(TestCaseError::fail(format!("{n}: {other:?}"))),
                };
                prop_assert_eq!(len, header.len());
                prop_assert_eq!(parsed.version, version);
                let (want_src, want_dst) = match (unmapped(src), unmapped(dst)) {
                    (s @ SocketAddr::V4(_), d @ SocketAddr::V4(_)) => (s, d),
                    (s, d) => (as_v6(s), as_v6(d)),
                };
                prop_assert_eq!(parsed.addresses, Some((want_src, want_dst)));
            }
        }
    }
}
