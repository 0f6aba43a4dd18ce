//! SIGHUP, which operators send to forwarders to reload them, neither kills
//! tcpipe nor disturbs its pipes while reloading is not supported: it is
//! logged, and forwarding carries on.

mod common;
use common::faults::*;
use common::*;

use std::time::Duration;

#[test]
fn sighup_is_logged_and_every_pipe_keeps_flowing() {
    let mut tcpipe = Tcpipe::start(echo_server(), &[]);
    let mut before = tcpipe.connect();
    assert_round_trip(&mut before, b"opened before the signal");

    tcpipe.signal("HUP");
    assert!(
        tcpipe.wait_for_log("SIGHUP", DEADLINE),
        "SIGHUP was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    assert!(
        tcpipe.wait_exit(Duration::ZERO).is_none(),
        "tcpipe exited on SIGHUP; logs: {:#?}",
        tcpipe.logs()
    );
    assert_round_trip(&mut before, b"the pipe open during the signal");
    assert_round_trip(&mut tcpipe.connect(), b"a new client after the signal");
}
