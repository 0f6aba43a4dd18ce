//! `--health-interval`: a TCP connect to every target each interval. A
//! failed probe marks its target down at once, with no client involved; a
//! successful one brings it back, and clients are sent to it again.
//! Targets' states are read from `/metrics` (`tcpipe_target_up`).

mod common;
use common::upstreams::*;
use common::*;

use std::net::SocketAddr;

const INTERVAL: &str = "200ms";

fn start_probing(targets: &[SocketAddr], options: &[&str]) -> Tcpipe {
    let mut all = vec!["--health-interval", INTERVAL];
    all.extend_from_slice(options);
    start_forwarder(targets, &all)
}

fn assert_no_client_yet(tcpipe: &Tcpipe) {
    let accepted = tcpipe
        .scrape()
        .get("tcpipe_connections_accepted_total", &[("route", "default")]);
    assert_eq!(accepted, 0.0, "a client was counted though none connected");
}

#[test]
fn probes_mark_a_refusing_target_down_without_any_client() {
    let mut flaky = Backend::echo();
    let steady = Backend::echo();
    // A threshold no run of failed client connects reaches within the
    // test's deadline: only a decisive probe can mark it down in time.
    let tcpipe = start_probing(&[flaky.addr, steady.addr], &["--fail-threshold", "1000"]);
    assert!(
        wait_until(DEADLINE, || flaky.accepted() >= 2),
        "the target was not probed repeatedly"
    );

    flaky.refuse();
    // One failed probe is decisive, whatever the threshold.
    tcpipe.wait_target_up(flaky.addr, false);
    assert_no_client_yet(&tcpipe);

    // While down, clients go to the other target only.
    for n in 0..6 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(flaky.served(), 0, "a client was sent to the down target");
    assert_eq!(
        tcpipe.connects_to(flaky.addr),
        0,
        "a client tried the target the probes had marked down"
    );
}

#[test]
fn probes_bring_a_target_back_when_it_listens_again_and_clients_follow() {
    let mut flaky = Backend::refusing();
    let steady = Backend::echo();
    let tcpipe = start_probing(&[flaky.addr, steady.addr], &["--cooldown", "60s"]);
    tcpipe.wait_target_up(flaky.addr, false);

    flaky.listen();
    // Well before the 60 s cooldown: only a probe can bring it back.
    tcpipe.wait_target_up(flaky.addr, true);
    assert_no_client_yet(&tcpipe);

    for n in 0..10 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(
        flaky.served(),
        5,
        "round-robin should send half of 10 clients to the target that came back"
    );
}

#[test]
fn probes_mark_a_target_that_never_answers_down_after_the_connect_timeout() {
    let black_hole = Backend::black_hole();
    let steady = Backend::echo();
    let tcpipe = start_probing(
        &[black_hole.addr, steady.addr],
        &["--connect-timeout", "300ms"],
    );
    // A black hole never accepts nor refuses: only the probe's connect
    // timeout can mark it down.
    tcpipe.wait_target_up(black_hole.addr, false);
    assert_no_client_yet(&tcpipe);
    for n in 0..4 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(
        steady.served(),
        4,
        "every client should go to the live target"
    );
}
