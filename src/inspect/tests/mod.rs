//! The ClientHello parser against hellos real clients sent (the fixtures:
//! OpenSSL's `s_client` and Python's `ssl`, see fixtures/README.md), those
//! re-split into records as large or post-quantum hellos are, and hellos
//! built here to reach each rule of RFC 8446, 6066 and 7301.

use proptest::prelude::*;

use super::client_hello::{
    is_tls_record_start, parse, ClientHello, Inspected, Malformed, DEFAULT_MAX_BYTES, MIN_MAX_BYTES,
};

const OPENSSL: &str = include_str!("../fixtures/openssl_s_client.hex");
const OPENSSL_NO_SNI: &str = include_str!("../fixtures/openssl_no_sni.hex");
const PYTHON: &str = include_str!("../fixtures/python_ssl.hex");

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

mod properties;
mod rules;
