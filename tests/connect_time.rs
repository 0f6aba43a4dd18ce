//! Connect times are each pipe's own: measured from a fresh clock at the
//! dial and at the connect, not from the one reading a loop turn takes, so
//! pipes that connect in the same turn do not all show the same time.

mod common;

use std::collections::HashSet;
use std::net::TcpStream;
use std::thread;

use common::hooks::{Event, Events, Recorder};
use common::{echo_server, wait_until, DEADLINE};
use tcpipe::{Config, Forwarder};

#[test]
fn pipes_dialed_and_connected_in_one_turn_have_their_own_connect_times() {
    let target = echo_server();
    let events = Events::default();
    let forwarder = Forwarder::builder(Config::new("127.0.0.1:0".parse().unwrap(), target))
        .hooks(Recorder(events.clone(), None))
        .bind()
        .expect("bind the forwarder");
    let addr = forwarder.local_addr().expect("a route");
    let handle = forwarder.handle();
    // Queued in the backlog before the loop runs: its first turn accepts
    // and dials them all, and their connects complete together.
    let clients: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let running = thread::spawn(move || forwarder.run());

    let mut times = Vec::new();
    let connected = wait_until(DEADLINE, || {
        times = connect_times(&events);
        times.len() == clients.len()
    });
    assert!(connected, "every pipe connects: {times:?}");
    let distinct: HashSet<_> = times.iter().collect();
    assert_eq!(
        distinct.len(),
        times.len(),
        "every connect time is the pipe's own: {times:?}"
    );

    handle.shutdown();
    handle.shutdown();
    running.join().expect("loop thread").expect("run");
}

fn connect_times(events: &Events) -> Vec<std::time::Duration> {
    events
        .all()
        .into_iter()
        .filter_map(|event| match event {
            Event::Connected { connect_time, .. } => Some(connect_time),
            _ => None,
        })
        .collect()
}
