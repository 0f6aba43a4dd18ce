//! SIGTERM, SIGINT, SIGQUIT (nginx's graceful stop) and SIGUSR1 (HAProxy's
//! soft stop): the listener closes at once (new connects are refused), live
//! pipes run on until they finish or `--drain-timeout` runs out (then they
//! are reset), and the process exits 0. A second signal aborts everything
//! at once.

mod common;
use common::faults::*;
use common::scrape::scrape_until;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;
/// How soon the process must exit once nothing holds it.
const EXIT_LATENCY: Duration = Duration::from_secs(2);

fn assert_refused(addr: SocketAddr) {
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionRefused,
            "a connect after the signal failed with '{e}', not a refusal"
        ),
        Ok(_) => panic!("a new client was accepted after the shutdown signal"),
    }
}

/// Sends the signal and waits until the forwarder has acted on it: it
/// tells systemd that it is stopping.
fn request_shutdown(tcpipe: &Tcpipe, signal: &str) {
    tcpipe.signal(signal);
    tcpipe.wait_stopping();
}

fn assert_exits_successfully(tcpipe: &mut Tcpipe, within: Duration) {
    let status = tcpipe
        .wait_exit(within)
        .unwrap_or_else(|| panic!("still running {within:?} after it had nothing left to do"));
    assert!(
        status.success(),
        "exited with {status}; logs: {:#?}",
        tcpipe.logs()
    );
}

/// A transfer of `size` bytes toward the target is stalled halfway (the
/// target stops reading) when `signal` arrives. It must still complete,
/// hash-checked, with an answer back, while new connects are refused; then
/// the process exits 0 on its own, long before the drain timeout.
fn in_flight_transfer_completes_after(signal: &str, size: usize) {
    let (target_listener, target_addr) = listener();
    let mut tcpipe = Tcpipe::start(target_addr, &["--drain-timeout", "25s"]);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    let (stalled_tx, stalled) = mpsc::channel();
    let (resume, resume_rx) = mpsc::channel::<()>();
    let receiver = thread::spawn(move || {
        let mut received = Fnv::default();
        let mut len = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let mut stalled_tx = Some(stalled_tx);
        loop {
            let n = target.read(&mut buf).expect("the target's read failed");
            if n == 0 {
                break;
            }
            received.update(&buf[..n]);
            len += n;
            if len >= MIB {
                if let Some(stalled) = stalled_tx.take() {
                    stalled.send(()).unwrap();
                    resume_rx.recv().unwrap();
                }
            }
        }
        target.write_all(b"all received").unwrap();
        target.shutdown(Shutdown::Write).unwrap();
        (received, len)
    });
    let sender = thread::spawn(move || {
        let mut rng = Rng::new(42);
        let mut sent = Fnv::default();
        let mut chunk = vec![0u8; 64 * 1024];
        for _ in 0..size / chunk.len() {
            rng.fill(&mut chunk);
            sent.update(&chunk);
            client.write_all(&chunk).expect("the client's write failed");
        }
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(
            read_to_end(&mut client),
            b"all received",
            "the answer after the upload was lost"
        );
        sent
    });

    stalled
        .recv_timeout(DEADLINE)
        .expect("the transfer never started");
    request_shutdown(&tcpipe, signal);
    assert_refused(tcpipe.addr);
    resume.send(()).unwrap();

    let sent = sender.join().expect("client side");
    let (received, len) = receiver.join().expect("target side");
    assert_eq!(len, size, "the transfer was cut short by the shutdown");
    assert_eq!(
        received, sent,
        "the transfer was altered during the shutdown"
    );
    assert_exits_successfully(&mut tcpipe, EXIT_LATENCY);
}

#[test]
fn an_in_flight_100_mib_transfer_completes_after_sigterm_and_new_connects_are_refused() {
    in_flight_transfer_completes_after("TERM", 100 * MIB);
}

#[test]
fn sigint_drains_like_sigterm() {
    in_flight_transfer_completes_after("INT", 4 * MIB);
}

#[test]
fn sigquit_drains_like_sigterm() {
    in_flight_transfer_completes_after("QUIT", 4 * MIB);
}

#[test]
fn sigusr1_drains_like_sigterm() {
    in_flight_transfer_completes_after("USR1", 4 * MIB);
}

#[test]
fn a_pipe_still_open_at_the_drain_timeout_is_reset_and_the_process_exits_0() {
    let (target_listener, target_addr) = listener();
    let mut tcpipe = Tcpipe::start(target_addr, &["--drain-timeout", "1s"]);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    request_shutdown(&tcpipe, "TERM");
    let signalled = Instant::now();
    // Until the deadline the pipe still works both ways.
    assert_delivered(&mut client, &mut target, b"during the drain");
    assert_delivered(&mut target, &mut client, b"still flowing");

    assert_reset(&mut client, "client");
    let elapsed = signalled.elapsed();
    assert!(
        elapsed >= Duration::from_millis(950),
        "the pipe was reset {elapsed:?} after the signal, before the 1s drain timeout"
    );
    assert!(
        elapsed <= Duration::from_secs(2),
        "the pipe was reset only {elapsed:?} after the signal (drain timeout 1s)"
    );
    assert_reset(&mut target, "target");
    assert_exits_successfully(&mut tcpipe, EXIT_LATENCY);
}

#[test]
fn a_second_signal_aborts_the_drain_at_once() {
    let (target_listener, target_addr) = listener();
    let mut tcpipe = Tcpipe::start(target_addr, &["--drain-timeout", "30s"]);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);

    request_shutdown(&tcpipe, "TERM");
    let second = Instant::now();
    tcpipe.signal("TERM");
    assert_reset(&mut client, "client");
    assert_reset(&mut target, "target");
    assert_exits_successfully(&mut tcpipe, EXIT_LATENCY);
    assert!(
        second.elapsed() <= EXIT_LATENCY,
        "the second signal took {:?} to take effect",
        second.elapsed()
    );
}

#[test]
fn with_no_pipe_open_sigterm_exits_0_at_once() {
    let mut tcpipe = Tcpipe::start(echo_server(), &["--drain-timeout", "30s"]);
    let mut client = tcpipe.connect();
    assert_round_trip(&mut client, b"one pipe, then none");
    // Once the echo target's FIN has come back through, the pipe is over.
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty());
    tcpipe.signal("TERM");
    assert_exits_successfully(&mut tcpipe, EXIT_LATENCY);
}

#[test]
fn clients_waiting_at_the_connection_limit_are_reset_by_the_shutdown() {
    let mut tcpipe = Tcpipe::start(
        echo_server(),
        &[
            "--max-connections",
            "1",
            "--drain-timeout",
            "25s",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let mut served = tcpipe.connect();
    assert_round_trip(&mut served, b"first in");
    scrape_until(&tcpipe, "the connection limit of 1 reached", |s| {
        s.get("tcpipe_connection_limit_reached_total", &[]) >= 1.0
    });
    let mut waiting = tcpipe.connect();
    waiting.write_all(b"let me in").unwrap();

    request_shutdown(&tcpipe, "TERM");
    // Nobody will ever serve the backlog: its clients must not hang.
    assert_reset(&mut waiting, "client waiting in the backlog");
    assert_round_trip(&mut served, b"still served");
    served.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut served).is_empty());
    assert_exits_successfully(&mut tcpipe, EXIT_LATENCY);
}

#[test]
fn the_library_handle_shutdown_drains_like_sigterm() {
    let config = tcpipe::Config::new("127.0.0.1:0".parse().unwrap(), echo_server());
    let forwarder = tcpipe::Forwarder::bind(config).expect("bind");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let (finished, run_result) = mpsc::channel();
    thread::spawn(move || finished.send(forwarder.run().map_err(|e| e.to_string())));

    let mut client = connect(addr);
    assert_round_trip(&mut client, b"before");
    handle.shutdown();
    // Connects that slip in before the request is handled become pipes
    // that end at once; the listener must close soon after.
    let refusing = wait_until(DEADLINE, || TcpStream::connect(addr).is_err());
    assert!(refusing, "new connects are still accepted after shutdown()");
    assert_refused(addr);

    assert_round_trip(&mut client, b"during the drain");
    assert!(
        run_result.try_recv().is_err(),
        "run() returned while a pipe was still open"
    );
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut client).is_empty());
    let result = run_result
        .recv_timeout(EXIT_LATENCY)
        .expect("run() did not return once the last pipe finished");
    assert_eq!(result, Ok(()), "run() failed after shutdown()");
}
