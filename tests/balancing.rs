//! `--balance`: how clients are spread over three echo targets that count
//! the connections they accept. Round-robin takes each in turn, least-conn
//! the one with the fewest live pipes, source-hash the same one for every
//! connection from a client IP.

mod common;
use common::upstreams::*;
use common::*;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};

/// Source addresses 127.0.0.2 to 127.0.0.17: sixteen client IPs make it
/// practically certain that a hash spreads them over more than one target.
fn client_ips() -> impl Iterator<Item = IpAddr> {
    (2..=17).map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
}

fn three_targets() -> Vec<Backend> {
    (0..3).map(|_| Backend::echo()).collect()
}

fn start_balancing(backends: &[Backend], mode: &str) -> Tcpipe {
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    start_forwarder(&addrs, &["--balance", mode])
}

/// Runs `session` (which must make exactly one connection through the
/// forwarder and complete a round trip on it) and returns the index of the
/// target that accepted that connection.
fn target_of<T>(backends: &[Backend], session: impl FnOnce() -> T) -> (usize, T) {
    let before: Vec<usize> = backends.iter().map(Backend::accepted).collect();
    let result = session();
    let grown: Vec<usize> = backends
        .iter()
        .zip(&before)
        .enumerate()
        .filter(|(_, (backend, &was))| backend.accepted() != was)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        grown.len(),
        1,
        "one connection should reach exactly one target; accepted before {before:?}, after {:?}",
        backends.iter().map(Backend::accepted).collect::<Vec<_>>()
    );
    (grown[0], result)
}

/// A client that has proven it is served and stays connected.
fn held_client(tcpipe: &Tcpipe, n: usize) -> TcpStream {
    let mut client = tcpipe.connect();
    common::faults::assert_round_trip(&mut client, format!("held {n}").as_bytes());
    client
}

#[test]
fn round_robin_spreads_thirty_clients_exactly_evenly_over_three_targets() {
    let backends = three_targets();
    let tcpipe = start_balancing(&backends, "round-robin");
    for n in 0..30 {
        serve_client(&tcpipe, n);
    }
    let counts: Vec<usize> = backends.iter().map(Backend::accepted).collect();
    assert_eq!(
        counts,
        [10, 10, 10],
        "30 clients in a row should reach each of 3 targets 10 times"
    );
}

#[test]
fn least_conn_sends_new_clients_to_the_target_without_live_pipes() {
    let backends = three_targets();
    let tcpipe = start_balancing(&backends, "least-conn");

    // Three held pipes: whatever the tie-breaking, least-conn puts one on
    // each target.
    let mut held: Vec<(usize, TcpStream)> = (0..3)
        .map(|n| target_of(&backends, || held_client(&tcpipe, n)))
        .collect();
    let mut used: Vec<usize> = held.iter().map(|(target, _)| *target).collect();
    used.sort();
    assert_eq!(
        used,
        [0, 1, 2],
        "three held pipes should use all three targets"
    );

    // End one cleanly; its EOF comes only once the forwarder has freed it.
    let (idle_target, mut ending) = held.pop().unwrap();
    ending.shutdown(Shutdown::Write).unwrap();
    assert!(
        read_to_end(&mut ending).is_empty(),
        "no bytes were expected"
    );

    for n in 0..10 {
        let (target, ()) = target_of(&backends, || serve_client(&tcpipe, n));
        assert_eq!(
            target, idle_target,
            "client {n} went to target {target}, which holds a live pipe, not to idle target {idle_target}"
        );
    }
    // The held pipes were not disturbed.
    for (n, (_, client)) in held.iter_mut().enumerate() {
        common::faults::assert_round_trip(client, format!("still held {n}").as_bytes());
    }
}

/// Which target each client IP's connections reach, `rounds` connections
/// per IP, asserting that an IP never changes target.
fn targets_by_ip(backends: &[Backend], tcpipe: &Tcpipe, rounds: usize) -> BTreeMap<IpAddr, usize> {
    let mut seen = BTreeMap::new();
    for round in 0..rounds {
        for ip in client_ips() {
            let (target, ()) = target_of(backends, || {
                assert_served(
                    connect_from(ip, tcpipe.addr),
                    format!("{ip} #{round}").as_bytes(),
                )
            });
            let first = *seen.entry(ip).or_insert(target);
            assert_eq!(
                target, first,
                "client {ip} moved from target {first} to target {target} with every target up"
            );
        }
    }
    seen
}

#[test]
fn source_hash_keeps_every_connection_of_a_client_ip_on_one_target() {
    let backends = three_targets();
    let tcpipe = start_balancing(&backends, "source-hash");
    let by_ip = targets_by_ip(&backends, &tcpipe, 3);
    let mut used: Vec<usize> = by_ip.values().copied().collect();
    used.sort();
    used.dedup();
    assert!(
        used.len() > 1,
        "16 client IPs all hashed to one target: {by_ip:?}"
    );
}

#[test]
fn source_hash_moves_only_the_clients_of_a_target_that_went_down() {
    let mut backends = three_targets();
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    // The down target stays down for the whole test.
    let tcpipe = start_forwarder(
        &addrs,
        &[
            "--balance",
            "source-hash",
            "--fail-threshold",
            "1",
            "--cooldown",
            "60s",
        ],
    );
    let before = targets_by_ip(&backends, &tcpipe, 1);
    // The target with the most clients goes away.
    let victim = (0..3)
        .max_by_key(|&t| before.values().filter(|&&v| v == t).count())
        .unwrap();
    backends[victim].refuse();

    // Twice: the first connect of a moved client fails over, later ones go
    // straight to its new target; both must agree.
    let after = targets_by_ip(&backends, &tcpipe, 2);
    for (ip, &was) in &before {
        let now = after[ip];
        if was == victim {
            assert_ne!(now, victim, "client {ip} is still sent to the down target");
        } else {
            assert_eq!(
                now, was,
                "client {ip} moved from target {was} to {now} though only target {victim} went down"
            );
        }
    }
    tcpipe.wait_target_up(addrs[victim], false);
}
