//! allow/deny and max-connections-per-source act on the real client
//! address (the PROXY header's on an accept-proxy route), before any
//! target is dialed; refused clients are reset, counted and told to hooks.

mod common;
use common::faults::assert_reset;
use common::hooks::*;
use common::proxy::{self, Recorder};
use common::upstreams::{assert_served, connect_from};
use common::*;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};

use tcpipe::{CloseReason, Config};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn route_to(target: SocketAddr, edit: impl FnOnce(&mut tcpipe::Route)) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    edit(&mut config.routes[0]);
    Running::start(config)
}

fn wait_denied(running: &Running, n: usize) {
    let seen = wait_until(DEADLINE, || {
        running
            .events
            .all()
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::Closed {
                        reason: CloseReason::Denied,
                        ..
                    }
                )
            })
            .count()
            == n
    });
    assert!(seen, "expected {n} denials: {:#?}", running.events.all());
}

#[test]
fn deny_wins_over_allow_and_anything_not_allowed_is_denied() {
    let target = echo_server();
    let running = route_to(target, |route| {
        route.allow = vec!["127.0.0.0/29".parse().unwrap()];
        route.deny = vec!["127.0.0.3".parse().unwrap()];
    });
    assert_served(connect_from(ip("127.0.0.2"), running.addr()), b"allowed");
    let mut denied = connect_from(ip("127.0.0.3"), running.addr());
    assert_reset(&mut denied, "denied client");
    let mut outside = connect_from(ip("127.0.0.9"), running.addr());
    assert_reset(&mut outside, "client outside the allow list");
    wait_denied(&running, 2);
    let metrics = running.handle.metrics();
    assert_eq!(metrics.denied_total.get(), 2);
    assert_eq!(metrics.refused_per_source_total.get(), 0);
    running.stop();
}

#[test]
fn a_denied_client_never_reaches_a_target() {
    let target = Recorder::start();
    let running = route_to(target.addr, |route| {
        route.deny = vec!["127.0.0.0/8".parse().unwrap()];
    });
    let mut client = connect(running.addr());
    // The reset may come before the write: then the write reports it (and
    // takes it off the socket, so a read after it would see a plain EOF).
    match client.write_all(b"let me in") {
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "the denied client's write failed with '{e}', not a reset"
        ),
        Ok(()) => assert_reset(&mut client, "denied client"),
    }
    wait_denied(&running, 1);
    assert_eq!(target.accepted(), 0);
    running.stop();
}

#[test]
fn rules_apply_to_the_address_in_the_proxy_header() {
    let target = echo_server();
    let running = route_to(target, |route| {
        route.accept_proxy = true;
        route.allow = vec!["10.0.0.0/8".parse().unwrap()];
    });
    let to = "192.0.2.1:80".parse().unwrap();
    // The balancer's own address (127.0.0.1) is not allowed; its clients are.
    let mut allowed = connect(running.addr());
    allowed
        .write_all(&proxy::v1("10.1.2.3:5555".parse().unwrap(), to))
        .unwrap();
    assert_served(allowed, b"from 10.1.2.3");
    let mut denied = connect(running.addr());
    denied
        .write_all(&proxy::v2("192.168.1.1:5555".parse().unwrap(), to, &[]))
        .unwrap();
    assert_reset(&mut denied, "client named 192.168.1.1");
    wait_denied(&running, 1);
    assert_eq!(running.handle.metrics().denied_total.get(), 1);
    running.stop();
}

#[test]
fn a_source_over_its_limit_is_reset_while_others_are_served() {
    let target = echo_server();
    let running = route_to(target, |route| route.max_connections_per_source = Some(2));
    let first = connect_from(ip("127.0.0.2"), running.addr());
    let second = connect_from(ip("127.0.0.2"), running.addr());
    running.events.pipe_of(first.local_addr().unwrap());
    running.events.pipe_of(second.local_addr().unwrap());
    let mut third = connect_from(ip("127.0.0.2"), running.addr());
    assert_reset(&mut third, "third client of 127.0.0.2");
    wait_denied(&running, 1);
    assert_eq!(running.handle.metrics().refused_per_source_total.get(), 1);
    assert_served(
        connect_from(ip("127.0.0.3"), running.addr()),
        b"another source",
    );
    // A pipe that ends makes room again.
    assert_served(first, b"first");
    assert_served(connect_from(ip("127.0.0.2"), running.addr()), b"room again");
    drop(second);
    running.stop();
}

#[test]
fn the_per_source_limit_counts_the_address_in_the_proxy_header() {
    let target = echo_server();
    let running = route_to(target, |route| {
        route.accept_proxy = true;
        route.max_connections_per_source = Some(1);
    });
    let to: SocketAddr = "192.0.2.1:80".parse().unwrap();
    let open = |source: &str| {
        let mut client = connect(running.addr());
        client
            .write_all(&proxy::v1(source.parse().unwrap(), to))
            .unwrap();
        client
    };
    // Both come from 127.0.0.1, as from one balancer: only the header counts.
    let a = open("10.0.0.1:1000");
    let b = open("10.0.0.2:1000");
    running.events.pipe_of("10.0.0.1:1000".parse().unwrap());
    running.events.pipe_of("10.0.0.2:1000".parse().unwrap());
    let mut again = open("10.0.0.1:1001");
    assert_reset(&mut again, "second client named 10.0.0.1");
    wait_denied(&running, 1);
    assert_eq!(running.handle.metrics().refused_per_source_total.get(), 1);
    assert_served(a, b"a");
    assert_served(b, b"b");
    running.stop();
}

#[test]
fn a_reload_applies_new_rules_to_new_clients_only() {
    let target = echo_server();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
    let running = Running::start(config.clone());
    let before = connect_from(ip("127.0.0.2"), running.addr());
    running.events.pipe_of(before.local_addr().unwrap());
    config.routes[0].listen = vec![running.addr()];
    config.routes[0].deny = vec!["127.0.0.2".parse().unwrap()];
    let reloaded = running.handle.reload(config).expect("reload");
    assert!(
        reloaded
            .summary
            .iter()
            .any(|line| line.contains("deny [] -> [127.0.0.2/32]")),
        "{:?}",
        reloaded.summary
    );
    let mut after = connect_from(ip("127.0.0.2"), running.addr());
    assert_reset(&mut after, "client denied by the reloaded rules");
    wait_denied(&running, 1);
    assert_served(before, b"the pipe from before is still served");
    running.stop();
}

#[test]
fn a_flood_of_denied_clients_is_logged_once_a_second_with_a_count() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--deny", "127.0.0.0/8"]);
    let denied = |tcpipe: &Tcpipe| -> Vec<String> {
        tcpipe
            .logs()
            .into_iter()
            // The warnings, not the access log's line per client.
            .filter(|line| {
                line.contains("resetting client")
                    && line.contains("denied by the route's allow/deny rules")
            })
            .collect()
    };
    // Lines logged plus the clients they say were held back: every denial.
    let accounted = |lines: &[String]| -> usize {
        lines
            .iter()
            .map(|line| {
                let held_back = line
                    .split("(and ")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .map_or(0, |n| n.parse::<usize>().expect("a count"));
                1 + held_back
            })
            .sum()
    };
    for _ in 0..20 {
        let mut client = tcpipe.connect();
        assert_reset(&mut client, "denied client");
    }
    // One throttle interval later, a 21st denial is logged with the count
    // of those held back since the line before.
    let interval_over = std::time::Instant::now() + std::time::Duration::from_millis(1100);
    wait_until(DEADLINE, || std::time::Instant::now() >= interval_over);
    let mut client = tcpipe.connect();
    assert_reset(&mut client, "denied client");
    let complete = wait_until(DEADLINE, || accounted(&denied(&tcpipe)) == 21);
    let lines = denied(&tcpipe);
    assert!(complete, "21 denials, lines: {lines:#?}");
    assert!(
        lines.len() <= 3,
        "a line per denial instead of one a second: {lines:#?}"
    );
    assert!(
        lines[0].contains("127.0.0.1"),
        "the client is named: {}",
        lines[0]
    );
}
