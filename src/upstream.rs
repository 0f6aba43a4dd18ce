//! The upstream set: the targets, which one a new client goes to, and which
//! of them are healthy enough to try.
//!
//! Health is passive (connect outcomes of real clients and of the warm pool)
//! and, when enabled, active (probe connects). After `fail_threshold`
//! consecutive failures a target is down for a cooldown that doubles on
//! every failed trial, up to [`MAX_COOLDOWN`]. Once the cooldown has run out,
//! one trial connection decides whether it comes back.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::{Balance, Target, MAX_TARGETS};

/// The longest a target stays down before its next trial.
pub(crate) const MAX_COOLDOWN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// Not tried until `until`; then one trial decides.
    Down {
        until: Instant,
        cooldown: Duration,
    },
    /// One trial connection is under way.
    Trial {
        cooldown: Duration,
    },
}

pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// Pipes assigned to this target, connecting or established.
    live_pipes: usize,
    consecutive_failures: u32,
    health: Health,
}

/// How passive health is judged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HealthPolicy {
    pub(crate) fail_threshold: u32,
    /// `None`: a target is never marked down.
    pub(crate) cooldown: Option<Duration>,
}

impl Upstream {
    /// The name as given, and the address too when the name is a host name.
    fn label(&self) -> String {
        if self.name == self.addr.to_string() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.addr)
        }
    }
}

pub(crate) struct Upstreams {
    targets: Vec<Upstream>,
    balance: Balance,
    policy: HealthPolicy,
    /// Where the next round-robin (and least-conn tie) scan starts.
    cursor: usize,
}

/// Which targets a pipe has already tried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tried(u64);

impl Tried {
    pub(crate) fn with(self, index: usize) -> Tried {
        Tried(self.0 | 1 << index)
    }

    fn contains(self, index: usize) -> bool {
        self.0 & (1 << index) != 0
    }
}

impl Upstreams {
    pub(crate) fn new(targets: &[Target], balance: Balance, policy: HealthPolicy) -> Upstreams {
        assert!(!targets.is_empty() && targets.len() <= MAX_TARGETS);
        Upstreams {
            targets: targets
                .iter()
                .map(|t| Upstream {
                    name: t.name.clone(),
                    addr: t.addr,
                    live_pipes: 0,
                    consecutive_failures: 0,
                    health: Health::Up,
                })
                .collect(),
            balance,
            policy,
            cursor: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    pub(crate) fn get(&self, index: usize) -> &Upstream {
        &self.targets[index]
    }

    /// Chooses a target for a client from `client_ip`, skipping those in
    /// `tried` (all of them are fair game again once each has been tried).
    /// A down target whose cooldown has run out is taken as its one trial.
    ///
    /// When no target is eligible, every target being down, the one whose
    /// cooldown ends first is tried anyway: refusing would only turn a
    /// recovered backend into failed clients until the cooldown ends.
    pub(crate) fn pick(&mut self, client_ip: IpAddr, tried: Tried, now: Instant) -> usize {
        let tried = if (0..self.len()).all(|i| tried.contains(i)) {
            Tried::default()
        } else {
            tried
        };
        let eligible = |i: usize, target: &Upstream| {
            !tried.contains(i)
                && match target.health {
                    Health::Up => true,
                    Health::Down { until, .. } => until <= now,
                    Health::Trial { .. } => false,
                }
        };
        let count = self.len();
        let chosen = match self.balance {
            Balance::RoundRobin => (0..count)
                .map(|step| (self.cursor + step) % count)
                .find(|&i| eligible(i, &self.targets[i])),
            Balance::LeastConn => (0..count)
                .map(|step| (self.cursor + step) % count)
                .filter(|&i| eligible(i, &self.targets[i]))
                .min_by_key(|&i| self.targets[i].live_pipes),
            Balance::SourceHash => (0..count)
                .filter(|&i| eligible(i, &self.targets[i]))
                .max_by_key(|&i| rendezvous_score(client_ip, &self.targets[i].name)),
        };
        let index = chosen.unwrap_or_else(|| self.soonest_back(tried));
        self.cursor = (index + 1) % count;
        let target = &mut self.targets[index];
        if let Health::Down { until, cooldown } = target.health {
            if until <= now {
                target.health = Health::Trial { cooldown };
            }
        }
        index
    }

    fn soonest_back(&self, tried: Tried) -> usize {
        let back_at = |target: &Upstream| match target.health {
            Health::Down { until, .. } => Some(until),
            Health::Up | Health::Trial { .. } => None,
        };
        (0..self.len())
            .filter(|&i| !tried.contains(i))
            .min_by_key(|&i| back_at(&self.targets[i]))
            .unwrap_or(0)
    }

    pub(crate) fn is_up(&self, index: usize) -> bool {
        self.targets[index].health == Health::Up
    }

    pub(crate) fn pipe_assigned(&mut self, index: usize) {
        self.targets[index].live_pipes += 1;
    }

    pub(crate) fn pipe_released(&mut self, index: usize) {
        let target = &mut self.targets[index];
        target.live_pipes = target.live_pipes.saturating_sub(1);
    }

    /// A connect to the target succeeded. Returns whether that brought the
    /// target back up.
    pub(crate) fn connect_succeeded(&mut self, index: usize) -> bool {
        let target = &mut self.targets[index];
        target.consecutive_failures = 0;
        if target.health == Health::Up {
            return false;
        }
        info!("target {} is up again", target.label());
        target.health = Health::Up;
        true
    }

    /// A connect to the target failed (refused, reset or timed out). With
    /// `decisive` (a failed health probe) it is down at once. Returns whether
    /// the target has just gone down.
    pub(crate) fn connect_failed(&mut self, index: usize, decisive: bool, now: Instant) -> bool {
        let Some(base) = self.policy.cooldown else {
            return false;
        };
        let threshold = self.policy.fail_threshold;
        let target = &mut self.targets[index];
        target.consecutive_failures = target.consecutive_failures.saturating_add(1);
        let cooldown = match target.health {
            Health::Up if decisive || target.consecutive_failures >= threshold => base,
            Health::Up => return false,
            Health::Trial { cooldown } => (cooldown * 2).min(MAX_COOLDOWN),
            // A last-resort attempt while down: the cooldown stands.
            Health::Down { .. } => return false,
        };
        target.health = Health::Down {
            until: now + cooldown,
            cooldown,
        };
        warn!(
            "target {} is down after {} failed connects; next trial in {:?}",
            target.label(),
            target.consecutive_failures,
            cooldown
        );
        true
    }

    /// A pipe sent to `index` ended before its connect did. If that was the
    /// target's trial, the next client makes it instead.
    pub(crate) fn attempt_abandoned(&mut self, index: usize, now: Instant) {
        let target = &mut self.targets[index];
        if let Health::Trial { cooldown } = target.health {
            target.health = Health::Down {
                until: now,
                cooldown,
            };
        }
    }

    /// The resolver found a new address for a target.
    pub(crate) fn readdress(&mut self, index: usize, addr: SocketAddr) {
        let target = &mut self.targets[index];
        if target.addr != addr {
            info!(
                "target {} now resolves to {} (was {})",
                target.name, addr, target.addr
            );
            target.addr = addr;
        }
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

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                name: format!("10.0.0.{i}:80"),
                addr: format!("10.0.0.{i}:80").parse().unwrap(),
            })
            .collect()
    }

    fn upstreams(n: usize, balance: Balance) -> Upstreams {
        let policy = HealthPolicy {
            fail_threshold: 2,
            cooldown: Some(Duration::from_secs(5)),
        };
        Upstreams::new(&targets(n), balance, policy)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn round_robin_takes_each_target_in_turn_and_skips_down_ones() {
        let now = Instant::now();
        let mut set = upstreams(3, Balance::RoundRobin);
        let picks: Vec<usize> = (0..6)
            .map(|_| set.pick(ip(1), Tried::default(), now))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        set.connect_failed(1, true, now);
        let picks: Vec<usize> = (0..4)
            .map(|_| set.pick(ip(1), Tried::default(), now))
            .collect();
        assert_eq!(picks, [0, 2, 0, 2]);
    }

    #[test]
    fn least_conn_prefers_the_target_with_fewest_pipes() {
        let now = Instant::now();
        let mut set = upstreams(3, Balance::LeastConn);
        set.pipe_assigned(0);
        set.pipe_assigned(0);
        set.pipe_assigned(1);
        assert_eq!(set.pick(ip(1), Tried::default(), now), 2);
        set.pipe_assigned(2);
        set.pipe_assigned(2);
        assert_eq!(set.pick(ip(1), Tried::default(), now), 1);
    }

    #[test]
    fn source_hash_is_stable_and_only_moves_the_clients_of_a_down_target() {
        let now = Instant::now();
        let mut set = upstreams(3, Balance::SourceHash);
        let before: Vec<usize> = (1..=200)
            .map(|i| set.pick(ip(i), Tried::default(), now))
            .collect();
        let again: Vec<usize> = (1..=200)
            .map(|i| set.pick(ip(i), Tried::default(), now))
            .collect();
        assert_eq!(before, again);
        assert!(
            (0..3).all(|t| before.contains(&t)),
            "every target gets clients"
        );
        set.connect_failed(1, true, now);
        for (i, &was) in (1..=200).zip(&before) {
            let now_at = set.pick(ip(i), Tried::default(), now);
            if was == 1 {
                assert_ne!(now_at, 1);
            } else {
                assert_eq!(now_at, was, "client {i} moved though its target stayed up");
            }
        }
    }

    #[test]
    fn a_target_goes_down_at_the_threshold_and_gets_one_trial_after_the_cooldown() {
        let start = Instant::now();
        let mut set = upstreams(2, Balance::RoundRobin);
        set.connect_failed(0, false, start);
        assert!(set.is_up(0), "one failure is below the threshold of 2");
        set.connect_failed(0, false, start);
        assert!(!set.is_up(0));
        assert_eq!(set.pick(ip(1), Tried::default(), start), 1);
        assert_eq!(set.pick(ip(1), Tried::default(), start), 1);

        let later = start + Duration::from_secs(5);
        assert_eq!(set.pick(ip(1), Tried::default(), later), 0, "the trial");
        assert_eq!(
            set.pick(ip(1), Tried::default(), later),
            1,
            "only one trial at a time"
        );
        set.connect_failed(0, false, later);
        let not_yet = later + Duration::from_secs(9);
        assert_eq!(
            set.pick(ip(1), Tried::default(), not_yet),
            1,
            "the cooldown doubled"
        );
        let trial = later + Duration::from_secs(10);
        assert_eq!(set.pick(ip(1), Tried::default(), trial), 0);
        set.connect_succeeded(0);
        assert!(set.is_up(0));
    }

    #[test]
    fn an_abandoned_trial_is_made_by_the_next_client() {
        let start = Instant::now();
        let mut set = upstreams(2, Balance::RoundRobin);
        set.connect_failed(0, true, start);
        let later = start + Duration::from_secs(5);
        assert_eq!(set.pick(ip(1), Tried::default(), later), 0, "the trial");
        set.attempt_abandoned(0, later);
        let next_round: Vec<usize> = (0..2)
            .map(|_| set.pick(ip(1), Tried::default(), later))
            .collect();
        assert!(
            next_round.contains(&0),
            "target 0 is eligible for its trial again: {next_round:?}"
        );
    }

    #[test]
    fn with_every_target_down_the_soonest_back_is_tried_anyway() {
        let now = Instant::now();
        let mut set = upstreams(2, Balance::RoundRobin);
        set.connect_failed(1, true, now);
        set.connect_failed(0, true, now + Duration::from_secs(1));
        assert_eq!(set.pick(ip(1), Tried::default(), now), 1);
    }

    #[test]
    fn a_retry_skips_the_targets_already_tried() {
        let now = Instant::now();
        let mut set = upstreams(3, Balance::SourceHash);
        let first = set.pick(ip(7), Tried::default(), now);
        let second = set.pick(ip(7), Tried::default().with(first), now);
        assert_ne!(first, second);
        let all = Tried::default().with(0).with(1).with(2);
        assert!(
            set.pick(ip(7), all, now) < 3,
            "once all were tried, any may be tried again"
        );
    }
}
