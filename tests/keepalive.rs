//! `--keepalive`: both of a pipe's sockets (the accepted client and the
//! connection to the target) run TCP keepalive with the configured idle
//! time (the upstream socket once the pipe is a second old, which spares
//! short connections four syscalls); `0` turns it off. A socket option is
//! not visible to the peer, so
//! the forwarder's sockets are inspected with `ss -o`, which shows a
//! `timer:(keepalive,44sec,0)` on a socket whose keepalive is armed.

mod common;
use common::faults::*;
use common::*;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// The forwarder's two sockets of its only pipe, as `ss` filters: the
/// accepted client has the listening port as its source port, the upstream
/// socket has the target's port as its destination port.
fn forwarder_socket_filters(tcpipe: &Tcpipe, target_port: u16) -> [(&'static str, String); 2] {
    [
        ("client", format!("( sport = :{} )", tcpipe.addr.port())),
        ("target", format!("( dport = :{target_port} )")),
    ]
}

/// `ss` lines of the established sockets matching `filter`, or `None` if
/// `ss` cannot be run here.
fn ss(filter: &str) -> Option<Vec<String>> {
    let output = Command::new("ss")
        .args(["-tnoH", "state", "established", filter])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// `ss` runs here; a test that needs it is ignored where it is missing
/// (`has_ss`), and fails here if run anyway.
fn require_ss() {
    assert!(
        ss("( sport = :1 )").is_some(),
        "ss is not installed (Debian package 'iproute2'); this test needs it"
    );
}

/// The time left on a socket's keepalive timer, from an `ss -o` line such
/// as `... timer:(keepalive,44sec,0)`; `None` if it shows no such timer.
fn keepalive_timer(line: &str) -> Option<Duration> {
    let value = line.split("timer:(keepalive,").nth(1)?.split(',').next()?;
    Some(parse_ss_time(value).unwrap_or_else(|| panic!("cannot read ss's time {value:?}")))
}

/// `ss` prints times such as `44sec`, `1min` or `1min5sec` (fractions only
/// below 10 s, which the idle times here never come near).
fn parse_ss_time(text: &str) -> Option<Duration> {
    let (minutes, seconds) = match text.split_once("min") {
        Some((minutes, rest)) => (minutes.parse().ok()?, rest),
        None => (0, text),
    };
    let seconds: u64 = match seconds {
        "" => 0,
        _ => seconds.strip_suffix("sec")?.parse().ok()?,
    };
    Some(Duration::from_secs(minutes * 60 + seconds))
}

/// A forwarder with one pipe through it, and the `ss` filters of the
/// forwarder's two sockets of that pipe.
struct OnePipe {
    filters: [(&'static str, String); 2],
    _tcpipe: Tcpipe,
    _ends: [TcpStream; 2],
}

/// A forwarder started with `extra` flags and a pipe through it whose
/// both ends have moved a byte, so the forwarder has accepted, tuned and
/// connected its sockets.
fn forwarder_with_one_pipe(extra: &[&str]) -> OnePipe {
    let (target_listener, target_addr) = listener();
    let tcpipe = Tcpipe::start(target_addr, extra);
    let (mut client, mut target) = open_pipe(&tcpipe, &target_listener);
    assert_delivered(&mut client, &mut target, b"hello");
    OnePipe {
        filters: forwarder_socket_filters(&tcpipe, target_addr.port()),
        _tcpipe: tcpipe,
        _ends: [client, target],
    }
}

/// Asserts each of the forwarder's two sockets shows a keepalive timer
/// with at most `idle` and more than `idle` minus a few seconds left.
fn assert_keepalive(extra: &[&str], idle: Duration) {
    require_ss();
    let pipe = forwarder_with_one_pipe(extra);
    for (side, filter) in &pipe.filters {
        let mut lines = Vec::new();
        // Until the last byte is acknowledged, ss shows the retransmit timer.
        let armed = wait_until(DEADLINE, || {
            lines = ss(filter).unwrap_or_default();
            lines.len() == 1 && keepalive_timer(&lines[0]).is_some()
        });
        assert!(armed, "the {side} socket has no keepalive timer: {lines:?}");
        let left = keepalive_timer(&lines[0]).unwrap();
        assert!(
            left <= idle && left + Duration::from_secs(5) > idle,
            "the {side} socket's keepalive timer shows {left:?}, expected just under {idle:?}: {lines:?}"
        );
    }
}

#[test]
#[cfg_attr(not(has_ss), ignore = "needs ss (Debian package iproute2)")]
fn both_sockets_of_a_pipe_use_the_configured_keepalive_idle_time() {
    assert_keepalive(&["--keepalive", "45s"], Duration::from_secs(45));
}

#[test]
#[cfg_attr(not(has_ss), ignore = "needs ss (Debian package iproute2)")]
fn keepalive_defaults_to_60s() {
    assert_keepalive(&[], Duration::from_secs(60));
}

#[test]
#[cfg_attr(not(has_ss), ignore = "needs ss (Debian package iproute2)")]
fn keepalive_0_turns_it_off_on_both_sockets() {
    require_ss();
    let pipe = forwarder_with_one_pipe(&["--keepalive", "0"]);
    for (side, filter) in &pipe.filters {
        let mut lines = Vec::new();
        // Wait for the last byte to be acknowledged: any timer left then
        // would be keepalive's.
        let settled = wait_until(DEADLINE, || {
            lines = ss(filter).unwrap_or_default();
            lines.len() == 1 && !lines[0].contains("timer:(on")
        });
        assert!(settled, "the {side} socket never settled: {lines:?}");
        assert!(
            keepalive_timer(&lines[0]).is_none(),
            "the {side} socket has keepalive on with --keepalive 0: {lines:?}"
        );
    }
}
