//! A live upgrade as systemd sees it, on the test's own `NOTIFY_SOCKET`:
//! the new process says `READY=1` with `MAINPID=` its own pid (the unit
//! needs `NotifyAccess=all`) once it listens, nothing says `STOPPING=1`,
//! the watchdog goes on being pinged by the new process, and listeners
//! systemd passed (socket activation) survive the upgrade.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Command;

use socket2::{Domain, Socket, Type};

use common::config::{route, ConfigFile};
use common::upstreams::assert_served;
use common::{binary, connect, echo_server, wait_until, Tcpipe, DEADLINE};

/// `binary ARGS` through bash, which sets what systemd would (`$$` is the
/// forwarder's pid, which `exec` keeps), after moving `fd` (if any) to 3.
fn as_systemd_would(fd: Option<i32>, exports: &str, args: &[&str]) -> Command {
    let move_to_3 = match fd {
        Some(3) | None => String::new(),
        Some(fd) => format!("exec 3<&{fd} {fd}<&-; "),
    };
    let script = format!("{move_to_3}export {exports}; exec \"$@\"");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(binary())
        .args(args);
    command
}

#[test]
fn mainpid_names_the_new_process_which_pings_the_watchdog_and_nothing_stops() {
    let target = echo_server();
    let target = target.to_string();
    let mut tcpipe = Tcpipe::start_command(as_systemd_would(
        None,
        "WATCHDOG_PID=$$ WATCHDOG_USEC=400000",
        &["-l", "127.0.0.1:0", "-t", &target],
    ));
    let old = tcpipe.pid();
    let first = tcpipe.latest_ready();
    assert_eq!(common::upgrade::main_pid(&first), old);

    let successor = tcpipe.upgrade();

    assert!(successor.ready.has("READY=1"));
    assert_eq!(common::upgrade::main_pid(&successor.ready), successor.pid);
    assert_eq!(successor.ready.listening(), first.listening());
    assert_served(connect(tcpipe.addr), b"served by the new process");
    // The old process exited (checked by `upgrade`): pings that come now
    // are the new process's, which systemd expects from the new main pid.
    let pings = tcpipe.notices_with("WATCHDOG=1");
    assert!(
        wait_until(DEADLINE, || tcpipe.notices_with("WATCHDOG=1") >= pings + 3),
        "the new process does not ping the watchdog"
    );
    // An upgrade is no stop: systemd must not think the service is ending.
    assert_eq!(tcpipe.notices_with("STOPPING=1"), 0);
}

#[test]
fn listeners_systemd_passed_survive_an_upgrade() {
    let target = echo_server();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind");
    socket.listen(128).expect("listen");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    socket.set_cloexec(false).expect("inheritable");
    let text = route("web", &[target], "").replace("127.0.0.1:0", &addr.to_string());
    let config = ConfigFile::new(&text);
    let mut tcpipe = Tcpipe::start_command(as_systemd_would(
        Some(socket.as_raw_fd()),
        "LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web",
        &["--config", config.path_str()],
    ));
    drop(socket);
    assert_eq!(tcpipe.addr, addr);

    let successor = tcpipe.upgrade();

    assert_eq!(successor.ready.route_addrs("web"), [addr]);
    // The very socket systemd made: a client queued while nobody reads...
    let mut queued = connect(addr);
    queued.write_all(b"served").unwrap();
    let mut echoed = [0u8; 6];
    queued.set_read_timeout(Some(DEADLINE)).unwrap();
    queued.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"served");
    for i in 0..10 {
        assert_served(connect(addr), format!("client {i}").as_bytes());
    }
}
