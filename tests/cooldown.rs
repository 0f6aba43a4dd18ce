//! Passive health: after `--fail-threshold` failed connects a target is down
//! for `--cooldown`, during which no client is sent to it; then exactly one
//! trial connection decides, and a failed trial doubles the cooldown.
//!
//! Target A is tried first by round-robin and is dead (or made to hang); B
//! always serves. Connect attempts to A are counted from the log line every
//! failed connect writes.

mod common;
use common::upstreams::*;
use common::*;

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// Leeway for the forwarder's clock against ours around a cooldown's end.
const MARGIN: Duration = Duration::from_millis(100);

/// Clients made one at a time, each knowing its pipe id: pipes are numbered
/// from 1 in accept order, and only clients make pipes.
struct Clients<'a> {
    tcpipe: &'a Tcpipe,
    made: usize,
}

impl<'a> Clients<'a> {
    fn of(tcpipe: &'a Tcpipe) -> Clients<'a> {
        Clients { tcpipe, made: 0 }
    }

    fn connect(&mut self) -> (usize, TcpStream) {
        self.made += 1;
        (self.made, self.tcpipe.connect())
    }

    /// Serves one client and returns its pipe id.
    fn serve(&mut self) -> usize {
        let (id, client) = self.connect();
        assert_served(client, format!("client {id}").as_bytes());
        id
    }

    /// How many connects to `target` have failed, counting every client made
    /// so far.
    fn failed_connects(&self, target: &Backend) -> usize {
        if self.made > 0 {
            wait_for_pipe_closed(self.tcpipe, self.made);
        }
        count_logs(self.tcpipe, &connect_failure_log(target.addr))
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

/// Waits for `target`'s down line with the given next-trial delay, and
/// returns when it was seen: the cooldown has surely run out by then plus
/// the delay.
fn wait_until_down(tcpipe: &Tcpipe, target: &Backend, next_trial: &str) -> Instant {
    let needle = format!("target {} is down after", target.addr);
    let line = format!("next trial in {next_trial}");
    let logged = wait_until(DEADLINE, || {
        tcpipe
            .logs()
            .iter()
            .any(|l| l.contains(&needle) && l.ends_with(&line))
    });
    assert!(
        logged,
        "expected '{needle} ...; {line}'; logs: {:#?}",
        tcpipe.logs()
    );
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
    let seen = wait_until_down(&tcpipe, &a, "1s");
    assert_eq!(clients.failed_connects(&a), 1, "A was tried once");

    let mut during = 0;
    while Instant::now() + MARGIN < earliest_down + cooldown {
        clients.serve();
        during += 1;
    }
    assert!(during >= 10, "only {during} clients fitted in the cooldown");
    assert_eq!(
        clients.failed_connects(&a),
        1,
        "A was tried during its cooldown ({during} clients then)"
    );

    sleep_out_cooldown(seen, cooldown);
    for _ in 0..10 {
        clients.serve();
    }
    assert_eq!(
        clients.failed_connects(&a),
        2,
        "after the cooldown exactly one of 10 clients should make A's trial"
    );
    wait_until_down(&tcpipe, &a, "2s");
}

#[test]
fn the_cooldown_doubles_after_each_failed_trial() {
    let (tcpipe, a, _b) = start_pair(&["--cooldown", "250ms"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let mut seen = wait_until_down(&tcpipe, &a, "250ms");
    let mut cooldown = Duration::from_millis(250);
    for next in ["500ms", "1s", "2s"] {
        sleep_out_cooldown(seen, cooldown);
        // Round-robin over two targets: after a client that ended on B, the
        // next one is offered A, and makes its trial.
        let tried_before = clients.failed_connects(&a);
        clients.serve();
        assert_eq!(
            clients.failed_connects(&a),
            tried_before + 1,
            "the first client after a cooldown of {cooldown:?} should make the trial"
        );
        seen = wait_until_down(&tcpipe, &a, next);
        cooldown *= 2;
    }
}

#[test]
fn only_one_client_makes_the_trial_while_it_is_under_way() {
    let (tcpipe, mut a, b) = start_pair(&["--cooldown", "300ms", "--connect-timeout", "1s"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let seen = wait_until_down(&tcpipe, &a, "300ms");
    // The trial will hang until the connect timeout.
    a.become_black_hole();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    let (trial_id, trial_client) = clients.connect();
    let trial = thread::spawn(move || assert_served(trial_client, b"the trial client"));
    let trying_a = format!("connecting to {}", a.addr);
    assert!(
        tcpipe.wait_for_log(&format!("pipe {trial_id}: accepted"), DEADLINE),
        "the trial client was not accepted"
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
        count_logs(&tcpipe, &trying_a),
        2,
        "only the first client and the trial client should have been sent to A; logs: {:#?}",
        tcpipe.logs()
    );
    // The trial times out, and its client fails over to B.
    trial
        .join()
        .expect("the trial client was not served after all");
    wait_until_down(&tcpipe, &a, "600ms");
}

#[test]
fn a_trial_abandoned_by_its_client_is_made_by_a_later_client() {
    let (tcpipe, mut a, _b) = start_pair(&["--cooldown", "300ms"]);
    let mut clients = Clients::of(&tcpipe);
    clients.serve();
    let seen = wait_until_down(&tcpipe, &a, "300ms");
    a.become_black_hole();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    // The trial hangs (the connect timeout is 5 s); its client gives up.
    let (trial_id, trial_client) = clients.connect();
    assert!(
        tcpipe.wait_for_log(&format!("pipe {trial_id}: accepted 127.0.0.1"), DEADLINE),
        "the trial client was not accepted"
    );
    assert!(
        tcpipe
            .logs()
            .iter()
            .any(|l| l.contains(&format!("pipe {trial_id}: accepted"))
                && l.ends_with(&format!("connecting to {}", a.addr))),
        "the client after the cooldown should have been A's trial; logs: {:#?}",
        tcpipe.logs()
    );
    reset(trial_client);
    wait_for_pipe_closed(&tcpipe, trial_id);

    // A is back; the trial that decided nothing must be made again.
    a.listen();
    for _ in 0..4 {
        clients.serve();
    }
    assert!(
        a.served() >= 1,
        "no client reached A after its trial was abandoned; logs: {:#?}",
        tcpipe.logs()
    );
    assert!(
        tcpipe.wait_for_log(&format!("target {} is up again", a.addr), DEADLINE),
        "A was not marked up again; logs: {:#?}",
        tcpipe.logs()
    );
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
    let seen = wait_until_down(&tcpipe, &a, "300ms");
    a.listen();
    sleep_out_cooldown(seen, Duration::from_millis(300));

    // The trial must be a real connect, which now succeeds and brings A
    // back; an old pooled connection would prove nothing.
    for _ in 0..4 {
        clients.serve();
    }
    assert!(
        tcpipe.wait_for_log(&format!("target {} is up again", a.addr), DEADLINE),
        "A never came back though it accepts again; logs: {:#?}",
        tcpipe.logs()
    );
}
