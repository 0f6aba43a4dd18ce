//! The ClientHello parser against hellos real clients sent (the fixtures:
//! OpenSSL's `s_client` and Python's `ssl`, see fixtures/README.md), those
//! re-split into records as large or post-quantum hellos are, and hellos
//! built here to reach each rule of RFC 8446, 6066 and 7301.

use proptest::prelude::*;

use super::client_hello::{
    is_tls_record_start, parse, ClientHello, Inspected, Malformed, DEFAULT_MAX_BYTES, MIN_MAX_BYTES,
};

const OPENSSL: &str = include_str!("fixtures/openssl_s_client.hex");
const OPENSSL_NO_SNI: &str = include_str!("fixtures/openssl_no_sni.hex");
const PYTHON: &str = include_str!("fixtures/python_ssl.hex");

const SERVER_NAME: u16 = 0;
const ALPN: u16 = 16;
const PADDING: u16 = 21;
const ECH: u16 = 0xfe0d;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The handshake message carried by the records of `stream`.
fn message_of(stream: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    let mut at = 0;
    while at + 5 <= stream.len() {
        let len = usize::from(u16::from_be_bytes([stream[at + 3], stream[at + 4]]));
        message.extend_from_slice(&stream[at + 5..at + 5 + len]);
        at += 5 + len;
    }
    let total = 4
        + (usize::from(message[1]) << 16 | usize::from(message[2]) << 8)
        + usize::from(message[3]);
    message.truncate(total);
    message
}

/// The fragments of whatever records `stream` holds, joined.
fn fragments(stream: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    let mut at = 0;
    while at + 5 <= stream.len() {
        let len = usize::from(u16::from_be_bytes([stream[at + 3], stream[at + 4]]));
        let end = (at + 5 + len).min(stream.len());
        joined.extend_from_slice(&stream[at + 5..end]);
        at = end;
    }
    joined
}

/// `message` in handshake records whose fragments take `sizes` bytes in
/// turn, cycling, the last one what is left.
fn in_records(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut stream = Vec::new();
    let mut rest = message;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (fragment, tail) = rest.split_at(size.clamp(1, 1 << 14).min(rest.len()));
        stream.extend_from_slice(&[22, 3, 1]);
        stream.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        stream.extend_from_slice(fragment);
        rest = tail;
    }
    stream
}

/// A ClientHello message: what comes before the extensions, and them.
struct Parts {
    fixed: Vec<u8>,
    extensions: Vec<(u16, Vec<u8>)>,
}

impl Parts {
    /// Splits a valid hello message.
    fn of(message: &[u8]) -> Parts {
        let mut at = 4 + 2 + 32;
        at += 1 + usize::from(message[at]);
        at += 2 + usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
        at += 1 + usize::from(message[at]);
        let fixed = message[4..at].to_vec();
        let mut extensions = Vec::new();
        let mut e = at + 2;
        while e < message.len() {
            let kind = u16::from_be_bytes([message[e], message[e + 1]]);
            let len = usize::from(u16::from_be_bytes([message[e + 2], message[e + 3]]));
            extensions.push((kind, message[e + 4..e + 4 + len].to_vec()));
            e += 4 + len;
        }
        Parts { fixed, extensions }
    }

    /// A TLS 1.3-style hello with no extensions yet.
    fn plain() -> Parts {
        let mut fixed = vec![3, 3];
        fixed.extend_from_slice(&[7; 32]);
        fixed.push(32);
        fixed.extend_from_slice(&[9; 32]);
        fixed.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02, 1, 0]);
        Parts {
            fixed,
            extensions: Vec::new(),
        }
    }

    fn without(mut self, kinds: &[u16]) -> Parts {
        self.extensions.retain(|(kind, _)| !kinds.contains(kind));
        self
    }

    fn with(mut self, kind: u16, data: Vec<u8>) -> Parts {
        self.extensions.push((kind, data));
        self
    }

    fn message(&self) -> Vec<u8> {
        let mut block = Vec::new();
        for (kind, data) in &self.extensions {
            block.extend_from_slice(&kind.to_be_bytes());
            block.extend_from_slice(&(data.len() as u16).to_be_bytes());
            block.extend_from_slice(data);
        }
        let mut body = self.fixed.clone();
        body.extend_from_slice(&(block.len() as u16).to_be_bytes());
        body.extend_from_slice(&block);
        let mut message = vec![1];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }
}

fn vec16(data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(data);
    out
}

fn sni(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0];
    entry.extend_from_slice(&vec16(name));
    vec16(&entry)
}

fn alpn(names: &[&[u8]]) -> Vec<u8> {
    let mut list = Vec::new();
    for name in names {
        list.push(name.len() as u8);
        list.extend_from_slice(name);
    }
    vec16(&list)
}

fn hello(stream: &[u8]) -> ClientHello {
    match parse(stream, DEFAULT_MAX_BYTES) {
        Inspected::Hello(hello) => hello,
        other => panic!("expected a hello, got {other:?}"),
    }
}

fn malformed(stream: &[u8]) -> Malformed {
    match parse(stream, DEFAULT_MAX_BYTES) {
        Inspected::Malformed(kind) => kind,
        other => panic!("expected malformed, got {other:?}"),
    }
}

/// Every proper prefix of `stream` needs more; the whole is the hello.
fn at_every_prefix(stream: &[u8]) -> ClientHello {
    for n in 0..stream.len() {
        let early = parse(&stream[..n], DEFAULT_MAX_BYTES);
        assert_eq!(early, Inspected::NeedMore, "prefix of {n} bytes");
    }
    hello(stream)
}

fn names(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|n| n.as_bytes().to_vec()).collect()
}

#[test]
fn openssl_s_client_gives_its_name_and_alpn_at_its_last_byte() {
    let stream = hex(OPENSSL);
    let got = at_every_prefix(&stream);
    assert_eq!(
        got,
        ClientHello {
            server_name: Some("a.example".into()),
            alpn: names(&["h2", "http/1.1"]),
            ech: false,
            len: stream.len(),
        }
    );
    let got = hello(&hex(OPENSSL_NO_SNI));
    assert_eq!((got.server_name, got.alpn), (None, vec![]));
}

#[test]
fn python_ssl_gives_its_name_in_lowercase() {
    let got = at_every_prefix(&hex(PYTHON));
    assert_eq!(got.server_name.as_deref(), Some("b.example.org"));
    assert_eq!(got.alpn, names(&["http/1.1", "acme-tls/1"]));
}

#[test]
fn a_hello_one_byte_per_record_reads_the_same() {
    for fixture in [OPENSSL, PYTHON] {
        let stream = hex(fixture);
        let split = in_records(&message_of(&stream), &[1]);
        let got = at_every_prefix(&split);
        assert_eq!(got.len, split.len());
        assert_eq!(
            (got.server_name, got.alpn),
            (hello(&stream).server_name, hello(&stream).alpn)
        );
    }
}

#[test]
fn a_post_quantum_sized_hello_over_several_records_is_read_whole() {
    // A real hello padded past 4 KiB, as X25519MLKEM768 key shares and a
    // few tickets make it, in records of 1400 bytes as a TCP MSS would cut.
    let message = Parts::of(&message_of(&hex(OPENSSL)))
        .with(PADDING, vec![0; 4200])
        .message();
    assert!(message.len() > 4096);
    let stream = in_records(&message, &[1400]);
    assert_eq!(stream.len(), message.len() + 4 * 5);
    let got = at_every_prefix(&stream);
    assert_eq!(got.server_name.as_deref(), Some("a.example"));
    assert_eq!(got.alpn, names(&["h2", "http/1.1"]));
}

#[test]
fn the_bound_is_the_stream_bytes_the_hello_takes() {
    // 16 KiB of handshake in two records fits the default bound.
    let big = Parts::plain()
        .with(SERVER_NAME, sni(b"big.example"))
        .with(PADDING, vec![0; 16 * 1024 - 100])
        .message();
    assert!(big.len() > 16 * 1024 - 60);
    let stream = in_records(&big, &[1 << 14]);
    assert_eq!(
        hello(&stream).server_name.as_deref(),
        Some("big.example"),
        "{} bytes",
        stream.len()
    );
    // Under a smaller bound the same hello is too large, said as soon as
    // its length is known, and before that it still needs more.
    let bound = 4096;
    for n in 0..9 {
        assert_eq!(parse(&stream[..n], bound), Inspected::NeedMore);
    }
    for n in [9, 100, 4095, 4096, stream.len()] {
        assert_eq!(
            parse(&stream[..n], bound),
            Inspected::Malformed(Malformed::TooLarge),
            "{n}"
        );
    }
    // A length that no bound allows, from the first 9 bytes.
    assert_eq!(
        malformed(&[22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
        Malformed::TooLarge
    );
    // Records of one byte cost five more each: a 4000-byte hello does not
    // fit in 4096 bytes of stream that way, and is found out once the
    // bound is reached.
    let message = Parts::plain().with(PADDING, vec![0; 3900]).message();
    let stream = in_records(&message, &[1]);
    assert_eq!(parse(&stream[..4095], 4096), Inspected::NeedMore);
    assert_eq!(
        parse(&stream[..4096], 4096),
        Inspected::Malformed(Malformed::TooLarge)
    );
    // A bound below the floor is read as the floor.
    let small = in_records(&Parts::plain().message(), &[1000]);
    assert!(small.len() < MIN_MAX_BYTES);
    assert!(matches!(parse(&small, 0), Inspected::Hello(_)));
}

#[test]
fn what_follows_the_hello_is_not_looked_at() {
    let stream = hex(OPENSSL);
    let mut more = stream.clone();
    // 0-RTT data, or anything else: the hello ends where it ends.
    more.extend_from_slice(&[23, 3, 3, 0, 2, 0xde, 0xad, 0xff]);
    let got = hello(&more);
    assert_eq!(got.len, stream.len());
    assert_eq!(got.server_name.as_deref(), Some("a.example"));
}

#[test]
fn ech_routes_on_the_outer_name() {
    let message = Parts::of(&message_of(&hex(OPENSSL)))
        .with(ECH, vec![0, 0, 1, 0, 1, 7, 0, 2, 0xaa, 0xbb, 0, 1, 0xcc])
        .message();
    let got = hello(&in_records(&message, &[300]));
    assert!(got.ech);
    assert_eq!(got.server_name.as_deref(), Some("a.example"));
    assert!(!hello(&hex(OPENSSL)).ech);
}

#[test]
fn first_bytes_that_are_not_a_handshake_record_are_not_tls() {
    for bytes in [
        // An SSLv2-style hello, as very old clients and scanners send.
        &[0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15][..],
        b"GET / HTTP/1.1\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        &[21, 3, 1, 0, 2, 2, 40], // an alert
        &[23, 3, 3, 0, 1, 0],     // application data
        &[20, 3, 3, 0, 1, 1],     // change cipher spec
        &[22, 2, 0, 0, 1, 1],
        &[22, 3, 5, 0, 1, 1],
        &[22, 0xfe, 0xfd, 0, 0], // DTLS
        &[0],
    ] {
        assert_eq!(
            parse(bytes, DEFAULT_MAX_BYTES),
            Inspected::NotTls,
            "{bytes:?}"
        );
    }
    assert_eq!(is_tls_record_start(&[22, 3]), None);
    assert_eq!(is_tls_record_start(&[22, 3, 0]), Some(true));
}

#[test]
fn bad_records_are_told_apart_from_bad_hellos() {
    let message = message_of(&hex(OPENSSL));
    let stream = in_records(&message, &[100]);
    // A zero-length or oversized fragment, in the first or a later record.
    assert_eq!(malformed(&[22, 3, 1, 0, 0]), Malformed::Record);
    assert_eq!(malformed(&[22, 3, 1, 0x40, 0x01]), Malformed::Record);
    let mut bad = stream.clone();
    bad[105..110].copy_from_slice(&[22, 3, 1, 0, 0]);
    assert_eq!(malformed(&bad[..110]), Malformed::Record);
    // Another record type or version before the hello is complete.
    for (at, byte) in [(105, 21), (105, 23), (106, 2)] {
        let mut bad = stream.clone();
        bad[at] = byte;
        assert_eq!(malformed(&bad[..110]), Malformed::Record, "{at} {byte}");
    }
    // The minor version of later records is ignored.
    let mut other_minor = stream.clone();
    other_minor[107] = 3;
    assert!(matches!(
        parse(&other_minor, DEFAULT_MAX_BYTES),
        Inspected::Hello(_)
    ));
}

#[test]
fn a_handshake_that_is_not_a_valid_client_hello_is_bad_handshake() {
    // A ServerHello type, told from the first handshake byte.
    assert_eq!(malformed(&[22, 3, 1, 0, 40, 2]), Malformed::Handshake);
    let one_byte = in_records(&[2, 0, 0, 40], &[1]);
    assert_eq!(malformed(&one_byte[..6]), Malformed::Handshake);
    let good = Parts::plain().with(SERVER_NAME, sni(b"a.example"));
    let check = |edit: &dyn Fn(&mut Parts)| {
        let mut parts = Parts {
            fixed: good.fixed.clone(),
            extensions: good.extensions.clone(),
        };
        edit(&mut parts);
        malformed(&in_records(&parts.message(), &[500]))
    };
    assert_eq!(
        check(&|p| p.fixed[0] = 2),
        Malformed::Handshake,
        "version 2.x"
    );
    assert_eq!(check(&|p| p.fixed[34] = 33), Malformed::Handshake);
    // Cipher suites of odd or zero length, no compression method.
    let fixed_with = |suites: &[u8], methods: &[u8]| {
        let mut fixed = vec![3, 3];
        fixed.extend_from_slice(&[0; 33]);
        fixed.extend_from_slice(&vec16(suites));
        fixed.push(methods.len() as u8);
        fixed.extend_from_slice(methods);
        fixed
    };
    for (suites, methods) in [
        (&[0x13, 1, 2][..], &[0][..]),
        (&[], &[0]),
        (&[0x13, 1], &[]),
    ] {
        let fixed = fixed_with(suites, methods);
        assert_eq!(check(&|p| p.fixed = fixed.clone()), Malformed::Handshake);
    }
    // Bytes after the extensions, inside the message.
    let mut trailing = good.message();
    trailing.extend_from_slice(&[0, 0]);
    let len = (trailing.len() - 4) as u32;
    trailing[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        malformed(&in_records(&trailing, &[500])),
        Malformed::Handshake
    );
    // A TLS 1.2 hello may have no extensions at all.
    let mut bare = Parts::plain().message();
    bare.truncate(bare.len() - 2);
    let len = (bare.len() - 4) as u32;
    bare[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert_eq!(
        hello(&in_records(&bare, &[500])),
        ClientHello {
            len: bare.len() + 5,
            ..ClientHello::default()
        }
    );
}

#[test]
fn malformed_or_repeated_extensions_are_bad_extension() {
    let bad = |parts: Parts| malformed(&in_records(&parts.message(), &[700]));
    let plain = Parts::plain;
    assert_eq!(
        bad(plain()
            .with(SERVER_NAME, sni(b"a.example"))
            .with(SERVER_NAME, sni(b"b.example"))),
        Malformed::Extension
    );
    assert_eq!(
        bad(plain().with(PADDING, vec![]).with(PADDING, vec![])),
        Malformed::Extension
    );
    for data in [
        vec![],                          // the server's empty reply form
        vec![0, 0],                      // an empty list
        vec![0, 5, 0, 0, 1, b'a'],       // list longer than the extension
        vec![0, 4, 0, 0, 1, b'a', 0xff], // bytes after the list
        vec![0, 3, 0, 0, 0],             // an empty name
        [sni(b"a.example"), vec![]].concat()[2..].to_vec(),
    ] {
        assert_eq!(
            bad(plain().with(SERVER_NAME, data.clone())),
            Malformed::Extension,
            "{data:?}"
        );
    }
    // Two host_names in one list; another name type is skipped.
    let entry = |kind: u8, name: &[u8]| [vec![kind], vec16(name)].concat();
    let two = vec16(&[entry(0, b"a.example"), entry(0, b"b.example")].concat());
    assert_eq!(bad(plain().with(SERVER_NAME, two)), Malformed::Extension);
    let other_type = vec16(&[entry(7, b"\x01\x02"), entry(0, b"a.example")].concat());
    let got = hello(&in_records(
        &plain().with(SERVER_NAME, other_type).message(),
        &[700],
    ));
    assert_eq!(got.server_name.as_deref(), Some("a.example"));
    for data in [
        vec![],
        vec![0, 0],
        vec![0, 1, 0],
        vec![0, 3, 2, b'h'],
        vec![0, 3, 2, b'h', b'2', 0],
    ] {
        assert_eq!(
            bad(plain().with(ALPN, data.clone())),
            Malformed::Extension,
            "{data:?}"
        );
    }
    // An extension running past the block.
    let mut message = plain().with(PADDING, vec![0; 4]).message();
    let at = message.len() - 5;
    message[at] = 9;
    assert_eq!(
        malformed(&in_records(&message, &[700])),
        Malformed::Extension
    );
}

#[test]
fn host_names_follow_rfc_6066() {
    let name_of = |name: &[u8]| {
        parse(
            &in_records(
                &Parts::plain().with(SERVER_NAME, sni(name)).message(),
                &[700],
            ),
            DEFAULT_MAX_BYTES,
        )
    };
    let label63 = "a".repeat(63);
    let longest = [&label63[..], &label63, &label63, &"b".repeat(61)].join(".");
    assert_eq!(longest.len(), 253);
    for (good, want) in [
        ("localhost", "localhost"),
        ("API.Example.COM", "api.example.com"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("a-b.c1", "a-b.c1"),
        ("1.2.3.example", "1.2.3.example"),
        (&longest, &longest),
    ] {
        let Inspected::Hello(got) = name_of(good.as_bytes()) else {
            panic!("{good} refused");
        };
        assert_eq!(got.server_name.as_deref(), Some(want));
    }
    for bad in [
        &b"a..example"[..],
        b".example",
        b"example.",
        b"-a.example",
        b"a-.example",
        b"a_b.example",
        b"a b.example",
        b"127.0.0.1",
        b"10.1",
        b"2001:db8::1",
        b"[::1]",
        b"b\xc3\xbccher.example",
        b"a\0.example",
        format!("{label63}a.example").as_bytes(),
        format!("{longest}a").as_bytes(),
    ] {
        assert_eq!(
            name_of(bad),
            Inspected::Malformed(Malformed::ServerName),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn each_kind_has_a_label_and_a_reason() {
    let labels: Vec<&str> = Malformed::ALL.iter().map(|k| k.label()).collect();
    assert_eq!(
        labels,
        [
            "bad_record",
            "bad_handshake",
            "bad_extension",
            "bad_server_name",
            "too_large",
            "truncated"
        ]
    );
    assert!(Malformed::ALL.iter().all(|k| !k.to_string().is_empty()));
}

/// A DNS host name as RFC 6066 wants it, said differently from the parser.
fn is_host_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && !labels[labels.len() - 1].chars().all(|c| c.is_ascii_digit())
}

/// 4096 cases per property in every `cargo test`; a long run sets
/// `TCPIPE_PROPTEST_CASES` (the README says what ran).
fn cases() -> u32 {
    std::env::var("TCPIPE_PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4096)
}

fn host_name() -> impl Strategy<Value = String> {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?";
    (
        proptest::collection::vec(label, 0..4),
        "[A-Za-z][A-Za-z0-9]{0,6}",
    )
        .prop_map(|(mut labels, last)| {
            labels.push(last);
            labels.join(".")
        })
}

/// A valid hello as a stream: from a fixture or built here, with the
/// name, ALPN, ECH and padding drawn, in records of drawn sizes.
#[derive(Debug)]
struct Drawn {
    stream: Vec<u8>,
    name: Option<String>,
    alpn: Vec<Vec<u8>>,
    ech: bool,
}

fn drawn_hello() -> impl Strategy<Value = Drawn> {
    (
        0..3usize,
        proptest::option::of(host_name()),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..12), 0..4),
        any::<bool>(),
        prop_oneof![Just(0usize), 1..600usize, 600..2500usize],
        proptest::collection::vec(prop_oneof![1..8usize, 8..3000usize], 1..5),
    )
        .prop_map(|(base, name, alpn_names, ech, padding, sizes)| {
            let mut parts = match base {
                0 => Parts::of(&message_of(&hex(OPENSSL))),
                1 => Parts::of(&message_of(&hex(PYTHON))),
                _ => Parts::plain(),
            }
            .without(&[SERVER_NAME, ALPN, PADDING]);
            if let Some(name) = &name {
                parts = parts.with(SERVER_NAME, sni(name.as_bytes()));
            }
            if !alpn_names.is_empty() {
                let list: Vec<&[u8]> = alpn_names.iter().map(Vec::as_slice).collect();
                parts = parts.with(ALPN, alpn(&list));
            }
            if ech {
                parts = parts.with(ECH, vec![0, 0, 1, 0, 1, 7, 0, 0, 0, 0]);
            }
            if padding > 0 {
                parts = parts.with(PADDING, vec![0; padding]);
            }
            Drawn {
                stream: in_records(&parts.message(), &sizes),
                name: name.map(|n| n.to_ascii_lowercase()),
                alpn: alpn_names,
                ech,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Whatever arrives, the parser answers without panicking, and a
    /// hello it reads lies within what arrived.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Inspected::Hello(hello) = parse(&bytes, DEFAULT_MAX_BYTES) {
            prop_assert!(hello.len <= bytes.len());
        }
    }

    /// The same behind a handshake record header, where the paths are.
    #[test]
    fn a_record_header_then_garbage_never_panics(
        tail in proptest::collection::vec(any::<u8>(), 0..600),
        len in 0u16..700,
    ) {
        let mut bytes = vec![22, 3, 1];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.push(1);
        bytes.extend_from_slice(&tail);
        if let Inspected::Hello(hello) = parse(&bytes, DEFAULT_MAX_BYTES) {
            prop_assert!(hello.len <= bytes.len());
        }
    }

    /// A valid hello in any records, read at every prefix: each needs
    /// more, and from its last byte on it is exactly what was sent.
    #[test]
    fn every_split_and_prefix_of_a_valid_hello(
        drawn in drawn_hello(),
        after in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let stream = &drawn.stream;
        for n in 0..stream.len() {
            let early = parse(&stream[..n], DEFAULT_MAX_BYTES);
            prop_assert_eq!(early, Inspected::NeedMore, "{}", n);
        }
        let want = ClientHello {
            server_name: drawn.name.clone(),
            alpn: drawn.alpn.clone(),
            ech: drawn.ech,
            len: stream.len(),
        };
        let mut more = stream.clone();
        more.extend_from_slice(&after);
        for n in stream.len()..=more.len() {
            prop_assert_eq!(parse(&more[..n], DEFAULT_MAX_BYTES), Inspected::Hello(want.clone()));
        }
    }

    /// Under any bound a hello is read if it fits and too large if not,
    /// and never a verdict before its time.
    #[test]
    fn a_hello_fits_its_bound_or_is_too_large(
        drawn in drawn_hello(),
        bound in MIN_MAX_BYTES..4000,
    ) {
        let stream = &drawn.stream;
        let fits = stream.len() <= bound;
        let mut too_large = false;
        for n in 0..=stream.len() {
            match parse(&stream[..n], bound) {
                Inspected::NeedMore => prop_assert!(!too_large && n < stream.len()),
                Inspected::Malformed(Malformed::TooLarge) => {
                    prop_assert!(!fits);
                    too_large = true;
                }
                Inspected::Hello(_) => prop_assert!(fits && n == stream.len()),
                other => prop_assert!(false, "{n}: {other:?}"),
            }
        }
        prop_assert_eq!(too_large, !fits);
    }

    /// Any host name: either refused as a server name, or read back in
    /// lowercase, and exactly the valid ones are read.
    #[test]
    fn a_host_name_is_read_exactly_when_valid(
        name in prop_oneof![
            host_name().prop_map(String::into_bytes),
            "[A-Za-z0-9._-]{1,80}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 1..300),
        ],
    ) {
        let stream = in_records(&Parts::plain().with(SERVER_NAME, sni(&name)).message(), &[900]);
        let valid = std::str::from_utf8(&name).is_ok_and(is_host_name);
        match parse(&stream, DEFAULT_MAX_BYTES) {
            Inspected::Hello(hello) => {
                prop_assert!(valid);
                prop_assert_eq!(hello.server_name, Some(String::from_utf8_lossy(&name).to_ascii_lowercase()));
            }
            Inspected::Malformed(Malformed::ServerName) => prop_assert!(!valid),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    /// Valid hellos with bytes changed, cut or inserted never panic, and
    /// whatever is read of them is in them: a valid lowercased name and
    /// ALPN names that occur in the bytes.
    #[test]
    fn mutated_hellos_never_panic_or_invent(
        drawn in drawn_hello(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut bytes = drawn.stream.clone();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => bytes.truncate(i.max(1)),
            }
        }
        for n in [bytes.len() / 2, bytes.len()] {
            if let Inspected::Hello(hello) = parse(&bytes[..n], DEFAULT_MAX_BYTES) {
                prop_assert!(hello.len <= n);
                // A name may straddle two records: look in their fragments.
                let joined = fragments(&bytes[..n]);
                let lower = joined.to_ascii_lowercase();
                let occurs = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
                if let Some(name) = &hello.server_name {
                    prop_assert!(is_host_name(name) && *name == name.to_ascii_lowercase());
                    prop_assert!(occurs(name.as_bytes()));
                }
                for protocol in &hello.alpn {
                    prop_assert!(joined.windows(protocol.len()).any(|w| w == &protocol[..]));
                }
            }
        }
    }
}
