//! Clients of a shared address (routes with `match` tables) until their
//! first bytes choose their route: the TLS ClientHello's server name and
//! ALPN, or the protocol they speak.
//!
//! Like a client awaiting its PROXY header (after which it comes here, if
//! its route wants one), such a client is not a pipe: nothing is dialed,
//! it waits in a table of its own with a token range of its own, and
//! counts against the connection limits under its listener's default
//! route. Its bytes are read with `MSG_PEEK` into a buffer of its own,
//! freed when it leaves, and parsed afresh only when the peek grew; none
//! is consumed, so the target gets every byte the client sent, the hello
//! included, exactly once.
//!
//! A client whose bytes match no route, are malformed, or never come
//! within `inspect-timeout`, goes to the default route; without one it is
//! turned away.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::event::Event;
use mio::net::TcpStream;
use mio::Interest;

use super::routes::RouteId;
use super::tokens::inspecting_token;
use super::{Reactor, Timer};
use crate::config::{self, By, Seen};
use crate::inspect::{self, Inspected, Malformed, Protocol, Sniffed};
use crate::metrics::INSPECT_FAILURE_LABELS;
use crate::pipe::{Reason, Refusal};

/// The most bytes looked at: a whole 16 KiB hello and its record headers.
pub(super) const PEEK_BYTES: usize = inspect::DEFAULT_MAX_BYTES;

/// Slots in [`INSPECT_FAILURE_LABELS`] that are no [`Malformed`] kind of
/// the parser's own.
const TRUNCATED: usize = 5;
const TIMEOUT: usize = 6;

/// A client whose first bytes are awaited.
pub(super) struct Inspecting {
    pub(super) id: u64,
    /// The route it counts under meanwhile: its listener's.
    pub(super) route: RouteId,
    /// The listener whose routes it chooses from.
    pub(super) listener: usize,
    /// `None` once it has left the table, until its slot is freed at the
    /// end of the turn.
    pub(super) stream: Option<TcpStream>,
    /// Its real address (the PROXY header's, on an `accept-proxy` route)
    /// and the address it reached: the header's, or else the listener's
    /// (which the socket makes concrete if a PROXY header is to be sent).
    pub(super) peer: SocketAddr,
    pub(super) local: SocketAddr,
    pub(super) local_from_header: bool,
    /// What the last peek saw.
    pub(super) peeked: Box<[u8]>,
    pub(super) peeked_len: usize,
    pub(super) read_closed: bool,
    /// When its `inspect-timeout` runs out (for a live upgrade's record).
    pub(super) deadline: Option<Instant>,
}

/// The clients being inspected, and the slots to free at the end of this
/// turn.
pub(super) type Table = super::waiting::Waiting<Inspecting>;

/// A route and what chose it.
type Chosen = (RouteId, By);

/// What the bytes so far say.
enum Verdict {
    Pending,
    /// Enough to choose: the protocol and, for TLS, the hello.
    Seen(Protocol, Option<inspect::ClientHello>),
    /// Nothing to choose by; the slot in [`INSPECT_FAILURE_LABELS`].
    Failed(usize),
}

impl Reactor {
    /// Client `id`, accepted on shared listener `key` and counted under its
    /// route `route_id`, waits for its first bytes.
    pub(super) fn inspect(
        &mut self,
        (key, route_id): (usize, RouteId),
        id: u64,
        mut client: TcpStream,
        (peer, local): (SocketAddr, SocketAddr),
        local_from_header: bool,
    ) {
        let slot = self.inspecting.clients.vacant_key();
        let registry = self.poll.registry();
        if let Err(e) = registry.register(&mut client, inspecting_token(slot), Interest::READABLE) {
            return self.turn_away((id, route_id), client, peer, Reason::Poll(e));
        }
        let timeout = self
            .routes
            .listeners
            .get(key)
            .and_then(|l| l.inspect)
            .flatten();
        let Some(route) = self.routes.get_mut(route_id) else {
            return;
        };
        route.live_pipes += 1;
        let deadline = timeout.map(|timeout| self.now + timeout);
        self.inspecting.clients.insert(Inspecting {
            id,
            route: route_id,
            listener: key,
            stream: Some(client),
            peer,
            local,
            local_from_header,
            peeked: vec![0; PEEK_BYTES].into_boxed_slice(),
            peeked_len: 0,
            read_closed: false,
            deadline,
        });
        if let Some(deadline) = deadline {
            self.timers.push(deadline, Timer::Inspect { key: slot, id });
        }
        debug!("pipe {id}: accepted {peer}; reading its first bytes to choose its route");
    }

    /// The client's socket is readable (or closed): its bytes may choose
    /// its route now.
    pub(super) fn on_inspecting_event(&mut self, slot: usize, event: &Event) {
        let needs_hello = match self.inspecting.clients.get(slot) {
            Some(entry) => self.needs_hello(entry.listener),
            None => return,
        };
        let Some(entry) = self.inspecting.clients.get_mut(slot) else {
            return;
        };
        entry.read_closed |= event.is_read_closed();
        self.peek_inspecting(slot, needs_hello);
    }

    /// Looks at what the client sent so far: it may choose its route now.
    pub(super) fn peek_inspecting(&mut self, slot: usize, needs_hello: bool) {
        let Some(entry) = self.inspecting.clients.get_mut(slot) else {
            return;
        };
        let Some(stream) = &entry.stream else {
            return;
        };
        let received = loop {
            match stream.peek(&mut entry.peeked) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // No more will come: what came is all there is to go by
                // (the pipe meets the error itself).
                Err(_) => {
                    entry.read_closed = true;
                    break entry.peeked_len;
                }
            }
        };
        // An empty peek is the end of the stream.
        entry.read_closed |= received == 0;
        if received <= entry.peeked_len && !entry.read_closed {
            return;
        }
        entry.peeked_len = received;
        let verdict = match verdict(&entry.peeked[..received], needs_hello) {
            Verdict::Pending if entry.read_closed => Verdict::Failed(TRUNCATED),
            verdict => verdict,
        };
        match verdict {
            Verdict::Pending => {}
            verdict => self.leave_inspecting(slot, verdict),
        }
    }

    /// The client's `inspect-timeout` ran out, unless it has left already.
    pub(super) fn on_inspect_timer(&mut self, slot: usize, id: u64) {
        let waiting = self
            .inspecting
            .clients
            .get(slot)
            .is_some_and(|entry| entry.id == id && entry.stream.is_some());
        if waiting {
            self.leave_inspecting(slot, Verdict::Failed(TIMEOUT));
        }
    }

    /// Turns away every client being inspected for which `which` holds
    /// (of a removed route at its drain deadline, or all at a shutdown).
    pub(super) fn refuse_inspecting(&mut self, which: impl Fn(RouteId) -> bool) {
        let slots: Vec<usize> = self
            .inspecting
            .clients
            .iter()
            .filter(|(_, entry)| entry.stream.is_some() && which(entry.route))
            .map(|(slot, _)| slot)
            .collect();
        for slot in slots {
            self.leave(slot, Err(Refusal::Gone));
        }
    }

    /// Whether some route of listener `key` names server names or ALPN
    /// protocols: a TLS client's whole hello is needed, not its first byte.
    pub(super) fn needs_hello(&self, key: usize) -> bool {
        let Some(listener) = self.routes.listeners.get(key) else {
            return false;
        };
        listener.routes.iter().any(|&id| {
            self.routes
                .get(id)
                .is_some_and(|route| route.config.matching.needs_hello())
        })
    }

    /// The client leaves with what its bytes said: for the route they
    /// choose, or the default route, or turned away without one.
    fn leave_inspecting(&mut self, slot: usize, verdict: Verdict) {
        let Some(entry) = self.inspecting.clients.get(slot) else {
            return;
        };
        let (key, owner) = (entry.listener, entry.route);
        // A reload may have closed the listener (and its key gone to
        // another): its routes are no longer this client's to choose from.
        let serves = |listener: &super::routes::Listener| listener.routes.contains(&owner);
        if !self.routes.listeners.get(key).is_some_and(serves) {
            return self.leave(slot, Err(Refusal::Gone));
        }
        let (chosen, server_name) = match verdict {
            Verdict::Seen(protocol, hello) => {
                let server_name = hello.as_ref().and_then(|h| h.server_name.as_deref());
                let seen = Seen {
                    protocol: Some(config_protocol(protocol)),
                    server_name,
                    alpn: hello.as_ref().map_or(&[], |h| &h.alpn[..]),
                };
                let chosen = self.choose(key, &seen);
                (chosen, server_name.map(Box::from))
            }
            Verdict::Failed(failure) => {
                if let Some(route) = self.routes.get_mut(owner) {
                    route.stats.inspect_failures[failure] += 1;
                }
                let chosen = self.default_of(key).map(|id| (id, By::Default));
                let outcome = chosen.ok_or_else(|| {
                    Refusal::NoRoute(format!(
                        "no default route and its first bytes said nothing: {}",
                        INSPECT_FAILURE_LABELS[failure]
                    ))
                });
                return self.leave(slot, outcome.map(|c| (c, None)));
            }
            Verdict::Pending => return,
        };
        let outcome = chosen
            .ok_or_else(|| Refusal::NoRoute("no route matches its first bytes".into()))
            .map(|chosen| (chosen, server_name));
        self.leave(slot, outcome);
    }

    /// The most specific route of listener `key` that `seen` matches (the
    /// first in config order of equals), else its default.
    fn choose(&self, key: usize, seen: &Seen<'_>) -> Option<Chosen> {
        let listener = self.routes.listeners.get(key)?;
        let mut best: Option<(config::Rank, RouteId, By)> = None;
        for &id in &listener.routes {
            let Some(route) = self.routes.get(id).filter(|route| !route.retired) else {
                continue;
            };
            if route.config.matching.is_empty() {
                continue;
            }
            if let Some((rank, by)) = route.config.matching.matches(seen) {
                if best.as_ref().map_or(true, |(top, ..)| rank > *top) {
                    best = Some((rank, id, by));
                }
            }
        }
        match best {
            Some((_, id, by)) => Some((id, by)),
            None => self.default_of(key).map(|id| (id, By::Default)),
        }
    }

    /// The route of listener `key` without a `match` table, if any.
    fn default_of(&self, key: usize) -> Option<RouteId> {
        let listener = self.routes.listeners.get(key)?;
        listener.routes.iter().copied().find(|&id| {
            self.routes
                .get(id)
                .is_some_and(|route| !route.retired && route.config.matching.is_empty())
        })
    }

    /// Out of the table: admitted to the chosen route, or turned away.
    fn leave(&mut self, slot: usize, outcome: Result<(Chosen, Option<Box<str>>), Refusal>) {
        let Some(entry) = self.inspecting.clients.get_mut(slot) else {
            return;
        };
        let Some(mut stream) = entry.stream.take() else {
            return;
        };
        let (id, owner, peer, mut local) = (entry.id, entry.route, entry.peer, entry.local);
        let local_from_header = entry.local_from_header;
        // The buffer goes now, not with the slot at the end of the turn.
        entry.peeked = Box::default();
        self.inspecting.left.push(slot);
        // Its pipe, if it gets one, registers it afresh under its own token.
        let _ = self.poll.registry().deregister(&mut stream);
        match outcome {
            Ok(((route_id, by), server_name)) => {
                if route_id != owner {
                    // Accepted under its listener's route; it is the
                    // chosen route's client.
                    if let Some(route) = self.routes.get_mut(owner) {
                        route.stats.accepted = route.stats.accepted.saturating_sub(1);
                    }
                    if let Some(route) = self.routes.get_mut(route_id) {
                        route.stats.accepted += 1;
                    }
                }
                if let Some(route) = self.routes.get_mut(route_id) {
                    route.stats.matched[by.slot()] += 1;
                    // A wildcard listener's address is not concrete; a
                    // syscall only for a header that says it.
                    if route.config.send_proxy.is_some() && !local_from_header {
                        local = stream.local_addr().unwrap_or(local);
                    }
                }
                debug!(
                    "pipe {id}: first bytes of {peer} chose route by {}{}",
                    by.label(),
                    server_name
                        .as_deref()
                        .map(|name| format!(" (server name {name})"))
                        .unwrap_or_default()
                );
                self.admit(route_id, id, stream, (peer, local), server_name);
            }
            Err(refusal) => {
                self.turn_away((id, owner), stream, peer, Reason::Refused(refusal));
            }
        }
        // Last, so that a retired route is not freed under a client it
        // has just been given.
        self.route_lost_pipe(owner);
    }
}

/// What `received`, everything the client has sent so far, says.
fn verdict(received: &[u8], needs_hello: bool) -> Verdict {
    let protocol = match inspect::sniff(received) {
        Sniffed::NeedMore => return Verdict::Pending,
        Sniffed::Is(protocol) => protocol,
    };
    if protocol != Protocol::Tls || !needs_hello {
        return Verdict::Seen(protocol, None);
    }
    match inspect::parse_client_hello(received, PEEK_BYTES) {
        Inspected::NeedMore => Verdict::Pending,
        // A TLS record of another kind first: TLS, with nothing to read.
        Inspected::NotTls => Verdict::Seen(protocol, None),
        Inspected::Hello(hello) => Verdict::Seen(protocol, Some(hello)),
        Inspected::Malformed(kind) => Verdict::Failed(failure_slot(kind)),
    }
}

fn failure_slot(kind: Malformed) -> usize {
    let label = kind.label();
    INSPECT_FAILURE_LABELS
        .iter()
        .position(|&l| l == label)
        .unwrap_or(TRUNCATED)
}

fn config_protocol(protocol: Protocol) -> config::Protocol {
    match protocol {
        Protocol::Tls => config::Protocol::Tls,
        Protocol::Ssh => config::Protocol::Ssh,
        Protocol::Http => config::Protocol::Http,
        Protocol::Other => config::Protocol::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_malformed_kind_has_its_own_failure_label() {
        for kind in Malformed::ALL {
            assert_eq!(INSPECT_FAILURE_LABELS[failure_slot(kind)], kind.label());
        }
        assert_eq!(INSPECT_FAILURE_LABELS[TRUNCATED], "truncated");
        assert_eq!(INSPECT_FAILURE_LABELS[TIMEOUT], "timeout");
    }
}
