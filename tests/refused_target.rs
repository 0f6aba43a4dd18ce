//! A target that refuses the connection: the client is closed at once (well
//! under a second), the reason is logged with the pipe id, and the forwarder
//! goes on serving other pipes.

mod common;
use common::*;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// Well under a second, as the issue asks.
const PROMPTLY: Duration = Duration::from_secs(1);

/// A target address that refuses connections until `listen` is called on the
/// returned socket. Bound all along, so no other process can take the port
/// in between.
fn refusing_target() -> (Socket, SocketAddr) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    socket.bind(&any_port.into()).expect("bind");
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    (socket, addr)
}

/// Starts accepting on the refusing target and echoes every connection.
fn start_echoing(socket: Socket) {
    socket.listen(128).expect("listen");
    let listener: TcpListener = socket.into();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// Connects a client and asserts that the forwarder closes it promptly,
/// with a reset (as a direct connect would have been refused) or an EOF.
fn assert_client_closed_promptly(tcpipe: &Tcpipe) {
    let started = Instant::now();
    let mut client = tcpipe.connect();
    client.set_read_timeout(Some(PROMPTLY)).unwrap();
    let (bytes, end) = read_until_closed(&mut client);
    let waited = started.elapsed();
    assert_eq!(bytes, 0, "the client received bytes from nowhere");
    match end {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the client was not closed within {PROMPTLY:?} ({waited:?}): {e}"),
    }
    assert!(
        waited < PROMPTLY,
        "the client was closed only after {waited:?}"
    );
}

fn assert_echoes(mut client: TcpStream, message: &[u8]) {
    client.write_all(message).expect("write");
    let mut echo = vec![0u8; message.len()];
    client.read_exact(&mut echo).expect("the echo");
    assert_eq!(echo, message);
}

fn assert_still_running(tcpipe: &mut Tcpipe) {
    assert!(
        tcpipe.wait_exit(Duration::ZERO).is_none(),
        "the forwarder exited after a refused connect; logs: {:?}",
        tcpipe.logs()
    );
}

#[test]
fn a_refused_target_closes_the_client_promptly_and_the_access_log_gives_the_pipe_and_reason() {
    let (_refusing, target) = refusing_target();
    let mut tcpipe = Tcpipe::start(target, &[]);

    assert_client_closed_promptly(&tcpipe);

    let mut closes = Vec::new();
    assert!(
        wait_until(DEADLINE, || {
            closes = tcpipe.access_log_closes();
            !closes.is_empty()
        }),
        "no access-log line for the pipe; logs: {:?}",
        tcpipe.logs()
    );
    let close = &closes[0];
    let field = |key: &str| close.get(key).map(String::as_str);
    assert_eq!(field("pipe"), Some("1"), "{close:?}");
    assert_eq!(field("end"), Some("connect_failed"), "{close:?}");
    assert_eq!(
        field("target"),
        Some(target.to_string().as_str()),
        "{close:?}"
    );
    assert_still_running(&mut tcpipe);
}

#[test]
fn the_next_pipe_works_once_the_target_listens() {
    let (refusing, target) = refusing_target();
    let mut tcpipe = Tcpipe::start(target, &[]);
    assert_client_closed_promptly(&tcpipe);
    assert_client_closed_promptly(&tcpipe);

    start_echoing(refusing);
    assert_echoes(tcpipe.connect(), b"after two refusals");
    assert_still_running(&mut tcpipe);
}

#[test]
fn a_refused_connect_leaves_the_pipes_already_open_running() {
    let (refusing, target) = refusing_target();
    let listener: TcpListener = {
        refusing.listen(128).expect("listen");
        refusing.into()
    };
    let tcpipe = Tcpipe::start(target, &[]);
    let mut open = tcpipe.connect();
    let (mut served, _) = listener.accept().expect("accept");
    served.set_read_timeout(Some(DEADLINE)).unwrap();
    // No more listening: the next connect to the target is refused.
    drop(listener);

    assert_client_closed_promptly(&tcpipe);

    open.write_all(b"still here?").unwrap();
    let mut request = [0u8; 11];
    served
        .read_exact(&mut request)
        .expect("the open pipe's bytes");
    served.write_all(b"yes").unwrap();
    let mut answer = [0u8; 3];
    open.read_exact(&mut answer)
        .expect("the open pipe's answer");
    assert_eq!(&answer, b"yes");
}
