//! `--half-close-timeout`: once one direction has ended with a FIN, the pipe
//! is reset on both sides if the other direction then moves nothing for
//! that long. While the other direction keeps streaming, it lives on.

mod common;
use common::faults::*;
use common::*;

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const HALF_CLOSE_TIMEOUT: Duration = Duration::from_millis(500);
/// Time the forwarder may take beyond the timeout to reset the pipe.
const MARGIN: Duration = Duration::from_millis(1000);
const CHUNK_INTERVAL: Duration = Duration::from_millis(100);
/// Six half-close timeouts' worth of streaming, one chunk per interval.
const CHUNKS: usize = 30;
const CHUNK_SIZE: usize = 1024;

/// A forwarder with the half-close timeout under test and no idle timeout,
/// so only the former can close a pipe.
fn start_forwarder() -> (Tcpipe, TcpListener) {
    let (target_listener, target_addr) = listener();
    let tcpipe = Tcpipe::start(target_addr, &["--half-close-timeout", "500ms"]);
    (tcpipe, target_listener)
}

/// `closer` sends a last message and a FIN; `other` receives both.
/// Returns when `other` has seen the EOF.
fn half_close(closer: &mut TcpStream, other: &mut TcpStream) {
    closer.write_all(b"last words").unwrap();
    closer.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_end(other),
        b"last words",
        "the half-closing side's last bytes were not delivered before EOF"
    );
}

/// After `closer` half-closes and `other` stays silent, both are reset
/// within the timeout plus a margin.
fn assert_silent_half_close_is_reset(mut closer: TcpStream, mut other: TcpStream) {
    half_close(&mut closer, &mut other);
    let eof_seen = Instant::now();

    // The closer's reading direction is still open: it sees the reset at once.
    assert_reset(&mut closer, "half-closing side");
    let elapsed = eof_seen.elapsed();
    assert!(
        elapsed + Duration::from_millis(50) >= HALF_CLOSE_TIMEOUT,
        "the half-closed pipe was reset after {elapsed:?}, before the {HALF_CLOSE_TIMEOUT:?} timeout"
    );
    assert!(
        elapsed <= HALF_CLOSE_TIMEOUT + MARGIN,
        "the half-closed pipe was reset only after {elapsed:?} (timeout {HALF_CLOSE_TIMEOUT:?})"
    );
    assert_reset(&mut other, "silent side");
}

/// After `closer` half-closes, `streamer` sends a chunk every
/// `CHUNK_INTERVAL` for several timeouts; every byte must reach `closer`,
/// then both ends close cleanly.
fn assert_streaming_half_close_lives_on(mut closer: TcpStream, mut streamer: TcpStream) {
    half_close(&mut closer, &mut streamer);
    let started = Instant::now();

    let reader = thread::spawn(move || {
        let received = read_to_end(&mut closer);
        (Fnv::of(&received), received.len())
    });
    let mut rng = Rng::new(7);
    let mut sent = Fnv::default();
    for _ in 0..CHUNKS {
        thread::sleep(CHUNK_INTERVAL);
        let chunk = rng.bytes(CHUNK_SIZE);
        sent.update(&chunk);
        streamer
            .write_all(&chunk)
            .expect("the streaming direction was cut while still moving");
    }
    streamer.shutdown(Shutdown::Write).unwrap();
    let (received, len) = reader.join().unwrap();

    assert!(
        started.elapsed() >= HALF_CLOSE_TIMEOUT * 5,
        "the stream did not outlive the timeout by several multiples"
    );
    assert_eq!(
        len,
        CHUNKS * CHUNK_SIZE,
        "bytes were lost after the half-close"
    );
    assert_eq!(received, sent, "bytes were altered after the half-close");
}

#[test]
fn a_pipe_half_closed_by_the_client_is_reset_when_the_target_stays_silent() {
    let (tcpipe, target_listener) = start_forwarder();
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    assert_silent_half_close_is_reset(client, target);
}

#[test]
fn a_pipe_half_closed_by_the_target_is_reset_when_the_client_stays_silent() {
    let (tcpipe, target_listener) = start_forwarder();
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    assert_silent_half_close_is_reset(target, client);
}

#[test]
fn a_pipe_half_closed_by_the_client_lives_on_while_the_target_streams() {
    let (tcpipe, target_listener) = start_forwarder();
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    assert_streaming_half_close_lives_on(client, target);
}

#[test]
fn a_pipe_half_closed_by_the_target_lives_on_while_the_client_streams() {
    let (tcpipe, target_listener) = start_forwarder();
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    assert_streaming_half_close_lives_on(target, client);
}

#[test]
fn a_silent_pipe_open_both_ways_is_not_bound_by_the_half_close_timeout() {
    let (tcpipe, target_listener) = start_forwarder();
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);
    assert_nothing_arrives(
        &mut client,
        HALF_CLOSE_TIMEOUT * 3,
        "a silent pipe that is not half-closed",
    );
    assert_delivered(&mut target, &mut client, b"still here");
    assert_delivered(&mut client, &mut target, b"and here");
}
