//! `max-connection-rate-per-source`: a client address that opens more
//! connections than the rate allows has the extra ones reset at once,
//! counted as `connection_rate` refusals and warned of (throttled); the
//! others are served.

mod common;
use common::scrape::*;
use common::*;

use std::io::{ErrorKind, Read, Write};

/// Whether a client through `tcpipe` got its byte echoed (served) or was
/// reset (refused).
fn served(tcpipe: &Tcpipe) -> bool {
    let mut client = tcpipe.connect();
    if client.write_all(b"x").is_err() {
        return false;
    }
    let mut echoed = [0u8; 1];
    match client.read(&mut echoed) {
        Ok(1) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
        Err(e) => panic!("neither served nor reset: {e}"),
    }
}

#[test]
fn thirty_connects_in_a_burst_at_twenty_a_second_refuse_about_ten() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(
        target,
        &[
            "--max-connection-rate-per-source",
            "20/s",
            "--metrics",
            "127.0.0.1:0",
        ],
    );
    let start = std::time::Instant::now();
    let outcomes: Vec<bool> = (0..30).map(|_| served(&tcpipe)).collect();
    let took = start.elapsed();
    let refused = outcomes.iter().filter(|served| !**served).count();
    // 20 at once, then one every 50 ms of the burst's own duration.
    let refilled = (took.as_millis() / 50) as usize;
    assert!(
        (10usize.saturating_sub(refilled)..=10).contains(&refused),
        "{refused} of 30 refused in {took:?}"
    );
    assert!(outcomes[..20].iter().all(|served| *served), "{outcomes:?}");
    let scrape = scrape_until(&tcpipe, "the refusals", |s| {
        s.get(
            "tcpipe_connections_refused_total",
            &[("route", "default"), ("reason", "connection_rate")],
        ) == refused as f64
    });
    assert_eq!(
        scrape.get(
            "tcpipe_pipes_closed_total",
            &[("route", "default"), ("reason", "connection_rate")],
        ),
        refused as f64
    );
    let warned = tcpipe
        .logs()
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("max-connection-rate-per-source"))
        .count();
    assert!(
        (1..=2).contains(&warned),
        "the refusals should be warned of once a second: {warned} lines"
    );
}

#[test]
fn the_rate_comes_back_once_the_period_has_passed() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(target, &["--max-connection-rate-per-source", "3/500ms"]);
    for _ in 0..3 {
        assert!(served(&tcpipe));
    }
    assert!(!served(&tcpipe), "a fourth connect within the period");
    // One every 500 / 3 ms comes back.
    assert!(
        wait_until(DEADLINE, || served(&tcpipe)),
        "no connect is served again"
    );
}
