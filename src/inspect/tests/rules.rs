//! Hellos from the fixtures and built ones, one rule at a time.

use super::*;

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
