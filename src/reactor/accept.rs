//! Accepting clients: on every listener until its backlog is empty, within
//! the per-turn cap, the connection limits (the process's and each route's),
//! and the descriptors the process has.

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::Arc;

use log::{debug, error, info, warn};
use mio::net::TcpStream;
use mio::Interest;

use super::admission;
use super::observers::seen;
use super::routes::RouteId;
use super::tokens::listener_token;
use super::{plural, Reactor, Timer, ACCEPTS_PER_TURN, ACCEPT_RETRY};
use crate::dial::Dial;
use crate::net;
use crate::pipe::{Pipe, Reason};
use crate::proxy_protocol;
use crate::text::format_elapsed;
use crate::throttle::Episode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
    ListenerEvent,
    /// The last turn stopped at the per-turn cap.
    Continue,
    Retry,
    PipeFreed,
    /// A reload may have moved the limits.
    Reload,
}

/// Accepting across all listeners.
#[derive(Default)]
pub(super) struct State {
    /// Some listener stopped at the per-turn cap with connections possibly
    /// still queued.
    pub(super) more_pending: bool,
    /// Accepting fails for lack of descriptors or memory.
    backoff: Episode,
    retry_armed: bool,
    /// Failed accepts in this shortage.
    failed_accepts: u64,
    /// The process-wide limit keeps clients waiting.
    at_limit: Episode,
}

/// Why a listener may not take a client now.
enum Blocked {
    /// Every listener waits: the process is at its limit.
    Process,
    /// This route's listeners wait.
    Route,
}

impl Reactor {
    /// Accepts on listener `key` until its backlog is empty or it must stop.
    pub(super) fn accept_on(&mut self, key: usize, trigger: Trigger) {
        if self.accepting.backoff.is_on() && trigger == Trigger::ListenerEvent {
            // Only the retry timer or a freed pipe may try again, or we spin.
            if let Some(listener) = self.routes.listeners.get_mut(key) {
                listener.backlog_pending = true;
            }
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            if self.shutting_down() {
                return;
            }
            let Some(listener) = self.routes.listeners.get(key) else {
                return;
            };
            let route_id = listener.route;
            let Some(route) = self.routes.get(route_id) else {
                return;
            };
            let group = route.targets;
            match self.blocked(route_id) {
                Some(Blocked::Process) => return self.pause_all(),
                Some(Blocked::Route) => return self.pause_route(route_id),
                None => {}
            }
            if !self.resume_listener(key) {
                return;
            }
            if let Err(e) = self.upstreams.reserve_socket(group) {
                return self.back_off_accepting(key, e);
            }
            let Some(listener) = self.routes.listeners.get_mut(key) else {
                return;
            };
            let local = listener.local;
            match listener.socket.accept() {
                Ok((client, peer)) => self.open_pipe((key, route_id), client, (peer, local)),
                Err(e) => {
                    if e.kind() == ErrorKind::WouldBlock {
                        listener.backlog_pending = false;
                        self.backlog_drained(route_id);
                        return;
                    }
                    if net::is_transient_accept_error(&e) {
                        debug!("accept: {e}; going on");
                        continue;
                    }
                    return self.back_off_accepting(key, e);
                }
            }
        }
        if let Some(listener) = self.routes.listeners.get_mut(key) {
            listener.backlog_pending = true;
        }
        self.accepting.more_pending = true;
    }

    /// Goes on with the listeners that stopped at the per-turn cap.
    pub(super) fn accept_pending(&mut self) {
        self.accepting.more_pending = false;
        for key in self.routes.listener_keys() {
            if self
                .routes
                .listeners
                .get(key)
                .is_some_and(|l| l.backlog_pending && l.registered)
            {
                self.accept_on(key, Trigger::Continue);
            }
        }
    }

    /// Serves every listener that may have clients waiting: paused at a
    /// limit, backing off, or stopped at the cap.
    pub(super) fn accept_waiting(&mut self, trigger: Trigger) {
        if self.shutting_down() {
            return;
        }
        for key in self.routes.listener_keys() {
            let waiting = self
                .routes
                .listeners
                .get(key)
                .is_some_and(|l| !l.registered || l.backlog_pending);
            if waiting {
                self.accept_on(key, trigger);
            }
        }
    }

    pub(super) fn on_accept_retry(&mut self) {
        self.accepting.retry_armed = false;
        if self.accepting.backoff.is_on() {
            self.accept_waiting(Trigger::Retry);
        }
    }

    /// A pipe is counted against the limits from accept until it is freed,
    /// and so is a client awaiting its PROXY header.
    fn blocked(&self, route: RouteId) -> Option<Blocked> {
        // Several workers count their pipes together against this one (a
        // worker adds the clients awaiting a header in its own table); a
        // route's own limit they split.
        let not_pipes_yet = self.awaiting.len() + self.inspecting.len();
        if self.process_pipes() + not_pipes_yet >= self.limits.max_connections {
            return Some(Blocked::Process);
        }
        let share = self.share;
        let at_route_limit = self.routes.get(route).is_some_and(|r| r.is_at_limit(share));
        at_route_limit.then_some(Blocked::Route)
    }

    fn pause_all(&mut self) {
        for key in self.routes.listener_keys() {
            self.pause_listener(key);
        }
        if !self.accepting.at_limit.is_on() && self.first_at_limit() {
            self.observers.metrics.connection_limit_reached_total.add(1);
        }
        if let Some(held_back) = self.accepting.at_limit.start(self.now) {
            info!(
                "connection limit of {} reached; new clients wait in the backlog{held_back}",
                self.limits.max_connections
            );
        }
    }

    fn pause_route(&mut self, id: RouteId) {
        let Some(route) = self.routes.get(id) else {
            return;
        };
        for key in route.listeners.clone() {
            self.pause_listener(key);
        }
        let now = self.now;
        if let Some(route) = self.routes.get_mut(id) {
            if !route.at_limit.is_on() {
                route.stats.limit_reached += 1;
            }
            if let Some(held_back) = route.at_limit.start(now) {
                info!(
                    "route {}: connection limit of {} reached; new clients wait in the backlog{held_back}",
                    route.name(),
                    route.live_pipes
                );
            }
        }
    }

    fn pause_listener(&mut self, key: usize) {
        let registry = self.poll.registry();
        let Some(listener) = self.routes.listeners.get_mut(key) else {
            return;
        };
        // Clients may wait in its backlog, with no event to come for them.
        listener.backlog_pending = true;
        if !listener.registered {
            return;
        }
        if let Err(e) = registry.deregister(&mut listener.socket) {
            error!("cannot pause the listener on {}: {e}", listener.local);
            return;
        }
        listener.registered = false;
    }

    /// Returns false if the listener cannot be registered again.
    fn resume_listener(&mut self, key: usize) -> bool {
        let registry = self.poll.registry();
        let Some(listener) = self.routes.listeners.get_mut(key) else {
            return false;
        };
        if listener.registered {
            return true;
        }
        match registry.register(
            &mut listener.socket,
            listener_token(key),
            Interest::READABLE,
        ) {
            Ok(()) => {
                listener.registered = true;
                debug!("accepting on {} again", listener.local);
                true
            }
            Err(e) => {
                self.back_off_accepting(key, e);
                false
            }
        }
    }

    /// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or any
    /// other error that is not about one connection: never exit, never spin.
    /// Retry on a short timer and whenever a pipe closes; say so once per burst.
    fn back_off_accepting(&mut self, key: usize, e: io::Error) {
        if let Some(listener) = self.routes.listeners.get_mut(key) {
            listener.backlog_pending = true;
        }
        let state = &mut self.accepting;
        if !state.backoff.is_on() {
            state.failed_accepts = 0;
        }
        state.failed_accepts += 1;
        if !state.backoff.is_on() {
            self.observers.metrics.accept_backoffs_total.add(1);
        }
        if let Some(held_back) = state.backoff.start(self.now) {
            warn!(
                "cannot accept: {e}; retrying every {} and whenever a pipe closes ({} live){held_back}",
                format_elapsed(ACCEPT_RETRY),
                plural(self.pipes.len(), "pipe")
            );
        }
        if !state.retry_armed {
            state.retry_armed = true;
            self.timers
                .push(self.now + ACCEPT_RETRY, Timer::AcceptRetry);
        }
    }

    /// A listener's backlog is empty. A shortage or a stretch at a limit is
    /// over only when every waiting client has been taken, not when one got
    /// through, so each is logged once however many clients it held back.
    fn backlog_drained(&mut self, route: RouteId) {
        let now = self.now;
        if let Some(route) = self.routes.get_mut(route) {
            if let Some(lasted) = route.at_limit.end(now) {
                info!(
                    "route {}: below its connection limit again after {}",
                    route.name(),
                    format_elapsed(lasted)
                );
            }
        }
        // Clients held back by their own route's limit wait for that route,
        // not for the process: they must not keep a shortage (and with it,
        // accepting by the retry timer only) going for the other routes.
        let others_waiting = self.routes.listeners.iter().any(|(_, listener)| {
            listener.backlog_pending
                && !matches!(self.blocked(listener.route), Some(Blocked::Route))
        });
        if others_waiting {
            return;
        }
        let state = &mut self.accepting;
        if let Some(lasted) = state.backoff.end(now) {
            info!(
                "accepting again after {} ({} failed)",
                format_elapsed(lasted),
                plural(state.failed_accepts as usize, "attempt")
            );
        }
        if let Some(lasted) = state.at_limit.end(now) {
            info!(
                "below the connection limit again after {}",
                format_elapsed(lasted)
            );
            if self.share.has_peers() {
                self.left_limit();
            }
        }
    }

    /// A client was accepted on listener `key`, at `listener`: it awaits
    /// its PROXY header if its route wants one, then its first bytes are
    /// inspected if the listener chooses routes by them, else it is
    /// admitted by its peer address.
    fn open_pipe(
        &mut self,
        (key, route_id): (usize, RouteId),
        client: TcpStream,
        (peer, listener): (SocketAddr, SocketAddr),
    ) {
        let id = self.next_pipe_id();
        self.observers.accepted(seen!(self), route_id);
        let Some(route) = self.routes.get(route_id) else {
            return;
        };
        let inspects = self
            .routes
            .listeners
            .get(key)
            .is_some_and(|l| l.inspect.is_some());
        let inspect = inspects.then_some(key);
        if route.config.accept_proxy {
            return self.await_proxy_header((route_id, inspect), id, client, (peer, listener));
        }
        if let Some(key) = inspect {
            // The address reached, should the chosen route send a PROXY
            // header, is asked once it is chosen.
            return self.inspect((key, route_id), id, client, (peer, listener), false);
        }
        // The address the client reached, for a PROXY header sent onwards
        // (a wildcard listener's is not concrete); a syscall only then.
        let local = match route.config.send_proxy {
            Some(_) => client.local_addr().unwrap_or(listener),
            None => listener,
        };
        self.admit(route_id, id, client, (peer, local), None);
    }

    /// Client `id` of `route_id`, at `peer` (its real address) and
    /// connected to `local`: checked against the route's source rules and
    /// limits, then joined to a target. `server_name` is what its
    /// ClientHello said, if it was inspected.
    pub(super) fn admit(
        &mut self,
        route_id: RouteId,
        id: u64,
        client: TcpStream,
        (peer, local): (SocketAddr, SocketAddr),
        server_name: Option<Box<str>>,
    ) {
        let Some(route) = self.routes.get_mut(route_id) else {
            return;
        };
        if let Err(refusal) = admission::check(route, peer.ip(), (self.now, self.share)) {
            return self.turn_away((id, route_id), client, peer, Reason::Refused(refusal));
        }
        let mut dial = Dial::new(route.config.max_attempts());
        let dialed = self.upstreams.dial(
            id,
            route.targets,
            peer.ip(),
            &mut dial,
            self.poll.registry(),
            self.now,
        );
        let Some(dialed) = dialed else {
            let reason = Reason::Unreachable {
                attempts: dial.attempts,
            };
            return self.turn_away((id, route_id), client, peer, reason);
        };
        debug!(
            "pipe {id}: accepted {peer}, {} {}",
            if dialed.connected {
                "using a pooled connection to"
            } else {
                "connecting to"
            },
            self.upstreams.label_of(dialed.target)
        );
        route.live_pipes += 1;
        route.per_source.add(peer.ip());
        if let Some(name) = server_name {
            route.server_names.insert(id, name);
        }
        let settings = Arc::clone(&route.settings);
        let send_proxy = route.config.send_proxy;
        let mut pipe = Pipe::new(id, settings, (client, peer), (dialed, dial), self.now);
        if let Some(version) = send_proxy {
            let header = proxy_protocol::encode(version, peer, local);
            pipe.send_proxy_header(&header, &mut self.rings, &self.observers.metrics);
        }
        self.start_pipe(pipe);
    }
}
