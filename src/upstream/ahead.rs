//! Connections made to targets before a client needs one: the warm pool's
//! refills and the health probes, and the timers both run on. Dialing for
//! clients is in `mod.rs`; both report to the same health.

use std::io;
use std::time::{Duration, Instant};

use log::debug;
use mio::event::Event;
use mio::net::TcpStream;
use mio::Registry;

use crate::net;
use crate::text::format_elapsed;

use super::pool::{self, PooledId};
use super::probe::ProbeId;
use super::{TargetId, Upstreams};
use crate::operator::TargetState;

/// A pooled connection that dies younger than this is not replaced at once,
/// so an upstream that closes every idle connection is not hammered.
const POOL_REFILL_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A pooled connection's connect timeout or idle limit.
    Pooled(PooledId),
    /// A probe's connect timeout.
    Probe(ProbeId),
    Refill(TargetId),
    /// Time for the target's next probe.
    ProbeDue(TargetId),
}

impl Upstreams {
    // ----- the warm pool ------------------------------------------------------

    /// A pooled connection to `id`, if its route keeps a pool and one is
    /// ready. Whether it handed one out or found them all stale, the pool
    /// is short now, so it is topped up.
    pub(super) fn take_pooled(
        &mut self,
        id: TargetId,
        registry: &Registry,
        now: Instant,
    ) -> Option<TcpStream> {
        if self.pool_size(self.targets.get(id)?.policy.pool) == 0 {
            return None;
        }
        let pooled = self.pool.take(registry, id);
        self.refill(id, registry, now);
        pooled
    }

    /// Tops up `target`'s pool; down and removed targets get no refills,
    /// nor those the operator keeps new pipes from (drained, in
    /// maintenance, weight 0).
    pub(super) fn refill(&mut self, id: TargetId, registry: &Registry, now: Instant) {
        let Some(target) = self.targets.get(id) else {
            return;
        };
        let (policy, addr) = (target.policy, target.addr);
        if self.stopped || !target.admits() || !target.health.is_up() {
            return;
        }
        let size = self.pool_size(policy.pool);
        while self.pool.count(id) < size {
            let keepalive = policy.keepalive.map(net::keepalive);
            let added = net::upstream_socket(addr, keepalive.as_ref())
                .and_then(|socket| net::start_connect(socket, addr))
                .and_then(|stream| self.pool.add(registry, stream, id, now));
            match added {
                Ok(conn) => {
                    if let Some(due) = policy.connect_timeout.map(|t| now + t) {
                        self.timers.push(due, Timer::Pooled(conn));
                    }
                }
                Err(e) => {
                    debug!("cannot open a pooled connection to {}: {e}", self.label(id));
                    self.timers.push(now + POOL_REFILL_DELAY, Timer::Refill(id));
                    return;
                }
            }
        }
    }

    pub(crate) fn on_pool_event(
        &mut self,
        key: usize,
        event: &Event,
        registry: &Registry,
        now: Instant,
    ) {
        match self.pool.on_event(key, event, now) {
            pool::Change::Connected { target, kept } => {
                self.connect_succeeded(target, registry, now);
                let max_idle = self.targets.get(target).map(|t| t.policy.pool_max_idle);
                match (kept, max_idle) {
                    // Replaced before the upstream's own idle timeout bites.
                    (Some(conn), Some(max_idle)) => {
                        self.timers.push(now + max_idle, Timer::Pooled(conn))
                    }
                    (Some(_), None) => {}
                    (None, _) => self
                        .timers
                        .push(now + POOL_REFILL_DELAY, Timer::Refill(target)),
                }
            }
            pool::Change::Failed { target, error } => {
                self.pooled_connect_failed(target, &error, now)
            }
            pool::Change::Stale { target, lived } => {
                debug!(
                    "pooled connection to {} ended by the upstream after {}; replacing it",
                    self.label(target),
                    format_elapsed(lived)
                );
                if lived >= POOL_REFILL_DELAY {
                    self.refill(target, registry, now);
                } else {
                    self.timers
                        .push(now + POOL_REFILL_DELAY, Timer::Refill(target));
                }
            }
            pool::Change::Nothing => {}
        }
    }

    fn pooled_connect_failed(&mut self, target: TargetId, error: &io::Error, now: Instant) {
        debug!(
            "pooled connection to {} failed: {error}",
            self.label(target)
        );
        self.health_failed(target, false, now);
        self.timers
            .push(now + POOL_REFILL_DELAY, Timer::Refill(target));
    }

    // ----- probes -------------------------------------------------------------

    pub(super) fn start_probe_chain(&mut self, target: TargetId, now: Instant) {
        // The leader probes for every worker, so a target gets one probe
        // per interval however many workers there are.
        let probed = self.share.is_leader()
            && self
                .targets
                .get(target)
                .is_some_and(|t| t.policy.health_interval.is_some());
        if probed && !self.probe_chains.contains(&target) {
            self.probe_chains.push(target);
            self.timers.push(now, Timer::ProbeDue(target));
        }
    }

    /// Probes `id` unless a probe is under way, and schedules the next.
    fn probe(&mut self, id: TargetId, registry: &Registry, now: Instant) {
        let interval = self
            .targets
            .get(id)
            .filter(|target| !target.retired && !self.stopped)
            .and_then(|target| target.policy.health_interval);
        let Some(interval) = interval else {
            self.probe_chains.retain(|&t| t != id);
            return;
        };
        self.timers.push(now + interval, Timer::ProbeDue(id));
        if self.probes.is_probing(id) {
            return;
        }
        // In maintenance the chain ticks on without probing, so that
        // probes resume on the interval once the operator says ready.
        let Some(target) = self
            .targets
            .get(id)
            .filter(|t| t.state != TargetState::Maint)
        else {
            return;
        };
        let (addr, policy) = (target.addr, target.policy);
        // A probe closes as soon as it connects: no keepalive to set.
        let started = net::upstream_socket(addr, None)
            .and_then(|socket| net::start_connect(socket, addr))
            .and_then(|stream| self.probes.add(registry, stream, id));
        match started {
            Ok(probe) => {
                if let Some(timeout) = policy.connect_timeout {
                    self.timers.push(now + timeout, Timer::Probe(probe));
                }
            }
            // A probe that cannot even start (out of descriptors) says
            // nothing about the target.
            Err(e) => debug!("cannot start a probe of {}: {e}", self.label(id)),
        }
    }

    pub(crate) fn on_probe_event(&mut self, key: usize, registry: &Registry, now: Instant) {
        match self.probes.on_event(key) {
            Some((target, Ok(()))) => {
                let was_up = self.is_up(target);
                self.connect_succeeded(target, registry, now);
                self.probe_decided(target, was_up);
            }
            Some((target, Err(e))) => {
                debug!("probe connection to {} failed: {e}", self.label(target));
                let was_up = self.is_up(target);
                self.health_failed(target, true, now);
                self.probe_decided(target, was_up);
            }
            None => {}
        }
    }

    // ----- timers -------------------------------------------------------------

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    pub(crate) fn fire_timers(&mut self, registry: &Registry, now: Instant) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Pooled(conn) => self.on_pooled_timer(conn, registry, now),
                Timer::Probe(probe) => {
                    if let Some(target) = self.probes.timed_out(probe) {
                        debug!(
                            "probe connection to {} failed: connect timed out",
                            self.label(target)
                        );
                        let was_up = self.is_up(target);
                        self.health_failed(target, true, now);
                        self.probe_decided(target, was_up);
                    }
                }
                Timer::Refill(target) => self.refill(target, registry, now),
                Timer::ProbeDue(target) => self.probe(target, registry, now),
            }
        }
    }

    fn on_pooled_timer(&mut self, conn: PooledId, registry: &Registry, now: Instant) {
        let Some(target) = self.pool.target_of(conn) else {
            return;
        };
        let Some(policy) = self.targets.get(target).map(|t| t.policy) else {
            return;
        };
        match self
            .pool
            .on_timer(conn, policy.connect_timeout, policy.pool_max_idle, now)
        {
            Some(pool::Expired::Connect(target)) => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.pooled_connect_failed(target, &error, now);
            }
            Some(pool::Expired::Idle(target)) => self.refill(target, registry, now),
            // The connect deadline of a connection that has connected since:
            // its idle deadline was armed then.
            None => {}
        }
    }
}
