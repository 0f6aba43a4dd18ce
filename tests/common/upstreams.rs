//! Helpers for the tests of several targets: a forwarder over a list of
//! targets serving `/metrics` (what each target was sent, whether it is
//! up), echo targets that count what reaches them and whose listening the
//! test switches on and off, and clients from chosen source addresses.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use socket2::{Domain, Socket, Type};

use crate::common::faults::fill_accept_queue;
use crate::common::{echo, read_to_end, Tcpipe, DEADLINE};

/// `tcpipe -l 127.0.0.1:0 -t T1 -t T2 ... OPTIONS --metrics 127.0.0.1:0`
/// (unless OPTIONS serve metrics already): these tests read what each
/// target was sent from `/metrics` (see [`Tcpipe::target_metric`]).
pub fn start_forwarder(targets: &[SocketAddr], options: &[&str]) -> Tcpipe {
    let (first, others) = targets.split_first().expect("at least one target");
    let mut args: Vec<String> = others
        .iter()
        .flat_map(|target| ["-t".to_string(), target.to_string()])
        .collect();
    args.extend(options.iter().map(|option| option.to_string()));
    if !options.contains(&"--metrics") {
        args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tcpipe::start(first, &args)
}

/// Connects to the forwarder from `source` (any 127.0.0.x works on Linux
/// loopback without configuration), with the timeouts of `common::connect`.
pub fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind a client to {source}: {e}"));
    socket
        .connect(&to.into())
        .expect("connect to the forwarder");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// One whole client session against an echo target: `message` comes back
/// unchanged, then a half-close is answered by a clean end with nothing
/// more, so every byte arrived exactly once and the pipe ended cleanly.
pub fn assert_served(mut client: TcpStream, message: &[u8]) {
    client
        .write_all(message)
        .unwrap_or_else(|e| panic!("the client could not send: {e}"));
    let mut echoed = vec![0u8; message.len()];
    client
        .read_exact(&mut echoed)
        .unwrap_or_else(|e| panic!("the client got no echo: {e}"));
    assert_eq!(echoed, message, "the echo came back altered");
    client.shutdown(Shutdown::Write).expect("half-close");
    let extra = read_to_end(&mut client);
    assert!(
        extra.is_empty(),
        "{} unexpected bytes followed the echo",
        extra.len()
    );
}

/// `assert_served` for a new client of `tcpipe`, whose message tells it apart.
pub fn serve_client(tcpipe: &Tcpipe, n: usize) {
    assert_served(tcpipe.connect(), format!("client {n}").as_bytes());
}

/// An echo target on a fixed loopback port whose state the test switches:
/// refusing (bound, not listening, so connects are refused and no one else
/// can take the port), serving (accepting and echoing), or a black hole
/// (listening with a full accept queue, so connects hang).
pub struct Backend {
    pub addr: SocketAddr,
    socket: Arc<Socket>,
    accepted: Arc<AtomicUsize>,
    served: Arc<AtomicUsize>,
    /// Connections that fill the accept queue of a black hole.
    fillers: Vec<TcpStream>,
}

impl Backend {
    /// Serving from the start.
    pub fn echo() -> Backend {
        let mut backend = Backend::refusing();
        backend.listen();
        backend
    }

    /// Refusing until `listen`.
    pub fn refusing() -> Backend {
        let socket = bound_socket("127.0.0.1:0".parse().unwrap());
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        Backend {
            addr,
            socket: Arc::new(socket),
            accepted: Arc::new(AtomicUsize::new(0)),
            served: Arc::new(AtomicUsize::new(0)),
            fillers: Vec::new(),
        }
    }

    /// A black hole until `listen`.
    pub fn black_hole() -> Backend {
        let mut backend = Backend::refusing();
        backend.become_black_hole();
        backend
    }

    /// Connections accepted, from clients, the pool, probes or fillers.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections that carried at least one byte: clients, not probes or
    /// idle pooled connections.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Starts (or resumes) accepting and echoing.
    pub fn listen(&mut self) {
        // On a black hole this only lengthens the queue; its fillers are
        // then accepted, and closed at once.
        self.socket.listen(128).expect("listen");
        self.fillers.clear();
        let socket = Arc::clone(&self.socket);
        let accepted = Arc::clone(&self.accepted);
        let served = Arc::clone(&self.served);
        thread::spawn(move || {
            // Ends when `refuse` shuts the listener down.
            while let Ok((stream, _)) = socket.accept() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let served = Arc::clone(&served);
                thread::spawn(move || {
                    echo(stream.into(), || {
                        served.fetch_add(1, Ordering::SeqCst);
                    })
                });
            }
        });
    }

    /// Stops listening: new connects are refused, while connections
    /// already accepted keep echoing. The port stays bound.
    pub fn refuse(&mut self) {
        // Ends the listening state (and wakes the accept thread with an
        // error), so a new socket may bind the port before this one closes.
        self.socket
            .shutdown(Shutdown::Read)
            .expect("shut the listener down");
        self.socket = Arc::new(bound_socket(self.addr));
        self.fillers.clear();
    }

    /// From refusing: listens with a full accept queue, so that Linux drops
    /// new SYNs and connects to it hang.
    pub fn become_black_hole(&mut self) {
        self.socket.listen(0).expect("listen");
        self.fillers = fill_accept_queue(self.addr);
    }
}

/// A socket bound to `addr` and not listening. SO_REUSEADDR lets it take
/// the port of a listener that was shut down while connections it accepted
/// are still open.
fn bound_socket(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket
        .bind(&addr.into())
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    socket
}
