//! A target in maintenance (`TargetState::Maint`): no new pipe, its health
//! probes stop (a target that counts the connections it accepts sees
//! none), and it counts as down in `/metrics`; `ready` brings probes and
//! clients back. With two workers: the leader probes for both.

mod common;
use common::operate::*;
use common::upstreams::{assert_served, Backend};
use common::*;

use std::thread;
use std::time::Duration;

use tcpipe::TargetState;

const INTERVAL: Duration = Duration::from_millis(50);

fn state(running: &common::hooks::Running, backend: &Backend, state: &str) -> f64 {
    scrape(running).get(
        "tcpipe_target_state",
        &[
            ("route", ROUTE),
            ("target", &name(backend)),
            ("state", state),
        ],
    )
}

#[test]
fn maintenance_stops_probes_and_counts_the_target_down() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = start(targets_of(&[&a, &b]), 2, |route| {
        route.health_interval = Some(INTERVAL);
    });
    assert!(
        wait_until(DEADLINE, || a.accepted() >= 3),
        "the target was not probed"
    );
    assert_eq!(target_metric(&running, "tcpipe_target_up", &a), 1.0);
    assert_eq!(state(&running, &a, "ready"), 1.0);

    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Maint)
        .expect("maint");
    // A probe connect may have been accepted by the kernel just before;
    // from a moment later on, none is made.
    thread::sleep(INTERVAL);
    let probed = a.accepted();
    // Ten probe intervals without a connect.
    assert!(
        !wait_until(INTERVAL * 10, || a.accepted() != probed),
        "a probe reached the target in maintenance"
    );
    assert_eq!(
        target_metric(&running, "tcpipe_target_up", &a),
        0.0,
        "maint counts as down"
    );
    assert_eq!(state(&running, &a, "maint"), 1.0);
    assert_eq!(state(&running, &a, "ready"), 0.0);
    assert_eq!(state(&running, &a, "drain"), 0.0);
    let info = running.handle.targets().unwrap();
    assert_eq!(info[0].state, TargetState::Maint);
    assert!(!info[0].healthy);

    // No client reaches it either.
    for n in 0..10 {
        assert_served(connect(running.addr()), format!("client {n}").as_bytes());
    }
    assert_eq!(a.accepted(), probed);

    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Ready)
        .expect("ready");
    assert!(
        wait_until(DEADLINE, || a.accepted() >= probed + 2),
        "probes did not resume"
    );
    assert_eq!(target_metric(&running, "tcpipe_target_up", &a), 1.0);
    assert_eq!(state(&running, &a, "ready"), 1.0);
    running.stop();
}

#[test]
fn a_drained_target_is_still_probed() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = start(targets_of(&[&a, &b]), 1, |route| {
        route.health_interval = Some(INTERVAL);
    });
    running
        .handle
        .set_target_state(ROUTE, &name(&a), TargetState::Drain)
        .unwrap();
    let probed = a.accepted();
    assert!(
        wait_until(DEADLINE, || a.accepted() >= probed + 3),
        "a drained target's probes stopped"
    );
    assert_eq!(target_metric(&running, "tcpipe_target_up", &a), 1.0);
    assert_eq!(state(&running, &a, "drain"), 1.0);
    running.stop();
}
