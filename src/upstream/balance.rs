//! Which of a route's targets a new client goes to.

use std::net::IpAddr;
use std::time::Instant;

use crate::arena::{Arena, TargetTag};
use crate::config::Balance;

use super::target::{Target, TargetId};

/// A balancing mode and its memory (where round-robin goes on from).
pub(crate) struct Balancer {
    mode: Balance,
    /// Where the next round-robin (and least-conn tie) scan starts.
    cursor: usize,
}

impl Balancer {
    pub(crate) fn new(mode: Balance) -> Balancer {
        Balancer { mode, cursor: 0 }
    }

    /// Chooses among `members` for a client from `client_ip`, skipping
    /// those in `tried` (all of them are fair game again once each has been
    /// tried). A down target whose cooldown has run out is taken as its one
    /// trial.
    ///
    /// When no member is eligible, every one being down, the one whose
    /// cooldown ends first is tried anyway: refusing would only turn a
    /// recovered backend into failed clients until the cooldown ends.
    pub(crate) fn pick(
        &mut self,
        members: &[TargetId],
        targets: &mut Arena<Target, TargetTag>,
        client_ip: IpAddr,
        tried: &[TargetId],
        now: Instant,
    ) -> Option<TargetId> {
        let all_tried = members.iter().all(|id| tried.contains(id));
        let untried = |id: &TargetId| all_tried || !tried.contains(id);
        let count = members.len();
        let view = |position: usize| {
            let id = members[position];
            targets.get(id).map(|target| (id, target))
        };
        let eligible = |position: usize| {
            view(position).filter(|(id, target)| untried(id) && target.health.is_eligible(now))
        };
        let from_cursor = || (0..count).map(|step| (self.cursor + step) % count);
        let chosen = match self.mode {
            Balance::RoundRobin => from_cursor().find(|&p| eligible(p).is_some()),
            Balance::LeastConn => from_cursor()
                .filter_map(|p| eligible(p).map(|(_, target)| (p, target.live_pipes)))
                .min_by_key(|&(_, load)| load)
                .map(|(p, _)| p),
            Balance::SourceHash => (0..count)
                .filter_map(|p| {
                    eligible(p).map(|(_, target)| (p, rendezvous_score(client_ip, &target.name)))
                })
                .max_by_key(|&(_, score)| score)
                .map(|(p, _)| p),
        };
        let position = chosen.or_else(|| {
            (0..count)
                .filter_map(|p| view(p).filter(|(id, _)| untried(id)).map(|(_, t)| (p, t)))
                .min_by_key(|(_, target)| target.health.back_at())
                .map(|(p, _)| p)
        })?;
        self.cursor = (position + 1) % count;
        let id = members[position];
        if let Some(target) = targets.get_mut(id) {
            target.health.chosen(now);
        }
        Some(id)
    }
}

/// Highest-random-weight hashing: each client IP ranks the targets, and
/// takes its best healthy one. When a target goes down only its own clients
/// move, each to its next best; the rest stay where they were. FNV-1a then
/// a 64-bit finalizer, so the mapping is the same across restarts.
fn rendezvous_score(client_ip: IpAddr, target_name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let ip_bytes = match client_ip {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    for byte in ip_bytes.iter().chain(b"/").chain(target_name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::upstream::health::HealthPolicy;
    use std::time::Duration;

    struct Fixture {
        targets: Arena<Target, TargetTag>,
        members: Vec<TargetId>,
        balancer: Balancer,
    }

    const POLICY: HealthPolicy = HealthPolicy {
        fail_threshold: 2,
        cooldown: Some(Duration::from_secs(5)),
    };

    impl Fixture {
        fn new(n: usize, mode: Balance) -> Fixture {
            let route = config::Route::new(
                "r",
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            );
            let mut targets = Arena::new();
            let members = (0..n)
                .map(|i| {
                    let name = format!("10.0.0.{i}:80");
                    let target = config::Target {
                        addr: name.parse().unwrap(),
                        name,
                    };
                    targets.insert(Target::new(&route, &target))
                })
                .collect();
            Fixture {
                targets,
                members,
                balancer: Balancer::new(mode),
            }
        }

        fn pick_tried(&mut self, client: u8, tried: &[usize], now: Instant) -> usize {
            let tried: Vec<TargetId> = tried.iter().map(|&i| self.members[i]).collect();
            let ip = IpAddr::from([127, 0, 0, client]);
            let id = self
                .balancer
                .pick(&self.members, &mut self.targets, ip, &tried, now)
                .expect("a target");
            self.members.iter().position(|&m| m == id).unwrap()
        }

        fn pick(&mut self, client: u8, now: Instant) -> usize {
            self.pick_tried(client, &[], now)
        }

        fn target(&mut self, i: usize) -> &mut Target {
            self.targets.get_mut(self.members[i]).unwrap()
        }
    }

    #[test]
    fn round_robin_takes_each_target_in_turn_and_skips_down_ones() {
        let now = Instant::now();
        let mut set = Fixture::new(3, Balance::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| set.pick(1, now)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        set.target(1).health.failed(&POLICY, true, now);
        let picks: Vec<usize> = (0..4).map(|_| set.pick(1, now)).collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn least_conn_prefers_the_target_with_fewest_pipes() {
        let now = Instant::now();
        let mut set = Fixture::new(3, Balance::LeastConn);
        set.target(0).live_pipes = 2;
        set.target(1).live_pipes = 1;
        assert_eq!(set.pick(1, now), 2);
        set.target(2).live_pipes = 2;
        assert_eq!(set.pick(1, now), 1);
    }

    #[test]
    fn source_hash_is_stable_and_only_moves_the_clients_of_a_down_target() {
        let now = Instant::now();
        let mut set = Fixture::new(3, Balance::SourceHash);
        let before: Vec<usize> = (1..=200).map(|i| set.pick(i, now)).collect();
        let again: Vec<usize> = (1..=200).map(|i| set.pick(i, now)).collect();
        assert_eq!(before, again);
        assert!(
            (0..3).all(|t| before.contains(&t)),
            "every target gets clients"
        );
        set.target(1).health.failed(&POLICY, true, now);
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
        let mut set = Fixture::new(2, Balance::RoundRobin);
        set.target(0).health.failed(&POLICY, true, start);
        assert_eq!(set.pick(1, start), 1);
        assert_eq!(set.pick(1, start), 1);
        let later = start + Duration::from_secs(5);
        assert_eq!(set.pick(1, later), 0, "the trial");
        assert_eq!(set.pick(1, later), 1, "only one trial at a time");
    }

    #[test]
    fn with_every_target_down_the_soonest_back_is_tried_anyway() {
        let now = Instant::now();
        let mut set = Fixture::new(2, Balance::RoundRobin);
        set.target(1).health.failed(&POLICY, true, now);
        set.target(0)
            .health
            .failed(&POLICY, true, now + Duration::from_secs(1));
        assert_eq!(set.pick(1, now), 1);
    }

    #[test]
    fn a_retry_skips_the_targets_already_tried() {
        let now = Instant::now();
        let mut set = Fixture::new(3, Balance::SourceHash);
        let first = set.pick(7, now);
        let second = set.pick_tried(7, &[first], now);
        assert_ne!(first, second);
        assert!(
            set.pick_tried(7, &[0, 1, 2], now) < 3,
            "once all were tried, any may be tried again"
        );
    }
}
