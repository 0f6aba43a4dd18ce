//! `Handle::abort_pipes`: every pipe of a route, or of one target, is
//! reset in every worker; the answer is how many, given once they are
//! gone; their close reason is `aborted` in metrics. Other pipes run on.

mod common;
use common::operate::*;
use common::upstreams::Backend;
use common::*;

use tcpipe::PipeFilter;

/// `tcpipe_pipes_closed_total{reason="aborted"}` of the route.
fn aborted(running: &common::hooks::Running) -> f64 {
    scrape(running).get(
        "tcpipe_pipes_closed_total",
        &[("route", ROUTE), ("reason", "aborted")],
    )
}

#[test]
fn aborting_a_target_s_pipes_resets_them_and_no_other() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = start(targets_of(&[&a, &b]), 2, |_| {});
    let addr = running.addr();
    let mut clients = hold_one_on(addr, &a);
    clients.extend(hold_one_on(addr, &b));
    let on_a = running.handle.targets().unwrap()[0].live_pipes;
    let total = running.handle.pipes().unwrap().len();
    assert!(on_a >= 1 && total > on_a, "{on_a} of {total}");

    let count = running
        .handle
        .abort_pipes(PipeFilter::Target {
            route: ROUTE.into(),
            target: name(&a),
        })
        .expect("abort the target's pipes");
    assert_eq!(count, on_a);
    // Gone by the time the answer came.
    assert_eq!(running.handle.targets().unwrap()[0].live_pipes, 0);
    assert_eq!(running.handle.pipes().unwrap().len(), total - on_a);
    assert_eq!(aborted(&running), on_a as f64);

    // The clients of A see a reset; those of B are served on.
    let a_pipes: Vec<_> = {
        let infos = running.handle.pipes().unwrap();
        clients
            .into_iter()
            .enumerate()
            .filter(|(_, c)| {
                let local = c.local_addr().unwrap();
                !infos.iter().any(|p| p.client == local)
            })
            .map(|(n, c)| (n, c, false))
            .collect()
    };
    assert_eq!(a_pipes.len(), on_a);
    for (_, mut client, _) in a_pipes {
        faults::assert_reset(&mut client, "client of the aborted target");
    }
    let mut survivor = hold_one_on(addr, &b).pop().unwrap();
    faults::assert_round_trip(&mut survivor, b"still served");
    running.stop();
}

#[test]
fn aborting_a_route_resets_every_pipe_of_it() {
    let (a, b) = (Backend::echo(), Backend::echo());
    let running = start(targets_of(&[&a, &b]), 2, |_| {});
    let addr = running.addr();
    let clients: Vec<_> = (0..6).map(|n| held(addr, n)).collect();
    let count = running
        .handle
        .abort_pipes(PipeFilter::Route(ROUTE.into()))
        .expect("abort the route's pipes");
    assert_eq!(count, 6);
    assert!(running.handle.pipes().unwrap().is_empty());
    assert_eq!(aborted(&running), 6.0);
    for mut client in clients {
        faults::assert_reset(&mut client, "client of the aborted route");
    }
    // The route still takes new clients.
    let mut client = held(addr, 7);
    faults::assert_round_trip(&mut client, b"after");
    // Nothing left to abort: 0, not an error.
    drop(client);
    assert!(wait_until(DEADLINE, || running
        .handle
        .pipes()
        .unwrap()
        .is_empty()));
    let count = running
        .handle
        .abort_pipes(PipeFilter::Route(ROUTE.into()))
        .unwrap();
    assert_eq!(count, 0);
    running.stop();
}
