//! `--health-interval`: a TCP connect to every target each interval. A
//! failed probe marks its target down at once, with no client involved; a
//! successful one brings it back, and clients are sent to it again.

mod common;
use common::upstreams::*;
use common::*;

use std::net::SocketAddr;

const INTERVAL: &str = "200ms";

fn start_probing(targets: &[SocketAddr], options: &[&str]) -> Tcpipe {
    let mut all = vec!["--health-interval", INTERVAL, "--metrics", "127.0.0.1:0"];
    all.extend_from_slice(options);
    start_forwarder(targets, &all)
}

fn assert_logged(tcpipe: &Tcpipe, needle: &str, what: &str) {
    assert!(
        tcpipe.wait_for_log(needle, DEADLINE),
        "{what}: no '{needle}' in the logs: {:#?}",
        tcpipe.logs()
    );
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
    let tcpipe = start_probing(&[flaky.addr, steady.addr], &[]);
    assert!(
        wait_until(DEADLINE, || flaky.accepted() >= 2),
        "the target was not probed repeatedly"
    );

    flaky.refuse();
    // One failed probe is decisive, well below the default threshold of 3.
    assert_logged(
        &tcpipe,
        &format!("target {} is down after 1 failed connect;", flaky.addr),
        "a refused probe should mark the target down",
    );
    assert_no_client_yet(&tcpipe);

    // While down, clients go to the other target only.
    for n in 0..6 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(flaky.served(), 0, "a client was sent to the down target");
    assert_eq!(
        count_logs(&tcpipe, &connect_failure_log(flaky.addr)),
        0,
        "a client tried the target the probes had marked down"
    );
}

#[test]
fn probes_bring_a_target_back_when_it_listens_again_and_clients_follow() {
    let mut flaky = Backend::refusing();
    let steady = Backend::echo();
    let tcpipe = start_probing(&[flaky.addr, steady.addr], &["--cooldown", "60s"]);
    assert_logged(
        &tcpipe,
        &format!("target {} is down", flaky.addr),
        "a refused probe should mark the target down",
    );

    flaky.listen();
    // Well before the 60 s cooldown: only a probe can bring it back.
    assert_logged(
        &tcpipe,
        &format!("target {} is up again", flaky.addr),
        "a successful probe should bring the target back",
    );
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
    assert_logged(
        &tcpipe,
        &format!("target {} is down", black_hole.addr),
        "a probe that times out should mark the target down",
    );
    assert_logged(
        &tcpipe,
        &format!(
            "probe connection to {} failed: connect timed out",
            black_hole.addr
        ),
        "the probe's timeout should be logged",
    );
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
