//! Failover: when a connect fails (refused, or no answer within
//! `--connect-timeout`) the next target is tried, and the bytes the client
//! sent meanwhile reach the target that accepts, each exactly once.

mod common;
use common::faults::*;
use common::hooks::*;
use common::upstreams::*;
use common::*;

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use tcpipe::{CloseReason, Config, Target};

/// A library forwarder to `targets` in turn (round-robin, never marking
/// one down), with recording hooks.
fn forwarder_over(targets: &[SocketAddr], connect_timeout: Option<Duration>) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), targets[0]);
    let route = &mut config.routes[0];
    route.targets = targets.iter().copied().map(Target::from).collect();
    route.cooldown = None;
    if connect_timeout.is_some() {
        route.connect_timeout = connect_timeout;
    }
    Running::start(config)
}

/// Serves `count` clients one after the other, each with a whole session,
/// through a forwarder over a dead target and two live ones.
fn serve_clients_past_a_dead_target(count: usize, options: &[&str]) -> (Tcpipe, SocketAddr) {
    let dead = Backend::refusing();
    let live = [Backend::echo(), Backend::echo()];
    let tcpipe = start_forwarder(&[dead.addr, live[0].addr, live[1].addr], options);
    for n in 0..count {
        serve_client(&tcpipe, n);
    }
    let served: usize = live.iter().map(Backend::served).sum();
    assert_eq!(served, count, "each client should reach a live target once");
    (tcpipe, dead.addr)
}

#[test]
fn three_hundred_clients_in_a_row_are_served_while_one_of_three_targets_is_dead() {
    let (tcpipe, dead) = serve_clients_past_a_dead_target(300, &[]);
    tcpipe.wait_target_up(dead, false);
}

#[test]
fn three_hundred_clients_are_served_when_the_dead_target_is_tried_again_and_again() {
    // Never marked down: round-robin keeps sending clients to the dead
    // target, and each of those must fail over.
    let (tcpipe, dead) = serve_clients_past_a_dead_target(300, &["--cooldown", "0"]);
    let failovers = tcpipe.connects_to(dead);
    assert!(
        failovers >= 100,
        "only {failovers} of 300 clients were sent to the dead target first, so failover was barely exercised"
    );
}

/// A client sends `size` bytes (then a FIN) right after connecting, before
/// the forwarder can have reached any target; the target accepted on
/// `live` must get exactly those bytes, and its reply must get back.
fn assert_early_bytes_arrive_once(
    forwarder: &Running,
    live: &TcpListener,
    size: usize,
    seed: u64,
) -> SocketAddr {
    let data = Rng::new(seed).bytes(size);
    let expected = Fnv::of(&data);
    let mut client = connect(forwarder.addr());
    let client_addr = client.local_addr().unwrap();
    let mut sending = client.try_clone().unwrap();
    let writer = thread::spawn(move || {
        sending
            .write_all(&data)
            .expect("the client sends its early bytes");
        sending.shutdown(Shutdown::Write).expect("half-close");
    });

    let mut upstream = accept(live);
    let received = read_to_end(&mut upstream);
    assert_eq!(
        received.len(),
        size,
        "the target that accepted got {} of the {size} early bytes",
        received.len()
    );
    assert_eq!(
        Fnv::of(&received),
        expected,
        "the early bytes arrived altered"
    );
    writer.join().expect("the client could not send");

    // The other way too, then a clean end for both.
    let reply = format!("got your {size} bytes");
    upstream.write_all(reply.as_bytes()).unwrap();
    drop(upstream);
    assert_eq!(
        read_to_end(&mut client),
        reply.as_bytes(),
        "the reply did not reach the client whole"
    );
    client_addr
}

/// Asserts that the pipe of the client at `client` was sent to `dead`
/// first, then connected to `live` only.
fn assert_tried_first(forwarder: &Running, client: SocketAddr, dead: SocketAddr, live: SocketAddr) {
    let id = forwarder.events.pipe_of(client);
    forwarder.events.closed(id);
    let events = forwarder.events.of(id);
    assert!(
        matches!(&events[0], Event::Opened { target: Some(t), .. } if *t == dead.to_string()),
        "the pipe was not sent to the dead target first: {events:#?}"
    );
    let connected: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Connected { .. }))
        .collect();
    assert!(
        matches!(connected[..], [Event::Connected { target, .. }] if *target == live.to_string()),
        "the pipe should connect once, to the live target: {events:#?}"
    );
}

#[test]
fn bytes_sent_before_a_refused_connect_arrive_exactly_once_at_the_next_target() {
    let dead = Backend::refusing();
    let (live, live_addr) = listener();
    // Never marked down, so round-robin sends every client to the dead
    // target first.
    let forwarder = forwarder_over(&[dead.addr, live_addr], None);
    // From a few bytes to several times the 64 KiB ring.
    for (seed, size) in [(1, 1), (2, 1000), (3, 300_000)] {
        let client = assert_early_bytes_arrive_once(&forwarder, &live, size, seed);
        assert_tried_first(&forwarder, client, dead.addr, live_addr);
    }
    assert_eq!(forwarder.handle.metrics().connect_failures_total.get(), 3);
    forwarder.stop();
}

#[test]
fn bytes_sent_while_a_target_never_answers_arrive_exactly_once_at_the_next_target() {
    // The connect hangs for the whole timeout, so the early bytes are surely
    // buffered, up to a full ring, before the forwarder moves on.
    let black_hole = Backend::black_hole();
    let (live, live_addr) = listener();
    let forwarder = forwarder_over(
        &[black_hole.addr, live_addr],
        Some(Duration::from_millis(300)),
    );
    for (seed, size) in [(1, 1000), (2, 300_000)] {
        let client = assert_early_bytes_arrive_once(&forwarder, &live, size, seed);
        assert_tried_first(&forwarder, client, black_hole.addr, live_addr);
    }
    assert_eq!(
        forwarder.handle.metrics().connect_failures_total.get(),
        2,
        "each client should have timed out once on the black hole"
    );
    forwarder.stop();
}

#[test]
fn clients_are_served_by_another_target_while_one_never_answers() {
    let black_hole = Backend::black_hole();
    let live = Backend::echo();
    let tcpipe = start_forwarder(
        &[black_hole.addr, live.addr],
        &["--connect-timeout", "300ms"],
    );
    // Concurrent clients, each with its own connect deadline; with the
    // default threshold of 3 the black hole is then marked down, and later
    // clients are served at once.
    let clients: Vec<_> = (0..4)
        .map(|n| {
            let client = tcpipe.connect();
            thread::spawn(move || assert_served(client, format!("client {n}").as_bytes()))
        })
        .collect();
    for client in clients {
        client.join().expect("a client was not served");
    }
    for n in 4..10 {
        serve_client(&tcpipe, n);
    }
    assert_eq!(
        live.served(),
        10,
        "every client should reach the live target"
    );
    let timeouts = tcpipe.target_metric("tcpipe_target_connect_timeouts_total", black_hole.addr);
    assert!(timeouts >= 1.0, "no connect to the black hole timed out");
}

#[test]
fn with_no_retries_a_client_sent_to_a_dead_target_is_reset() {
    let dead = Backend::refusing();
    let live = Backend::echo();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dead.addr);
    let route = &mut config.routes[0];
    route.targets.push(Target::from(live.addr));
    route.retries = Some(0);
    route.cooldown = None;
    let forwarder = Running::start(config);
    // Round-robin: the first client is sent to the dead target, the second
    // to the live one.
    let mut first = connect(forwarder.addr());
    let id = forwarder.events.pipe_of(first.local_addr().unwrap());
    assert_reset(&mut first, "client sent to the dead target");
    assert_served(connect(forwarder.addr()), b"client 2");
    assert_eq!(
        forwarder.events.close_reason(id),
        CloseReason::ConnectFailed
    );
    assert_eq!(forwarder.handle.metrics().connect_failures_total.get(), 1);
    assert_eq!(
        live.served(),
        1,
        "only the second client should reach the live target"
    );
}

#[test]
fn a_target_that_fails_after_accepting_is_not_failed_over() {
    let (accepting, accepting_addr) = listener();
    let other = Backend::echo();
    let tcpipe = start_forwarder(&[accepting_addr, other.addr], &[]);
    let (mut client, mut upstream) = open_pipe(&tcpipe, &accepting);
    assert_delivered(&mut client, &mut upstream, b"delivered once");
    // The bytes may have been acted on: sending them elsewhere could
    // duplicate them, so the reset is passed on.
    reset(upstream);
    assert_reset(&mut client, "client");
    assert_eq!(
        other.served(),
        0,
        "the client's bytes were replayed to another target"
    );
}
