//! Connecting to targets: choosing one, failing over to the next when a
//! connect fails, keeping the warm pool full, and probing health.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use log::{debug, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::Token;

use super::{Reactor, Timer, STANDBY_BASE};
use crate::net;
use crate::standby::{Change, Expired, Purpose};
use crate::upstream::Tried;

/// A pooled connection that dies younger than this is not replaced at once,
/// so an upstream that closes every idle connection is not hammered.
const POOL_REFILL_DELAY: Duration = Duration::from_secs(1);

/// An upstream socket opened ahead of time, and its address family.
pub(super) struct SpareSocket {
    ipv6: bool,
    socket: socket2::Socket,
}

fn standby_token(key: usize) -> Token {
    Token(STANDBY_BASE + key)
}

impl Reactor {
    /// Opens the upstream socket the next client will need, before that
    /// client is accepted: a client is only taken from the backlog when its
    /// target descriptor is already in hand.
    pub(super) fn reserve_upstream_socket(&mut self) -> io::Result<()> {
        if self.spare_socket.is_none() {
            let addr = self.upstreams.get(0).addr;
            let socket = net::upstream_socket(addr, self.keepalive.as_ref())?;
            self.spare_socket = Some(SpareSocket {
                ipv6: addr.is_ipv6(),
                socket,
            });
        }
        Ok(())
    }

    fn connect_to(&mut self, index: usize) -> io::Result<TcpStream> {
        let addr = self.upstreams.get(index).addr;
        let socket = match self.spare_socket.take() {
            Some(spare) if spare.ipv6 == addr.is_ipv6() => spare.socket,
            other => {
                self.spare_socket = other;
                net::upstream_socket(addr, self.keepalive.as_ref())?
            }
        };
        net::start_connect(socket, addr)
    }

    /// Picks targets and starts connects until one is under way or a pooled
    /// connection is ready, within `1 + retries` attempts in all. Returns the
    /// target, its stream, and whether it is connected already.
    pub(super) fn dial(
        &mut self,
        pipe_id: u64,
        client_ip: IpAddr,
        tried: &mut Tried,
        attempts: &mut usize,
    ) -> Option<(usize, TcpStream, bool)> {
        let max_attempts = 1 + self.config.effective_retries();
        while *attempts < max_attempts {
            let index = self.upstreams.pick(client_ip, *tried, self.now);
            *attempts += 1;
            let pooled = self.standbys.take(self.poll.registry(), index);
            // Whether it handed one out or found them all stale, the pool is
            // short now.
            self.refill_pool(index);
            if let Some(stream) = pooled {
                return Some((index, stream, true));
            }
            match self.connect_to(index) {
                Ok(stream) => return Some((index, stream, false)),
                Err(e) => {
                    warn!(
                        "pipe {pipe_id}: cannot connect to {}: {e}",
                        self.upstreams.get(index).name
                    );
                    self.metrics.connect_failures_total.add(1);
                    self.target_failed(index, false);
                    *tried = tried.with(index);
                }
            }
        }
        None
    }

    /// The pipe's connect failed: try the next target, keeping the bytes
    /// the client already sent. Returns false when no attempt is left.
    pub(super) fn fail_over(&mut self, key: usize, error: &io::Error) -> bool {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return false;
        };
        let (id, failed) = (pipe.id, pipe.target_index);
        pipe.tried = pipe.tried.with(failed);
        let (client_ip, mut tried, mut attempts) = (pipe.peer.ip(), pipe.tried, pipe.attempts);
        warn!(
            "pipe {id}: cannot connect to {}: {error}",
            self.upstreams.get(failed).name
        );
        self.metrics.connect_failures_total.add(1);
        self.target_failed(failed, false);

        let dialed = self.dial(id, client_ip, &mut tried, &mut attempts);
        let Some(pipe) = self.pipes.get_mut(key) else {
            return false;
        };
        pipe.tried = tried;
        pipe.attempts = attempts;
        let Some((index, stream, connected)) = dialed else {
            return false;
        };
        debug!(
            "pipe {id}: trying {} (attempt {attempts})",
            self.upstreams.get(index).name
        );
        pipe.retarget(stream, index, connected, self.now);
        self.upstreams.pipe_released(failed);
        self.upstreams.pipe_assigned(index);
        self.drive(key);
        true
    }

    /// A target that comes back up (by a client's trial or a probe) gets its
    /// pool back.
    pub(super) fn target_succeeded(&mut self, target: usize) {
        if self.upstreams.connect_succeeded(target) {
            self.refill_pool(target);
        }
    }

    /// Passive health counts the failure; a target that goes down loses its
    /// idle pooled connections, so its trial is a real connect.
    fn target_failed(&mut self, target: usize, decisive: bool) {
        if self.upstreams.connect_failed(target, decisive, self.now) {
            self.standbys.discard_idle(target);
        }
    }

    // ----- the warm pool and health probes ---------------------------------

    pub(super) fn fill_pools(&mut self) {
        for target in 0..self.upstreams.len() {
            self.refill_pool(target);
        }
    }

    /// Tops up `target`'s pool; down targets get no refills.
    pub(super) fn refill_pool(&mut self, target: usize) {
        if self.config.pool == 0 || self.drain_deadline.is_some() || !self.upstreams.is_up(target) {
            return;
        }
        while self.standbys.pooled(target) < self.config.pool {
            if let Err(e) = self.start_standby(target, Purpose::Pool) {
                debug!(
                    "cannot open a pooled connection to {}: {e}",
                    self.upstreams.get(target).name
                );
                self.timers
                    .push(self.now + POOL_REFILL_DELAY, Timer::PoolRefill { target });
                return;
            }
        }
    }

    fn start_standby(&mut self, target: usize, purpose: Purpose) -> io::Result<()> {
        let addr = self.upstreams.get(target).addr;
        let socket = net::upstream_socket(addr, self.keepalive.as_ref())?;
        let stream = net::start_connect(socket, addr)?;
        let (key, id) = self.standbys.add(
            self.poll.registry(),
            standby_token,
            stream,
            target,
            purpose,
            self.now,
        )?;
        self.arm_standby_timer(key, id);
        Ok(())
    }

    fn arm_standby_timer(&mut self, key: usize, id: u64) {
        let due = self
            .standbys
            .deadline(key, self.timeouts.connect, self.config.pool_max_idle);
        if let Some(due) = due {
            self.timers.push(due, Timer::Standby { key, id });
        }
    }

    pub(super) fn on_standby_event(&mut self, token: Token, event: &Event) {
        let key = token.0 - STANDBY_BASE;
        match self.standbys.on_event(key, event, self.now) {
            Change::Connected {
                target,
                purpose,
                touched,
            } => {
                self.target_succeeded(target);
                if purpose == Purpose::Pool {
                    match self.standbys.id(key) {
                        Some(id) => self.arm_standby_timer(key, id),
                        None if touched => self
                            .timers
                            .push(self.now + POOL_REFILL_DELAY, Timer::PoolRefill { target }),
                        None => {}
                    }
                }
            }
            Change::Failed {
                target,
                purpose,
                error,
            } => self.standby_failed(target, purpose, &error),
            Change::Stale { target, lived } => {
                debug!(
                    "pooled connection to {} ended by the upstream after {lived:.1?}; replacing it",
                    self.upstreams.get(target).name
                );
                if lived >= POOL_REFILL_DELAY {
                    self.refill_pool(target);
                } else {
                    self.timers
                        .push(self.now + POOL_REFILL_DELAY, Timer::PoolRefill { target });
                }
            }
            Change::Nothing => {}
        }
    }

    fn standby_failed(&mut self, target: usize, purpose: Purpose, error: &io::Error) {
        debug!(
            "{} connection to {} failed: {error}",
            if purpose == Purpose::Probe {
                "probe"
            } else {
                "pooled"
            },
            self.upstreams.get(target).name
        );
        self.target_failed(target, purpose == Purpose::Probe);
        if purpose == Purpose::Pool {
            self.timers
                .push(self.now + POOL_REFILL_DELAY, Timer::PoolRefill { target });
        }
    }

    pub(super) fn on_standby_timer(&mut self, key: usize, id: u64) {
        let expired = self.standbys.on_timer(
            key,
            id,
            self.timeouts.connect,
            self.config.pool_max_idle,
            self.now,
        );
        match expired {
            Some(Expired::Connect { target, purpose }) => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.standby_failed(target, purpose, &error);
            }
            // Replaced before the upstream's own idle timeout can bite.
            Some(Expired::Idle { target }) => self.refill_pool(target),
            None => {}
        }
    }

    /// Starts a probe to every target that has none under way.
    pub(super) fn probe_targets(&mut self) {
        let Some(interval) = self.config.health_interval else {
            return;
        };
        if self.drain_deadline.is_some() {
            return;
        }
        for target in 0..self.upstreams.len() {
            if !self.standbys.probing(target) {
                // A probe that cannot even start (out of descriptors) says
                // nothing about the target.
                if let Err(e) = self.start_standby(target, Purpose::Probe) {
                    debug!(
                        "cannot start a probe of {}: {e}",
                        self.upstreams.get(target).name
                    );
                }
            }
        }
        self.timers.push(self.now + interval, Timer::HealthProbe);
    }

    /// New addresses from the resolver thread.
    pub(super) fn apply_resolved(&mut self) {
        let Some(resolver) = self.resolver.as_ref() else {
            return;
        };
        let updates: Vec<_> = resolver.drain().collect();
        for (index, addr) in updates {
            self.upstreams.readdress(index, addr);
        }
    }
}
