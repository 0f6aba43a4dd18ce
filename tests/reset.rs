//! A reset is passed on as a reset: when one side aborts, the other side's
//! read fails with ECONNRESET instead of ending in a clean EOF that would
//! pass for a complete reply.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;

/// Starts a forwarder and opens a pipe through it: the client and the
/// target's end. A byte goes each way first, so both sides are connected
/// before anyone aborts.
fn open_pipe() -> (Tcpipe, TcpStream, TcpStream) {
    let (listener, addr) = listener();
    let tcpipe = Tcpipe::start(addr, &[]);
    let mut client = tcpipe.connect();
    let (mut target, _) = listener.accept().expect("accept");
    target.set_read_timeout(Some(DEADLINE)).unwrap();
    target.set_write_timeout(Some(DEADLINE)).unwrap();

    let mut byte = [0u8; 1];
    client.write_all(b"?").unwrap();
    target.read_exact(&mut byte).expect("the client's byte");
    target.write_all(b"!").unwrap();
    client.read_exact(&mut byte).expect("the target's byte");
    (tcpipe, client, target)
}

/// Reads until the stream ends and insists that it ended with a reset.
fn assert_read_is_reset(stream: &mut TcpStream, who: &str) {
    match read_until_closed(stream) {
        (_, Err(e)) if e.kind() == ErrorKind::ConnectionReset => {}
        (bytes, Ok(())) => panic!("{who} saw a clean EOF after {bytes} bytes, not a reset"),
        (bytes, Err(e)) => panic!("{who} saw {e} after {bytes} bytes, not a reset"),
    }
}

/// Writes until the socket would block, so that bytes are left in flight in
/// every buffer on the way to the peer.
fn fill_the_path(stream: &TcpStream) -> usize {
    stream.set_nonblocking(true).unwrap();
    let chunk = vec![0x5a; 64 * 1024];
    let mut written = 0;
    loop {
        match (&*stream).write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write failed before the path was full: {e}"),
        }
    }
    stream.set_nonblocking(false).unwrap();
    written
}

#[test]
fn a_target_reset_reaches_the_client_as_a_reset() {
    let (_tcpipe, mut client, target) = open_pipe();
    reset(target);
    assert_read_is_reset(&mut client, "the client");
}

#[test]
fn a_client_reset_reaches_the_target_as_a_reset() {
    let (_tcpipe, client, mut target) = open_pipe();
    reset(client);
    assert_read_is_reset(&mut target, "the target");
}

#[test]
fn a_target_reset_with_client_bytes_still_in_flight_reaches_the_client_as_a_reset() {
    let (_tcpipe, mut client, target) = open_pipe();
    let (filled, path_full) = mpsc::channel();
    // The target takes in part of the stream, then aborts with the rest
    // still queued in the forwarder and in the sockets' buffers.
    let target = thread::spawn(move || {
        let mut target = target;
        let mut buf = vec![0u8; 16 * 1024];
        target
            .read_exact(&mut buf)
            .expect("the start of the stream");
        path_full.recv().expect("the client filled the path");
        reset(target);
    });
    let written = fill_the_path(&client);
    assert!(written > 16 * 1024, "only {written} bytes went out");
    filled.send(()).unwrap();
    target.join().expect("target thread");
    assert_read_is_reset(&mut client, "the client");
}

#[test]
fn a_client_reset_with_target_bytes_still_in_flight_reaches_the_target_as_a_reset() {
    let (_tcpipe, client, mut target) = open_pipe();
    let written = fill_the_path(&target);
    assert!(written > 0, "nothing went out");
    reset(client);
    assert_read_is_reset(&mut target, "the target");
}
