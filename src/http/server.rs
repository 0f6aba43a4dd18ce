//! The server: one thread, one mio `Poll`, non-blocking sockets, and a
//! deadline on every connection, so no client holds up another however
//! many are connected and however little they send or read.
//!
//! A connection (`connection.rs`) goes through three states. *Reading*: until the head and
//! its `Content-Length` body are in, within `request_timeout` of the
//! accept (a total, not an idle time, so a byte every second buys
//! nothing); then the handler answers. *Writing*: the answer goes out as
//! the client takes it, within `write_timeout`. *Lingering*: after our
//! FIN, what the client still sends is read and dropped until it closes,
//! for at most a second: closing a socket with unread input sends a
//! reset, which can destroy the answer before the client reads it (the
//! case of a 431 sent while the oversize head is still arriving).
//!
//! A handler may also answer *later* ([`Answer::Later`]): its work (a wait
//! for pipes to end, reading a config file) runs on a thread of its own
//! while the connection *waits*, under `max_wait` rather than the request
//! and write deadlines, which it has no part in. A waiting client that
//! closes or sends more than 64 KiB meanwhile is dropped (its work's answer
//! then goes nowhere); others are served meanwhile as ever. At most
//! `max_connections` works run at once; beyond, a 503 says to try again.
//!
//! At `max_connections`, a new client is always accepted and the one
//! closest to done goes instead: a lingering one, else the one silent the
//! longest, else the one that sent part of a request the longest ago, else
//! the oldest writer, and one waiting for a later answer last. So a flood
//! of silent
//! clients costs each of them its slot, never the scraper its answer: like
//! nginx reusing its idle keep-alive connections when out of them, and
//! unlike refusing the newcomer, which would let the flood lock everyone
//! out.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use log::{debug, warn};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::connection::{refusal, reject, Connection, Next, Reading, State, Step};
use super::request::{Rejection, Request};
use super::response::Response;
use super::socket::{Endpoint, Listener, SocketFile, Stream};
use crate::throttle::Throttle;

const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Out of descriptors or memory, accepting again at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
    /// From a complete request to the answer of its [`Answer::Later`]
    /// work (504 after).
    pub(crate) max_wait: Duration,
    /// The server's own refusals (400, 408, 413, ...) as JSON
    /// `{"error": "..."}`, as a JSON API's clients expect, not text.
    pub(crate) json_errors: bool,
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
            max_wait: Duration::from_secs(60),
            json_errors: false,
        }
    }
}

/// Work that answers a request later, run on a thread of its own.
pub(crate) type Work = Box<dyn FnOnce() -> Response + Send>;

/// A handler's answer: now, or once its work is done.
pub(crate) enum Answer {
    Now(Response),
    Later(Work),
}

impl From<Response> for Answer {
    fn from(response: Response) -> Answer {
        Answer::Now(response)
    }
}

/// A running server; dropping it stops the thread and closes its sockets
/// (at once, or after the request being answered, if the handler is busy).
pub(crate) struct Server {
    endpoint: Endpoint,
    stop: Arc<AtomicBool>,
    /// Take no new client; end once every answer under way is out.
    finishing: Arc<AtomicBool>,
    /// Disconnected when the server's thread ends.
    ended: Receiver<()>,
    waker: Arc<Waker>,
    /// Removed when the server stops, at once rather than when its thread
    /// gets to it: the process may be exiting.
    _file: Option<SocketFile>,
    /// A copy of a TCP listener for a live upgrade to hand over, one the
    /// server's thread does not use; closed with the server.
    handover_copy: Option<socket2::Socket>,
}

impl Server {
    /// Binds the TCP address `addr` and serves it: see [`Server::start_on`].
    pub(crate) fn start<H, A>(
        name: &'static str,
        addr: SocketAddr,
        limits: Limits,
        handler: H,
    ) -> io::Result<Server>
    where
        H: Fn(&Request) -> A + Send + 'static,
        A: Into<Answer>,
    {
        Server::start_on(name, &Endpoint::Tcp(addr), limits, handler)
    }

    /// Binds `endpoint` and serves it on a thread named `tcpipe-NAME`;
    /// `name` also starts this server's log lines. `handler` answers each
    /// complete request, on that thread.
    pub(crate) fn start_on<H, A>(
        name: &'static str,
        endpoint: &Endpoint,
        limits: Limits,
        handler: H,
    ) -> io::Result<Server>
    where
        H: Fn(&Request) -> A + Send + 'static,
        A: Into<Answer>,
    {
        let (mut listener, endpoint, file) = Listener::bind(&format!("http {name}"), endpoint)?;
        let handover_copy = listener.tcp_copy()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let finishing = Arc::new(AtomicBool::new(false));
        let (ended_tx, ended) = mpsc::channel();
        let (done, finished) = mpsc::channel();
        let serving = Serving {
            name,
            poll,
            listener,
            connections: Slab::with_capacity(limits.max_connections),
            limits,
            handler,
            stop: Arc::clone(&stop),
            finishing: Arc::clone(&finishing),
            _ended: ended_tx,
            accept_resumes: None,
            evictions: Throttle::default(),
            accept_failures: Throttle::default(),
            waker: Arc::clone(&waker),
            done,
            finished,
            working: 0,
            next_serial: 0,
        };
        thread::Builder::new()
            .name(format!("tcpipe-{name}"))
            .spawn(move || serving.run())?;
        Ok(Server {
            endpoint,
            stop,
            finishing,
            ended,
            waker,
            _file: file,
            handover_copy,
        })
    }

    /// Stops taking clients and waits, at most `within`, for the answers
    /// under way (work still running, or being written) to go out, then
    /// stops: a process about to exit (after a live upgrade answered over
    /// this very server, say) does not cut its last answers off.
    pub(crate) fn finish(self, within: Duration) {
        self.finishing.store(true, Ordering::Release);
        if self.waker.wake().is_ok() {
            // Only ever disconnected, when the thread ends: no value comes.
            let _ = self.ended.recv_timeout(within);
        }
    }

    /// As bound (port 0 resolved).
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TCP address as bound; `None` for a socket file.
    pub(crate) fn tcp_addr(&self) -> Option<SocketAddr> {
        match self.endpoint {
            Endpoint::Tcp(addr) => Some(addr),
            Endpoint::Unix(_) => None,
        }
    }

    /// The listening TCP socket, for a live upgrade to hand over (a copy
    /// the server's thread does not use; closed with the server); `None`
    /// for a socket file, which the new process binds anew.
    pub(crate) fn listener_copy(&self) -> Option<io::Result<socket2::Socket>> {
        self.handover_copy.as_ref().map(socket2::Socket::try_clone)
    }

    /// As [`listener_copy`](Server::listener_copy), borrowed.
    pub(crate) fn listener_fd(&self) -> Option<std::os::fd::RawFd> {
        self.handover_copy
            .as_ref()
            .map(std::os::fd::AsRawFd::as_raw_fd)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            warn!(
                "http {}: cannot wake the server to stop it: {e}",
                self.endpoint
            );
        }
    }
}

/// A work's answer, for the connection `key` if it is still connection
/// `serial` (the slot may have gone to another client meanwhile).
struct Done {
    key: usize,
    serial: u64,
    response: Response,
}

struct Serving<H> {
    name: &'static str,
    poll: Poll,
    listener: Listener,
    connections: Slab<Connection>,
    limits: Limits,
    handler: H,
    stop: Arc<AtomicBool>,
    finishing: Arc<AtomicBool>,
    /// Dropped with the thread's state, which tells [`Server::finish`].
    _ended: Sender<()>,
    /// Set while accepting backs off after a failure.
    accept_resumes: Option<Instant>,
    evictions: Throttle,
    accept_failures: Throttle,
    /// Wakes the poll when a work is done.
    waker: Arc<Waker>,
    done: Sender<Done>,
    finished: Receiver<Done>,
    /// Works running, whether or not their clients still wait.
    working: usize,
    next_serial: u64,
}

impl<H, A> Serving<H>
where
    H: Fn(&Request) -> A,
    A: Into<Answer>,
{
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
                    WAKER => self.collect_done(),
                    LISTENER => self.accept(),
                    Token(key) => self.advance(key),
                }
            }
            self.expire(Instant::now());
            if self.finishing.load(Ordering::Acquire) && !self.answering() {
                return;
            }
        }
    }

    /// Whether a client waits for work under way or takes its answer.
    fn answering(&self) -> bool {
        self.connections.iter().any(|(_, connection)| {
            matches!(
                connection.state,
                State::Waiting { .. } | State::Writing { .. }
            )
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        let connections = self.connections.iter().map(|(_, c)| c.deadline);
        connections.chain(self.accept_resumes).min()
    }

    fn accept(&mut self) {
        if self.accept_resumes.is_some() || self.finishing.load(Ordering::Acquire) {
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

    fn admit(&mut self, mut stream: Stream, peer: String) {
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
        self.next_serial += 1;
        entry.insert(Connection {
            serial: self.next_serial,
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
                gone.stream.reset_on_close();
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
        let handler = &self.handler;
        let answer = |request: &Request| handler(request).into();
        match connection.advance(Instant::now(), &self.limits, &answer) {
            Next::Open => {}
            Next::Close => {
                self.connections.remove(key);
            }
            Next::Later(work, head_only) => self.defer(key, work, head_only),
        }
    }

    /// Runs `work` on a thread of its own; connection `key` waits for it.
    fn defer(&mut self, key: usize, work: Work, head_only: bool) {
        let Some(connection) = self.connections.get_mut(key) else {
            return;
        };
        let now = Instant::now();
        let refused = if self.working >= self.limits.max_connections {
            Some("too many requests waiting for their answer; try again later".to_string())
        } else {
            let completion = Completion {
                done: Some(Done {
                    key,
                    serial: connection.serial,
                    response: refusal(&self.limits, 500, "the request's work failed"),
                }),
                to: self.done.clone(),
                waker: Arc::clone(&self.waker),
            };
            let spawned = thread::Builder::new()
                .name(format!("tcpipe-{}-wait", self.name))
                .spawn(move || completion.finish(work()));
            spawned
                .err()
                .map(|e| format!("cannot start a thread for the answer: {e}"))
        };
        match refused {
            Some(why) => {
                let busy = refusal(&self.limits, 503, &why);
                connection.answer(now, &self.limits, busy, head_only);
                if connection.send(now) == Step::Close {
                    self.connections.remove(key);
                }
            }
            None => {
                self.working += 1;
                connection.state = State::Waiting {
                    head_only,
                    drained: 0,
                };
                connection.deadline = now + self.limits.max_wait;
            }
        }
    }

    /// Answers the clients whose work is done and still wait for it.
    fn collect_done(&mut self) {
        let now = Instant::now();
        while let Ok(done) = self.finished.try_recv() {
            self.working = self.working.saturating_sub(1);
            let Some(connection) = self.connections.get_mut(done.key) else {
                continue;
            };
            let State::Waiting { head_only, .. } = connection.state else {
                continue;
            };
            if connection.serial != done.serial {
                continue;
            }
            connection.answer(now, &self.limits, done.response, head_only);
            if connection.send(now) == Step::Close {
                self.connections.remove(done.key);
            }
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
                    let late = reject(&limits, Rejection::Timeout);
                    connection.answer(now, &limits, late, false);
                    connection.send(now) == Step::Open
                }
                State::Writing { .. } => {
                    debug!(
                        "{name}: client {}: did not take its answer in time",
                        connection.peer
                    );
                    connection.stream.reset_on_close();
                    false
                }
                State::Waiting { head_only, .. } => {
                    debug!("{name}: client {}: no answer in time", connection.peer);
                    let late = refusal(&limits, 504, "no answer in time");
                    connection.answer(now, &limits, late, head_only);
                    connection.send(now) == Step::Open
                }
                State::Lingering { .. } => false,
            }
        });
    }
}

/// Sends a work's answer when it ends, or a 500 if it panicked.
struct Completion {
    done: Option<Done>,
    to: Sender<Done>,
    waker: Arc<Waker>,
}

impl Completion {
    fn finish(mut self, response: Response) {
        if let Some(done) = &mut self.done {
            done.response = response;
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            // The server may have stopped; then nobody waits.
            if self.to.send(done).is_ok() {
                let _ = self.waker.wake();
            }
        }
    }
}
