//! Helpers for the timeout, limit and fault tests: both ends of a pipe in
//! the test's hands, and how a peer tells a reset from a clean end.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::common::{read_until_closed, wait_until, Tcpipe, DEADLINE};

/// The next connection on `listener`, waited for up to `DEADLINE`, as a
/// blocking stream with the same timeouts as `common::connect`.
pub fn accept(listener: &TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let mut accepted = None;
    let arrived = wait_until(DEADLINE, || match listener.accept() {
        Ok((stream, _)) => {
            accepted = Some(stream);
            true
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => panic!("accept on the target: {e}"),
    });
    assert!(arrived, "the forwarder never connected to the target");
    let stream = accepted.unwrap();
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A client connected through `tcpipe` and the target's end of the same
/// pipe, accepted from `target` (the listener `tcpipe` forwards to).
pub fn open_pipe(tcpipe: &Tcpipe, target: &TcpListener) -> (TcpStream, TcpStream) {
    let client = tcpipe.connect();
    let upstream = accept(target);
    (client, upstream)
}

/// Sends `message` and expects it back unchanged (the peer echoes).
pub fn assert_round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream
        .write_all(message)
        .expect("send through the forwarder");
    let mut echoed = vec![0u8; message.len()];
    stream
        .read_exact(&mut echoed)
        .expect("echo through the forwarder");
    assert_eq!(echoed, message, "the echo came back altered");
}

/// Sends `message` one way through a pipe and checks it arrives whole.
pub fn assert_delivered(from: &mut TcpStream, to: &mut TcpStream, message: &[u8]) {
    from.write_all(message).expect("send through the forwarder");
    let mut received = vec![0u8; message.len()];
    to.read_exact(&mut received)
        .expect("receive through the forwarder");
    assert_eq!(received, message, "the message arrived altered");
}

/// Asserts that the forwarder ended `stream` with a reset, not a clean
/// close, and that no more data came first. `who` names the peer in messages.
pub fn assert_reset(stream: &mut TcpStream, who: &str) {
    let (bytes, ended) = read_until_closed(stream);
    assert_eq!(bytes, 0, "the {who} received {bytes} unexpected bytes");
    match ended {
        Err(e) => assert_eq!(
            e.kind(),
            ErrorKind::ConnectionReset,
            "the {who} saw '{e}', not a reset"
        ),
        // After a FIN, reads keep saying EOF even once an RST has come; the
        // reset is then only in SO_ERROR, where Linux reports it as EPIPE
        // (an RST in CLOSE_WAIT). A clean close leaves SO_ERROR empty.
        Ok(()) => match pending_error(stream) {
            Some(e) => assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "the {who} saw '{e}' after EOF, not a reset"
            ),
            None => panic!("the {who} saw a clean end of stream, not a reset"),
        },
    }
}

/// Waits for an error to be reported on the socket (SO_ERROR).
fn pending_error(stream: &TcpStream) -> Option<io::Error> {
    let mut error = None;
    wait_until(DEADLINE, || {
        error = stream.take_error().expect("SO_ERROR");
        error.is_some()
    });
    error
}

/// Asserts that nothing arrives on `stream` for `window`, and that it
/// stays open meanwhile.
pub fn assert_nothing_arrives(stream: &mut TcpStream, window: Duration, why: &str) {
    stream.set_read_timeout(Some(window)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        Ok(0) => panic!("{why}: the stream was closed"),
        Ok(_) => panic!("{why}: a byte arrived"),
        Err(e) => panic!("{why}: {e}"),
    }
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
}

/// Connects to `addr`, a listener with a tiny accept queue that nobody
/// accepts from, until a connect hangs: that proves the queue is full, and
/// Linux now drops new SYNs, so connects to `addr` hang. The returned
/// connections hold the queue full while they are kept.
pub fn fill_accept_queue(addr: SocketAddr) -> Vec<TcpStream> {
    let mut fillers = Vec::new();
    let full =
        (0..16).any(
            |_| match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(stream) => {
                    fillers.push(stream);
                    false
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::TimedOut, "filling the backlog: {e}");
                    true
                }
            },
        );
    assert!(full, "the accept queue of a listen(0) socket never filled");
    fillers
}

/// A loopback listener that accepts nothing and whose accept queue is full,
/// so Linux drops further SYNs and connects to it hang.
pub struct BlackHole {
    socket: Socket,
    pub addr: SocketAddr,
    /// Connections that filled the queue; kept open so they stay queued.
    fillers: Vec<TcpStream>,
}

impl BlackHole {
    pub fn new() -> BlackHole {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .expect("bind");
        socket.listen(0).expect("listen");
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let fillers = fill_accept_queue(addr);
        BlackHole {
            socket,
            addr,
            fillers,
        }
    }

    /// Empties the accept queue, so that new connects complete again, and
    /// hands over the listener.
    pub fn open_up(self) -> TcpListener {
        let listener: TcpListener = self.socket.into();
        for _ in &self.fillers {
            listener.accept().expect("accept a queued filler");
        }
        listener
    }
}
