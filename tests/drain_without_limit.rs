//! `--drain-timeout 0` means no limit, as `0` does for every duration: on
//! SIGTERM a live pipe runs on, however long, until it ends on its own, and
//! the process exits 0 as soon as it has.

mod common;
use common::faults::*;
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

/// Longer than any immediate or next-turn reset would take.
const OUTLIVES_AN_ABORT: Duration = Duration::from_secs(1);

#[test]
fn a_drain_timeout_of_0_waits_for_the_pipes_however_long_they_take() {
    let (target_listener, target_addr) = listener();
    let mut tcpipe = Tcpipe::start(target_addr, &["--drain-timeout", "0"]);
    let (mut client, mut upstream) = open_pipe(&tcpipe, &target_listener);
    client.write_all(b"before").unwrap();
    let mut buf = [0u8; 6];
    upstream.read_exact(&mut buf).unwrap();

    tcpipe.signal("TERM");
    let status = tcpipe.wait_stopping();
    assert!(status.contains("draining 1 pipe"), "{status}");
    let exited_early = wait_until(OUTLIVES_AN_ABORT, || {
        tcpipe.wait_exit(Duration::ZERO).is_some()
    });
    assert!(!exited_early, "tcpipe exited with a pipe still open");
    // The pipe still carries bytes both ways.
    client.write_all(b"during").unwrap();
    upstream.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"during");
    upstream.write_all(b"answer").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"answer");

    // It ends on its own: both sides close, and tcpipe exits.
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut upstream), b"");
    upstream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    let status = tcpipe
        .wait_exit(DEADLINE)
        .expect("tcpipe should exit once its last pipe has ended");
    assert!(status.success(), "exited with {status}");
}
