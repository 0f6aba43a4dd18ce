//! Helpers for the tests of what an operator does at runtime through the
//! library's `Handle`: a forwarder over chosen targets with any number of
//! workers, clients held open on a known target, and `/metrics` as the
//! `Handle` renders it.
#![allow(dead_code)] // each test file uses a different subset

use std::net::{SocketAddr, TcpStream};

use tcpipe::{Config, Forwarder, Route, Target};

use crate::common::hooks::{Events, Running};
use crate::common::scrape::Scrape;
use crate::common::upstreams::Backend;
use crate::common::{connect, faults};

/// The route of a forwarder made by [`start`].
pub const ROUTE: &str = "default";

/// A library forwarder with one route over `targets`, adjusted by `adjust`,
/// running `workers` loops.
pub fn start(targets: Vec<Target>, workers: usize, adjust: impl FnOnce(&mut Route)) -> Running {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), targets[0].addr);
    config.routes[0].targets = targets;
    adjust(&mut config.routes[0]);
    config.workers = workers;
    Running::start_built(Forwarder::builder(config), Events::default())
}

/// Every backend as a target of weight 1.
pub fn targets_of(backends: &[&Backend]) -> Vec<Target> {
    backends.iter().map(|b| Target::from(b.addr)).collect()
}

/// A target's name as the `Handle` takes it: its address, as configured.
pub fn name(backend: &Backend) -> String {
    backend.addr.to_string()
}

/// A client that has made a round trip, so its pipe is open.
pub fn held(addr: SocketAddr, n: usize) -> TcpStream {
    let mut client = connect(addr);
    faults::assert_round_trip(&mut client, format!("held {n}").as_bytes());
    client
}

/// Opens clients until `backend` holds one (with several workers, each
/// with its own rotation, it may take a few); returns every client opened.
pub fn hold_one_on(addr: SocketAddr, backend: &Backend) -> Vec<TcpStream> {
    let before = backend.accepted();
    let mut clients = Vec::new();
    while backend.accepted() == before {
        assert!(clients.len() < 32, "the target never got a client");
        clients.push(held(addr, clients.len()));
    }
    clients
}

/// Which of `backends` the next client (served whole) reaches.
pub fn next_target(addr: SocketAddr, backends: &[&Backend], n: usize) -> usize {
    let before: Vec<usize> = backends.iter().map(|b| b.accepted()).collect();
    let mut client = connect(addr);
    faults::assert_round_trip(&mut client, format!("client {n}").as_bytes());
    let grown: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].accepted() != before[i])
        .collect();
    assert_eq!(grown.len(), 1, "one client reached {grown:?}");
    grown[0]
}

/// `/metrics` as the handle renders it.
pub fn scrape(running: &Running) -> Scrape {
    Scrape::parse(&running.handle.prometheus().expect("prometheus"))
}

/// `name{route="default",target=TARGET}`.
pub fn target_metric(running: &Running, metric: &str, backend: &Backend) -> f64 {
    scrape(running).get(metric, &[("route", ROUTE), ("target", &name(backend))])
}
