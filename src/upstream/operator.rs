//! The operator's say over targets, apart from health: each target's state
//! (ready, drain, maint) and weight, set at runtime and kept across
//! reloads; and what a target looks like to the operator's tools.
//!
//! Health alone marks a target up or down; the operator alone drains it or
//! puts it in maintenance; the balancer picks among what both allow, by
//! weight. None of them changes the others' state.

use std::collections::HashMap;
use std::time::Instant;

use log::info;
use mio::Registry;

use super::target::Target;
use super::{GroupId, TargetId, Upstreams};
use crate::config;
use crate::operator::{TargetInfo, TargetState};

impl Target {
    /// Takes what the config says of it at a reload: its backup flag
    /// always, its weight only if the config's changed since the last (a
    /// weight the operator set stays until then). Its state is the
    /// operator's alone: the config has no say.
    /// Returns what changed, for the reload's summary (`app weight 1 ->
    /// 3`, `app now a backup`).
    pub(crate) fn configure(&mut self, wanted: &config::Target) -> Option<String> {
        let mut changes = Vec::new();
        if wanted.weight != self.configured_weight {
            changes.push(format!(
                "weight {} -> {}",
                self.configured_weight, wanted.weight
            ));
            self.weight = wanted.weight;
            self.configured_weight = wanted.weight;
        }
        if wanted.backup != self.backup {
            changes.push(
                if wanted.backup {
                    "now a backup"
                } else {
                    "no longer a backup"
                }
                .into(),
            );
            self.backup = wanted.backup;
        }
        (!changes.is_empty()).then(|| format!("{} {}", self.name, changes.join(", ")))
    }

    /// As [`Handle::targets`](crate::Handle::targets) shows it, with the
    /// bytes its live pipes delivered (`live_bytes`).
    fn info(&self, live_bytes: [u64; 2]) -> TargetInfo {
        TargetInfo {
            route: self.route.clone(),
            name: self.name.clone(),
            addr: self.addr,
            state: self.state,
            weight: self.weight,
            backup: self.backup,
            healthy: self.counts_as_up(),
            live_pipes: self.live_pipes,
            total_pipes: self.stats.pipes,
            bytes_toward_target: self.stats.closed_bytes[0] + live_bytes[0],
            bytes_toward_client: self.stats.closed_bytes[1] + live_bytes[1],
            connect_failures: self.stats.connect_failures + self.stats.connect_timeouts,
        }
    }
}

impl Upstreams {
    /// The members of `group` named `name` (more than one if the config
    /// lists the name more than once).
    pub(crate) fn members_named(&self, group: GroupId, name: &str) -> Vec<TargetId> {
        let Some(group) = self.targets.group(group) else {
            return Vec::new();
        };
        group
            .members
            .iter()
            .copied()
            .filter(|&id| self.targets.get(id).is_some_and(|t| t.name == name))
            .collect()
    }

    /// Pipes held now by the targets named `name` of route `route`,
    /// members or retired by a reload.
    pub(crate) fn live_pipes_named(&self, route: &str, name: &str) -> usize {
        self.targets
            .iter()
            .filter(|(_, t)| t.route == route && t.name == name)
            .map(|(_, t)| t.live_pipes)
            .sum()
    }

    /// The targets named `name` of route `route`, members or retired by a
    /// reload.
    pub(crate) fn ids_named(&self, route: &str, name: &str) -> Vec<TargetId> {
        self.targets
            .iter()
            .filter(|(_, t)| t.route == route && t.name == name)
            .map(|(id, _)| id)
            .collect()
    }

    /// The operator sets `id`'s state. Drain and maint take it out of
    /// balancing at once (the caller answers only after this returns) and
    /// close its warm pool; maint also stops its probes. Ready brings the
    /// pool back.
    pub(crate) fn set_state(
        &mut self,
        id: TargetId,
        state: TargetState,
        registry: &Registry,
        now: Instant,
    ) {
        let Some(target) = self.targets.get_mut(id) else {
            return;
        };
        let was = std::mem::replace(&mut target.state, state);
        if was == state {
            return;
        }
        if self.share.is_leader() {
            info!("target {}: {was} -> {state} (operator)", target.label());
        }
        match state {
            TargetState::Ready => self.refill(id, registry, now),
            TargetState::Drain => self.pool.forget(id),
            TargetState::Maint => {
                self.pool.forget(id);
                self.probes.forget(id);
            }
        }
    }

    /// The operator sets `id`'s weight; 0 takes no new pipe (and keeps no
    /// warm pool).
    pub(crate) fn set_weight(
        &mut self,
        id: TargetId,
        weight: u32,
        registry: &Registry,
        now: Instant,
    ) {
        let Some(target) = self.targets.get_mut(id) else {
            return;
        };
        let was = std::mem::replace(&mut target.weight, weight);
        if was == weight {
            return;
        }
        if self.share.is_leader() {
            info!(
                "target {}: weight {was} -> {weight} (operator)",
                target.label()
            );
        }
        if weight == 0 {
            self.pool.forget(id);
        } else if was == 0 {
            self.refill(id, registry, now);
        }
    }

    /// Every member of `group`, in config order, as the operator's tools
    /// show it.
    pub(crate) fn infos(
        &self,
        group: GroupId,
        live_bytes: &HashMap<TargetId, [u64; 2]>,
    ) -> Vec<TargetInfo> {
        let Some(group) = self.targets.group(group) else {
            return Vec::new();
        };
        group
            .members
            .iter()
            .filter_map(|&id| {
                let bytes = live_bytes.get(&id).copied().unwrap_or_default();
                self.targets.get(id).map(|target| target.info(bytes))
            })
            .collect()
    }
}
