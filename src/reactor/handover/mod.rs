//! Handing this worker's live connections to another process (a live
//! upgrade), and taking them over from one: the reactor's side of
//! [`crate::handover`].
//!
//! The old process [`export`](Reactor::export)s every connection as a
//! parcel without disturbing it, and stops polling until the verdict. If
//! the new process confirms, [`release_exported`](Reactor::release_exported)
//! lets each one go without a shutdown, a linger or a reset (closing a
//! copy of a descriptor another process holds sends nothing), without a
//! hook or an access-log line saying it closed (it lives on), and the
//! worker stops. If not, [`resume_after_failed_handover`]
//! (Reactor::resume_after_failed_handover) carries on as if nothing
//! happened. The new process [`adopt`](Reactor::adopt)s the bundle (in
//! `adopt`).

mod adopt;
pub(crate) use adopt::TakenIn;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use log::info;

use super::{plural, Reactor, Run};
use crate::handover::{AwaitingRecord, Bundle, InspectingRecord, Record};
use crate::pipe::Names;

impl Reactor {
    /// Every connection of this worker as parcels, with the reactor's own
    /// descriptors (still owned by it: `SCM_RIGHTS` sends copies): pipes in
    /// every stage, clients awaiting a PROXY header or being inspected,
    /// idle pooled connections; and the upstream record (target health).
    /// Closes, shuts down, deregisters and counts nothing. A pipe already
    /// ending this turn is not handed over: it ends here, as it would have.
    pub(crate) fn export(&mut self) -> Bundle<RawFd> {
        let now = Instant::now();
        let mut parcels = Vec::with_capacity(self.pipes.len());
        for (_, pipe) in self.pipes.iter().filter(|(_, pipe)| !pipe.closing) {
            let route = pipe
                .route()
                .and_then(|id| self.routes.get(id))
                .filter(|route| !route.retired);
            let names = Names {
                route: route.map(|route| route.name().to_string()),
                target: pipe.target().and_then(|t| self.upstreams.name_of(t)),
                tried: (pipe.tried().iter())
                    .filter_map(|&t| self.upstreams.name_of(t))
                    .collect(),
                server_name: route
                    .and_then(|route| route.server_names.get(&pipe.id))
                    .map(|name| name.to_string()),
            };
            parcels.push(pipe.export(names, now, &self.kernel_pipes));
        }
        let route_name = |id| self.routes.get(id).map_or("", |r| r.name()).to_string();
        let left = |deadline: Option<Instant>| deadline.map(|d| d.saturating_duration_since(now));
        for (_, client) in self.awaiting.clients.iter() {
            let Some(stream) = &client.stream else {
                continue;
            };
            let record = AwaitingRecord {
                id: client.id,
                route: route_name(client.route),
                fd: 0,
                peer: client.peer,
                listener: client.listener,
                read_closed: client.read_closed,
                inspect: client.inspect.is_some(),
                timeout_in: left(client.deadline),
            };
            parcels.push(crate::handover::Parcel {
                record: Record::Awaiting(record).encode(),
                fds: vec![stream.as_raw_fd()],
            });
        }
        for (_, client) in self.inspecting.clients.iter() {
            let Some(stream) = &client.stream else {
                continue;
            };
            // A listener a reload closed leaves its clients nowhere to go:
            // an address nothing listens on says so to the receiver.
            let listener = self.routes.listeners.get(client.listener);
            let record = InspectingRecord {
                id: client.id,
                route: route_name(client.route),
                fd: 0,
                listener: listener.map_or(([0, 0, 0, 0], 0).into(), |l| l.local),
                peer: client.peer,
                local: client.local,
                local_from_header: client.local_from_header,
                read_closed: client.read_closed,
                timeout_in: left(client.deadline),
            };
            parcels.push(crate::handover::Parcel {
                record: Record::Inspecting(record).encode(),
                fds: vec![stream.as_raw_fd()],
            });
        }
        parcels.extend(self.upstreams.export_pooled(now));
        Bundle {
            parcels,
            upstream: self.upstreams.export_health(now),
        }
    }

    /// The new process confirmed: lets every exported connection go,
    /// deregistered and closed without a shutdown, a linger or a reset,
    /// and without telling hooks or the access log it closed (one summary
    /// line instead); the live-connection gauges drop by as much. Pipes
    /// that were already ending end as they would have. Then the worker
    /// stops: its loop ends after this turn, accepting nothing more.
    /// Listeners are the transport's to hand over and close.
    pub(crate) fn release_exported(&mut self) {
        self.run = Run::Exiting;
        let keys: Vec<usize> = (self.pipes.iter())
            .filter(|(_, pipe)| !pipe.closing)
            .map(|(key, _)| key)
            .collect();
        for &key in &keys {
            self.hand_over_pipe(key);
        }
        let awaiting: Vec<usize> = (self.awaiting.clients.iter())
            .filter(|(_, client)| client.stream.is_some())
            .map(|(key, _)| key)
            .collect();
        for &key in &awaiting {
            self.hand_over_awaiting(key);
        }
        let inspecting: Vec<usize> = (self.inspecting.clients.iter())
            .filter(|(_, client)| client.stream.is_some())
            .map(|(key, _)| key)
            .collect();
        for &key in &inspecting {
            self.hand_over_inspecting(key);
        }
        self.upstreams.hand_over_pooled(self.poll.registry());
        let count = plural(keys.len(), "pipe");
        let waiting = plural(awaiting.len() + inspecting.len(), "client");
        if self.share.is_leader() {
            info!("handed over {count} and {waiting} not yet piped to the new process");
        } else {
            log::debug!(
                "worker {}: handed over {count} and {waiting} not yet piped",
                self.share.index + 1
            );
        }
        self.free_closed_pipes();
    }

    /// The handover failed: carries on as if nothing happened. Every
    /// registration is as it was, so edges that came meanwhile are still
    /// queued; to be safe, every pipe is driven once (a read and a write
    /// tried on each socket, a connect under way asked of its socket), and
    /// every client awaiting a header or being inspected looked at again.
    pub(crate) fn resume_after_failed_handover(&mut self) {
        self.now = Instant::now();
        let keys: Vec<usize> = (self.pipes.iter())
            .filter(|(_, pipe)| !pipe.closing)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            if let Some(pipe) = self.pipes.get_mut(key) {
                pipe.assume_ready();
            }
            self.drive(key);
        }
        self.look_at_waiting_clients(
            self.awaiting.clients.iter().map(|(key, _)| key).collect(),
            self.inspecting.clients.iter().map(|(key, _)| key).collect(),
        );
    }

    /// Reads (peeks) what each of these clients sent so far, as an event
    /// of theirs would.
    fn look_at_waiting_clients(&mut self, awaiting: Vec<usize>, inspecting: Vec<usize>) {
        for key in awaiting {
            self.read_awaiting(key);
        }
        for slot in inspecting {
            let Some(listener) = self.inspecting.clients.get(slot).map(|c| c.listener) else {
                continue;
            };
            let needs_hello = self.needs_hello(listener);
            self.peek_inspecting(slot, needs_hello);
        }
    }

    /// Pipe `key` leaves, another process having it: uncounted as if it
    /// ended, but no observer hears of it and nothing is sent on its
    /// sockets.
    fn hand_over_pipe(&mut self, key: usize) {
        let Some(pipe) = self.pipes.try_remove(key) else {
            return;
        };
        if let Some(target) = pipe.target() {
            self.upstreams.pipe_left(target, pipe.is_open(), self.now);
        }
        if let Some(route) = pipe.route() {
            if let Some(counted) = self.routes.get_mut(route) {
                counted.per_source.remove(pipe.peer.ip());
                counted.server_names.remove(&pipe.id);
            }
            self.route_lost_pipe(route);
        }
        let metrics = &self.observers.metrics;
        pipe.hand_over(
            self.poll.registry(),
            &mut self.rings,
            &mut self.kernel_pipes,
            metrics,
        );
        metrics.live_pipes.sub(1);
        if self.share.has_peers() {
            self.count_freed(1);
        }
    }

    /// A client awaiting its header leaves, another process having it.
    fn hand_over_awaiting(&mut self, key: usize) {
        let Some(client) = self.awaiting.clients.get_mut(key) else {
            return;
        };
        let Some(mut stream) = client.stream.take() else {
            return;
        };
        let route = client.route;
        let _ = self.poll.registry().deregister(&mut stream);
        drop(stream);
        self.awaiting.left.push(key);
        self.observers.metrics.awaiting_proxy_header.sub(1);
        self.route_lost_pipe(route);
    }

    /// A client being inspected leaves, another process having it.
    fn hand_over_inspecting(&mut self, slot: usize) {
        let Some(client) = self.inspecting.clients.get_mut(slot) else {
            return;
        };
        let Some(mut stream) = client.stream.take() else {
            return;
        };
        client.peeked = Box::default();
        let route = client.route;
        let _ = self.poll.registry().deregister(&mut stream);
        drop(stream);
        self.inspecting.left.push(slot);
        self.route_lost_pipe(route);
    }
}
