//! systemd socket activation: listeners passed in `LISTEN_FDS` (from
//! descriptor 3, for the process `LISTEN_PID` names) serve the routes that
//! listen on their addresses instead of a socket of tcpipe's own, so the
//! connections queued before it started are served too; a descriptor that
//! is not a listening TCP socket is set aside, and the variables of another
//! process are ignored.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use common::config::{route, ConfigFile};
use common::upstreams::assert_served;
use common::{binary, connect, echo_server, Tcpipe, DEADLINE};

/// A listening TCP socket as systemd would make it, left open across exec.
fn activated_socket() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any.into()).expect("bind");
    socket.listen(128).expect("listen");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// Runs tcpipe with `fd` as descriptor 3 and `LISTEN_FDS=1`, as systemd
/// does; `listen_pid` `None` names the forwarder's own pid (bash's `$$`,
/// which `exec` keeps).
fn command_passing(fd: i32, listen_pid: Option<u32>, args: &[&str]) -> Command {
    let move_to_3 = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let pid = listen_pid.map_or("$$".to_string(), |pid| pid.to_string());
    let script =
        format!("{move_to_3}export LISTEN_PID={pid} LISTEN_FDS=1 LISTEN_FDNAMES=web; exec \"$@\"");
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .arg("bash")
        .arg(binary())
        .args(args);
    command
}

fn config_listening_on(addr: SocketAddr, target: SocketAddr) -> ConfigFile {
    let text = route("web", &[target], "").replace("127.0.0.1:0", &addr.to_string());
    ConfigFile::new(&text)
}

#[test]
fn a_passed_socket_serves_its_route_with_what_queued_before_the_start() {
    let target = echo_server();
    let (socket, addr) = activated_socket();
    socket.set_cloexec(false).expect("inheritable");
    // Accepted by the kernel into the backlog before tcpipe exists.
    let mut early = connect(addr);
    early.write_all(b"queued before start").unwrap();

    let config = config_listening_on(addr, target);
    let tcpipe = Tcpipe::start_command(command_passing(
        socket.as_raw_fd(),
        None,
        &["--config", config.path_str()],
    ));
    drop(socket);

    assert_eq!(tcpipe.addr, addr, "the route listens where systemd bound");
    early.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut echoed = [0u8; 19];
    early
        .read_exact(&mut echoed)
        .expect("the queued client is served");
    assert_eq!(&echoed, b"queued before start");
    assert_served(connect(addr), b"after the start");
}

#[test]
fn every_worker_listens_on_one_passed_socket() {
    let target = echo_server();
    let (socket, addr) = activated_socket();
    socket.set_cloexec(false).expect("inheritable");
    let config = config_listening_on(addr, target);
    let tcpipe = Tcpipe::start_command(command_passing(
        socket.as_raw_fd(),
        None,
        &["--config", config.path_str(), "--workers", "2"],
    ));
    drop(socket);
    assert_eq!(tcpipe.addr, addr);
    for i in 0..20 {
        assert_served(connect(addr), format!("client {i}").as_bytes());
    }
}

#[test]
fn a_passed_unix_socket_is_set_aside_and_the_route_binds_its_own() {
    let target = echo_server();
    let dir = std::env::temp_dir().join(format!("tcpipe-activation-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("not-tcp.sock");
    let _ = std::fs::remove_file(&path);
    let unix = UnixListener::bind(&path).expect("bind a unix socket");
    let unix = Socket::from(std::os::fd::OwnedFd::from(unix));
    unix.set_cloexec(false).expect("inheritable");

    let tcpipe = Tcpipe::start_command(command_passing(
        unix.as_raw_fd(),
        None,
        &["-l", "127.0.0.1:0", "-t", &target.to_string()],
    ));
    assert_served(tcpipe.connect(), b"bound its own");
    let warned = tcpipe
        .startup_logs()
        .iter()
        .any(|line| line.contains("descriptor 3") && line.contains("not using it"));
    assert!(warned, "the unix socket is reported: {:#?}", tcpipe.logs());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn sockets_passed_to_another_process_are_not_taken() {
    let target = echo_server();
    let (socket, addr) = activated_socket();
    socket.set_cloexec(false).expect("inheritable");
    let config = config_listening_on(addr, target);
    // LISTEN_PID names this test, not the forwarder: tcpipe must bind the
    // address itself, and fails, as the test's socket holds it.
    let mut command = command_passing(
        socket.as_raw_fd(),
        Some(std::process::id()),
        &["--config", config.path_str()],
    );
    let output = command.output().expect("run tcpipe");
    assert!(!output.status.success(), "it did not take the socket");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&addr.to_string()),
        "the bind error names the address: {stderr}"
    );
    // The test's socket still listens: nothing closed it.
    let still = TcpStream::connect_timeout(&addr, Duration::from_secs(5));
    assert!(still.is_ok(), "the passed socket still listens");
}
