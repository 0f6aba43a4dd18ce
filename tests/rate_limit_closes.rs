//! A rate limit delays reads, never a close: while a direction waits for
//! its bucket, a FIN and a reset still pass at once, and the idle timeout
//! does not take a limited pipe that is moving for an idle one.

mod common;
use common::faults::*;
use common::transfer::*;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

/// Long enough for a loaded machine; far shorter than the limit would
/// hold the bytes that follow.
const AT_ONCE: Duration = Duration::from_secs(2);

#[test]
fn a_fin_after_the_burst_passes_at_once() {
    let (target_listener, target_addr) = listener();
    // 1 KiB/s after a 4 KiB burst: the bucket is empty once the burst
    // has passed, and would take four seconds to fill again.
    let tcpipe = Tcpipe::start(target_addr, &["--upload-rate", "1k", "--rate-burst", "4k"]);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);
    client.write_all(&[7u8; 4096]).unwrap();
    let mut burst = [0u8; 4096];
    target.read_exact(&mut burst).expect("the burst passes");
    let fin_sent = Instant::now();
    client.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_end(&mut target).is_empty(), "bytes after the FIN");
    assert!(
        fin_sent.elapsed() < AT_ONCE,
        "the FIN waited {:?} for the bucket",
        fin_sent.elapsed()
    );
    // The other way is open still: the pipe ends cleanly.
    target.write_all(b"bye").unwrap();
    target.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"bye");
}

#[test]
fn a_reset_passes_at_once_while_bytes_wait_for_the_bucket() {
    let (target_listener, target_addr) = listener();
    let tcpipe = Tcpipe::start(target_addr, &["--upload-rate", "4k", "--rate-burst", "4k"]);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);
    // 256 KiB at 4 KiB/s would take a minute: most of it waits in the
    // client's socket while the limit holds.
    client.set_nonblocking(true).unwrap();
    let mut sent = 0;
    while sent < 256 * 1024 {
        match client.write(&[1u8; 16 * 1024]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut first = [0u8; 4096];
    target.read_exact(&mut first).expect("the burst passes");
    let reset_sent = Instant::now();
    reset(client);
    assert_reset(&mut target, "the target");
    assert!(
        reset_sent.elapsed() < AT_ONCE,
        "the reset waited {:?} for the bucket",
        reset_sent.elapsed()
    );
}

#[test]
fn the_idle_timeout_does_not_take_a_limited_pipe_that_moves() {
    let (target_listener, target_addr) = listener();
    // 12 KiB after a 4 KiB burst at 8 KiB/s: a second and a half, three
    // idle timeouts, every byte of it paced by the limit.
    let tcpipe = Tcpipe::start(
        target_addr,
        &[
            "--upload-rate",
            "8k",
            "--rate-burst",
            "4k",
            "--idle-timeout",
            "500ms",
        ],
    );
    let (client, target) = open_pipe(&tcpipe, &target_listener);
    let transfer = send_and_time(client, target, 16 * 1024, 9);
    assert_rate_near(
        "a paced upload",
        12.0 * 1024.0 / transfer.took.as_secs_f64(),
        8.0 * 1024.0,
        0.25,
    );
}
