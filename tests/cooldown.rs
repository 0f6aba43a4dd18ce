//! Passive health: after `--fail-threshold` failed connects a target is down
//! for `--cooldown`, during which no client is sent to it; then exactly one
//! trial connection decides, and a failed trial doubles the cooldown.
//!
//! Target A is tried first by round-robin and is dead (or made to hang); B
//! always serves. Connects to A are counted from `/metrics`
//! (`tcpipe_target_connect_attempts_total`), and A's state from
//! `tcpipe_target_up`.

mod common;
use common::upstreams::*;
use common::*;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Leeway for the forwarder's clock against ours around a cooldown's end.
const MARGIN: Duration = Duration::from_millis(100);

/// Clients made one at a time.
struct Clients<'a> {
    tcpipe: &'a Tcpipe,
    made: usize,
}

impl<'a> Clients<'a> {
    fn of(tcpipe: &'a Tcpipe) -> Clients<'a> {
        Clients { tcpipe, made: 0 }
    }

    fn connect(&mut self) -> TcpStream {
        self.made += 1;
        self.tcpipe.connect()
    }

    /// Serves one client.
    fn serve(&mut self) {
        let n = self.made + 1;
        let client = self.connect();
        assert_served(client, format!("client {n}").as_bytes());
    }

    /// How many clients were sent to `target` (each was a connect to it:
    /// these tests use no pool but the last, which says so).
    fn sent_to(&self, target: &Backend) -> usize {
        self.tcpipe.connects_to(target.addr)
    }
}

/// A (refusing until the test says otherwise) then B (serving).
fn start_pair(options: &[&str]) -> (Tcpipe, Backend, Backend) {
    let a = Backend::refusing();
    let b = Backend::echo();
    let mut all = vec!["--fail-threshold", "1"];
    all.extend_from_slice(options);
    let tcpipe = start_forwarder(&[a.addr, b.addr], &all);
    (tcpipe, a, b)
}

/// Waits until `/metrics` shows `target` down, and returns when it was
/// seen: its cooldown has surely begun by then.
fn wait_until_down(tcpipe: &Tcpipe, target: &Backend) -> Instant {
    tcpipe.wait_target_up(target.addr, false);
    Instant::now()
}

/// Lets the cooldown seen starting no later than `seen` run out: elapsed
/// time is what is under test here.
fn sleep_out_cooldown(seen: Instant, cooldown: Duration) {
    let over = seen + cooldown + MARGIN;
    thread::sleep(over.saturating_duration_since(Instant::now()));
}

#[test]
fn a_down_target_gets_no_attempt_during_its_cooldown_then_exactly_one_trial() {
    let cooldown = Duration::from_secs(1);
    let (tcpipe, a, _b) = start_pair(&["--cooldown", "1s"]);
    let mut clients = Clients::of(&tcpipe);

    // The cooldown cannot start before the client that brings A down.
    let earliest_down = Instant::now();
    clients.serve();
    let seen = wait_until_down(&tcpipe, &a);
    assert_eq!(clients.sent_to(&a), 1, "A was tried once");

    let mut during = 0;
    while Instant::now() + MARGIN < earliest_down + cooldown {
        clients.serve();
        during += 1;
    }
    assert!(during >= 10, "only {during} clients fitted in the cooldown");
    assert_eq!(
        clients.sent_to(&a),
        1,
        "A was tried during its cooldown ({during} clients then)"
    );

    sleep_out_cooldown(seen, cooldown);
    for _ in 0..10 {
        clients.serve();
    }
    assert_eq!(
        clients.sent_to(&a),
        2,
        "after the cooldown exactly one of 10 clients should make A's trial"
    );
    assert_eq!(
        tcpipe.target_metric("tcpipe_target_up", a.addr),
        0.0,
        "A's failed trial must keep it down"
    );
}

#[test]
fn the_cooldown_doubles_after_each_failed_trial() {
    let (tcpipe, a, _b) = start_pair(&["--cooldown", "250ms"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let mut seen = wait_until_down(&tcpipe, &a);
    let mut cooldown = Duration::from_millis(250);
    for round in 0..4 {
        if round > 0 {
            // Past the end the previous cooldown would have had, two
            // clients (round-robin offers A one of them) still avoid A: the
            // cooldown doubled.
            sleep_out_cooldown(seen, cooldown / 2);
            let tried_before = clients.sent_to(&a);
            clients.serve();
            clients.serve();
            assert_eq!(
                clients.sent_to(&a),
                tried_before,
                "A was tried before its doubled cooldown of {cooldown:?} ran out"
            );
        }
        sleep_out_cooldown(seen, cooldown);
        // Round-robin over two targets: after a client that ended on B, the
        // next one is offered A, and makes its trial.
        let tried_before = clients.sent_to(&a);
        clients.serve();
        assert_eq!(
            clients.sent_to(&a),
            tried_before + 1,
            "the first client after a cooldown of {cooldown:?} should make the trial"
        );
        // The trial failed within that client's dial: A is down again from
        // here, for twice as long.
        seen = Instant::now();
        cooldown *= 2;
    }
}

#[test]
fn only_one_client_makes_the_trial_while_it_is_under_way() {
    let (tcpipe, mut a, b) = start_pair(&["--cooldown", "300ms", "--connect-timeout", "1s"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let seen = wait_until_down(&tcpipe, &a);
    // The trial will hang until the connect timeout.
    a.become_black_hole();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    let trial_client = clients.connect();
    let trial = thread::spawn(move || assert_served(trial_client, b"the trial client"));
    assert!(
        wait_until(DEADLINE, || clients.sent_to(&a) == 2),
        "the client after the cooldown was not sent to A for its trial"
    );
    // While the trial hangs, every other client goes to B at once.
    let served_before = b.served();
    for _ in 0..10 {
        clients.serve();
    }
    assert_eq!(
        b.served(),
        served_before + 10,
        "clients waited for the trial"
    );
    assert_eq!(
        clients.sent_to(&a),
        2,
        "only the first client and the trial client should have been sent to A"
    );
    // The trial times out, and its client fails over to B.
    trial
        .join()
        .expect("the trial client was not served after all");
    assert_eq!(
        tcpipe.target_metric("tcpipe_target_connect_timeouts_total", a.addr),
        1.0,
        "the trial should have ended at the connect timeout"
    );
    assert_eq!(tcpipe.target_metric("tcpipe_target_up", a.addr), 0.0);
}

#[test]
fn a_trial_abandoned_by_its_client_is_made_by_a_later_client() {
    let (tcpipe, mut a, _b) = start_pair(&["--cooldown", "300ms"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let seen = wait_until_down(&tcpipe, &a);
    a.become_black_hole();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    // The trial hangs (the connect timeout is 5 s); its client gives up.
    let trial_client = clients.connect();
    assert!(
        wait_until(DEADLINE, || clients.sent_to(&a) == 2),
        "the client after the cooldown should have been A's trial"
    );
    reset(trial_client);
    assert!(
        wait_until(DEADLINE, || tcpipe.active_pipes() == 0),
        "the abandoned trial's pipe never closed"
    );

    // A is back; the trial that decided nothing must be made again.
    a.listen();
    for _ in 0..4 {
        clients.serve();
    }
    assert!(
        a.served() >= 1,
        "no client reached A after its trial was abandoned"
    );
    tcpipe.wait_target_up(a.addr, true);
}

#[test]
fn a_pooled_connection_never_stands_in_for_the_trial() {
    let mut a = Backend::echo();
    let b = Backend::echo();
    let tcpipe = start_forwarder(
        &[a.addr, b.addr],
        &[
            "--pool",
            "2",
            "--fail-threshold",
            "1",
            "--cooldown",
            "300ms",
        ],
    );
    let mut clients = Clients::of(&tcpipe);
    assert!(
        wait_until(DEADLINE, || a.accepted() == 2 && b.accepted() == 2),
        "the pools were not filled"
    );
    // A stops accepting; its two pooled connections still work.
    a.refuse();
    // This client takes one of them; the refill is refused and A goes down
    // with one pooled connection left.
    clients.serve();
    assert_eq!(a.served(), 1, "the first client should use A's pool");
    let seen = wait_until_down(&tcpipe, &a);
    a.listen();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    // The trial must be a real connect, which now succeeds and brings A
    // back; an old pooled connection would prove nothing.
    for _ in 0..4 {
        clients.serve();
    }
    tcpipe.wait_target_up(a.addr, true);
    assert!(
        tcpipe.connects_to(a.addr) >= 1,
        "A came back without a real connect for its trial"
    );
}
