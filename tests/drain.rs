//! Draining a target through the library's `Handle`: no new pipe reaches
//! it once `set_target_state` returns (in every worker), its live pipes
//! run on and deliver every byte, and `wait_empty` answers when the last
//! one ends, or with the count left at its timeout.

mod common;
use common::operate::*;
use common::upstreams::{assert_served, Backend};
use common::*;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use tcpipe::{CommandError, PipeFilter, TargetState, MAX_WEIGHT};

#[test]
fn a_drained_target_takes_no_new_pipe_in_any_worker_and_its_live_ones_run_on() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = start(targets_of(&[&a, &b]), 2, |_| {});
    let addr = running.addr();
    let mut clients = hold_one_on(addr, &a);
    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Drain)
        .expect("drain");
    let info = running.handle.targets().expect("targets");
    assert_eq!(info[0].state, TargetState::Drain);
    assert!(info[0].live_pipes >= 1, "{info:?}");

    let before = a.accepted();
    for n in 0..40 {
        assert_served(connect(addr), format!("new {n}").as_bytes());
    }
    assert_eq!(
        a.accepted(),
        before,
        "a new client reached the drained target"
    );

    // The live pipes (on both targets) still carry every byte.
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
        .wait_empty(ROUTE, &name(&a), Duration::from_millis(200))
        .expect("wait_empty");
    let on_drained = running.handle.targets().unwrap()[0].live_pipes;
    assert!(
        left >= 1 && left == on_drained,
        "left {left}, live {on_drained}"
    );

    // A long wait answers once the last pipe ends, not at its timeout.
    let handle = running.handle.clone();
    let drained = name(&a);
    let waiting = thread::spawn(move || {
        let started = Instant::now();
        let left = handle.wait_empty(ROUTE, &drained, Duration::from_secs(60));
        (left, started.elapsed())
    });
    thread::sleep(Duration::from_millis(100));
    assert!(
        !waiting.is_finished(),
        "wait_empty returned while pipes were live"
    );
    for mut client in clients {
        client.shutdown(Shutdown::Write).unwrap();
        read_to_end(&mut client);
    }
    let (left, took) = waiting.join().unwrap();
    assert_eq!(left.expect("wait_empty"), 0);
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(running.handle.targets().unwrap()[0].live_pipes, 0);

    // Ready again: it takes clients.
    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Ready)
        .expect("ready");
    let before = a.accepted();
    for n in 0..8 {
        assert_served(connect(addr), format!("again {n}").as_bytes());
    }
    assert!(a.accepted() > before, "ready did not bring it back");
    running.stop();
}

#[test]
fn draining_every_target_leaves_new_clients_unserved() {
    let a = Backend::echo();
    let running = start(targets_of(&[&a]), 1, |_| {});
    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Drain)
        .unwrap();
    let mut client = connect(running.addr());
    faults::assert_reset(
        &mut client,
        "a client of a route whose only target is drained",
    );
    assert_eq!(a.accepted(), 0);
    running.stop();
}

#[test]
fn unknown_routes_and_targets_are_named_errors() {
    let a = Backend::echo();
    let running = start(targets_of(&[&a]), 2, |_| {});
    let handle = &running.handle;
    let err = handle
        .set_target_state("nope", "x", TargetState::Drain)
        .unwrap_err();
    assert!(
        matches!(err, CommandError::NoSuchRoute(ref r) if r == "nope"),
        "{err}"
    );
    let err = handle
        .set_target_weight(ROUTE, "10.9.9.9:1", 2)
        .unwrap_err();
    assert!(
        matches!(err, CommandError::NoSuchTarget(ref t) if t == "default/10.9.9.9:1"),
        "{err}"
    );
    assert_eq!(err.to_string(), "no target \"default/10.9.9.9:1\"");
    let err = handle
        .wait_empty(ROUTE, "nope", Duration::from_secs(1))
        .unwrap_err();
    assert!(matches!(err, CommandError::NoSuchTarget(_)), "{err}");
    let err = handle
        .abort_pipes(PipeFilter::Route("nope".into()))
        .unwrap_err();
    assert!(matches!(err, CommandError::NoSuchRoute(_)), "{err}");
    let err = handle
        .abort_pipes(PipeFilter::Target {
            route: ROUTE.into(),
            target: "nope".into(),
        })
        .unwrap_err();
    assert!(matches!(err, CommandError::NoSuchTarget(_)), "{err}");
    let err = handle
        .set_target_weight(ROUTE, &name(&a), MAX_WEIGHT + 1)
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Invalid(_)) && err.to_string().contains("weight"),
        "{err}"
    );
    // An idle target is empty at once.
    let left = handle
        .wait_empty(ROUTE, &name(&a), Duration::from_secs(30))
        .unwrap();
    assert_eq!(left, 0);
    running.stop();
}
