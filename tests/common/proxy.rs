//! PROXY protocol headers written and read by the tests themselves, from
//! HAProxy's `doc/proxy-protocol.txt`, independent of tcpipe's own code;
//! and targets that record what each connection sent.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::common::listener;

pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// `PROXY TCP4|TCP6 src dst sport dport\r\n`
pub fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
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

/// A v2 PROXY command for TCP with these addresses, then `tlvs` (raw TLV
/// bytes, counted in the length).
pub fn v2(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family for both addresses"),
    };
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    v2_raw(0x21, family, &body)
}

/// A v2 LOCAL command as AWS NLB health checks send it: dummy TCP4
/// addresses that must be skipped, not used.
pub fn v2_local() -> Vec<u8> {
    v2_raw(0x20, 0x11, &[0; 12])
}

pub fn v2_raw(version_command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(version_command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A header as a target received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub version: u8,
    /// `None` for LOCAL, UNKNOWN or UNSPEC.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The header exactly as it came.
    pub raw: Vec<u8>,
}

/// Reads one header from the start of `bytes`; `None` if it is not one.
pub fn parse(bytes: &[u8]) -> Option<(Received, usize)> {
    if bytes.starts_with(&V2_SIGNATURE) {
        let len = 16 + u16::from_be_bytes([*bytes.get(14)?, *bytes.get(15)?]) as usize;
        let header = bytes.get(..len)?;
        let body = &header[16..];
        let addresses = match (header[12], header[13]) {
            (0x20, _) => None,
            (0x21, 0x11) => {
                let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&body[at..at + 4]).unwrap());
                let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(8)),
                    SocketAddr::new(ip(4), port(10)),
                ))
            }
            (0x21, 0x21) => {
                let ip =
                    |at: usize| IpAddr::from(<[u8; 16]>::try_from(&body[at..at + 16]).unwrap());
                let port = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
                Some((
                    SocketAddr::new(ip(0), port(32)),
                    SocketAddr::new(ip(16), port(34)),
                ))
            }
            _ => return None,
        };
        let received = Received {
            version: 2,
            addresses,
            raw: header.to_vec(),
        };
        return Some((received, len));
    }
    if !bytes.starts_with(b"PROXY ") {
        return None;
    }
    let end = bytes.windows(2).position(|w| w == b"\r\n")? + 2;
    let line = std::str::from_utf8(&bytes[6..end - 2]).ok()?;
    let fields: Vec<&str> = line.split(' ').collect();
    let addresses = match fields[..] {
        ["UNKNOWN", ..] => None,
        [_, src, dst, sport, dport] => Some((
            SocketAddr::new(src.parse().ok()?, sport.parse().ok()?),
            SocketAddr::new(dst.parse().ok()?, dport.parse().ok()?),
        )),
        _ => return None,
    };
    let received = Received {
        version: 1,
        addresses,
        raw: bytes[..end].to_vec(),
    };
    Some((received, end))
}

/// What each accepted connection has sent so far, in accept order.
type Connections = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

/// A target that keeps everything each connection sent, until EOF or
/// reset. Lives until the test process ends.
#[derive(Clone)]
pub struct Recorder {
    pub addr: SocketAddr,
    connections: Connections,
}

impl Recorder {
    pub fn start() -> Recorder {
        let (listener, addr) = listener();
        let connections: Connections = Arc::default();
        let all = Arc::clone(&connections);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let bytes = Arc::<Mutex<Vec<u8>>>::default();
                all.lock().unwrap().push(Arc::clone(&bytes));
                thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => bytes.lock().unwrap().extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == ErrorKind::Interrupted => {}
                            Err(_) => return,
                        }
                    }
                });
            }
        });
        Recorder { addr, connections }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.connections.lock().unwrap().len()
    }

    /// What connection `i` has sent so far.
    pub fn bytes(&self, i: usize) -> Vec<u8> {
        self.connections.lock().unwrap()[i].lock().unwrap().clone()
    }
}
