//! A target that never completes the handshake: the client is reset once
//! `--connect-timeout` runs out, metrics count the timeout, and the
//! forwarder goes on serving. An established pipe is not bound by that timeout.

mod common;
use common::faults::*;
use common::*;

use std::io::Write;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);
/// Time the forwarder may take beyond the timeout to reset the client.
const MARGIN: Duration = Duration::from_millis(700);

fn start_forwarder(target: SocketAddr) -> Tcpipe {
    Tcpipe::start(
        target,
        &["--connect-timeout", "300ms", "--metrics", "127.0.0.1:0"],
    )
}

/// Connects to `target` that timed out, as `/metrics` counts them.
fn timeouts(tcpipe: &Tcpipe, target: SocketAddr) -> f64 {
    tcpipe.target_metric("tcpipe_target_connect_timeouts_total", target)
}

#[test]
fn a_client_whose_target_never_answers_is_reset_after_the_connect_timeout() {
    let black_hole = BlackHole::new();
    let tcpipe = start_forwarder(black_hole.addr);

    // Several at once: each pipe has its own deadline.
    let started = Instant::now();
    let resets: Vec<_> = (0..3)
        .map(|_| {
            let mut client = tcpipe.connect();
            // Bytes sent before the target answers must not keep the pipe alive.
            client.write_all(b"anyone there?").unwrap();
            thread::spawn(move || {
                assert_reset(&mut client, "client");
                started.elapsed()
            })
        })
        .collect();
    for reset in resets {
        let elapsed = reset.join().expect("the client was not reset");
        assert!(
            elapsed >= CONNECT_TIMEOUT,
            "the client was reset after {elapsed:?}, before the {CONNECT_TIMEOUT:?} timeout"
        );
        assert!(
            elapsed <= CONNECT_TIMEOUT + MARGIN,
            "the client was reset only after {elapsed:?} (timeout {CONNECT_TIMEOUT:?})"
        );
    }
    assert_eq!(
        timeouts(&tcpipe, black_hole.addr),
        3.0,
        "expected one connect timeout per pipe"
    );
}

#[test]
fn the_forwarder_keeps_serving_after_a_connect_timeout() {
    let black_hole = BlackHole::new();
    let target = black_hole.addr;
    let tcpipe = start_forwarder(target);

    assert_reset(&mut tcpipe.connect(), "client");
    assert_eq!(
        timeouts(&tcpipe, target),
        1.0,
        "the reset was no connect timeout"
    );

    // The same target now answers: the same forwarder must serve it.
    let target = black_hole.open_up();
    let (mut client, mut upstream) = open_pipe(&tcpipe, &target);
    assert_delivered(&mut client, &mut upstream, b"still there?");
    assert_delivered(&mut upstream, &mut client, b"yes");
}

#[test]
fn an_established_pipe_outlives_the_connect_timeout() {
    let target = echo_server();
    let tcpipe = start_forwarder(target);
    let mut client = tcpipe.connect();
    assert_round_trip(&mut client, b"first");
    // The deadline applies to connecting only.
    assert_nothing_arrives(
        &mut client,
        CONNECT_TIMEOUT * 4,
        "a connected pipe silent for longer than the connect timeout",
    );
    assert_round_trip(&mut client, b"second");
    assert_eq!(
        timeouts(&tcpipe, target),
        0.0,
        "a connected pipe hit the connect timeout"
    );
}
