//! The server: one thread, one mio `Poll`, non-blocking sockets, and a
//! deadline on every connection, so no client holds up another however
//! many are connected and however little they send or read.
//!
//! A connection goes through three states. *Reading*: until the head and
//! its `Content-Length` body are in, within `request_timeout` of the
//! accept (a total, not an idle time, so a byte every second buys
//! nothing); then the handler answers. *Writing*: the answer goes out as
//! the client takes it, within `write_timeout`. *Lingering*: after our
//! FIN, what the client still sends is read and dropped until it closes,
//! for at most [`LINGER`]: closing a socket with unread input sends a
//! reset, which can destroy the answer before the client reads it (the
//! case of a 431 sent while the oversize head is still arriving).
//!
//! At `max_connections`, a new client is always accepted and the one
//! closest to done goes instead: a lingering one, else the one silent the
//! longest, else the one that sent part of a request the longest ago, else
//! the oldest writer. So a flood of silent
//! clients costs each of them its slot, never the scraper its answer: like
//! nginx reusing its idle keep-alive connections when out of them, and
//! unlike refusing the newcomer, which would let the flood lock everyone
//! out.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::SockRef;

use super::request::{head_end, parse_head, Head, Rejection, Request};
use super::response::Response;
use crate::throttle::Throttle;

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Out of descriptors or memory, accepting again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a client that has its answer may keep sending before we close.
const LINGER: Duration = Duration::from_secs(1);
/// How much a lingering client may still send before we close anyway.
const MAX_DRAIN: usize = 64 * 1024;
/// One read's worth; the head cap is a few of these.
const CHUNK: usize = 4096;

/// What one server allows each client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Open connections; at the cap the next one replaces the idlest.
    pub(crate) max_connections: usize,
    /// Request line and headers, blank line included (431 beyond).
    pub(crate) max_head: usize,
    /// `Content-Length` (413 beyond).
    pub(crate) max_body: usize,
    /// From accept to the whole request (408 after).
    pub(crate) request_timeout: Duration,
    /// From the answer being ready to the client having taken all of it.
    pub(crate) write_timeout: Duration,
}

impl Default for Limits {
    /// 64 connections: a Prometheus or two, a few people with curl, and
    /// room to spare; each costs at most one head and body buffer. 3 s for
    /// a request: a real client sends its head in its first segment, one
    /// round trip after connecting, so this is generous on any network,
    /// and still frees a silent client's slot well within one 10 s scrape
    /// timeout. 5 s to take the answer, as the endpoint always allowed.
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            max_head: 8 * 1024,
            max_body: 64 * 1024,
            request_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(5),
        }
    }
}

/// A running server; dropping it stops the thread and closes its sockets
/// (at once, or after the request being answered, if the handler is busy).
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    handover_copy: socket2::Socket,
}

impl Server {
    /// Binds `addr` and serves it on a thread named `tcpipe-NAME`; `name`
    /// also starts this server's log lines. `handler` answers each
    /// complete request, on that thread.
    pub(crate) fn start<H>(
        name: &'static str,
        addr: SocketAddr,
        limits: Limits,
        handler: H,
    ) -> io::Result<Server>
    where
        H: Fn(&Request) -> Response + Send + 'static,
    {
        // One handed over by the process this one took over from, else new.
        let owner = format!("http {name}");
        let mut listener = match crate::inherited::take(&owner, addr, addr) {
            Some(given) => given?,
            None => TcpListener::bind(addr)?,
        };
        let handover_copy = socket2::SockRef::from(&listener).try_clone()?;
        let addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let stop = Arc::new(AtomicBool::new(false));
        let serving = Serving {
            name,
            poll,
            listener,
            connections: Slab::with_capacity(limits.max_connections),
            limits,
            handler,
            stop: Arc::clone(&stop),
            accept_resumes: None,
            evictions: Throttle::default(),
            accept_failures: Throttle::default(),
        };
        thread::Builder::new()
            .name(format!("tcpipe-{name}"))
            .spawn(move || serving.run())?;
        Ok(Server {
            addr,
            stop,
            waker,
            handover_copy,
        })
    }

    /// As bound (port 0 resolved).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening socket, for a live upgrade to hand over (a copy the
    /// server's thread does not use; closed with the server).
    pub(crate) fn listener_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.handover_copy)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            warn!("http {}: cannot wake the server to stop it: {e}", self.addr);
        }
    }
}

struct Serving<H> {
    name: &'static str,
    poll: Poll,
    listener: TcpListener,
    connections: Slab<Connection>,
    limits: Limits,
    handler: H,
    stop: Arc<AtomicBool>,
    /// Set while accepting backs off after a failure.
    accept_resumes: Option<Instant>,
    evictions: Throttle,
    accept_failures: Throttle,
}

impl<H: Fn(&Request) -> Response> Serving<H> {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                warn!("{}: cannot poll, no longer serving: {e}", self.name);
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept(),
                    Token(key) => self.advance(key),
                }
            }
            self.expire(Instant::now());
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let connections = self.connections.iter().map(|(_, c)| c.deadline);
        connections.chain(self.accept_resumes).min()
    }

    fn accept(&mut self) {
        if self.accept_resumes.is_some() {
            return;
        }
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors or memory, most likely.
                    let now = Instant::now();
                    if let Some(held_back) = self.accept_failures.allow(now) {
                        warn!("{}: cannot accept: {e}{held_back}", self.name);
                    }
                    self.accept_resumes = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        let now = Instant::now();
        if self.connections.len() >= self.limits.max_connections {
            self.evict(now);
        }
        let entry = self.connections.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(entry.key()), interest)
        {
            debug!("{}: client {peer}: cannot register: {e}", self.name);
            return;
        }
        let key = entry.key();
        entry.insert(Connection {
            stream,
            peer,
            state: State::Reading(Reading::default()),
            heard: now,
            deadline: now + self.limits.request_timeout,
        });
        // A request that came with the handshake is read now, before the
        // rest of an accept burst could push its client out as silent.
        self.advance(key);
    }

    /// Makes room for one more: see the module's comment for who goes.
    fn evict(&mut self, now: Instant) {
        let idlest = self
            .connections
            .iter()
            .min_by_key(|(_, c)| (c.state.keep_rank(), c.heard))
            .map(|(key, _)| key);
        if let Some(key) = idlest {
            let gone = self.connections.remove(key);
            if let State::Writing { .. } = gone.state {
                gone.reset();
            }
            if let Some(held_back) = self.evictions.allow(now) {
                warn!(
                    "{}: {} clients connected (the cap): closed {}, {} for {}ms{held_back}",
                    self.name,
                    self.limits.max_connections,
                    gone.peer,
                    gone.state.doing(),
                    now.saturating_duration_since(gone.heard).as_millis()
                );
            }
        }
    }

    fn advance(&mut self, key: usize) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        if connection.advance(Instant::now(), &self.limits, &self.handler) == Step::Close {
            self.connections.remove(key);
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.accept_resumes.is_some_and(|at| at <= now) {
            self.accept_resumes = None;
            self.accept();
        }
        let limits = self.limits;
        let name = self.name;
        self.connections.retain(|_, connection| {
            if connection.deadline > now {
                return true;
            }
            match connection.state {
                // Told why, then closed as any answer is.
                State::Reading(_) => {
                    debug!("{name}: client {}: no request in time", connection.peer);
                    connection.answer(now, &limits, reject(Rejection::Timeout), false);
                    connection.send(now) == Step::Open
                }
                State::Writing { .. } => {
                    debug!(
                        "{name}: client {}: did not take its answer in time",
                        connection.peer
                    );
                    connection.reset();
                    false
                }
                State::Lingering { .. } => false,
            }
        });
    }
}

fn reject(rejection: Rejection) -> Response {
    Response::text(rejection.status(), rejection.message())
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// Accepted, or last sent us bytes while reading.
    heard: Instant,
    deadline: Instant,
}

enum State {
    Reading(Reading),
    Writing { out: Vec<u8>, sent: usize },
    Lingering { drained: usize },
}

impl State {
    /// Lower goes first when the server is full: answered, silent, part
    /// of a request sent, answer going out.
    fn keep_rank(&self) -> u8 {
        match self {
            State::Lingering { .. } => 0,
            State::Reading(reading) if reading.buf.is_empty() => 1,
            State::Reading(_) => 2,
            State::Writing { .. } => 3,
        }
    }

    fn doing(&self) -> &'static str {
        match self {
            State::Lingering { .. } => "answered",
            State::Reading(reading) if reading.buf.is_empty() => "silent",
            State::Reading(_) => "sending its request",
            State::Writing { .. } => "not reading its answer",
        }
    }
}

#[derive(Default)]
struct Reading {
    buf: Vec<u8>,
    /// Where to look for the head's end again.
    scanned: usize,
    head: Option<Head>,
}

enum Progress {
    More,
    Close,
    Complete(Request),
    Reject(Rejection),
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Open,
    Close,
}

impl Connection {
    /// Goes as far as the socket allows now.
    fn advance(
        &mut self,
        now: Instant,
        limits: &Limits,
        handler: &dyn Fn(&Request) -> Response,
    ) -> Step {
        if let State::Reading(reading) = &mut self.state {
            let (progress, heard) = read_request(&mut self.stream, reading, limits);
            if heard {
                self.heard = now;
            }
            match progress {
                Progress::More => return Step::Open,
                Progress::Close => return Step::Close,
                Progress::Complete(request) => {
                    let head_only = request.method() == "HEAD";
                    let response = handler(&request);
                    // The handler may have taken a while.
                    self.answer(Instant::now(), limits, response, head_only);
                }
                Progress::Reject(rejection) => {
                    debug!("client {}: {}", self.peer, rejection.message().trim_end());
                    self.answer(now, limits, reject(rejection), false);
                }
            }
        }
        self.send(now)
    }

    /// Closing with a reset rather than a FIN: the kernel drops what the
    /// client did not take instead of holding it (up to the send buffer,
    /// megabytes) for minutes of zero-window probes. A cut answer is
    /// useless to the client either way.
    fn reset(&self) {
        if let Err(e) = SockRef::from(&self.stream).set_linger(Some(Duration::ZERO)) {
            debug!("client {}: cannot set SO_LINGER: {e}", self.peer);
        }
    }

    fn answer(&mut self, now: Instant, limits: &Limits, response: Response, head_only: bool) {
        self.state = State::Writing {
            out: response.encode(head_only),
            sent: 0,
        };
        self.deadline = now + limits.write_timeout;
    }

    /// Writes the answer, then drains until the client closes.
    fn send(&mut self, now: Instant) -> Step {
        let mut chunk = [0u8; CHUNK];
        loop {
            match &mut self.state {
                State::Reading(_) => return Step::Open,
                State::Writing { out, sent } => match self.stream.write(&out[*sent..]) {
                    Ok(0) => return Step::Close,
                    Ok(n) => {
                        *sent += n;
                        if *sent == out.len() {
                            // The FIN goes after the answer; what the
                            // client still sends is drained (see LINGER).
                            if self.stream.shutdown(Shutdown::Write).is_err() {
                                return Step::Close;
                            }
                            self.state = State::Lingering { drained: 0 };
                            self.deadline = now + LINGER;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Open,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        debug!("client {}: {e}", self.peer);
                        return Step::Close;
                    }
                },
                State::Lingering { drained } => match self.stream.read(&mut chunk) {
                    Ok(0) => return Step::Close,
                    Ok(n) => {
                        *drained += n;
                        if *drained > MAX_DRAIN {
                            return Step::Close;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Step::Open,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return Step::Close,
                },
            }
        }
    }
}

/// Reads what is there; whether any bytes came, and how far the request is.
fn read_request(
    stream: &mut TcpStream,
    reading: &mut Reading,
    limits: &Limits,
) -> (Progress, bool) {
    let mut chunk = [0u8; CHUNK];
    let mut heard = false;
    loop {
        if let Some(progress) = reading.progress(limits) {
            return (progress, heard);
        }
        match stream.read(&mut chunk) {
            Ok(0) if reading.buf.is_empty() => return (Progress::Close, heard),
            Ok(0) => {
                let why = Rejection::Malformed("the client closed before the request ended");
                return (Progress::Reject(why), heard);
            }
            Ok(n) => {
                reading.buf.extend_from_slice(&chunk[..n]);
                heard = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return (Progress::More, heard),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return (Progress::Close, heard),
        }
    }
}

impl Reading {
    /// `None` while more bytes are needed.
    fn progress(&mut self, limits: &Limits) -> Option<Progress> {
        if self.head.is_none() {
            match head_end(&self.buf, self.scanned) {
                Some(end) if end <= limits.max_head => {
                    match parse_head(&self.buf, end, limits.max_body) {
                        Ok(head) => self.head = Some(head),
                        Err(rejection) => return Some(Progress::Reject(rejection)),
                    }
                }
                Some(_) => return Some(Progress::Reject(Rejection::HeadTooLarge)),
                None if self.buf.len() > limits.max_head => {
                    return Some(Progress::Reject(Rejection::HeadTooLarge))
                }
                None => {
                    self.scanned = self.buf.len().saturating_sub(2);
                    return None;
                }
            }
        }
        let head = self.head.as_ref()?;
        let end = head.len + head.content_length;
        let body = self.buf.get(head.len..end)?.to_vec();
        let mut request = self.head.take()?.request;
        request.body = body;
        Some(Progress::Complete(request))
    }
}
