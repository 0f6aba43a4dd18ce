//! The set of targets: each with a stable identity, the route's policy for
//! it, its health and its load; and each route's group of them.
//!
//! A target lives from the config that adds it until a reload removes it
//! and its last pipe has ended. Within a route a target is known by its
//! name (the n-th of a name listed more than once), so a reload that keeps
//! the name keeps the target: its health, its counters, its pool.

use std::net::SocketAddr;
use std::time::Duration;

use crate::arena::Id;
use crate::config;

use super::balance::Balancer;
use super::health::{Health, HealthPolicy};

pub(crate) type TargetId = Id<Target>;
pub(crate) type GroupId = Id<Group>;

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
    /// Removed by a reload: takes no new pipes, keeps no pool, and is
    /// forgotten once its last pipe has ended.
    pub(crate) retired: bool,
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
            retired: false,
        }
    }

    /// How logs name it: the name as given, the address too when the name
    /// is a host name, and the route unless it is the only, default one.
    pub(crate) fn label(&self) -> String {
        let mut label = if self.name == self.addr.to_string() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.addr)
        };
        if self.route != config::DEFAULT_ROUTE_NAME {
            label.push_str(&format!(" of route {}", self.route));
        }
        label
    }

    /// Whether a new client may be sent here.
    pub(crate) fn takes_new_pipes(&self) -> bool {
        !self.retired
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
    /// TCP keepalive of the route's upstream sockets.
    pub(crate) keepalive: Option<Duration>,
}

impl Group {
    pub(crate) fn new(route: &config::Route, members: Vec<TargetId>) -> Group {
        Group {
            members,
            balancer: Balancer::new(route.balance),
            keepalive: route.keepalive,
        }
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
    use crate::arena::Arena;

    #[test]
    fn targets_are_matched_by_name_and_occurrence() {
        let mut arena: Arena<Target> = Arena::new();
        let route = config::Route::new(
            "r",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let target = |name: &str| config::Target {
            name: name.into(),
            addr: "127.0.0.1:9".parse().unwrap(),
        };
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
}
