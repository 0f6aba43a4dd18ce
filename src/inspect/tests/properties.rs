//! Properties over arbitrary bytes, drawn hellos in drawn records, and
//! their mutations.

use proptest::prelude::*;

use super::*;

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
