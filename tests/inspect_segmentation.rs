//! A ClientHello is routed by its server name however it is cut: one byte
//! per TCP segment, or padded past 4 KiB and spread over several TLS
//! records (as post-quantum hellos are); and the target gets every byte,
//! the hello included, exactly once.

mod common;
use common::config::*;
use common::tls::*;
use common::upstreams::*;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;

/// A route for `a.example` beside a default, each to an echo target.
fn start() -> (Backend, Backend, Tcpipe) {
    let (named, fallback) = (Backend::echo(), Backend::echo());
    let file = ConfigFile::new(&format!(
        "{}{}",
        shared_route("named", named.addr, "match.sni = [\"a.example\"]"),
        shared_route("fallback", fallback.addr, ""),
    ));
    let tcpipe = Tcpipe::start_config(&file);
    (named, fallback, tcpipe)
}

/// Sends `hello` in writes of `piece` bytes (each its own segment), then
/// half-closes; what the echo target sent back.
fn send_in_pieces(tcpipe: &Tcpipe, hello: &[u8], piece: usize) -> Vec<u8> {
    let mut client = connect(tcpipe.route_addr("named"));
    client.set_nodelay(true).unwrap();
    for chunk in hello.chunks(piece) {
        client.write_all(chunk).unwrap();
    }
    client.shutdown(Shutdown::Write).unwrap();
    let mut echoed = Vec::new();
    client
        .read_to_end(&mut echoed)
        .expect("the echo of the hello");
    echoed
}

#[test]
fn a_hello_one_byte_per_segment_reaches_its_route_whole() {
    let (named, fallback, tcpipe) = start();
    let hello = captured_hello("openssl_s_client.hex");
    let echoed = send_in_pieces(&tcpipe, &hello, 1);
    assert!(echoed == hello, "the target got other bytes than the hello");
    assert_eq!((named.served(), fallback.served()), (1, 0));
}

#[test]
fn a_padded_hello_in_several_records_is_read_whole() {
    let (named, fallback, tcpipe) = start();
    // Over 4 KiB in records of 1000 bytes, written 700 bytes at a time.
    let hello = built_hello("a.example", 5000, 1000);
    assert!(hello.len() > 4096 && hello.iter().filter(|&&b| b == 22).count() >= 6);
    let echoed = send_in_pieces(&tcpipe, &hello, 700);
    assert!(echoed == hello, "the target got other bytes than the hello");
    // The largest a record may be: 16 KiB of hello in two records.
    let hello = built_hello("a.example", 16_000, 16_384);
    let echoed = send_in_pieces(&tcpipe, &hello, 1400);
    assert!(
        echoed == hello,
        "the target got other bytes than the 16 KiB hello"
    );
    assert_eq!((named.served(), fallback.served()), (2, 0));
}

#[test]
fn bytes_after_the_hello_follow_it_in_order() {
    let (named, _fallback, tcpipe) = start();
    let mut stream = captured_hello("python_ssl.hex");
    let hello_len = stream.len();
    stream.extend(Rng::new(20).bytes(100_000));
    let echoed = send_in_pieces(&tcpipe, &stream, 3000);
    assert_eq!(echoed.len(), stream.len());
    assert!(echoed == stream, "the stream was altered");
    // python_ssl.hex names B.Example.ORG: not this route's, so the default.
    assert_eq!(named.served(), 0, "hello of {hello_len} bytes");
}
