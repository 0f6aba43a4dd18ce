//! The upstream side of a live upgrade: targets by name, idle pooled
//! connections as parcels, and target health (with the time left on each
//! cooldown) as one record; and taking them over from another process.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Instant;

use log::debug;
use mio::net::TcpStream;
use mio::Registry;

use super::ahead::Timer;
use super::health::Health;
use super::{GroupId, TargetId, Upstreams};
use crate::handover::{
    HealthRecord, HealthState, Parcel, PooledRecord, Record, TargetName, UpstreamRecord,
};
use crate::operator::TargetState;

impl Upstreams {
    /// How another process finds target `id`.
    pub(crate) fn name_of(&self, id: TargetId) -> Option<TargetName> {
        self.targets.name_of(id)
    }

    /// The target of `group` another process named `name`.
    pub(crate) fn find_named(&self, group: GroupId, name: &TargetName) -> Option<TargetId> {
        self.targets.named(group, &name.name, name.nth)
    }

    /// An adopted pipe was sent to `id`: the target counts it.
    pub(crate) fn pipe_joined(&mut self, id: TargetId) {
        self.targets.assign(id);
    }

    /// Every idle pooled connection as a parcel, with its descriptor (still
    /// the pool's).
    pub(crate) fn export_pooled(&self, now: Instant) -> Vec<Parcel<RawFd>> {
        self.pool
            .idle_connections()
            .into_iter()
            .filter_map(|(target, fd, connected_at)| {
                let record = PooledRecord {
                    target: self.name_of(target)?,
                    fd: 0,
                    idle_for: now.saturating_duration_since(connected_at),
                };
                Some(Parcel {
                    record: Record::Pooled(record).encode(),
                    fds: vec![fd],
                })
            })
            .collect()
    }

    /// Every target's health, as one record.
    pub(crate) fn export_health(&self, now: Instant) -> Vec<u8> {
        let health = self
            .targets
            .iter()
            .filter_map(|(id, target)| {
                let (state, consecutive_failures) = target.health.record(now);
                Some(HealthRecord {
                    target: self.name_of(id)?,
                    state,
                    consecutive_failures,
                    operator: target.state,
                    weight: target.weight,
                    configured_weight: target.configured_weight,
                })
            })
            .collect();
        UpstreamRecord { health }.encode()
    }

    /// Lets the idle pooled connections go: another process has them.
    pub(crate) fn hand_over_pooled(&mut self, registry: &Registry) {
        self.pool.hand_over_idle(registry);
    }

    /// Takes over an idle pooled connection to the target of `group` the
    /// record names, if this config has it, keeps a pool for it and it is
    /// up; else closes it (an idle connection nobody will use). The pool
    /// stays within its size: the oldest idle ones go first.
    pub(crate) fn adopt_pooled(
        &mut self,
        record: &PooledRecord,
        fd: OwnedFd,
        group: Option<GroupId>,
        registry: &Registry,
        now: Instant,
    ) -> io::Result<bool> {
        let target = group.and_then(|group| self.find_named(group, &record.target));
        let Some((id, policy)) = target.and_then(|id| {
            let target = self.targets.get(id)?;
            (target.health.is_up() && !target.retired).then_some((id, target.policy))
        }) else {
            return Ok(false);
        };
        let keep = self.pool_size(policy.pool);
        if keep == 0 || self.stopped {
            return Ok(false);
        }
        let stream = std::net::TcpStream::from(fd);
        stream.set_nonblocking(true)?;
        let connected_at = now.checked_sub(record.idle_for).unwrap_or(now);
        let conn = self
            .pool
            .adopt_idle(registry, TcpStream::from_std(stream), id, connected_at)?;
        self.timers
            .push(connected_at + policy.pool_max_idle, Timer::Pooled(conn));
        self.pool.trim(id, keep);
        Ok(true)
    }

    /// Target health as another process had it, for the targets this
    /// config has (`group_of` finds a route's group by name); the others
    /// start up, as new targets do.
    pub(crate) fn adopt_health(
        &mut self,
        record: &UpstreamRecord,
        group_of: impl Fn(&str) -> Option<GroupId>,
        now: Instant,
    ) {
        for health in &record.health {
            let Some(id) =
                group_of(&health.target.route).and_then(|g| self.find_named(g, &health.target))
            else {
                continue;
            };
            let Some(target) = self.targets.get_mut(id) else {
                continue;
            };
            target.health = Health::restore(health.state, health.consecutive_failures, now);
            // As a reload keeps them: the operator's state, and a weight
            // set at runtime unless the file's weight changed meanwhile.
            target.state = health.operator;
            if target.configured_weight == health.configured_weight {
                target.weight = health.weight;
            }
            match health.operator {
                TargetState::Ready => {}
                TargetState::Drain => self.pool.forget(id),
                TargetState::Maint => {
                    self.pool.forget(id);
                    self.probes.forget(id);
                }
            }
            if !matches!(health.state, HealthState::Up) {
                debug!("target {}: down, as handed over", target.label());
                // Its trial must be a real connect.
                self.pool.discard_idle(id);
            }
        }
    }
}
