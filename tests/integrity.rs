//! Integrity: many pipes at once each carry megabytes of random data, in
//! uneven writes, to an echo target and back; every byte comes back, in
//! order, in both directions.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;

const PIPES: usize = 64;
const MIN_BYTES: usize = 256 * 1024;
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// What one side of a stream saw: how many bytes, and their hash (which
/// covers their order).
#[derive(Debug, PartialEq, Eq)]
struct Digest {
    len: usize,
    hash: Fnv,
}

/// Sends `len` bytes of `seed`'s data in writes of uneven sizes, from a few
/// bytes to 128 KiB, then half-closes.
fn send_uneven(mut stream: TcpStream, seed: u64, len: usize) -> Digest {
    let mut data = Rng::new(seed);
    let mut sizes = Rng::new(seed ^ 0x5eed);
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; 128 * 1024];
    let mut sent = 0;
    while sent < len {
        let limit = if sizes.range(0, 8) == 0 {
            64
        } else {
            buf.len()
        };
        let n = sizes.range(1, limit + 1).min(len - sent);
        data.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n]).expect("write to tcpipe");
        sent += n;
    }
    stream.shutdown(Shutdown::Write).expect("half-close");
    Digest { len: sent, hash }
}

/// Reads to EOF in reads of uneven sizes.
fn receive_uneven(mut stream: TcpStream, seed: u64) -> Digest {
    let mut sizes = Rng::new(seed ^ 0xacce55);
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; 96 * 1024];
    let mut len = 0;
    loop {
        let want = sizes.range(1, buf.len() + 1);
        let n = stream.read(&mut buf[..want]).expect("read from tcpipe");
        if n == 0 {
            return Digest { len, hash };
        }
        hash.update(&buf[..n]);
        len += n;
    }
}

#[test]
fn every_byte_of_64_concurrent_pipes_comes_back_in_order() {
    let tcpipe = Tcpipe::start(echo_server(), &[]);
    let mut sizes = Rng::new(2);
    let pipes: Vec<_> = (0..PIPES as u64)
        .map(|seed| {
            let len = sizes.range(MIN_BYTES, MAX_BYTES + 1);
            let stream = tcpipe.connect();
            let reader = stream.try_clone().expect("clone the client socket");
            let sender = thread::spawn(move || send_uneven(stream, seed, len));
            let receiver = thread::spawn(move || receive_uneven(reader, seed));
            (seed, sender, receiver)
        })
        .collect();

    for (seed, sender, receiver) in pipes {
        let sent = sender.join().expect("sender thread");
        let received = receiver.join().expect("receiver thread");
        assert_eq!(
            received, sent,
            "pipe {seed}: what came back differs from what was sent"
        );
    }
}
