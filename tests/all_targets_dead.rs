//! Every target dead: each client is closed at once (a direct connect would
//! have been refused), the log says no target could be reached, and the
//! forwarder lives on; the first client after a target comes back is served,
//! however long that target's cooldown still has to run.

mod common;
use common::upstreams::*;
use common::*;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

/// Well under a second, as the issue asks.
const PROMPTLY: Duration = Duration::from_secs(1);

/// Connects a client and asserts the forwarder closes it within
/// `PROMPTLY`, with a reset or an EOF and no bytes.
fn assert_closed_promptly(tcpipe: &Tcpipe, n: usize) {
    let started = Instant::now();
    let mut client = tcpipe.connect();
    client.set_read_timeout(Some(PROMPTLY)).unwrap();
    let (bytes, end) = read_until_closed(&mut client);
    let waited = started.elapsed();
    assert_eq!(bytes, 0, "client {n} received bytes from nowhere");
    match end {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("client {n} was not closed within {PROMPTLY:?} ({waited:?}): {e}"),
    }
}

fn assert_still_running(tcpipe: &mut Tcpipe) {
    if let Some(status) = tcpipe.wait_exit(Duration::ZERO) {
        panic!(
            "the forwarder exited ({status}); logs: {:#?}",
            tcpipe.logs()
        );
    }
}

#[test]
fn with_every_target_dead_each_client_is_closed_within_a_second() {
    let dead = [Backend::refusing(), Backend::refusing()];
    let mut tcpipe = start_forwarder(&[dead[0].addr, dead[1].addr], &[]);
    // More clients than the failure threshold: the targets go down, and
    // clients still get their answer at once.
    for n in 0..6 {
        assert_closed_promptly(&tcpipe, n);
    }
    // Logged once a second with a count (crate::throttle), not per client.
    let gave_up = "no target could be reached in 2 attempts";
    assert!(
        wait_until(DEADLINE, || count_logs(&tcpipe, gave_up) >= 1),
        "expected '{gave_up}'; logs: {:#?}",
        tcpipe.logs()
    );
    assert_still_running(&mut tcpipe);
}

#[test]
fn the_first_client_after_a_target_comes_back_is_served() {
    let mut targets = [Backend::refusing(), Backend::refusing()];
    let addrs = [targets[0].addr, targets[1].addr];
    // The cooldown outlasts the test: only the last-resort attempt made while
    // every target is down can reach the target that comes back.
    let mut tcpipe = start_forwarder(&addrs, &["--cooldown", "60s"]);
    for n in 0..6 {
        assert_closed_promptly(&tcpipe, n);
    }
    for addr in addrs {
        assert!(
            tcpipe.wait_for_log(&format!("target {addr} is down"), DEADLINE),
            "target {addr} was not marked down; logs: {:#?}",
            tcpipe.logs()
        );
    }

    // The second comes back: the first is still tried first (it went down
    // first), and the client must then fail over to the second.
    targets[1].listen();
    serve_client(&tcpipe, 6);
    assert!(
        tcpipe.wait_for_log(&format!("target {} is up again", addrs[1]), DEADLINE),
        "the target that came back was not marked up; logs: {:#?}",
        tcpipe.logs()
    );
    for n in 7..10 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(targets[1].served(), 4, "every client since should reach it");
    assert_still_running(&mut tcpipe);
}

#[test]
fn the_first_client_after_a_lone_target_comes_back_is_served() {
    let mut target = Backend::refusing();
    let tcpipe = start_forwarder(&[target.addr], &["--cooldown", "60s"]);
    for n in 0..4 {
        assert_closed_promptly(&tcpipe, n);
    }
    assert!(
        tcpipe.wait_for_log("no target could be reached in 1 attempt;", DEADLINE),
        "giving up was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    target.listen();
    serve_client(&tcpipe, 4);
    assert_eq!(target.served(), 1, "the client should reach the target");
}
