//! An address a running tcpipe listens on is its own, however many workers
//! either side has: a second tcpipe started on it exits 1 with "Address
//! already in use" naming the address (with several workers its
//! `SO_REUSEPORT` sockets would otherwise join the first one's group and
//! take part of its clients), and a reload that adds it fails and keeps the
//! running config. Every client keeps reaching the first one's target.

mod common;
use common::config::*;
use common::upstreams::*;
use common::*;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// Clients sent through the first forwarder after the second was refused:
/// enough that a share taken by another group of sockets would show.
const CLIENTS: usize = 16;

/// A config of one route, `name`, from `listen` to `target`, run by
/// `workers` event loops. A file, so that `TCPIPE_TEST_ARGS` adds nothing.
fn config(workers: usize, routes: &[(&str, String, SocketAddr)]) -> String {
    let mut text = format!("[global]\nworkers = {workers}\n\n");
    for (name, listen, target) in routes {
        text.push_str(&format!(
            "[[route]]\nname = \"{name}\"\nlisten = \"{listen}\"\ntargets = [\"{target}\"]\n\n"
        ));
    }
    text
}

/// Runs `tcpipe --config FILE`, which must exit by itself: its exit code
/// and stderr. One that keeps running failed the test.
fn run_to_exit(file: &ConfigFile) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(["--config", file.path_str()])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcpipe");
    let mut status = None;
    wait_until(DEADLINE, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert!(
        status.is_some(),
        "the second tcpipe started on a live address; stderr: {stderr}"
    );
    (status.and_then(|s| s.code()), stderr)
}

/// Every one of `CLIENTS` new clients of `addr` reaches `first`, none `second`.
fn all_reach(addr: SocketAddr, first: &Backend, second: &Backend) {
    let before = first.served();
    for n in 0..CLIENTS {
        assert_served(connect(addr), format!("client {n}").as_bytes());
    }
    assert_eq!(
        first.served() - before,
        CLIENTS,
        "not every client reached the first forwarder's target"
    );
    assert_eq!(
        second.accepted(),
        0,
        "a client reached the target of the forwarder that was refused"
    );
}

#[test]
fn a_second_instance_on_a_live_address_is_refused_whatever_the_workers() {
    for (running, starting) in [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)] {
        let case = format!("{running} worker(s) running, {starting} starting");
        let (first, second) = (Backend::echo(), Backend::echo());
        let first_file = ConfigFile::new(&config(
            running,
            &[("main", "127.0.0.1:0".into(), first.addr)],
        ));
        let tcpipe = Tcpipe::start_config(&first_file);
        let addr = tcpipe.route_addr("main");

        let second_file = ConfigFile::new(&config(
            starting,
            &[("main", addr.to_string(), second.addr)],
        ));
        let (code, stderr) = run_to_exit(&second_file);
        assert_eq!(code, Some(1), "{case}: exit code; stderr: {stderr}");
        let error = format!("tcpipe: cannot listen on {addr}: Address already in use");
        assert!(
            stderr.lines().any(|line| line.starts_with(&error)),
            "{case}: no line {error:?}; stderr: {stderr}"
        );
        all_reach(addr, &first, &second);
    }
}

#[test]
fn a_reload_adding_a_live_address_of_another_instance_changes_nothing() {
    let (first, second) = (Backend::echo(), Backend::echo());
    let first_file = ConfigFile::new(&config(2, &[("main", "127.0.0.1:0".into(), first.addr)]));
    let holder = Tcpipe::start_config(&first_file);
    let taken = holder.route_addr("main");

    let own = Backend::echo();
    let own_route = ("own", "127.0.0.1:0".to_string(), own.addr);
    let file = ConfigFile::new(&config(2, std::slice::from_ref(&own_route)));
    let tcpipe = Tcpipe::start_config(&file);
    let own_addr = tcpipe.route_addr("own");

    file.write(&config(
        2,
        &[own_route, ("extra", taken.to_string(), second.addr)],
    ));
    let error = tcpipe.reload().expect_err("the reload must fail");
    assert!(
        error.contains(&taken.to_string()) && error.contains("Address already in use"),
        "the error names no address in use: {error}"
    );
    let listening = tcpipe.latest_ready().listening();
    assert!(
        listening.iter().all(|(route, _)| route != "extra"),
        "a route of the rejected config started: {listening:?}"
    );
    assert_served(connect(own_addr), b"the running route still serves");
    assert_eq!(own.served(), 1);
    all_reach(taken, &first, &second);
}
