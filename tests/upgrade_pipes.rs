//! Live pipes across a live upgrade: every pipe open before it goes on in
//! the new process, with the bytes that were in flight, each byte once in
//! each direction, no reset and no early FIN; the old process exits.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use common::{connect, echo_server, Tcpipe, DEADLINE};

fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    expect(stream, bytes);
}

fn expect(stream: &mut TcpStream, bytes: &[u8]) {
    let mut echoed = vec![0u8; bytes.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, bytes);
}

fn pipes_cross_an_upgrade(extra: &[&str]) {
    let target = echo_server();
    let mut tcpipe = Tcpipe::start(target, extra);
    let mut pipes: Vec<TcpStream> = (0..20).map(|_| connect(tcpipe.addr)).collect();
    for (i, pipe) in pipes.iter_mut().enumerate() {
        pipe.set_read_timeout(Some(DEADLINE)).unwrap();
        round_trip(pipe, format!("before the upgrade {i};").as_bytes());
        // Sent now, echoed whenever: in a ring, a socket buffer, or the
        // kernel's queue while the workers are stopped.
        pipe.write_all(format!("in flight {i};").as_bytes())
            .unwrap();
    }

    let successor = tcpipe.upgrade();

    for (i, pipe) in pipes.iter_mut().enumerate() {
        expect(pipe, format!("in flight {i};").as_bytes());
        let big: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8 ^ i as u8).collect();
        let mut writer = pipe.try_clone().unwrap();
        let sent = big.clone();
        let sending = std::thread::spawn(move || writer.write_all(&sent).unwrap());
        expect(pipe, &big);
        sending.join().unwrap();
        pipe.shutdown(Shutdown::Write).unwrap();
        // The target's FIN after the echo, and nothing more: each byte once.
        let mut rest = Vec::new();
        pipe.read_to_end(&mut rest)
            .expect("a clean end, not a reset");
        assert!(rest.is_empty(), "pipe {i}: {} bytes more", rest.len());
    }
    assert!(successor.is_alive());
}

#[test]
fn live_pipes_go_on_in_the_new_process_with_every_byte_once() {
    pipes_cross_an_upgrade(&[]);
}

#[test]
fn live_pipes_of_two_workers_go_on_in_the_new_process() {
    pipes_cross_an_upgrade(&["--workers", "2"]);
}
