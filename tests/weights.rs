//! Target weights (`--target ADDR,weight=N`, `Handle::set_target_weight`):
//! round-robin splits clients by weight with no burst to the heavy target
//! (nginx's smooth weighted round-robin), least-conn divides live pipes by
//! weight, source-hash splits client addresses by weight, weight 0 gets nothing, and a weight set at runtime changes the
//! split in every worker.

mod common;
use common::operate::{self, next_target, ROUTE};
use common::upstreams::{assert_served, connect_from, Backend};
use common::*;

use std::net::{IpAddr, Ipv4Addr};

use tcpipe::Target;

/// `tcpipe -l 127.0.0.1:0 -t SPEC... --metrics 127.0.0.1:0 OPTIONS...`
fn start_specs(specs: &[String], options: &[&str]) -> Tcpipe {
    let mut args: Vec<&str> = specs[1..].iter().flat_map(|s| ["-t", s.as_str()]).collect();
    args.extend(["--metrics", "127.0.0.1:0"]);
    args.extend(options);
    Tcpipe::start(&specs[0], &args)
}

/// The longest run of `target` in `picks`.
fn longest_run(picks: &[usize], target: usize) -> usize {
    let (mut longest, mut run) = (0, 0);
    for &p in picks {
        run = if p == target { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

#[test]
fn round_robin_splits_400_clients_3_to_1_with_no_burst_and_weight_0_gets_none() {
    let (a, b, idle) = (Backend::echo(), Backend::echo(), Backend::echo());
    let tcpipe = start_specs(
        &[
            format!("{},weight=3", a.addr),
            b.addr.to_string(),
            format!("{},weight=0", idle.addr),
        ],
        &[],
    );
    let backends = [&a, &b, &idle];
    let picks: Vec<usize> = (0..400)
        .map(|n| next_target(tcpipe.addr, &backends, n))
        .collect();
    let to_a = picks.iter().filter(|&&p| p == 0).count();
    assert!(
        (to_a as i64 - 300).abs() <= 12,
        "the weight-3 target got {to_a} of 400"
    );
    assert_eq!(idle.accepted(), 0, "the weight-0 target got clients");
    assert!(
        longest_run(&picks, 0) <= 3,
        "{} clients in a row went to the weight-3 target",
        longest_run(&picks, 0)
    );
    assert_eq!(longest_run(&picks, 1), 1);
    let scrape = tcpipe.scrape();
    for (backend, weight) in [(&a, 3.0), (&b, 1.0), (&idle, 0.0)] {
        let target = backend.addr.to_string();
        let labels = [("route", ROUTE), ("target", target.as_str())];
        assert_eq!(scrape.get("tcpipe_target_weight", &labels), weight);
        assert_eq!(scrape.get("tcpipe_target_backup", &labels), 0.0);
    }
}

#[test]
fn least_conn_sends_each_new_pipe_where_live_pipes_per_weight_is_least() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let tcpipe = start_specs(
        &[format!("{},weight=3", a.addr), b.addr.to_string()],
        &["--balance", "least-conn"],
    );
    // Held pipes: each new one goes where live pipes ÷ weight is least,
    // so 8 held pipes end 6 on the weight-3 target and 2 on the other
    // (plain least-conn would make it 4 and 4).
    let held: Vec<_> = (0..8).map(|n| operate::held(tcpipe.addr, n)).collect();
    assert_eq!([a.accepted(), b.accepted()], [6, 2]);
    drop(held);
}

#[test]
fn source_hash_splits_client_addresses_by_weight() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let tcpipe = start_specs(
        &[format!("{},weight=3", a.addr), b.addr.to_string()],
        &["--balance", "source-hash"],
    );
    let mut to_a = 0;
    for n in 0..400u32 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 1, (n / 200) as u8, (n % 200 + 1) as u8));
        let before = a.accepted();
        assert_served(connect_from(ip, tcpipe.addr), b"hello");
        to_a += a.accepted() - before;
    }
    assert!(
        (to_a as i64 - 300).abs() <= 40,
        "the weight-3 target got {to_a} of 400 client addresses"
    );
}

#[test]
fn a_weight_set_at_runtime_changes_the_split_in_every_worker() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = operate::start(vec![Target::from(a.addr), Target::from(b.addr)], 2, |_| {});
    let addr = running.addr();
    let backends = [&a, &b];
    let split = |n: usize| {
        (0..n)
            .filter(|&i| next_target(addr, &backends, i) == 1)
            .count()
    };
    let to_b = split(200);
    assert!(
        (to_b as i64 - 100).abs() <= 4,
        "equal weights: {to_b} of 200"
    );
    running
        .handle
        .set_target_weight(ROUTE, &b.addr.to_string(), 3)
        .expect("set the weight");
    let info = running.handle.targets().unwrap();
    assert_eq!((info[0].weight, info[1].weight), (1, 3));
    let to_b = split(400);
    assert!((to_b as i64 - 300).abs() <= 8, "3 to 1: {to_b} of 400");
    running
        .handle
        .set_target_weight(ROUTE, &b.addr.to_string(), 0)
        .unwrap();
    let before = b.accepted();
    assert_eq!(split(40), 0);
    assert_eq!(b.accepted(), before, "weight 0 still got clients");
    running.stop();
}
