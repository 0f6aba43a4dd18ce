//! Half-close in both orders: a FIN from one side reaches the other side
//! right after the last byte before it, and the opposite direction keeps
//! carrying megabytes until it ends with a FIN of its own.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};

/// The surviving direction carries this much after the other one ended.
const SEVERAL_MIB: usize = 8 * 1024 * 1024;

/// Writes `len` bytes of `seed`'s data and returns their hash.
fn send(stream: &mut TcpStream, seed: u64, len: usize) -> Fnv {
    let mut data = Rng::new(seed);
    let mut hash = Fnv::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < len {
        let n = buf.len().min(len - sent);
        data.fill(&mut buf[..n]);
        hash.update(&buf[..n]);
        stream.write_all(&buf[..n]).expect("write");
        sent += n;
    }
    hash
}

/// Reads to EOF, failing on a reset or a timeout, and returns what came.
fn receive_to_eof(stream: &mut TcpStream) -> (usize, Fnv) {
    receive_rest(stream, 0, Fnv::default())
}

/// A target that serves one connection with `serve` on its own thread.
fn target<T: Send + 'static>(
    serve: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> (SocketAddr, JoinHandle<T>) {
    let (listener, addr): (TcpListener, SocketAddr) = listener();
    let handle = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream.set_write_timeout(Some(DEADLINE)).unwrap();
        serve(stream)
    });
    (addr, handle)
}

/// Both FINs have been passed on, so the pipe is freed: the forwarder holds
/// two sockets fewer than it did while the pipe was live. (Sockets, not
/// descriptors: a spliced direction leaves its kernel pipe in the pool.)
fn assert_pipe_freed(tcpipe: &Tcpipe, sockets_while_live: usize) {
    assert!(
        wait_until(DEADLINE, || tcpipe.socket_count() <= sockets_while_live - 2),
        "the forwarder still holds {} sockets, {sockets_while_live} while the pipe was live",
        tcpipe.socket_count()
    );
}

#[test]
fn the_target_sees_eof_right_after_the_clients_last_byte_and_can_still_answer_megabytes() {
    const REQUEST: usize = 300_001;
    let (addr, target) = target(|mut stream| {
        // The answer starts only after EOF, so it can only arrive if the FIN
        // was passed on while the client was still reading.
        let request = receive_to_eof(&mut stream);
        let answer = send(&mut stream, 2, SEVERAL_MIB);
        stream.shutdown(Shutdown::Write).expect("target half-close");
        (request, answer)
    });
    let tcpipe = Tcpipe::start(addr, &[]);

    let mut client = tcpipe.connect();
    let request = send(&mut client, 1, REQUEST);
    client.shutdown(Shutdown::Write).expect("client half-close");
    let mut first = [0u8; 1];
    client
        .read_exact(&mut first)
        .expect("the answer's first byte");
    let sockets_while_live = tcpipe.socket_count();
    let answer = receive_rest(&mut client, 1, Fnv::of(&first));

    let (received_request, sent_answer) = target.join().expect("target thread");
    assert_eq!(
        received_request,
        (REQUEST, request),
        "the target should read the whole request and then EOF"
    );
    assert_eq!(
        answer,
        (SEVERAL_MIB, sent_answer),
        "the whole answer should reach the half-closed client"
    );
    assert_pipe_freed(&tcpipe, sockets_while_live);
}

#[test]
fn the_client_gets_the_whole_greeting_then_eof_and_can_still_send_megabytes() {
    const GREETING: usize = 100_003;
    let (addr, target) = target(|mut stream| {
        let greeting = send(&mut stream, 3, GREETING);
        stream.shutdown(Shutdown::Write).expect("target half-close");
        let upload = receive_to_eof(&mut stream);
        (greeting, upload)
    });
    let tcpipe = Tcpipe::start(addr, &[]);

    let mut client = tcpipe.connect();
    let greeting = receive_to_eof(&mut client);
    let sockets_while_live = tcpipe.socket_count();
    let upload = send(&mut client, 4, SEVERAL_MIB);
    client.shutdown(Shutdown::Write).expect("client half-close");

    let (sent_greeting, received_upload) = target.join().expect("target thread");
    assert_eq!(
        greeting,
        (GREETING, sent_greeting),
        "the client should read the whole greeting and then EOF"
    );
    assert_eq!(
        received_upload,
        (SEVERAL_MIB, upload),
        "the target should read every byte the client sent after the greeting, then EOF"
    );
    // Both directions ended with a FIN: the client still reads a clean EOF.
    assert_eq!(receive_to_eof(&mut client).0, 0);
    assert_pipe_freed(&tcpipe, sockets_while_live);
}
