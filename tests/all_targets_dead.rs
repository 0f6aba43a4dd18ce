//! Every target dead: each client is closed at once (a direct connect would
//! have been refused) after every target was tried, metrics count it as a
//! failed connect, and the forwarder lives on; the first client after a target comes back is served,
//! however long that target's cooldown still has to run.

mod common;
use common::upstreams::*;
use common::*;

use std::io::ErrorKind;
use std::net::SocketAddr;
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

/// Waits until `/metrics` counts `clients` pipes of the flags' route
/// ended for want of a target, and `connects` connects made for them.
fn assert_unreachable(tcpipe: &Tcpipe, clients: usize, connects: usize, targets: &[SocketAddr]) {
    let closed = [("route", scrape::FLAGS_ROUTE), ("reason", "connect_failed")];
    scrape::scrape_until(
        tcpipe,
        &format!("{clients} pipes closed connect_failed"),
        |s| s.get("tcpipe_pipes_closed_total", &closed) == clients as f64,
    );
    let made: usize = targets.iter().map(|&t| tcpipe.connects_to(t)).sum();
    assert_eq!(made, connects, "connects made for {clients} clients");
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
    // Each client was closed after both targets were tried, down or not.
    assert_unreachable(&tcpipe, 6, 12, &[dead[0].addr, dead[1].addr]);
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
        tcpipe.wait_target_up(addr, false);
    }

    // The second comes back: the first is still tried first (it went down
    // first), and the client must then fail over to the second.
    targets[1].listen();
    serve_client(&tcpipe, 6);
    tcpipe.wait_target_up(addrs[1], true);
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
    assert_unreachable(&tcpipe, 4, 4, &[target.addr]);
    target.listen();
    serve_client(&tcpipe, 4);
    assert_eq!(target.served(), 1, "the client should reach the target");
}
