//! An upgrade that fails leaves the running process as it was: a binary
//! that cannot start, one that exits at once, one whose config is invalid,
//! one that dies in the middle of the handover. Each time the old process
//! carries on serving (its live pipes and new clients alike), says why on
//! systemd's `STATUS=` line, and counts it in `tcpipe_upgrades_total`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use common::config::{route, ConfigFile};
use common::{binary, connect, echo_server, Tcpipe};

/// An executable shell script in a directory of its own (removed with it).
struct Script {
    dir: PathBuf,
    path: PathBuf,
}

impl Script {
    fn new(name: &str, body: &str) -> Script {
        let dir =
            std::env::temp_dir().join(format!("tcpipe-upgrade-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Script { dir, path }
    }

    fn path_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pipe open across the failed upgrade: it must echo both before and
/// after, each byte once.
fn live_pipe(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    round_trip(&mut stream, b"before the upgrade");
    stream
}

fn round_trip(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    let mut echoed = vec![0u8; bytes.len()];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, bytes);
}

/// After a failed upgrade: the old pipe still echoes, a new client is
/// served, the process still runs and counted the failure.
fn assert_carried_on(tcpipe: &Tcpipe, mut pipe: TcpStream, failures: f64) {
    round_trip(&mut pipe, b"after the failed upgrade");
    let mut fresh = connect(tcpipe.addr);
    round_trip(&mut fresh, b"a new client");
    let scrape = tcpipe.scrape();
    assert_eq!(
        scrape.get("tcpipe_upgrades_total", &[("result", "failed")]),
        failures
    );
    assert_eq!(
        scrape.get("tcpipe_upgrades_total", &[("result", "ok")]),
        0.0
    );
}

#[test]
fn a_binary_that_cannot_start_leaves_the_process_serving() {
    let target = echo_server();
    let tcpipe = Tcpipe::start(
        target,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--upgrade-binary",
            "/nonexistent/tcpipe",
        ],
    );
    let pipe = live_pipe(tcpipe.addr);
    let status = tcpipe.failed_upgrade();
    assert!(
        status.contains("cannot start /nonexistent/tcpipe"),
        "{status}"
    );
    assert_carried_on(&tcpipe, pipe, 1.0);
}

#[test]
fn a_binary_that_exits_at_once_leaves_the_process_serving_with_its_status() {
    let target = echo_server();
    let script = Script::new("exits", "exit 1");
    let tcpipe = Tcpipe::start(
        target,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--upgrade-binary",
            script.path_str(),
        ],
    );
    let pipe = live_pipe(tcpipe.addr);
    let status = tcpipe.failed_upgrade();
    assert!(status.contains("exited (exit status: 1)"), "{status}");
    assert_carried_on(&tcpipe, pipe, 1.0);
    // A second try fails the same way: nothing of the first is left over.
    let status = tcpipe.failed_upgrade();
    assert!(status.contains("exited (exit status: 1)"), "{status}");
}

#[test]
fn an_invalid_config_stops_the_new_binary_and_the_old_one_carries_on() {
    let target = echo_server();
    let config = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\n{}",
        route("web", &[target], "")
    ));
    let tcpipe = Tcpipe::start_config(&config);
    let pipe = live_pipe(tcpipe.addr);
    config.write("[[route]]\nname = \"web\"\nlisten = \"not an address\"\n");
    let status = tcpipe.failed_upgrade();
    // The usage error's exit code, as the new binary's own start says.
    assert!(status.contains("exited (exit status: 2)"), "{status}");
    assert_carried_on(&tcpipe, pipe, 1.0);
}

#[test]
fn a_new_process_dying_before_it_confirms_leaves_every_pipe_with_the_old_one() {
    let target = echo_server();
    // TCPIPE_TEST_ABORT_BEFORE_CONFIRM: the new process aborts with every
    // listener and connection received, right before it would confirm.
    let script = Script::new(
        "aborts",
        &format!(
            "ulimit -c 0\nTCPIPE_TEST_ABORT_BEFORE_CONFIRM=1 exec {} \"$@\"",
            binary()
        ),
    );
    let tcpipe = Tcpipe::start(
        target,
        &[
            "--metrics",
            "127.0.0.1:0",
            "--upgrade-binary",
            script.path_str(),
        ],
    );
    let mut pipe = live_pipe(tcpipe.addr);
    // Bytes sent while the workers are stopped wait in the kernel.
    pipe.write_all(b"queued ").unwrap();
    let status = tcpipe.failed_upgrade();
    assert!(status.contains("before taking over"), "{status}");
    let mut echoed = [0u8; 7];
    pipe.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"queued ");
    assert_carried_on(&tcpipe, pipe, 1.0);
}

#[test]
fn the_config_file_names_the_binary_and_a_flag_wins_over_it() {
    let target = echo_server();
    let config = ConfigFile::new(&format!(
        "[global]\nmetrics = \"127.0.0.1:0\"\nupgrade-binary = \"/nonexistent/from-the-file\"\n{}",
        route("web", &[target], "")
    ));
    let tcpipe = Tcpipe::start_config(&config);
    let status = tcpipe.failed_upgrade();
    assert!(
        status.contains("cannot start /nonexistent/from-the-file"),
        "{status}"
    );
    drop(tcpipe);

    let tcpipe = Tcpipe::start_args(&[
        "--config",
        config.path_str(),
        "--upgrade-binary",
        "/nonexistent/from-the-flag",
    ]);
    let status = tcpipe.failed_upgrade();
    assert!(
        status.contains("cannot start /nonexistent/from-the-flag"),
        "{status}"
    );
}
