//! `--idle-timeout`: a pipe that moves no byte in either direction for that
//! long is reset on both sides; one byte in either direction keeps it alive.

mod common;
use common::faults::*;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const IDLE_TIMEOUT: Duration = Duration::from_millis(500);
/// Time the forwarder may take beyond the timeout to reset the pipe.
const MARGIN: Duration = Duration::from_millis(700);
/// A fifth of the timeout, which leaves room for a busy machine to be late.
const TRICKLE_INTERVAL: Duration = Duration::from_millis(100);
/// Five idle timeouts' worth of trickling.
const TRICKLE_BYTES: usize = 25;

fn start_forwarder(target: SocketAddr, idle_timeout: &str) -> Tcpipe {
    Tcpipe::start(target, &["--idle-timeout", idle_timeout])
}

/// Sends one byte every `TRICKLE_INTERVAL` while `to` reads each one as it
/// comes, so neither end is ever silent for long.
fn trickle(from: &mut TcpStream, to: &mut TcpStream) {
    for i in 0..TRICKLE_BYTES {
        thread::sleep(TRICKLE_INTERVAL);
        let byte = b'a' + i as u8;
        from.write_all(&[byte]).expect("trickle a byte");
        let mut received = [0u8; 1];
        to.read_exact(&mut received)
            .unwrap_or_else(|e| panic!("byte {i} of the trickle did not arrive: {e}"));
        assert_eq!(received[0], byte, "byte {i} of the trickle arrived altered");
    }
}

/// Ends a pipe with FINs both ways and checks each side sees a clean EOF:
/// proof that the forwarder had not closed it.
fn assert_closes_cleanly(client: &mut TcpStream, target: &mut TcpStream) {
    client.shutdown(Shutdown::Write).unwrap();
    assert!(
        read_to_end(target).is_empty(),
        "the target got unexpected bytes"
    );
    target.shutdown(Shutdown::Write).unwrap();
    assert!(
        read_to_end(client).is_empty(),
        "the client got unexpected bytes"
    );
}

#[test]
fn a_silent_pipe_is_reset_on_both_sides_after_the_idle_timeout() {
    let (target_listener, target_addr) = listener();
    let tcpipe = start_forwarder(target_addr, "500ms");
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    assert_delivered(&mut client, &mut target, b"ping");
    assert_delivered(&mut target, &mut client, b"pong");
    let last_byte = Instant::now();

    assert_reset(&mut client, "client");
    let elapsed = last_byte.elapsed();
    // The forwarder's last activity preceded our read of "pong" slightly.
    assert!(
        elapsed + Duration::from_millis(50) >= IDLE_TIMEOUT,
        "the pipe was reset after {elapsed:?} of silence, before the {IDLE_TIMEOUT:?} timeout"
    );
    assert!(
        elapsed <= IDLE_TIMEOUT + MARGIN,
        "the pipe was reset only after {elapsed:?} of silence (timeout {IDLE_TIMEOUT:?})"
    );
    assert_reset(&mut target, "target");
}

#[test]
fn a_byte_every_100ms_toward_the_target_keeps_the_pipe_open() {
    let (target_listener, target_addr) = listener();
    let tcpipe = start_forwarder(target_addr, "500ms");
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    trickle(&mut client, &mut target);
    assert_closes_cleanly(&mut client, &mut target);
}

#[test]
fn a_byte_every_100ms_toward_the_client_keeps_the_pipe_open() {
    let (target_listener, target_addr) = listener();
    let tcpipe = start_forwarder(target_addr, "500ms");
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    trickle(&mut target, &mut client);
    assert_closes_cleanly(&mut client, &mut target);
}

#[test]
fn an_idle_timeout_of_zero_never_closes_a_silent_pipe() {
    let (target_listener, target_addr) = listener();
    let tcpipe = start_forwarder(target_addr, "0");
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    assert_nothing_arrives(
        &mut client,
        Duration::from_secs(1),
        "a silent pipe with the idle timeout off",
    );
    assert_delivered(&mut client, &mut target, b"still here");
    assert_closes_cleanly(&mut client, &mut target);
}
