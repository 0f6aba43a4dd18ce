use std::net::{IpAddr, SocketAddr};

use super::encode::{as_v6, unmapped};
use super::parse::Malformed;
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
