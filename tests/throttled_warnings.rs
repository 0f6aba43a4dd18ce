//! Warnings a peer can trigger at any rate are throttled: while every
//! target refuses, a burst of 200 clients gives one "cannot connect" line a
//! second per target (each target its own, so one's flood hides no other's)
//! and one "no target could be reached" line a second, and the next line of
//! each carries the count of those held back, so none is lost. A
//! connection limit that clients make come and go hundreds of times a
//! second is logged the same way.

mod common;
use common::upstreams::*;
use common::*;

use std::time::Instant;

const BURST: usize = 200;

/// Opens a client and waits until tcpipe has closed it.
fn refused_client(tcpipe: &Tcpipe) {
    let mut client = tcpipe.connect();
    let (bytes, _end) = read_until_closed(&mut client);
    assert_eq!(bytes, 0, "a refused client got bytes");
}

/// The lines containing `needle`, and the number each says it held back.
fn throttled(tcpipe: &Tcpipe, needle: &str) -> Vec<(String, usize)> {
    tcpipe
        .logs()
        .into_iter()
        .filter(|line| line.contains(needle))
        .map(|line| {
            let held = line
                .split("(and ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .map_or(0, |n| n.parse().expect("a count"));
            (line, held)
        })
        .collect()
}

#[test]
fn a_burst_of_refused_clients_gives_a_few_lines_and_a_count() {
    let dead = [Backend::refusing(), Backend::refusing()];
    let targets = [dead[0].addr.to_string(), dead[1].addr.to_string()];
    // Never marked down: every client makes a connect to both targets.
    let tcpipe = Tcpipe::start(
        &targets[0],
        &["-t", &targets[1], "--cooldown", "0", "--retries", "1"],
    );
    let needles = [
        format!("cannot connect to {}:", targets[0]),
        format!("cannot connect to {}:", targets[1]),
        "no target could be reached".to_string(),
    ];

    let started = Instant::now();
    for _ in 0..BURST {
        refused_client(&tcpipe);
    }
    let seconds = started.elapsed().as_secs() as usize + 1;
    for needle in &needles {
        let lines = throttled(&tcpipe, needle).len();
        assert!(
            (1..=seconds + 1).contains(&lines),
            "{BURST} clients in {seconds}s gave {lines} lines of '{needle}'; logs: {:#?}",
            tcpipe.logs()
        );
    }

    // Clients go on until a line with a count comes: a second after the
    // last line at most.
    let mut clients = BURST;
    let counted = wait_until(DEADLINE, || {
        refused_client(&tcpipe);
        clients += 1;
        needles
            .iter()
            .all(|needle| throttled(&tcpipe, needle).iter().any(|(_, held)| *held > 0))
    });
    assert!(
        counted,
        "no later line carried a count; logs: {:#?}",
        tcpipe.logs()
    );
    // The lines and their counts together account for every client but
    // the few that came after the counted lines (their lines are still
    // held back).
    for needle in &needles {
        let accounted = wait_until(DEADLINE, || {
            let lines = throttled(&tcpipe, needle);
            let total: usize = lines.iter().map(|(_, held)| held + 1).sum();
            total + 5 >= clients && total <= clients
        });
        let lines = throttled(&tcpipe, needle);
        let total: usize = lines.iter().map(|(_, held)| held + 1).sum();
        assert!(
            accounted,
            "'{needle}': {} lines accounting for {total} of {clients} clients: {lines:#?}",
            lines.len()
        );
    }
}

/// Three clients at once through a forwarder that takes one at a time:
/// the limit is reached and left again.
fn three_at_once(tcpipe: &Tcpipe) {
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let addr = tcpipe.addr;
            std::thread::spawn(move || {
                let mut client = connect(addr);
                std::io::Write::write_all(&mut client, b"x").unwrap();
                client.shutdown(std::net::Shutdown::Write).unwrap();
                assert_eq!(read_to_end(&mut client), b"x");
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client was not served");
    }
}

#[test]
fn a_connection_limit_that_comes_and_goes_is_logged_once_a_second() {
    let tcpipe = Tcpipe::start(echo_server(), &["--max-connections", "1"]);
    let reached = "connection limit of 1 reached";
    let started = Instant::now();
    for _ in 0..100 {
        three_at_once(&tcpipe);
    }
    let seconds = started.elapsed().as_secs() as usize + 1;
    let lines = throttled(&tcpipe, reached).len();
    assert!(
        (1..=seconds + 1).contains(&lines),
        "300 clients in {seconds}s gave {lines} lines of '{reached}'; logs: {:#?}",
        tcpipe.logs()
    );
    let counted = wait_until(DEADLINE, || {
        three_at_once(&tcpipe);
        throttled(&tcpipe, reached)
            .iter()
            .any(|(_, held)| *held > 0)
    });
    assert!(
        counted,
        "no later line carried a count; logs: {:#?}",
        tcpipe.logs()
    );
    // An end is logged only with its start: as many of one as of the other.
    let ends = throttled(&tcpipe, "below the connection limit again").len();
    let starts = throttled(&tcpipe, reached).len();
    assert!(
        ends <= starts && starts <= ends + 1,
        "{starts} starts but {ends} ends logged; logs: {:#?}",
        tcpipe.logs()
    );
}
