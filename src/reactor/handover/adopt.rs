//! Taking over another process's connections: a bundle is read and checked
//! whole before anything is touched, then every connection is registered
//! (no byte read or written yet), and only then is each one driven.
//!
//! Names map onto this config: a pipe keeps its route and target if this
//! config has them (by name), and counts there like any other pipe; a
//! pipe whose route or target this config lacks runs to its end without
//! them, as a pipe of a route a reload removed does (no failover, no
//! route counters). A client awaiting a header or being inspected goes by
//! its route's name, or else the route of the listener it came in on (by
//! address: the same socket, handed over); with neither, it is closed.
//!
//! The embedder's hooks hear of each adopted pipe as of a new one
//! (`pipe_opened`, then `connected` if it is open): this process never
//! told them of it, and they will hear its `pipe_closed` here. The access
//! log and the counters of opened and connected pipes do not: the old
//! process logged and counted its opening; its close is logged here.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use log::{debug, info};
use mio::net::TcpStream;
use mio::Interest;

use super::super::awaiting::Awaiting;
use super::super::inspecting::{Inspecting, PEEK_BYTES};
use super::super::observers::seen;
use super::super::tokens::{awaiting_token, inspecting_token, pipe_tokens};
use super::super::{plural, Reactor, Timer};
use crate::handover::{
    AwaitingRecord, Bundle, HandoverError, InspectingRecord, PipeRecord, PooledRecord, Record,
    StageRecord, UpstreamRecord,
};
use crate::pipe::{check_record, settings_from, Lenders, Pipe, Placed, RouteShare, Verdict};

/// What a bundle's registration took in, for the drive that follows.
#[derive(Default)]
pub(crate) struct TakenIn {
    /// Slab keys and ids of the adopted pipes.
    pipes: Vec<(usize, u64)>,
    awaiting: Vec<usize>,
    inspecting: Vec<usize>,
    pooled: usize,
    /// Clients with nowhere to go here, closed once the handover is over.
    homeless: Vec<TcpStream>,
    /// The highest pipe id adopted.
    max_id: u64,
}

impl TakenIn {
    pub(crate) fn count(&self) -> usize {
        self.pipes.len() + self.awaiting.len() + self.inspecting.len() + self.pooled
    }
}

impl Reactor {
    /// Takes over a bundle another process exported: registers each
    /// connection, then drives each once (a read and a write tried on
    /// every socket, as at accept time: epoll reports only edges that come
    /// after registration). Returns how many connections it adopted. A
    /// record it cannot read, or a connection it cannot register, is an
    /// error for the whole bundle, and then nothing of it was kept or
    /// touched.
    ///
    /// A transport that must not let the new process read a byte before
    /// the old one has let go calls [`take_in`](Reactor::take_in) and
    /// [`start_adopted`](Reactor::start_adopted) apart instead.
    #[cfg(test)]
    pub(crate) fn adopt(&mut self, bundle: Bundle<OwnedFd>) -> Result<usize, HandoverError> {
        let taken = self.take_in(bundle)?;
        Ok(self.start_adopted(taken))
    }

    /// Reads and checks every record of `bundle`, then registers every
    /// connection with poll; no byte is read or written on any of them
    /// yet. On an error, everything taken so far is let go again (its
    /// descriptors closed, which sends nothing while the old process holds
    /// its copies) and nothing else is changed.
    pub(crate) fn take_in(&mut self, bundle: Bundle<OwnedFd>) -> Result<TakenIn, HandoverError> {
        self.now = std::time::Instant::now();
        let upstream = UpstreamRecord::decode(&bundle.upstream)?;
        let mut records = Vec::with_capacity(bundle.parcels.len());
        for parcel in bundle.parcels {
            let record = Record::of_parcel(&parcel)?;
            if let Record::Pipe(pipe) = &record {
                check_record(pipe)?;
            }
            records.push((record, parcel.fds));
        }
        let mut taken = TakenIn::default();
        for (record, fds) in records {
            if let Err(e) = self.take_in_one(record, fds, &mut taken) {
                self.let_go_of(taken);
                return Err(e);
            }
        }
        let routes = &self.routes;
        let group_of = |name: &str| {
            routes
                .active(name)
                .and_then(|id| routes.get(id))
                .map(|r| r.targets)
        };
        self.upstreams.adopt_health(&upstream, group_of, self.now);
        self.keep_ids_apart(taken.max_id);
        Ok(taken)
    }

    /// Drives every connection [`take_in`](Reactor::take_in) registered,
    /// once; tells the hooks of each pipe first. Returns how many
    /// connections were adopted.
    pub(crate) fn start_adopted(&mut self, taken: TakenIn) -> usize {
        self.now = std::time::Instant::now();
        let count = taken.count();
        if !taken.homeless.is_empty() {
            info!(
                "closing {} handed over whose route and listener this config lacks",
                plural(taken.homeless.len(), "client")
            );
        }
        drop(taken.homeless);
        for &(key, id) in &taken.pipes {
            let Some(pipe) = self.pipes.get(key).filter(|p| p.id == id) else {
                continue;
            };
            let mut verdict = Verdict::Wait;
            for asked in self.observers.adopted(seen!(self), pipe) {
                if asked.anything() {
                    verdict = self.apply_asked(key, asked, verdict);
                }
            }
            match verdict {
                Verdict::Close(_) => self.carry_out(key, verdict),
                _ => self.drive(key),
            }
        }
        self.look_at_waiting_clients(taken.awaiting, taken.inspecting);
        let pipes = plural(taken.pipes.len(), "pipe");
        if self.share.is_leader() {
            info!("took over {count} connections from the old process ({pipes})");
        } else {
            debug!("worker {}: took over {pipes}", self.share.index + 1);
        }
        count
    }

    fn take_in_one(
        &mut self,
        record: Record,
        mut fds: Vec<OwnedFd>,
        taken: &mut TakenIn,
    ) -> Result<(), HandoverError> {
        match record {
            Record::Pipe(record) => {
                let id = record.id;
                let key = self.adopt_pipe(*record, fds)?;
                taken.pipes.push((key, id));
                taken.max_id = taken.max_id.max(id);
            }
            Record::Awaiting(record) => {
                taken.max_id = taken.max_id.max(record.id);
                let stream = stream_of(fds.pop())?;
                if let Some(stream) = self.adopt_awaiting(&record, stream, &mut taken.awaiting)? {
                    taken.homeless.push(stream);
                }
            }
            Record::Inspecting(record) => {
                taken.max_id = taken.max_id.max(record.id);
                let stream = stream_of(fds.pop())?;
                if let Some(stream) =
                    self.adopt_inspecting(&record, stream, &mut taken.inspecting)?
                {
                    taken.homeless.push(stream);
                }
            }
            Record::Pooled(record) => {
                if let Some(fd) = fds.pop() {
                    if self.adopt_pooled(&record, fd) {
                        taken.pooled += 1;
                    }
                }
            }
        }
        Ok(())
    }

    /// A pipe of this process from `record`, registered and counted.
    fn adopt_pipe(
        &mut self,
        record: PipeRecord,
        fds: Vec<OwnedFd>,
    ) -> Result<usize, HandoverError> {
        let route_id = record
            .route
            .as_deref()
            .and_then(|name| self.routes.active(name));
        let route = route_id.and_then(|id| self.routes.get(id));
        let settings = match route {
            Some(route) => {
                let share = route.settings.rates.share.clone();
                let settings = settings_from(&record.settings, route_id, share)?;
                // Most pipes have their route's settings: share them.
                if settings == *route.settings {
                    Arc::clone(&route.settings)
                } else {
                    Arc::new(settings)
                }
            }
            None => Arc::new(settings_from(
                &record.settings,
                None,
                RouteShare::default(),
            )?),
        };
        let group = route.map(|route| route.targets);
        let find = |name| group.and_then(|group| self.upstreams.find_named(group, name));
        let target = record.target.as_ref().and_then(find);
        let tried = match &record.stage {
            StageRecord::Connecting { tried, .. } => tried.iter().filter_map(find).collect(),
            StageRecord::Open { .. } => Vec::new(),
        };
        let (id, peer, server_name) = (record.id, record.peer, record.server_name.clone());
        let placed = Placed {
            settings,
            target,
            tried,
        };
        let lenders = Lenders {
            rings: &mut self.rings,
            kernel_pipes: &mut self.kernel_pipes,
            metrics: &self.observers.metrics,
        };
        let pipe = Pipe::adopt(record, fds, placed, self.now, lenders)?;
        let key = self.pipes.insert(pipe);
        let registered = match self.pipes.get_mut(key) {
            Some(pipe) => pipe.update_interest(self.poll.registry(), pipe_tokens(key)),
            None => Ok(()),
        };
        if let Err(e) = registered {
            if let Some(pipe) = self.pipes.try_remove(key) {
                let metrics = &self.observers.metrics;
                pipe.hand_over(
                    self.poll.registry(),
                    &mut self.rings,
                    &mut self.kernel_pipes,
                    metrics,
                );
            }
            return Err(HandoverError::Io(e));
        }
        self.observers.metrics.live_pipes.add(1);
        if self.share.has_peers() {
            self.count_opened();
        }
        if let Some(route) = route_id.and_then(|id| self.routes.get_mut(id)) {
            route.live_pipes += 1;
            route.per_source.add(peer.ip());
            if let Some(name) = server_name {
                route.server_names.insert(id, name.into());
            }
        }
        if let Some(target) = target {
            self.upstreams.pipe_joined(target);
        }
        Ok(key)
    }

    /// A client awaiting its PROXY header, registered and counted; given
    /// back if it has nowhere to go here.
    fn adopt_awaiting(
        &mut self,
        record: &AwaitingRecord,
        mut stream: TcpStream,
        taken: &mut Vec<usize>,
    ) -> Result<Option<TcpStream>, HandoverError> {
        let listener = self.listener_at(record.listener);
        let route_id = self.routes.active(&record.route).or_else(|| {
            listener
                .and_then(|key| self.routes.listeners.get(key))
                .map(|l| l.route)
        });
        let Some(route_id) = route_id.filter(|&id| self.routes.get(id).is_some()) else {
            return Ok(Some(stream));
        };
        let key = self.awaiting.clients.vacant_key();
        (self.poll.registry())
            .register(&mut stream, awaiting_token(key), Interest::READABLE)
            .map_err(HandoverError::Io)?;
        if let Some(route) = self.routes.get_mut(route_id) {
            route.live_pipes += 1;
        }
        let deadline = record.timeout_in.map(|left| self.now + left);
        let inspect = listener.filter(|&key| {
            record.inspect && (self.routes.listeners.get(key)).is_some_and(|l| l.inspect.is_some())
        });
        self.awaiting.clients.insert(Awaiting {
            id: record.id,
            route: route_id,
            stream: Some(stream),
            peer: record.peer,
            listener: record.listener,
            read_closed: record.read_closed,
            inspect,
            deadline,
        });
        self.observers.metrics.awaiting_proxy_header.add(1);
        if let Some(deadline) = deadline {
            let id = record.id;
            self.timers.push(deadline, Timer::ProxyHeader { key, id });
        }
        taken.push(key);
        Ok(None)
    }

    /// A client being inspected, registered and counted; given back if
    /// the listener it came in on is not this config's.
    fn adopt_inspecting(
        &mut self,
        record: &InspectingRecord,
        mut stream: TcpStream,
        taken: &mut Vec<usize>,
    ) -> Result<Option<TcpStream>, HandoverError> {
        let Some((listener, owner)) = self
            .listener_at(record.listener)
            .and_then(|key| Some((key, self.routes.listeners.get(key)?)))
            .filter(|(_, l)| l.inspect.is_some())
            .map(|(key, l)| {
                let named = self.routes.active(&record.route);
                (
                    key,
                    named.filter(|id| l.routes.contains(id)).unwrap_or(l.route),
                )
            })
        else {
            return Ok(Some(stream));
        };
        let Some(route) = self.routes.get_mut(owner) else {
            return Ok(Some(stream));
        };
        let slot = self.inspecting.clients.vacant_key();
        (self.poll.registry())
            .register(&mut stream, inspecting_token(slot), Interest::READABLE)
            .map_err(HandoverError::Io)?;
        route.live_pipes += 1;
        let deadline = record.timeout_in.map(|left| self.now + left);
        self.inspecting.clients.insert(Inspecting {
            id: record.id,
            route: owner,
            listener,
            stream: Some(stream),
            peer: record.peer,
            local: record.local,
            local_from_header: record.local_from_header,
            peeked: vec![0; PEEK_BYTES].into_boxed_slice(),
            peeked_len: 0,
            read_closed: record.read_closed,
            deadline,
        });
        if let Some(deadline) = deadline {
            let id = record.id;
            self.timers.push(deadline, Timer::Inspect { key: slot, id });
        }
        taken.push(slot);
        Ok(None)
    }

    /// An idle pooled connection, if this config pools for its target.
    fn adopt_pooled(&mut self, record: &PooledRecord, fd: OwnedFd) -> bool {
        let group = (self.routes.active(&record.target.route))
            .and_then(|id| self.routes.get(id))
            .map(|route| route.targets);
        let registry = self.poll.registry();
        match (self.upstreams).adopt_pooled(record, fd, group, registry, self.now) {
            Ok(kept) => kept,
            Err(e) => {
                debug!("cannot take over a pooled connection: {e}");
                false
            }
        }
    }

    /// The listener bound to `addr`, if any.
    fn listener_at(&self, addr: std::net::SocketAddr) -> Option<usize> {
        (self.routes.listeners.iter())
            .find(|(_, listener)| listener.local == addr)
            .map(|(key, _)| key)
    }

    /// Lets go of what a failed [`take_in`](Reactor::take_in) took: as a
    /// handed-over connection leaves, with nothing sent and nobody told.
    fn let_go_of(&mut self, taken: TakenIn) {
        for (key, _) in taken.pipes {
            self.hand_over_pipe(key);
        }
        for key in taken.awaiting {
            self.hand_over_awaiting(key);
        }
        for slot in taken.inspecting {
            self.hand_over_inspecting(slot);
        }
        // Adopted pooled connections go as any idle one does: unused.
        self.awaiting.free_left();
        self.inspecting.free_left();
    }

    /// This worker's next ids go past every adopted one, within its own
    /// partition of them.
    fn keep_ids_apart(&mut self, max_adopted: u64) {
        if self.next_pipe_id > max_adopted {
            return;
        }
        let step = self.share.pipe_id_step().max(1);
        let steps = (max_adopted - self.next_pipe_id) / step + 1;
        self.next_pipe_id += steps * step;
    }
}

/// A handed-over client socket, non-blocking as this loop needs.
fn stream_of(fd: Option<OwnedFd>) -> Result<TcpStream, HandoverError> {
    let fd = fd.ok_or_else(|| HandoverError::Descriptors("a client without its socket".into()))?;
    let stream = std::net::TcpStream::from(fd);
    stream.set_nonblocking(true).map_err(HandoverError::Io)?;
    Ok(TcpStream::from_std(stream))
}
