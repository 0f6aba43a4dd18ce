//! What the reactor counts for metrics, and the snapshot a scrape gets.
//!
//! Counting happens where the reactor already acts on a pipe (accept,
//! connect done, first reply, free), never per byte: bytes per target are
//! summed from the live pipes when a scrape asks, plus what freed pipes
//! left in their target's counters.

use std::collections::HashMap;

use super::{Command, Reactor, RouteId};
use crate::metrics::{close_reason_slot, Exporter, Snapshot};
use crate::pipe::{Pipe, Reason, Refusal};
use crate::upstream::TargetId;

/// How long a scrape waits for the loop; a loop that takes longer is stuck.
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a drive of one pipe may have crossed: its connect ending, the
/// target's first byte arriving.
pub(super) struct Milestones {
    connecting_since: Option<std::time::Instant>,
    had_reply: bool,
}

impl Milestones {
    pub(super) fn before(pipe: &Pipe) -> Milestones {
        Milestones {
            connecting_since: pipe.connecting_since(),
            had_reply: pipe.bytes_toward_client() > 0,
        }
    }

    /// Whether the drive may have crossed one, so the common case (an
    /// open pipe that has had its reply) costs one branch.
    pub(super) fn pending(&self) -> bool {
        self.connecting_since.is_some() || !self.had_reply
    }
}

/// Where `reason` counts in `tcpipe_pipes_closed_total` and what the
/// access log's `end` calls it: the hooks' [`CloseReason`], with a refusal
/// named as `tcpipe_connections_refused_total` names it, so that one client
/// refused for its source's limit is `per_source_limit` everywhere.
pub(super) fn end_slot(reason: &Reason) -> usize {
    match reason {
        Reason::Refused(Refusal::SourceLimit(_)) => 11,
        Reason::Refused(Refusal::ProxyTimeout) => 12,
        other => close_reason_slot(other.public()),
    }
}

impl Reactor {
    /// A client was accepted on `route`.
    pub(super) fn count_accepted(&mut self, route: RouteId) {
        self.metrics.accepted_total.add(1);
        if let Some(route) = self.routes.get_mut(route) {
            route.stats.accepted += 1;
        }
    }

    /// A client of `route` was reset before any pipe was made for it (no
    /// target could be dialed, or it was refused): it counts as a pipe that
    /// ended at once, for `reason`.
    pub(super) fn count_turned_away(&mut self, route: RouteId, slot: usize) {
        if let Some(route) = self.routes.get_mut(route) {
            route.stats.closed[slot] += 1;
            route.stats.duration.observe(std::time::Duration::ZERO);
        }
    }

    /// A client of `route` was refused by its rules or its PROXY header.
    pub(super) fn count_refusal(&mut self, route: RouteId, refusal: &Refusal) {
        let slot = match refusal {
            Refusal::Denied => 0,
            Refusal::SourceLimit(_) => 1,
            Refusal::ProxyHeader(_) => 2,
            Refusal::ProxyTimeout => 3,
            Refusal::Gone => return,
        };
        if let Some(route) = self.routes.get_mut(route) {
            route.stats.refused[slot] += 1;
        }
    }

    /// Records what the drive of pipe `key` crossed since `before`.
    #[cold]
    pub(super) fn count_milestones(&mut self, key: usize, before: &Milestones) {
        let Some(pipe) = self.pipes.get(key) else {
            return;
        };
        let Some(target) = pipe.target() else {
            return;
        };
        let connect_time = before
            .connecting_since
            .filter(|_| pipe.is_open())
            .and_then(|_| pipe.connect_time());
        // Once per pipe, a fresh clock: the turn's would give every reply
        // of one turn the same time.
        let first_byte = (!before.had_reply && pipe.bytes_toward_client() > 0)
            .then(|| pipe.age(std::time::Instant::now()));
        if connect_time.is_none() && first_byte.is_none() {
            return; // a one-way stream with no reply yet: nothing crossed
        }
        let Some(stats) = self.upstreams.stats_mut(target) else {
            return;
        };
        if let Some(connect_time) = connect_time {
            stats.connect_time.observe(connect_time);
        }
        if let Some(first_byte) = first_byte {
            stats.first_byte.observe(first_byte);
        }
    }

    /// Pipe `pipe` is being freed for `reason`.
    pub(super) fn count_closed(&mut self, pipe: &Pipe, reason: &Reason) {
        if let Some(route) = pipe.route().and_then(|id| self.routes.get_mut(id)) {
            route.stats.closed[end_slot(reason)] += 1;
            route.stats.duration.observe(pipe.age(self.now));
        }
        if let Some(stats) = pipe.target().and_then(|id| self.upstreams.stats_mut(id)) {
            stats.closed_bytes[0] += pipe.bytes_toward_target();
            stats.closed_bytes[1] += pipe.bytes_toward_client();
        }
    }

    /// Serves `/metrics` on `addr`; each scrape asks this loop for a
    /// snapshot through the command channel.
    pub(super) fn start_exporter(&self, addr: std::net::SocketAddr) -> std::io::Result<Exporter> {
        // With several workers a scrape asks each and merges the answers.
        if self.share.has_peers() {
            let crew = std::sync::Arc::clone(&self.crew);
            return Exporter::start(addr, move || crew.get()?.scrape());
        }
        let (commands, waker) = self.commands();
        Exporter::start(addr, move || {
            let (reply, answer) = std::sync::mpsc::channel();
            commands.send(Command::Scrape(reply)).ok()?;
            waker.wake().ok()?;
            answer.recv_timeout(SCRAPE_TIMEOUT).ok()
        })
    }

    /// Everything a scrape shows, as of now.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut snapshot = Snapshot::new(&self.metrics, self.started);
        for (_, route) in self.routes.routes.iter() {
            snapshot
                .route(route.name())
                .add(route.live_pipes, &route.stats);
        }
        let mut live_bytes: HashMap<TargetId, [u64; 2]> = HashMap::new();
        for (_, pipe) in self.pipes.iter() {
            if let Some(target) = pipe.target() {
                let bytes = live_bytes.entry(target).or_default();
                bytes[0] += pipe.bytes_toward_target();
                bytes[1] += pipe.bytes_toward_client();
            }
        }
        self.upstreams.snapshot_into(&mut snapshot, &live_bytes);
        snapshot
    }
}
