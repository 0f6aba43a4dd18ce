//! Which protocol a client speaks, from its first bytes, for
//! `match.protocol`: TLS (a handshake record header), SSH (`SSH-`), HTTP
//! (a method token and a space), or other. The PROXY protocol is not one
//! of them: `accept-proxy` reads it first, in its own stage.
//!
//! Like the ClientHello parser, [`sniff`] is given everything received so
//! far and answers [`Sniffed::NeedMore`] while a prefix could still become
//! more than one thing; a verdict never changes with more bytes, and at
//! most [`SNIFF_MAX`] bytes are needed for one.

use super::client_hello::is_tls_record_start;

/// The longest method token read as HTTP. The longest registered method,
/// `UPDATEREDIRECTREF`, has 17 characters.
const MAX_METHOD: usize = 32;
/// The most bytes [`sniff`] needs for a verdict: a longest method and its
/// space.
pub(crate) const SNIFF_MAX: usize = MAX_METHOD + 1;

/// A protocol a route can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Tls,
    Ssh,
    Http,
    Other,
}

impl Protocol {
    /// Its name in `match.protocol` and in metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Protocol::Tls => "tls",
            Protocol::Ssh => "ssh",
            Protocol::Http => "http",
            Protocol::Other => "other",
        }
    }
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// Too few bytes to tell.
    NeedMore,
    Is(Protocol),
}

/// How far one protocol's test has got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Test {
    Yes,
    No,
    Maybe,
}

/// The protocol `received` starts with.
pub(crate) fn sniff(received: &[u8]) -> Sniffed {
    // In order: the first test that is not a clear no decides. SSH comes
    // before HTTP because `SSH-2.0-x ` is also a token and a space.
    let tests = [
        (Protocol::Tls, tls(received)),
        (Protocol::Ssh, ssh(received)),
        (Protocol::Http, http(received)),
    ];
    for (protocol, test) in tests {
        match test {
            Test::Yes => return Sniffed::Is(protocol),
            Test::Maybe => return Sniffed::NeedMore,
            Test::No => {}
        }
    }
    Sniffed::Is(Protocol::Other)
}

fn tls(received: &[u8]) -> Test {
    match is_tls_record_start(received) {
        Some(true) => Test::Yes,
        Some(false) => Test::No,
        None => Test::Maybe,
    }
}

/// The identification string a client sends first (RFC 4253 §4.2).
fn ssh(received: &[u8]) -> Test {
    const PREFIX: &[u8] = b"SSH-";
    if received.starts_with(PREFIX) {
        Test::Yes
    } else if PREFIX.starts_with(received) {
        Test::Maybe
    } else {
        Test::No
    }
}

/// A request line's method: a token (RFC 9110 §9.1, §5.6.2) and a space.
fn http(received: &[u8]) -> Test {
    let token = received.iter().take_while(|&&b| is_tchar(b)).count();
    match received.get(token) {
        _ if token > MAX_METHOD => Test::No,
        Some(b' ') if token > 0 => Test::Yes,
        Some(_) => Test::No,
        None => Test::Maybe,
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verdict(bytes: &[u8]) -> Protocol {
        match sniff(bytes) {
            Sniffed::Is(protocol) => protocol,
            Sniffed::NeedMore => panic!("no verdict for {bytes:?}"),
        }
    }

    /// Every proper prefix of `bytes` needs more, and `bytes` is `want`.
    fn needs_all_of(bytes: &[u8], want: Protocol) {
        for n in 0..bytes.len() {
            assert_eq!(sniff(&bytes[..n]), Sniffed::NeedMore, "{:?}", &bytes[..n]);
        }
        assert_eq!(verdict(bytes), want, "{bytes:?}");
    }

    #[test]
    fn a_tls_record_header_is_tls_from_its_third_byte() {
        needs_all_of(&[0x16, 0x03, 0x01], Protocol::Tls);
        for minor in 0..=4 {
            assert_eq!(verdict(&[0x16, 0x03, minor, 0x02, 0x00]), Protocol::Tls);
        }
        // SSLv2-style hellos, other record types, other versions.
        for other in [
            &[0x80, 0x2e, 0x01, 0x03, 0x01][..],
            &[0x15, 0x03, 0x01],
            &[0x17, 0x03, 0x03],
            &[0x16, 0x02, 0x00],
            &[0x16, 0x03, 0x05],
            &[0x16, 0xfe, 0xfd], // DTLS 1.2
        ] {
            assert_eq!(verdict(other), Protocol::Other, "{other:?}");
        }
    }

    #[test]
    fn an_ssh_identification_string_is_ssh_not_a_method() {
        needs_all_of(b"SSH-", Protocol::Ssh);
        assert_eq!(verdict(b"SSH-2.0-OpenSSH_9.6 Ubuntu\r\n"), Protocol::Ssh);
        // Tokens that start like it are still HTTP methods.
        assert_eq!(verdict(b"SS "), Protocol::Http);
        assert_eq!(verdict(b"SSHX /"), Protocol::Http);
        assert_eq!(verdict(b"ssh-2.0\r\n"), Protocol::Other);
    }

    #[test]
    fn a_method_token_and_a_space_is_http() {
        needs_all_of(b"GET ", Protocol::Http);
        for line in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x HTTP/1.0\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\n",
            b"OPTIONS * HTTP/1.1\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"UPDATEREDIRECTREF / HTTP/1.1\r\n",
            b"x-custom! /",
        ] {
            assert_eq!(verdict(line), Protocol::Http, "{line:?}");
        }
        let longest = [b'A'; MAX_METHOD];
        needs_all_of(&[&longest[..], b" "].concat(), Protocol::Http);
        assert_eq!(verdict(&[b'A'; MAX_METHOD + 1]), Protocol::Other);
    }

    #[test]
    fn anything_else_is_other_at_its_first_telling_byte() {
        for other in [
            &b" GET /"[..],
            b"\r\n",
            b"GET\t/",
            b"GET\r\n",
            b"\0\0\0\x08",
            b"{\"jsonrpc\"",
            b"G/",
        ] {
            assert_eq!(verdict(other), Protocol::Other, "{other:?}");
        }
        assert_eq!(sniff(b""), Sniffed::NeedMore);
    }

    /// 4096 cases per property in every `cargo test`; a long run sets
    /// `TCPIPE_PROPTEST_CASES` (the README says what ran).
    fn cases() -> u32 {
        std::env::var("TCPIPE_PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(4096)
    }

    /// Bytes that go down the interesting paths more often than uniform
    /// ones would: record headers, `SSH-`, tokens and spaces.
    fn first_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(vec![0x16, 0x03]),
            Just(b"SSH-".to_vec()),
            Just(b"GET".to_vec()),
            Just(b" ".to_vec()),
            proptest::collection::vec(any::<u8>(), 1..4),
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}".prop_map(String::into_bytes),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// A verdict, once given, holds for every longer prefix, and
        /// `SNIFF_MAX` bytes always give one.
        #[test]
        fn a_verdict_never_changes_with_more_bytes(bytes in first_bytes()) {
            let mut first = None;
            for n in 0..=bytes.len() {
                match (sniff(&bytes[..n]), first) {
                    (Sniffed::NeedMore, None) => prop_assert!(n < SNIFF_MAX, "{n}"),
                    (Sniffed::NeedMore, Some(_)) => prop_assert!(false, "verdict lost at {n}"),
                    (Sniffed::Is(p), None) => first = Some(p),
                    (Sniffed::Is(p), Some(q)) => prop_assert_eq!(p, q),
                }
            }
        }
    }
}
