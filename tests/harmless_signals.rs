//! A signal that asks for nothing tcpipe can do is logged and changes
//! nothing: SIGHUP when tcpipe runs from flags (there is no file to
//! reload). It does not kill the process by its default action, and every
//! pipe keeps flowing. (SIGUSR2 is a live upgrade: `tests/upgrade_*.rs`.)

mod common;
use common::faults::*;
use common::*;

use std::time::Duration;

fn assert_harmless(signal: &str) {
    let mut tcpipe = Tcpipe::start(echo_server(), &[]);
    let mut before = tcpipe.connect();
    assert_round_trip(&mut before, b"opened before the signal");

    tcpipe.signal(signal);
    assert!(
        tcpipe.wait_for_log(&format!("SIG{signal}"), DEADLINE),
        "SIG{signal} was not logged; logs: {:#?}",
        tcpipe.logs()
    );
    assert!(
        tcpipe.wait_exit(Duration::ZERO).is_none(),
        "tcpipe exited on SIG{signal}; logs: {:#?}",
        tcpipe.logs()
    );
    assert_round_trip(&mut before, b"the pipe open during the signal");
    assert_round_trip(&mut tcpipe.connect(), b"a new client after the signal");
}

#[test]
fn sighup_without_a_config_file_is_logged_and_every_pipe_keeps_flowing() {
    assert_harmless("HUP");
}
