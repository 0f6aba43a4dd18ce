//! Draining a target through the library's `Handle`: no new pipe reaches
//! it once `set_target_state` returns (in every worker), its live pipes
//! run on and deliver every byte, and `wait_empty` answers when the last
//! one ends, or with the count left at its timeout.

mod common;
use common::hooks::{Events, Running};
use common::upstreams::Backend;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use tcpipe::{Config, Forwarder, Target, TargetState};

const ROUTE: &str = "default";

/// A library forwarder over `targets`, round-robin, with `workers` loops.
fn start(targets: &[SocketAddr], workers: usize) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), targets[0]);
    config.routes[0].targets = targets.iter().map(|&addr| Target::from(addr)).collect();
    config.workers = workers;
    Running::start_built(Forwarder::builder(config), Events::default())
}

/// A client that has made a round trip, so its pipe is open.
fn held(addr: SocketAddr, n: usize) -> TcpStream {
    let mut client = connect(addr);
    faults::assert_round_trip(&mut client, format!("held {n}").as_bytes());
    client
}

#[test]
fn a_drained_target_takes_no_new_pipe_in_any_worker_and_its_live_ones_run_on() {
    let backends = [Backend::echo(), Backend::echo()];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let running = start(&addrs, 2);
    let addr = running.addr();
    // Clients until the first target holds one: with two workers, each
    // with its own round-robin, a few may be needed.
    let mut clients = Vec::new();
    while backends[0].accepted() == 0 {
        assert!(clients.len() < 20, "the first target never got a client");
        clients.push(held(addr, clients.len()));
    }
    let drained = addrs[0].to_string();
    running
        .handle
        .set_target_state(ROUTE, &drained, TargetState::Drain)
        .expect("drain");
    let info = running.handle.targets().expect("targets");
    assert_eq!(info[0].state, TargetState::Drain);
    assert!(info[0].live_pipes >= 1, "{info:?}");

    let before = backends[0].accepted();
    for n in 0..40 {
        upstreams::assert_served(connect(addr), format!("new {n}").as_bytes());
    }
    assert_eq!(
        backends[0].accepted(),
        before,
        "a new client reached the drained target"
    );

    // The live pipes on the drained target still carry every byte.
    let payload: Vec<u8> = Rng::new(7).bytes(1 << 20);
    for client in &mut clients {
        let mut reader = client.try_clone().unwrap();
        let expected = payload.len();
        let echoed = thread::spawn(move || {
            let mut got = vec![0u8; expected];
            reader.read_exact(&mut got).map(|_| got)
        });
        client.write_all(&payload).expect("send a megabyte");
        let got = echoed.join().unwrap().expect("echo a megabyte");
        assert!(got == payload, "the echo of a live pipe came back altered");
    }

    // Still busy: a short wait answers how many remain.
    let left = running
        .handle
        .wait_empty(ROUTE, &drained, Duration::from_millis(200))
        .expect("wait_empty");
    let on_drained = running.handle.targets().unwrap()[0].live_pipes;
    assert!(
        left >= 1 && left == on_drained,
        "left {left}, live {on_drained}"
    );

    // A long wait answers once the last pipe ends, not at its timeout.
    let handle = running.handle.clone();
    let name = drained.clone();
    let waiting = thread::spawn(move || {
        let started = Instant::now();
        let left = handle.wait_empty(ROUTE, &name, Duration::from_secs(60));
        (left, started.elapsed())
    });
    thread::sleep(Duration::from_millis(100));
    assert!(
        !waiting.is_finished(),
        "wait_empty returned while pipes were live"
    );
    for client in clients {
        client.shutdown(Shutdown::Write).unwrap();
        let mut client = client;
        read_to_end(&mut client);
    }
    let (left, took) = waiting.join().unwrap();
    assert_eq!(left.expect("wait_empty"), 0);
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // Ready again: it takes clients.
    running
        .handle
        .set_target_state(ROUTE, &drained, TargetState::Ready)
        .expect("ready");
    let before = backends[0].accepted();
    for n in 0..8 {
        upstreams::assert_served(connect(addr), format!("again {n}").as_bytes());
    }
    assert!(
        backends[0].accepted() > before,
        "ready did not bring it back"
    );
    running.stop();
}

#[test]
fn unknown_routes_and_targets_are_named_errors() {
    let backend = Backend::echo();
    let running = start(&[backend.addr], 1);
    let handle = &running.handle;
    let err = handle
        .set_target_state("nope", "x", TargetState::Drain)
        .unwrap_err();
    assert!(
        matches!(err, tcpipe::CommandError::NoSuchRoute(ref r) if r == "nope"),
        "{err}"
    );
    let err = handle
        .set_target_weight(ROUTE, "10.9.9.9:1", 2)
        .unwrap_err();
    assert!(
        matches!(err, tcpipe::CommandError::NoSuchTarget(ref t) if t == "default/10.9.9.9:1"),
        "{err}"
    );
    let err = handle
        .wait_empty(ROUTE, "nope", Duration::from_secs(1))
        .unwrap_err();
    assert!(
        matches!(err, tcpipe::CommandError::NoSuchTarget(_)),
        "{err}"
    );
    let err = handle
        .abort_pipes(tcpipe::PipeFilter::Route("nope".into()))
        .unwrap_err();
    assert!(matches!(err, tcpipe::CommandError::NoSuchRoute(_)), "{err}");
    let err = handle
        .set_target_weight(ROUTE, &backend.addr.to_string(), tcpipe::MAX_WEIGHT + 1)
        .unwrap_err();
    assert!(err.to_string().contains("weight"), "{err}");
    // An idle target is empty at once.
    assert_eq!(
        handle
            .wait_empty(ROUTE, &backend.addr.to_string(), Duration::from_secs(30))
            .unwrap(),
        0
    );
    running.stop();
}
