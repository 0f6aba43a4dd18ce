//! The upstream side: every route's targets, sending clients to them, and
//! the connections made to them before a client needs one.
//!
//! | module     | owns                                                        |
//! |------------|-------------------------------------------------------------|
//! | `target`   | the set of targets, each route's group of them, reload matching |
//! | `balance`  | which of the candidates health and the operator allow a new client goes to, by weight |
//! | `health`   | up, down and trial, from connect outcomes; which targets may take a client now |
//! | `operator` | the operator's say: ready, drain or maint, and weights, kept across reloads |
//! | `pool`     | the warm pool and its safety rule                           |
//! | `probe`    | active health checks                                        |
//! | `resolver` | re-resolving host names off the loop                        |
//! | `shared`   | what the leader of several workers tells the others         |
//! | `ahead`    | connections made before a client needs one: pool refills, probes, their timers |
//!
//! Each keeps its own state and reports what happened; [`Upstreams`] acts
//! on the reports (health, logs, refills) and keeps the timers they need,
//! so the reactor only asks it to dial and tells it how connects and pipes
//! ended.

mod ahead;
mod balance;
mod handover;
mod health;
mod operator;
mod pool;
mod probe;
mod resolver;
mod shared;
mod target;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpStream;
use mio::{Registry, Token, Waker};

use crate::config;
use crate::dial::{Dial, Dialed};
use crate::metrics::{Metrics, Snapshot, TargetStats};
use crate::net;
use crate::share::Share;
use crate::text::{format_elapsed, plural};
use crate::timers::Timers;
use ahead::Timer;
use health::Change;
use pool::WarmPool;
use probe::Probes;
use resolver::Resolver;
use target::Targets;

pub(crate) use shared::News;
pub(crate) use target::{GroupId, TargetId};

/// An upstream socket opened before `accept`, so that a client is only
/// accepted when its target descriptor is already in hand.
struct SpareSocket {
    ipv6: bool,
    socket: socket2::Socket,
}

/// What a reload did to a route's targets, for its summary line.
#[derive(Debug, Default)]
pub(crate) struct TargetChanges {
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
    /// `name weight 1 -> 3`, `name now a backup`.
    pub(crate) changed: Vec<String>,
}

pub(crate) struct Upstreams {
    targets: Targets,
    pool: WarmPool,
    probes: Probes,
    /// Targets whose chain of probe timers is running.
    probe_chains: Vec<TargetId>,
    resolver: Option<Resolver>,
    waker: Arc<Waker>,
    spare: Option<SpareSocket>,
    timers: Timers<Timer>,
    metrics: Arc<Metrics>,
    /// Shutting down: no refills, no probes.
    stopped: bool,
    /// Targets that went down (`false`) or came up (`true`) since the last
    /// look; kept only for someone who listens.
    health_changes: Option<Vec<(TargetId, bool)>>,
    /// Which worker this is: its part of each pool, and whether it probes
    /// and resolves for all.
    share: Share,
    /// Probe verdicts and new addresses for the other workers; kept only
    /// by the leader of several.
    news: Option<Vec<News>>,
}

/// A target that went down or came up, for the embedder.
pub(crate) struct HealthChange {
    pub(crate) route: String,
    pub(crate) target: String,
    pub(crate) addr: SocketAddr,
    pub(crate) up: bool,
}

pub(crate) struct Tokens {
    pub(crate) pool: fn(usize) -> Token,
    pub(crate) probe: fn(usize) -> Token,
}

impl Upstreams {
    pub(crate) fn new(
        tokens: Tokens,
        waker: Arc<Waker>,
        metrics: Arc<Metrics>,
        share: Share,
    ) -> Upstreams {
        Upstreams {
            targets: Targets::new(),
            pool: WarmPool::new(tokens.pool),
            probes: Probes::new(tokens.probe),
            probe_chains: Vec::new(),
            resolver: None,
            waker,
            spare: None,
            timers: Timers::new(),
            metrics,
            stopped: false,
            health_changes: None,
            share,
            news: None,
        }
    }

    /// This worker's part of a pool of `size` per target: the workers'
    /// parts add up to `size`.
    fn pool_size(&self, size: usize) -> usize {
        self.share.of(size)
    }

    /// Keeps health changes for [`take_health_changes`](Upstreams::take_health_changes).
    pub(crate) fn report_health(&mut self) {
        self.health_changes.get_or_insert_with(Vec::new);
    }

    /// Health changes since the last call, oldest first.
    pub(crate) fn take_health_changes(&mut self) -> Vec<HealthChange> {
        let Some(changes) = self.health_changes.as_mut() else {
            return Vec::new();
        };
        std::mem::take(changes)
            .into_iter()
            .filter_map(|(id, up)| {
                let target = self.targets.get(id)?;
                Some(HealthChange {
                    route: target.route.clone(),
                    target: target.name.clone(),
                    addr: target.addr,
                    up,
                })
            })
            .collect()
    }

    /// A target's name as configured.
    pub(crate) fn target_name(&self, target: TargetId) -> Option<&str> {
        self.targets.get(target).map(|t| t.name.as_str())
    }

    /// What metrics keep of a target.
    pub(crate) fn stats_mut(&mut self, target: TargetId) -> Option<&mut TargetStats> {
        self.targets.get_mut(target).map(|t| &mut t.stats)
    }

    /// Adds every target to `snapshot`, under its route's name, with the
    /// bytes its live pipes have delivered (`live_bytes`).
    pub(crate) fn snapshot_into(
        &self,
        snapshot: &mut Snapshot,
        live_bytes: &HashMap<TargetId, [u64; 2]>,
    ) {
        for (id, target) in self.targets.iter() {
            let entry = snapshot.route(&target.route).target(&target.name);
            entry.add(
                target.counts_as_up(),
                target.live_pipes,
                self.pool.idle(id),
                &target.stats,
            );
            if let Some(bytes) = live_bytes.get(&id) {
                entry.bytes[0] += bytes[0];
                entry.bytes[1] += bytes[1];
            }
            if !target.retired {
                (entry.weight, entry.backup, entry.state) =
                    (target.weight, target.backup, target.state);
            }
        }
    }

    /// How logs name a target, or an attached pipe's.
    pub(crate) fn label_of(&self, target: Option<TargetId>) -> String {
        target.map_or_else(|| "the attached target".into(), |t| self.label(t))
    }

    /// How logs name a target.
    pub(crate) fn label(&self, target: TargetId) -> String {
        self.targets.label(target)
    }

    // ----- routes come and go ----------------------------------------------

    /// A new route's group of targets; its pools start filling and its
    /// probes start.
    pub(crate) fn add_group(
        &mut self,
        route: &config::Route,
        registry: &Registry,
        now: Instant,
    ) -> GroupId {
        let group = self.targets.add_group(route);
        self.update_group(group, route, registry, now);
        group
    }

    /// Brings a route's group in line with its new config: targets it keeps
    /// keep their health, load and pool; new ones join balancing; removed
    /// ones take no new pipes and lose their pooled connections, and live
    /// on until their last pipe ends.
    pub(crate) fn update_group(
        &mut self,
        id: GroupId,
        route: &config::Route,
        registry: &Registry,
        now: Instant,
    ) -> TargetChanges {
        let regrouped = self.targets.regroup(id, route);
        for &(target, old, moved) in &regrouped.kept {
            let new = self.targets.get(target).map(|t| t.policy);
            // Pooled connections made to the old address, with the old
            // socket options or under the old idle limit must not serve
            // new pipes; a smaller pool just sheds its oldest.
            match new {
                Some(new)
                    if moved
                        || old.keepalive != new.keepalive
                        || old.pool_max_idle != new.pool_max_idle =>
                {
                    self.pool.forget(target)
                }
                Some(new) if new.pool < old.pool => {
                    let keep = self.pool_size(new.pool);
                    self.pool.trim(target, keep)
                }
                _ => {}
            }
        }
        for &target in &regrouped.removed {
            self.forget(target);
        }
        for &target in &regrouped.members {
            self.refill(target, registry, now);
            self.start_probe_chain(target, now);
        }
        TargetChanges {
            added: regrouped.added_names,
            removed: regrouped.removed_names,
            changed: regrouped.changed,
        }
    }

    /// The route is gone: its targets take no new pipes.
    pub(crate) fn retire_group(&mut self, id: GroupId) {
        for target in self.targets.remove_group(id) {
            self.forget(target);
        }
    }

    /// No connection is made to `target` ahead of a client any more.
    fn forget(&mut self, target: TargetId) {
        self.pool.forget(target);
        self.probes.forget(target);
    }

    /// Re-resolves the names of every target that takes new pipes, every
    /// `interval`, replacing the resolver that watched the old set.
    pub(crate) fn resolve_every(&mut self, interval: Option<Duration>) {
        self.resolver = None;
        // The leader resolves for every worker.
        let Some(interval) = interval.filter(|_| !self.stopped && self.share.is_leader()) else {
            return;
        };
        let watched = self.targets.watched();
        self.resolver = Resolver::spawn(watched, interval, Arc::clone(&self.waker));
    }

    /// New addresses from the resolver thread.
    pub(crate) fn apply_resolved(&mut self) {
        let Some(resolver) = self.resolver.as_ref() else {
            return;
        };
        let updates: Vec<(TargetId, SocketAddr)> = resolver.drain().collect();
        for (id, addr) in updates {
            if let Some(target) = self.targets.get_mut(id) {
                if target.readdress(addr) {
                    self.readdressed(id, addr);
                }
            }
        }
    }

    /// Shutdown: closes the pool and the probes, and makes no more.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.pool.clear();
        self.probes.clear();
        self.spare = None;
        self.resolver = None;
    }

    // ----- clients ------------------------------------------------------------

    /// Opens the upstream socket the next client of `group` will need,
    /// before that client is accepted: a client is only taken from the
    /// backlog when its target descriptor is already in hand.
    pub(crate) fn reserve_socket(&mut self, group: GroupId) -> io::Result<()> {
        let Some(group) = self.targets.group(group) else {
            return Ok(());
        };
        let Some(target) = group.members.first().and_then(|&t| self.targets.get(t)) else {
            return Ok(());
        };
        let ipv6 = target.addr.is_ipv6();
        if self.spare.as_ref().is_some_and(|spare| spare.ipv6 == ipv6) {
            return Ok(());
        }
        let socket = net::upstream_socket(target.addr, None)?;
        self.spare = Some(SpareSocket { ipv6, socket });
        Ok(())
    }

    /// Picks targets of `group` and starts connects until one is under way
    /// or a pooled connection is handed out, within the attempts `dial`
    /// allows. The chosen target counts the pipe as one of its own until
    /// [`pipe_left`](Upstreams::pipe_left).
    pub(crate) fn dial(
        &mut self,
        pipe_id: u64,
        group: GroupId,
        client_ip: IpAddr,
        dial: &mut Dial,
        registry: &Registry,
        now: Instant,
    ) -> Option<Dialed> {
        while dial.attempts < dial.max_attempts {
            let target = self.targets.pick(group, client_ip, dial.tried(), now)?;
            dial.attempts += 1;
            let pooled = self.take_pooled(target, registry, now);
            let stream = match pooled {
                Some(stream) => Ok((stream, true)),
                None => {
                    if let Some(target) = self.targets.get_mut(target) {
                        target.stats.connect_attempts += 1;
                    }
                    self.connect_to(target).map(|s| (s, false))
                }
            };
            match stream {
                Ok((stream, connected)) => {
                    self.targets.assign(target);
                    return Some(Dialed {
                        target: Some(target),
                        stream,
                        connected,
                    });
                }
                Err(e) => {
                    self.connect_failed(pipe_id, target, &e, now);
                    dial.failed(target);
                }
            }
        }
        None
    }

    /// A connect for a client, on the spare socket if it fits. Its
    /// keepalive is left to the pipe, which sets it once the pipe has
    /// lived a moment: most connections are over before then, and four
    /// `setsockopt` calls are a sixth of a short connection's syscalls.
    fn connect_to(&mut self, target: TargetId) -> io::Result<TcpStream> {
        let addr = self
            .targets
            .get(target)
            .map(|t| t.addr)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "target removed"))?;
        let socket = match self.spare.take() {
            Some(spare) if spare.ipv6 == addr.is_ipv6() => spare.socket,
            other => {
                self.spare = other;
                net::upstream_socket(addr, None)?
            }
        };
        net::start_connect(socket, addr)
    }

    /// A pipe's connect to `target` failed: passive health counts it.
    pub(crate) fn connect_failed(
        &mut self,
        pipe_id: u64,
        target: TargetId,
        error: &io::Error,
        now: Instant,
    ) {
        debug!(
            "pipe {pipe_id}: connect to {} failed: {error}",
            self.label(target)
        );
        if let Some(entry) = self.targets.get_mut(target) {
            // While a target is down every client fails on it: one warning
            // a second, with the count; debug has each pipe's.
            if let Some(held_back) = entry.connect_warnings.allow(now) {
                warn!(
                    "pipe {pipe_id}: cannot connect to {}: {error}{held_back}",
                    entry.label()
                );
            }
        }
        self.metrics.connect_failures_total.add(1);
        if let Some(target) = self.targets.get_mut(target) {
            if error.kind() == io::ErrorKind::TimedOut {
                target.stats.connect_timeouts += 1;
            } else {
                target.stats.connect_failures += 1;
            }
        }
        self.health_failed(target, false, now);
    }

    /// A pipe sent to `id` has left it: it ended, or failed over to
    /// another target. `connect_ended`: its connect had succeeded or
    /// failed (else, if it was the target's trial, the next client makes
    /// the trial).
    pub(crate) fn pipe_left(&mut self, id: TargetId, connect_ended: bool, now: Instant) {
        self.targets.release(id, connect_ended, now);
    }

    // ----- health -------------------------------------------------------------

    /// A connect to `id` succeeded, a client's, a pooled one or a probe. A
    /// target that comes back up that way gets its pool back.
    pub(crate) fn connect_succeeded(&mut self, id: TargetId, registry: &Registry, now: Instant) {
        let Some(target) = self.targets.get_mut(id) else {
            return;
        };
        if target.health.succeeded() == Some(Change::CameUp) {
            info!("target {} is up again", target.label());
            if let Some(changes) = self.health_changes.as_mut() {
                changes.push((id, true));
            }
            self.refill(id, registry, now);
        }
    }

    /// A target that goes down loses its idle pooled connections, so its
    /// trial is a real connect. `decisive`: a failed probe, down at once.
    fn health_failed(&mut self, id: TargetId, decisive: bool, now: Instant) {
        let Some(target) = self.targets.get_mut(id) else {
            return;
        };
        let policy = target.policy.health;
        if let Some(Change::WentDown { failures, cooldown }) =
            target.health.failed(&policy, decisive, now)
        {
            warn!(
                "target {} is down after {}; next trial in {}",
                target.label(),
                plural(failures as usize, "failed connect"),
                format_elapsed(cooldown)
            );
            if let Some(changes) = self.health_changes.as_mut() {
                changes.push((id, false));
            }
            self.pool.discard_idle(id);
        }
    }
}
