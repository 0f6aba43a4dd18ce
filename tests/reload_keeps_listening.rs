//! A reload that keeps a route's address keeps its listening socket: under
//! a steady stream of new clients, none is ever refused or reset, reload
//! after reload, and the accept queue is never dropped.

mod common;
use common::config::*;
use common::upstreams::*;
use common::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

const RELOADS: usize = 5;

#[test]
fn an_unchanged_listener_accepts_throughout_reloads_without_refusing_anyone() {
    let (steady, other) = (Backend::echo(), Backend::echo());
    let config = |round: usize| {
        // Everything around the steady route changes every round: its own
        // options, and another route that comes and goes.
        let mut text = route(
            "steady",
            &[steady.addr],
            &format!("idle-timeout = \"{}s\"", 60 + round),
        );
        if round % 2 == 1 {
            text.push_str(&route("other", &[other.addr], ""));
        }
        text
    };
    let file = ConfigFile::new(&config(0));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("steady");

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let connector = {
        let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = served.load(Ordering::SeqCst);
                // Any refusal or reset panics here, and fails the test.
                assert_served(connect(addr), format!("client {n}").as_bytes());
                served.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    for round in 1..=RELOADS {
        let before = served.load(Ordering::SeqCst);
        file.write(&config(round));
        tcpipe.reload().expect("the reload applies");
        assert_eq!(
            tcpipe.route_addrs("steady"),
            [addr],
            "round {round}: the steady route moved"
        );
        // Clients keep being served between one reload and the next.
        assert!(
            wait_until(DEADLINE, || served.load(Ordering::SeqCst) >= before + 20),
            "round {round}: clients stopped being served"
        );
    }
    stop.store(true, Ordering::SeqCst);
    connector
        .join()
        .expect("no client was refused, reset or cut short");
    assert!(served.load(Ordering::SeqCst) >= 20 * RELOADS);
    assert_eq!(steady.served(), served.load(Ordering::SeqCst));
}

#[test]
fn clients_waiting_in_the_backlog_during_a_reload_are_served_after_it() {
    let target = Backend::echo();
    // One pipe at a time: the next clients wait in the listener's backlog.
    let file = ConfigFile::new(&route("queue", &[target.addr], "max-connections = 1"));
    let tcpipe = Tcpipe::start_config(&file);
    let addr = tcpipe.route_addr("queue");
    let mut first = connect(addr);
    common::faults::assert_round_trip(&mut first, b"holding the only slot");
    let waiting: Vec<_> = (0..3).map(|_| connect(addr)).collect();

    file.write(&route(
        "queue",
        &[target.addr],
        "max-connections = 1\nidle-timeout = \"1h\"",
    ));
    tcpipe.reload().expect("the reload applies");

    // Closing the listener would have reset every waiting client; they are
    // served one after the other as slots free up.
    first.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(read_to_end(&mut first).is_empty());
    for (n, client) in waiting.into_iter().enumerate() {
        assert_served(client, format!("waited through the reload {n}").as_bytes());
    }
}
