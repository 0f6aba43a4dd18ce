//! A reload that cannot be applied whole changes nothing: a file that does
//! not parse or validate, or an address that cannot be bound, is logged
//! with the reason and the running config stays in force, every part of it.

mod common;
use common::config::*;
use common::faults::*;
use common::upstreams::*;
use common::*;

use std::net::TcpListener;

/// Route `main` to `first`; the test then tries to move it to `second`.
fn running(first: &Backend) -> (ConfigFile, Tcpipe) {
    let file = ConfigFile::new(&route("main", &[first.addr], ""));
    let tcpipe = Tcpipe::start_config(&file);
    (file, tcpipe)
}

/// The running config is untouched: clients still go to `first`, the pipe
/// opened before still flows, and no route was added.
fn assert_unchanged(
    tcpipe: &Tcpipe,
    first: &Backend,
    second: &Backend,
    open: &mut std::net::TcpStream,
) {
    let served = first.served();
    assert_served(
        connect(tcpipe.route_addr("main")),
        b"after the failed reload",
    );
    assert_eq!(
        first.served(),
        served + 1,
        "the client did not reach the old target"
    );
    assert_eq!(
        second.served(),
        0,
        "a client reached the target of the rejected config"
    );
    assert_round_trip(open, b"the open pipe still flows");
    let listening = tcpipe.latest_ready().listening();
    assert!(
        listening.iter().all(|(route, _)| route != "extra"),
        "a route of the rejected config started: {listening:?}"
    );
}

#[test]
fn a_file_with_an_unknown_key_changes_nothing_and_says_where() {
    let (first, second) = (Backend::echo(), Backend::echo());
    let (file, tcpipe) = running(&first);
    let mut open = connect(tcpipe.route_addr("main"));
    assert_round_trip(&mut open, b"before");

    file.write(&format!(
        "{}{}",
        route("main", &[second.addr], ""),
        route("extra", &[second.addr], "idel-timeout = \"5s\""),
    ));
    let error = tcpipe.reload().expect_err("the reload must fail");
    assert!(
        error.contains(file.path_str()),
        "the error names no file: {error}"
    );
    assert!(
        error.contains("route[1].idel-timeout"),
        "the error names no key path: {error}"
    );
    assert!(
        error.contains("unknown key `idel-timeout`; did you mean `idle-timeout`?"),
        "the error gives no reason: {error}"
    );
    assert_unchanged(&tcpipe, &first, &second, &mut open);
}

#[test]
fn a_file_with_a_bad_value_or_broken_syntax_changes_nothing() {
    let (first, second) = (Backend::echo(), Backend::echo());
    let (file, tcpipe) = running(&first);
    let mut open = connect(tcpipe.route_addr("main"));
    assert_round_trip(&mut open, b"before");

    file.write(&route("main", &[second.addr], "low-water = \"1m\""));
    let error = tcpipe.reload().expect_err("a bad value must fail");
    assert!(error.contains("route[0].low-water"), "{error}");
    assert!(error.contains("must be below buffer-size"), "{error}");

    file.write("[[route]]\nname = \"main\"\nlisten = [\n");
    let error = tcpipe.reload().expect_err("broken syntax must fail");
    assert!(
        error.contains(&format!("{}:3", file.path_str())),
        "no line: {error}"
    );
    assert_unchanged(&tcpipe, &first, &second, &mut open);
}

#[test]
fn an_address_that_cannot_be_bound_changes_nothing() {
    let (first, second) = (Backend::echo(), Backend::echo());
    let (file, tcpipe) = running(&first);
    let mut open = connect(tcpipe.route_addr("main"));
    assert_round_trip(&mut open, b"before");

    // The new config is valid, but one of its addresses is taken.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = taken.local_addr().unwrap();
    file.write(&format!(
        "{}{}[[route]]\nname = \"blocked\"\nlisten = \"{busy}\"\ntargets = \"{}\"\n",
        route("main", &[second.addr], ""),
        route("extra", &[second.addr], ""),
        second.addr,
    ));
    let error = tcpipe.reload().expect_err("the reload must fail");
    assert!(
        error.contains(&format!("cannot listen on {busy}")),
        "{error}"
    );
    assert_unchanged(&tcpipe, &first, &second, &mut open);
}
