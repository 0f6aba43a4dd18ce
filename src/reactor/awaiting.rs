//! Clients of `accept-proxy` routes whose PROXY header is not complete yet.
//!
//! Such a client is not a pipe: nothing is dialed, no ring is lent, and the
//! hooks hear of it only once its header is read (or it is turned away).
//! It waits here, in a table of its own with a token range of its own, and
//! counts against the connection limits like a pipe.
//!
//! The header is read with `MSG_PEEK` into a stack buffer, re-parsing
//! everything received so far at each readable edge, so a header split
//! over any number of segments reads the same as one in a single segment.
//! Once it is complete, exactly its bytes are consumed: what the client
//! sent after it stays in the socket, and the pipe forwards it untouched.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::event::Event;
use mio::net::TcpStream;
use mio::Interest;

use super::routes::RouteId;
use super::tokens::awaiting_token;
use super::{Reactor, Timer};
use crate::pipe::{Reason, Refusal};
use crate::proxy_protocol::{self, Header, Parsed};

/// The longest header accepted. v1 needs at most 107 bytes and a v2 header
/// with IPv6 addresses 52; the rest is room for TLVs (AWS, GCP and Azure
/// send a few dozen bytes of them). Capping it bounds what one client
/// can make the loop copy at each of its segments.
pub(super) const MAX_HEADER: usize = 4096;

/// A client whose header is awaited.
pub(super) struct Awaiting {
    /// The pipe id it will have (the id in its log lines already).
    pub(super) id: u64,
    pub(super) route: RouteId,
    /// `None` once it has left the table, until its slot is freed at the
    /// end of the turn (so that an event of it still in the batch cannot
    /// reach a client that reused the slot).
    pub(super) stream: Option<TcpStream>,
    pub(super) peer: SocketAddr,
    /// The listener's address: the destination of a header sent onwards,
    /// should the socket not say.
    pub(super) listener: SocketAddr,
    /// The OS reported the client's FIN: an incomplete header will stay so.
    pub(super) read_closed: bool,
    /// The listener whose routes its first bytes choose from, after the
    /// header, if its address is shared.
    pub(super) inspect: Option<usize>,
    /// When its `proxy-timeout` runs out (for a live upgrade's record).
    pub(super) deadline: Option<Instant>,
}

/// The clients awaiting their header, and the slots to free at the end of
/// this turn.
pub(super) type Table = super::waiting::Waiting<Awaiting>;

/// What the bytes received so far amount to.
enum Progress {
    Pending,
    Complete(Header),
    Failed(String),
}

impl Reactor {
    /// Client `id` of an `accept-proxy` route is accepted: it waits for its
    /// header, for at most the route's `proxy-timeout`.
    pub(super) fn await_proxy_header(
        &mut self,
        (route_id, inspect): (RouteId, Option<usize>),
        id: u64,
        mut client: TcpStream,
        (peer, listener): (SocketAddr, SocketAddr),
    ) {
        let key = self.awaiting.clients.vacant_key();
        let registry = self.poll.registry();
        if let Err(e) = registry.register(&mut client, awaiting_token(key), Interest::READABLE) {
            return self.turn_away((id, route_id), client, peer, Reason::Poll(e));
        }
        let Some(route) = self.routes.get_mut(route_id) else {
            return;
        };
        route.live_pipes += 1;
        let deadline = route.config.proxy_timeout.map(|timeout| self.now + timeout);
        self.awaiting.clients.insert(Awaiting {
            id,
            route: route_id,
            stream: Some(client),
            peer,
            listener,
            read_closed: false,
            inspect,
            deadline,
        });
        self.observers.metrics.awaiting_proxy_header.add(1);
        if let Some(deadline) = deadline {
            self.timers.push(deadline, Timer::ProxyHeader { key, id });
        }
        debug!("pipe {id}: accepted {peer}; awaiting its PROXY header");
    }

    /// The client's socket is readable (or closed, or failed): its header
    /// may be complete now.
    pub(super) fn on_awaiting_event(&mut self, key: usize, event: &Event) {
        let Some(entry) = self.awaiting.clients.get_mut(key) else {
            return;
        };
        entry.read_closed |= event.is_read_closed();
        self.read_awaiting(key);
    }

    /// Reads what the client sent so far: its header may be complete.
    pub(super) fn read_awaiting(&mut self, key: usize) {
        let Some(entry) = self.awaiting.clients.get_mut(key) else {
            return;
        };
        let Some(stream) = &entry.stream else {
            return;
        };
        let progress = match read_header(stream) {
            Progress::Pending if entry.read_closed => {
                Progress::Failed("the client closed before completing it".into())
            }
            progress => progress,
        };
        match progress {
            Progress::Pending => {}
            Progress::Failed(why) => self.leave_awaiting(key, Err(Refusal::ProxyHeader(why))),
            Progress::Complete(header) => self.leave_awaiting(key, Ok(header)),
        }
    }

    /// The client's `proxy-timeout` ran out, unless it has left already.
    pub(super) fn on_proxy_header_timer(&mut self, key: usize, id: u64) {
        let waiting = self
            .awaiting
            .clients
            .get(key)
            .is_some_and(|entry| entry.id == id && entry.stream.is_some());
        if waiting {
            self.leave_awaiting(key, Err(Refusal::ProxyTimeout));
        }
    }

    /// Turns away every waiting client for which `which` holds (of a
    /// removed route at its drain deadline, or all at a shutdown: none has
    /// had a byte forwarded yet).
    pub(super) fn refuse_awaiting(&mut self, which: impl Fn(RouteId) -> bool) {
        let keys: Vec<usize> = self
            .awaiting
            .clients
            .iter()
            .filter(|(_, entry)| entry.stream.is_some() && which(entry.route))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.leave_awaiting(key, Err(Refusal::Gone));
        }
    }

    /// The client leaves the table: with its header, to be admitted by its
    /// real address and become a pipe; or turned away.
    fn leave_awaiting(&mut self, key: usize, outcome: Result<Header, Refusal>) {
        let Some(entry) = self.awaiting.clients.get_mut(key) else {
            return;
        };
        let Some(mut stream) = entry.stream.take() else {
            return;
        };
        let (id, route_id, peer, listener) = (entry.id, entry.route, entry.peer, entry.listener);
        let inspect = entry.inspect;
        self.awaiting.left.push(key);
        self.observers.metrics.awaiting_proxy_header.sub(1);
        // Its pipe, if it gets one, registers it afresh under its own token.
        let _ = self.poll.registry().deregister(&mut stream);
        let live = self.routes.get(route_id).filter(|route| !route.retired);
        let outcome = match (outcome, live) {
            (Ok(_), None) => Err(Refusal::Gone),
            (outcome, _) => outcome,
        };
        match outcome {
            Ok(header) => {
                if let Some(route) = self.routes.get_mut(route_id) {
                    // The pipe counts from here, as if just accepted.
                    route.live_pipes -= 1;
                }
                let (client, local) = match header.addresses {
                    Some((source, destination)) => (source, destination),
                    // LOCAL (a balancer's health check), UNKNOWN, UNSPEC or
                    // UNIX: the connection's own addresses stand.
                    None => (peer, stream.local_addr().unwrap_or(listener)),
                };
                debug!(
                    "pipe {id}: {} header from {peer}: client {client}, to {local}",
                    header.version
                );
                match inspect {
                    Some(key) => self.inspect((key, route_id), id, stream, (client, local), true),
                    None => self.admit(route_id, id, stream, (client, local), None),
                }
            }
            Err(refusal) => {
                self.turn_away((id, route_id), stream, peer, Reason::Refused(refusal));
                self.route_lost_pipe(route_id);
            }
        }
    }
}

/// Looks at what the client has sent so far, and once it holds a complete
/// header, consumes exactly that header.
fn read_header(stream: &TcpStream) -> Progress {
    let mut buf = [0u8; MAX_HEADER];
    let received = loop {
        match stream.peek(&mut buf) {
            Ok(0) => return Progress::Failed("the client closed before sending it".into()),
            Ok(n) => break n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Progress::Failed(format!("the client's side failed: {e}")),
        }
    };
    let (header, len) = match proxy_protocol::parse(&buf[..received]) {
        Err(malformed) => return Progress::Failed(malformed.to_string()),
        Ok(Parsed::Incomplete { total: Some(total) }) if total > MAX_HEADER => {
            return Progress::Failed(format!(
                "v2 header of {total} bytes; at most {MAX_HEADER} are accepted"
            ))
        }
        Ok(Parsed::Incomplete { .. }) => return Progress::Pending,
        Ok(Parsed::Complete { header, len }) => (header, len),
    };
    // The bytes are in the socket's receive queue already: this read takes
    // them all, and nothing after them.
    let mut consumed = 0;
    while consumed < len {
        match (&*stream).read(&mut buf[consumed..len]) {
            Ok(0) => break,
            Ok(n) => consumed += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Progress::Failed(format!("the client's side failed: {e}")),
        }
    }
    if consumed < len {
        return Progress::Failed("the header vanished from the socket".into());
    }
    Progress::Complete(header)
}
