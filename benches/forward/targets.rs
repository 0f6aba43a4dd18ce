//! The target servers, in this process and the same for every contender: a
//! thread per connection for the few long streams (bulk, ping-pong), and
//! one epoll loop for the many connections (rr-concurrent, connect rate,
//! idle pipes), so that the server is never what limits the forwarder.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::net::{TcpListener as MioListener, TcpStream as MioStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

/// Connections the kernel may queue for a server (and the load: at most
/// a few dozen connect at once).
const BACKLOG: i32 = 1024;
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// No target connection outlives a workload; this bounds a thread waiting
/// on one that a broken forwarder left open.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// A listener on a free port of `ip`.
pub fn listener(ip: IpAddr) -> io::Result<TcpListener> {
    let addr = SocketAddr::new(ip, 0);
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

type Handler = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// A blocking server: one thread per connection runs `handler`.
pub struct ThreadServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl ThreadServer {
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> io::Result<ThreadServer> {
        let listener = listener(LOOPBACK)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let acceptor = {
            let stop = Arc::clone(&stop);
            let connections = Arc::clone(&connections);
            thread::Builder::new()
                .name("target-accept".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let _ = stream.set_nodelay(true);
                        let _ = stream.set_read_timeout(Some(IDLE_LIMIT));
                        let handler = Arc::clone(&handler);
                        if let Ok(handle) = thread::Builder::new()
                            .name("target-conn".into())
                            .spawn(move || handler(stream))
                        {
                            connections.lock().unwrap().push(handle);
                        }
                    }
                })?
        };
        Ok(ThreadServer {
            addr,
            stop,
            acceptor: Some(acceptor),
            connections,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for handle in self.connections.lock().unwrap().drain(..) {
            let _ = handle.join();
        }
    }
}

/// What the event-loop server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Echo every byte; close after the client's end of stream.
    Echo,
    /// Echo the first `MESSAGE` bytes, then close at once: the server ends
    /// the connection, like an HTTP/1.0 server, so no TIME_WAIT lands on
    /// the connecting side (client or forwarder) and ports never run out.
    OneShot,
    /// Per connection, by the sequence number (first 8 bytes) of its first
    /// request: 0 is a long-lived pipe, echoed; any other is a short
    /// connection, answered as `OneShot`. One target for the scaling
    /// workload's idle pipes, ping-pong and connect load at once.
    ByFirstMessage,
}

/// Request and reply size of the small-message workloads.
pub const MESSAGE: usize = 64;

struct Conn {
    stream: MioStream,
    /// Bytes to send back, not yet taken by the socket.
    pending: Vec<u8>,
    received: usize,
    done_after_flush: bool,
    /// What `Reply::ByFirstMessage` chose for this connection.
    chosen: Option<Reply>,
}

impl Conn {
    /// Serves an edge: reads until the socket is dry, answers, flushes.
    /// Returns true when the connection is to be closed.
    fn serve(&mut self, buf: &mut [u8], reply: Reply) -> bool {
        if reply == Reply::ByFirstMessage {
            return match self.chosen {
                Some(chosen) => self.serve(buf, chosen),
                None => self.choose(buf),
            };
        }
        loop {
            match self.stream.read(buf) {
                Ok(0) => {
                    self.done_after_flush = true;
                    break;
                }
                Ok(n) => {
                    self.received += n;
                    match reply {
                        // ByFirstMessage has chosen before it gets here.
                        Reply::Echo | Reply::ByFirstMessage => {
                            self.pending.extend_from_slice(&buf[..n])
                        }
                        Reply::OneShot => {
                            if self.received > MESSAGE {
                                return true; // not our protocol: drop it
                            }
                            self.pending.extend_from_slice(&buf[..n]);
                            if self.received == MESSAGE {
                                self.done_after_flush = true;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        // One-shot holds its reply until the whole request is in.
        if reply == Reply::OneShot && self.received < MESSAGE {
            return self.done_after_flush;
        }
        while !self.pending.is_empty() {
            match self.stream.write(&self.pending) {
                Ok(0) => return true,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        self.done_after_flush
    }
}

impl Conn {
    /// Reads until the first request's sequence number is in, then serves
    /// the connection as it says.
    fn choose(&mut self, buf: &mut [u8]) -> bool {
        while self.received < 8 {
            match self.stream.read(buf) {
                Ok(0) => return true,
                Ok(n) => {
                    self.received += n;
                    self.pending.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let chosen = if self.pending[..8] == [0; 8] {
            Reply::Echo
        } else {
            Reply::OneShot
        };
        self.chosen = Some(chosen);
        if chosen == Reply::OneShot {
            if self.received > MESSAGE {
                return true; // not our protocol: drop it
            }
            self.done_after_flush = self.received == MESSAGE;
        }
        self.serve(buf, chosen)
    }
}

const LISTENER: Token = Token(usize::MAX);
const WAKER: Token = Token(usize::MAX - 1);

/// A single-threaded epoll server for many connections.
pub struct EventServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl EventServer {
    pub fn start(reply: Reply) -> io::Result<EventServer> {
        EventServer::start_on(LOOPBACK, reply)
    }

    /// The same server on another address of this host (or of the network
    /// namespace the process runs in).
    pub fn start_on(ip: IpAddr, reply: Reply) -> io::Result<EventServer> {
        let std_listener = listener(ip)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let mut listener = MioListener::from_std(std_listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("target-events".into())
                .spawn(move || serve_events(poll, listener, reply, &stop))?
        };
        Ok(EventServer {
            addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for EventServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve_events(mut poll: Poll, listener: MioListener, reply: Reply, stop: &AtomicBool) {
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("target server: poll failed: {e}");
            return;
        }
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            let token = Token(entry.key());
                            if poll
                                .registry()
                                .register(
                                    &mut stream,
                                    token,
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .is_ok()
                            {
                                entry.insert(Conn {
                                    stream,
                                    pending: Vec::new(),
                                    received: 0,
                                    done_after_flush: false,
                                    chosen: None,
                                });
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            // Out of descriptors: the client sees the missing
                            // reply; say why here once per burst.
                            eprintln!("target server: accept failed: {e}");
                            break;
                        }
                    }
                },
                Token(key) => {
                    let close = match conns.get_mut(key) {
                        Some(conn) => conn.serve(&mut buf, reply),
                        None => false,
                    };
                    if close {
                        let mut conn = conns.remove(key);
                        let _ = poll.registry().deregister(&mut conn.stream);
                    }
                }
            }
        }
    }
}
