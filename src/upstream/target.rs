//! The set of targets: each with a stable identity, the route's policy for
//! it, its health and its load; and each route's group of them.
//!
//! A target lives from the config that adds it until a reload removes it
//! and its last pipe has ended. Within a route a target is known by its
//! name (the n-th of a name listed more than once), so a reload that keeps
//! the name keeps the target: its health, its counters, its pool.

use std::net::SocketAddr;
use std::time::Duration;

use log::info;

use std::net::IpAddr;
use std::time::Instant;

use crate::arena::{Arena, GroupTag, TargetTag};
use crate::config;
use crate::handover::TargetName;
use crate::metrics::TargetStats;
use crate::operator::TargetState;
use crate::throttle::Throttle;

use super::balance::{Balancer, Member};
use super::health::{Candidates, Health, HealthPolicy};
use super::resolver::Watched;

pub(crate) use crate::arena::{GroupId, TargetId};

pub(crate) struct Target {
    /// The route it belongs to, for logs.
    pub(crate) route: String,
    /// As given in the config: `host:port` or an address.
    pub(crate) name: String,
    /// What the name resolves to now.
    pub(crate) addr: SocketAddr,
    pub(crate) policy: Policy,
    /// Pipes assigned here, connecting or established.
    pub(crate) live_pipes: usize,
    pub(crate) health: Health,
    /// What metrics show of it.
    pub(crate) stats: TargetStats,
    /// Removed by a reload: takes no new pipes, keeps no pool, and is
    /// forgotten once its last pipe has ended.
    pub(crate) retired: bool,
    /// "cannot connect" lines: each target its own, so one target's flood
    /// of failures does not hide another's first.
    pub(crate) connect_warnings: Throttle,
    /// The operator's say: ready, drain or maint. Kept across reloads.
    pub(crate) state: TargetState,
    /// Its weight now: the file's, or the operator's since.
    pub(crate) weight: u32,
    /// The weight the config last gave it: a reload that changes it
    /// overrides the operator's, one that keeps it does not.
    pub(crate) configured_weight: u32,
    /// Takes clients only while no primary target can.
    pub(crate) backup: bool,
}

impl Target {
    pub(crate) fn new(route: &config::Route, target: &config::Target) -> Target {
        Target {
            route: route.name.clone(),
            name: target.name.clone(),
            addr: target.addr,
            policy: Policy::of(route),
            live_pipes: 0,
            health: Health::new(),
            stats: TargetStats::default(),
            retired: false,
            connect_warnings: Throttle::default(),
            state: TargetState::Ready,
            weight: target.weight,
            configured_weight: target.weight,
            backup: target.backup,
        }
    }

    /// How logs name it: `route/name` as HAProxy writes `backend/server`
    /// (just the name on the command line's one route), with the address
    /// when the name is a host name.
    pub(crate) fn label(&self) -> String {
        let mut label = if self.route == config::DEFAULT_ROUTE_NAME {
            self.name.clone()
        } else {
            format!("{}/{}", self.route, self.name)
        };
        if self.name != self.addr.to_string() {
            label.push_str(&format!(" ({})", self.addr));
        }
        label
    }

    /// Its name now resolves to `addr`; returns whether that moved it.
    pub(crate) fn readdress(&mut self, addr: SocketAddr) -> bool {
        if self.addr == addr {
            return false;
        }
        info!(
            "target {} now resolves to {addr} (was {})",
            self.label(),
            self.addr
        );
        self.addr = addr;
        true
    }

    /// Whether the config lists it still (new clients may be sent here
    /// if the operator and health allow).
    pub(crate) fn takes_new_pipes(&self) -> bool {
        !self.retired
    }

    /// Whether the operator lets new clients come here: ready, with a
    /// weight; health decides apart.
    pub(crate) fn admits(&self) -> bool {
        !self.retired && self.state == TargetState::Ready && self.weight > 0
    }

    /// Up as metrics and the admin API show it: health says up, and the
    /// operator has not put it in maintenance.
    pub(crate) fn counts_as_up(&self) -> bool {
        self.health.is_up() && self.state != TargetState::Maint
    }

    /// No pipe holds it any more and no config lists it.
    pub(crate) fn is_forgotten(&self) -> bool {
        self.retired && self.live_pipes == 0
    }
}

/// What a route says about each of its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) health: HealthPolicy,
    pub(crate) health_interval: Option<Duration>,
    pub(crate) pool: usize,
    pub(crate) pool_max_idle: Duration,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
}

impl Policy {
    pub(crate) fn of(route: &config::Route) -> Policy {
        Policy {
            health: HealthPolicy {
                fail_threshold: route.fail_threshold,
                cooldown: route.cooldown,
            },
            health_interval: route.health_interval,
            pool: route.pool,
            pool_max_idle: route.pool_max_idle,
            connect_timeout: route.connect_timeout,
            keepalive: route.keepalive,
        }
    }
}

/// One route's targets, in the order its config lists them, and how a
/// client is sent to one.
pub(crate) struct Group {
    pub(crate) members: Vec<TargetId>,
    pub(crate) balancer: Balancer,
}

impl Group {
    pub(crate) fn new(route: &config::Route, members: Vec<TargetId>) -> Group {
        Group {
            members,
            balancer: Balancer::new(route.balance),
        }
    }
}

/// Every route's targets, and each route's group of them.
pub(crate) struct Targets {
    targets: Arena<Target, TargetTag>,
    groups: Arena<Group, GroupTag>,
}

/// What bringing a group in line with its route's config did, for the
/// caller to act on (pools, probes) and to report.
#[derive(Default)]
pub(crate) struct Regrouped {
    /// The group's members now, in the config's order.
    pub(crate) members: Vec<TargetId>,
    /// Kept targets, with the policy they had and whether their address
    /// moved.
    pub(crate) kept: Vec<(TargetId, Policy, bool)>,
    /// Targets the config no longer lists: they take no new pipes.
    pub(crate) removed: Vec<TargetId>,
    pub(crate) added_names: Vec<String>,
    pub(crate) removed_names: Vec<String>,
    /// Kept targets whose weight or backup flag the config changed.
    pub(crate) changed: Vec<String>,
}

impl Targets {
    pub(crate) fn new() -> Targets {
        Targets {
            targets: Arena::new(),
            groups: Arena::new(),
        }
    }

    pub(crate) fn get(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: TargetId) -> Option<&mut Target> {
        self.targets.get_mut(id)
    }

    /// Every target, kept or retired.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (TargetId, &Target)> {
        self.targets.iter()
    }

    pub(crate) fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(id)
    }

    pub(crate) fn label(&self, id: TargetId) -> String {
        self.get(id)
            .map_or_else(|| "a removed target".into(), Target::label)
    }

    /// A new, empty group for `route`; [`regroup`](Targets::regroup) fills it.
    pub(crate) fn add_group(&mut self, route: &config::Route) -> GroupId {
        self.groups.insert(Group::new(route, Vec::new()))
    }

    /// Brings a group in line with its route's config: targets it keeps
    /// keep their identity, health and load and take the new policy and
    /// address; new ones join; removed ones retire.
    pub(crate) fn regroup(&mut self, id: GroupId, route: &config::Route) -> Regrouped {
        let matching = {
            let members = self.groups.get(id).map_or(&[][..], |g| &g.members);
            let current: Vec<(TargetId, &str)> = members
                .iter()
                .filter_map(|&t| self.targets.get(t).map(|target| (t, target.name.as_str())))
                .collect();
            match_targets(&current, &route.targets)
        };
        let mut regrouped = Regrouped::default();
        let policy = Policy::of(route);
        for (kept, wanted) in matching.wanted {
            let kept = kept.and_then(|id| Some((id, self.targets.get_mut(id)?)));
            let member = match kept {
                Some((id, target)) => {
                    let old = std::mem::replace(&mut target.policy, policy);
                    let moved = target.readdress(wanted.addr);
                    regrouped.changed.extend(target.configure(wanted));
                    regrouped.kept.push((id, old, moved));
                    id
                }
                None => {
                    regrouped.added_names.push(wanted.describe());
                    self.targets.insert(Target::new(route, wanted))
                }
            };
            regrouped.members.push(member);
        }
        for removed in matching.removed {
            if let Some(target) = self.targets.get(removed) {
                regrouped.removed_names.push(target.name.clone());
            }
            self.retire(removed);
            regrouped.removed.push(removed);
        }
        if let Some(group) = self.groups.get_mut(id) {
            *group = Group::new(route, regrouped.members.clone());
        }
        regrouped
    }

    /// The route is gone: every target of its group retires. Returns them.
    pub(crate) fn remove_group(&mut self, id: GroupId) -> Vec<TargetId> {
        let members = self
            .groups
            .remove(id)
            .map(|g| g.members)
            .unwrap_or_default();
        for &target in &members {
            self.retire(target);
        }
        members
    }

    fn retire(&mut self, id: TargetId) {
        if let Some(target) = self.targets.get_mut(id) {
            target.retired = true;
            if target.is_forgotten() {
                self.targets.remove(id);
            }
        }
    }

    /// A target of `group` for a client from `client_ip`, skipping those
    /// in `tried` while others remain: health says which members may take
    /// the client, the balancer picks one of them, and health marks the
    /// pick as the target's trial if it is one.
    pub(crate) fn pick(
        &mut self,
        group: GroupId,
        client_ip: IpAddr,
        tried: &[TargetId],
        now: Instant,
    ) -> Option<TargetId> {
        let group = self.groups.get_mut(group)?;
        let candidates = Candidates::new(&group.members, &self.targets, tried, now);
        let member = |position| {
            candidates.get(position).map(|target| Member {
                load: target.live_pipes,
                name: &target.name,
                weight: target.weight,
            })
        };
        let position = group
            .balancer
            .pick(group.members.len(), client_ip, member)?;
        let id = *group.members.get(position)?;
        if let Some(target) = self.targets.get_mut(id) {
            target.health.chosen(now);
        }
        Some(id)
    }

    /// A pipe was sent to `id`.
    pub(crate) fn assign(&mut self, id: TargetId) {
        if let Some(target) = self.targets.get_mut(id) {
            target.live_pipes += 1;
            target.stats.pipes += 1;
        }
    }

    /// A pipe sent to `id` has left it: it ended, or failed over to
    /// another target. `connect_ended`: its connect had succeeded or
    /// failed; if not, and it was the target's trial, the next client makes
    /// the trial instead. A retired target is forgotten with its last pipe.
    pub(crate) fn release(&mut self, id: TargetId, connect_ended: bool, now: Instant) {
        if let Some(target) = self.targets.get_mut(id) {
            if !connect_ended {
                target.health.abandoned(now);
            }
            target.live_pipes = target.live_pipes.saturating_sub(1);
            if target.is_forgotten() {
                self.targets.remove(id);
            }
        }
    }

    /// How another process finds `id` (a live upgrade): its route's name,
    /// its name, and which of that name it is in its route's group; `None`
    /// for a target no group lists any more.
    pub(crate) fn name_of(&self, id: TargetId) -> Option<TargetName> {
        let target = self.targets.get(id)?;
        let (_, group) = self
            .groups
            .iter()
            .find(|(_, group)| group.members.contains(&id))?;
        let nth = group
            .members
            .iter()
            .take_while(|&&member| member != id)
            .filter(|&&member| self.get(member).is_some_and(|t| t.name == target.name))
            .count();
        Some(TargetName {
            route: target.route.clone(),
            name: target.name.clone(),
            nth: nth as u32,
        })
    }

    /// The `nth` target named `name` in `group`.
    pub(crate) fn named(&self, group: GroupId, name: &str, nth: u32) -> Option<TargetId> {
        self.groups
            .get(group)?
            .members
            .iter()
            .copied()
            .filter(|&member| self.get(member).is_some_and(|t| t.name == name))
            .nth(nth as usize)
    }

    /// The targets whose names the resolver should watch.
    pub(crate) fn watched(&self) -> Vec<Watched> {
        self.targets
            .iter()
            .filter(|(_, target)| target.takes_new_pipes())
            .map(|(id, target)| (id, target.name.clone(), target.addr))
            .collect()
    }
}

/// How a reload's list of targets maps onto a route's current ones.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Matching<'a> {
    /// In the new config's order: the target kept, or `None` for a new one.
    pub(crate) wanted: Vec<(Option<TargetId>, &'a config::Target)>,
    /// Current targets the new config no longer lists.
    pub(crate) removed: Vec<TargetId>,
}

/// Matches targets by name; the n-th occurrence of a name matches the n-th.
pub(crate) fn match_targets<'a>(
    current: &[(TargetId, &str)],
    wanted: &'a [config::Target],
) -> Matching<'a> {
    let mut unmatched: Vec<(TargetId, &str)> = current.to_vec();
    let wanted = wanted
        .iter()
        .map(|target| {
            let kept = unmatched
                .iter()
                .position(|(_, name)| *name == target.name)
                .map(|position| unmatched.remove(position).0);
            (kept, target)
        })
        .collect();
    Matching {
        wanted,
        removed: unmatched.into_iter().map(|(id, _)| id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::{Arena, TargetTag};

    #[test]
    fn targets_are_matched_by_name_and_occurrence() {
        let mut arena: Arena<Target, TargetTag> = Arena::new();
        let route = config::Route::new(
            "r",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let target = |name: &str| config::Target::new(name, "127.0.0.1:9".parse().unwrap());
        let a1 = arena.insert(Target::new(&route, &target("a")));
        let a2 = arena.insert(Target::new(&route, &target("a")));
        let b = arena.insert(Target::new(&route, &target("b")));
        let current = [(a1, "a"), (b, "b"), (a2, "a")];
        let wanted = [target("c"), target("a"), target("b")];
        let matching = match_targets(&current, &wanted);
        let kept: Vec<Option<TargetId>> = matching.wanted.iter().map(|(id, _)| *id).collect();
        assert_eq!(kept, [None, Some(a1), Some(b)]);
        assert_eq!(matching.removed, [a2]);
    }

    /// A group of `n` targets balanced by `mode`, as a route adds it.
    struct Fixture {
        targets: Targets,
        group: GroupId,
        members: Vec<TargetId>,
    }

    const POLICY: HealthPolicy = HealthPolicy {
        fail_threshold: 2,
        cooldown: Some(Duration::from_secs(5)),
    };

    impl Fixture {
        fn new(n: usize, mode: config::Balance) -> Fixture {
            let mut route = config::Route::new(
                "r",
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            );
            route.balance = mode;
            route.targets = (0..n)
                .map(|i| {
                    let name = format!("10.0.0.{i}:80");
                    config::Target::new(name.clone(), name.parse().unwrap())
                })
                .collect();
            let mut targets = Targets::new();
            let group = targets.add_group(&route);
            let members = targets.regroup(group, &route).members;
            Fixture {
                targets,
                group,
                members,
            }
        }

        fn pick_tried(&mut self, client: u8, tried: &[usize], now: Instant) -> usize {
            let tried: Vec<TargetId> = tried.iter().map(|&i| self.members[i]).collect();
            let ip = IpAddr::from([127, 0, 0, client]);
            let id = self
                .targets
                .pick(self.group, ip, &tried, now)
                .expect("a target");
            self.members.iter().position(|&m| m == id).unwrap()
        }

        fn pick(&mut self, client: u8, now: Instant) -> usize {
            self.pick_tried(client, &[], now)
        }

        fn health(&mut self, i: usize) -> &mut Health {
            &mut self.targets.get_mut(self.members[i]).unwrap().health
        }
    }

    #[test]
    fn round_robin_skips_down_targets() {
        let now = Instant::now();
        let mut set = Fixture::new(3, config::Balance::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| set.pick(1, now)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        set.health(1).failed(&POLICY, true, now);
        let picks: Vec<usize> = (0..4).map(|_| set.pick(1, now)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn source_hash_only_moves_the_clients_of_a_down_target() {
        let now = Instant::now();
        let mut set = Fixture::new(3, config::Balance::SourceHash);
        let before: Vec<usize> = (1..=200).map(|i| set.pick(i, now)).collect();
        set.health(1).failed(&POLICY, true, now);
        for (i, &was) in (1..=200).zip(&before) {
            let now_at = set.pick(i, now);
            if was == 1 {
                assert_ne!(now_at, 1);
            } else {
                assert_eq!(now_at, was, "client {i} moved though its target stayed up");
            }
        }
    }

    #[test]
    fn a_down_target_gets_one_trial_after_its_cooldown() {
        let start = Instant::now();
        let mut set = Fixture::new(2, config::Balance::RoundRobin);
        set.health(0).failed(&POLICY, true, start);
        assert_eq!(set.pick(1, start), 1);
        assert_eq!(set.pick(1, start), 1);
        let later = start + Duration::from_secs(5);
        assert_eq!(set.pick(1, later), 0, "the trial");
        let picks: Vec<usize> = (0..3).map(|_| set.pick(1, later)).collect();
        assert_eq!(picks, [1, 1, 1], "only one trial at a time");
    }

    #[test]
    fn with_every_target_down_the_soonest_back_is_tried_anyway() {
        let now = Instant::now();
        let mut set = Fixture::new(2, config::Balance::RoundRobin);
        set.health(1).failed(&POLICY, true, now);
        set.health(0)
            .failed(&POLICY, true, now + Duration::from_secs(1));
        assert_eq!(set.pick(1, now), 1);
    }

    #[test]
    fn a_retry_skips_the_targets_already_tried() {
        let now = Instant::now();
        let mut set = Fixture::new(3, config::Balance::SourceHash);
        let first = set.pick(7, now);
        let second = set.pick_tried(7, &[first], now);
        assert_ne!(first, second);
        assert!(
            set.pick_tried(7, &[0, 1, 2], now) < 3,
            "once all were tried, any may be tried again"
        );
    }
}
