//! Whether a target is healthy enough to try, judged from connect outcomes.
//!
//! Health is passive (connects of real clients and of the warm pool) and,
//! when enabled, active (probe connects, whose failure counts at once).
//! After `fail_threshold` consecutive failures a target is down for a
//! cooldown that doubles on every failed trial, up to [`MAX_COOLDOWN`]. Once
//! the cooldown has run out, one trial connection decides whether it comes
//! back. This module only keeps the state and says what changed; the caller
//! logs it and acts on it.
//!
//! It also answers which of a route's targets may take a new client now
//! ([`Candidates`]), and it alone starts and ends trials: the balancer picks
//! among the candidates, then [`Health::chosen`] marks the trial if the pick
//! was one.

use std::time::{Duration, Instant};

use crate::arena::{Arena, TargetTag};
use crate::handover::HealthState;

use super::target::{Target, TargetId};

/// The longest a target stays down before its next trial.
pub(crate) const MAX_COOLDOWN: Duration = Duration::from_secs(60);

/// How passive health is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HealthPolicy {
    pub(crate) fail_threshold: u32,
    /// `None`: a target is never marked down.
    pub(crate) cooldown: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Health {
    state: State,
    consecutive_failures: u32,
}

/// A change the caller must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    WentDown { failures: u32, cooldown: Duration },
    CameUp,
}

impl Health {
    pub(crate) fn new() -> Health {
        Health {
            state: State::Up,
            consecutive_failures: 0,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.state == State::Up
    }

    /// May a new client be sent here now: up, or down with its cooldown
    /// over and no trial under way yet.
    pub(crate) fn is_eligible(&self, now: Instant) -> bool {
        match self.state {
            State::Up => true,
            State::Down { until, .. } => until <= now,
            State::Trial { .. } => false,
        }
    }

    /// When a down target's cooldown ends; `None` if it is not down.
    pub(crate) fn back_at(&self) -> Option<Instant> {
        match self.state {
            State::Down { until, .. } => Some(until),
            State::Up | State::Trial { .. } => None,
        }
    }

    /// A client was sent here: if the cooldown is over, that client makes
    /// the trial.
    pub(crate) fn chosen(&mut self, now: Instant) {
        if let State::Down { until, cooldown } = self.state {
            if until <= now {
                self.state = State::Trial { cooldown };
            }
        }
    }

    pub(crate) fn succeeded(&mut self) -> Option<Change> {
        self.consecutive_failures = 0;
        if self.state == State::Up {
            return None;
        }
        self.state = State::Up;
        Some(Change::CameUp)
    }

    /// A connect failed (refused, reset or timed out). With `decisive` (a
    /// failed health probe) the target goes down at once.
    pub(crate) fn failed(
        &mut self,
        policy: &HealthPolicy,
        decisive: bool,
        now: Instant,
    ) -> Option<Change> {
        let base = policy.cooldown?;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let cooldown = match self.state {
            State::Up if decisive || self.consecutive_failures >= policy.fail_threshold => base,
            State::Up => return None,
            State::Trial { cooldown } => (cooldown * 2).min(MAX_COOLDOWN),
            // A last-resort attempt while down: the cooldown stands.
            State::Down { .. } => return None,
        };
        self.state = State::Down {
            until: now + cooldown,
            cooldown,
        };
        Some(Change::WentDown {
            failures: self.consecutive_failures,
            cooldown,
        })
    }

    /// The client making the trial left before its connect ended: the next
    /// client makes it instead.
    pub(crate) fn abandoned(&mut self, now: Instant) {
        if let State::Trial { cooldown } = self.state {
            self.state = State::Down {
                until: now,
                cooldown,
            };
        }
    }
}

impl Health {
    /// Where it stands, for another process (a live upgrade).
    pub(crate) fn record(&self, now: Instant) -> (HealthState, u32) {
        let state = match self.state {
            State::Up => HealthState::Up,
            State::Down { until, cooldown } => HealthState::Down {
                left: until.saturating_duration_since(now),
                cooldown,
            },
            State::Trial { cooldown } => HealthState::Trial { cooldown },
        };
        (state, self.consecutive_failures)
    }

    /// Health as another process handed it over. A trial under way there
    /// is no trial here: the target is down with its cooldown over, so
    /// the next client (or the adopted pipe making the trial, whose
    /// connect ends here) decides.
    pub(crate) fn restore(state: HealthState, consecutive_failures: u32, now: Instant) -> Health {
        let state = match state {
            HealthState::Up => State::Up,
            HealthState::Down { left, cooldown } => State::Down {
                until: now + left.min(MAX_COOLDOWN),
                cooldown: cooldown.min(MAX_COOLDOWN),
            },
            HealthState::Trial { cooldown } => State::Down {
                until: now,
                cooldown: cooldown.min(MAX_COOLDOWN),
            },
        };
        Health {
            state,
            consecutive_failures,
        }
    }
}

/// The members of a route's group that may take one client now, by
/// position: those the operator admits (ready, weight above 0: see
/// [`Target::admits`]) and health lets in (up, or down with the cooldown
/// over and no trial under way) that this client has not tried yet (all of
/// them are fair game again once each has been tried). Primaries come
/// first: the backups are candidates, all of them, only while no primary
/// is.
///
/// When no member may, every one being down, only the one whose cooldown
/// ends first may, anyway: refusing would only turn a recovered backend
/// into failed clients until the cooldown ends. The operator's word has no
/// such exception: a drained target, or one of weight 0, never is one.
///
/// Asked lazily, member by member, so building it costs at most a few
/// scans and never an allocation.
pub(crate) struct Candidates<'a> {
    members: &'a [TargetId],
    targets: &'a Arena<Target, TargetTag>,
    tried: &'a [TargetId],
    all_tried: bool,
    now: Instant,
    /// Which tier takes the client: the primaries while any may, else the
    /// backups.
    backups: bool,
    /// `None`: health lets some member in. `Some(position)`: none, so only
    /// this one, the soonest back (`Some(None)`: not even one).
    last_resort: Option<Option<usize>>,
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(
        members: &'a [TargetId],
        targets: &'a Arena<Target, TargetTag>,
        tried: &'a [TargetId],
        now: Instant,
    ) -> Candidates<'a> {
        let admitted = |id: &TargetId| targets.get(*id).is_some_and(Target::admits);
        let mut candidates = Candidates {
            members,
            targets,
            tried,
            all_tried: members
                .iter()
                .filter(|id| admitted(id))
                .all(|id| tried.contains(id)),
            now,
            backups: false,
            last_resort: None,
        };
        let count = members.len();
        let any_eligible = |c: &Candidates<'_>| (0..count).any(|p| c.eligible(p).is_some());
        if !any_eligible(&candidates) {
            candidates.backups = true;
        }
        if !any_eligible(&candidates) {
            // A trial under way has no `back_at`, so it sorts first: its
            // cooldown is over already.
            let soonest = (0..count)
                .filter_map(|p| candidates.untried(p).map(|target| (p, target)))
                .min_by_key(|(_, target)| target.health.back_at())
                .map(|(p, _)| p);
            candidates.last_resort = Some(soonest);
        }
        candidates
    }

    /// The member at `position` if it may take the client.
    pub(crate) fn get(&self, position: usize) -> Option<&'a Target> {
        match self.last_resort {
            None => self.eligible(position),
            Some(only) if only == Some(position) => self.untried(position),
            Some(_) => None,
        }
    }

    /// The member at `position` if the operator admits it and this client
    /// has not tried it yet, primary or backup.
    fn untried(&self, position: usize) -> Option<&'a Target> {
        let id = *self.members.get(position)?;
        let untried = self.all_tried || !self.tried.contains(&id);
        self.targets
            .get(id)
            .filter(|target| untried && target.admits())
    }

    fn eligible(&self, position: usize) -> Option<&'a Target> {
        self.untried(position)
            .filter(|target| target.backup == self.backups && target.health.is_eligible(self.now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        fail_threshold: 2,
        cooldown: Some(Duration::from_secs(5)),
    };

    #[test]
    fn down_at_the_threshold_then_one_trial_after_a_doubling_cooldown() {
        let start = Instant::now();
        let mut health = Health::new();
        assert_eq!(health.failed(&POLICY, false, start), None);
        assert!(health.is_up(), "one failure is below the threshold of 2");
        assert_eq!(
            health.failed(&POLICY, false, start),
            Some(Change::WentDown {
                failures: 2,
                cooldown: Duration::from_secs(5)
            })
        );
        assert!(!health.is_eligible(start));
        let later = start + Duration::from_secs(5);
        assert!(health.is_eligible(later));
        health.chosen(later);
        assert!(!health.is_eligible(later), "only one trial at a time");
        health.failed(&POLICY, false, later);
        assert_eq!(health.back_at(), Some(later + Duration::from_secs(10)));
        health.chosen(later + Duration::from_secs(10));
        assert_eq!(health.succeeded(), Some(Change::CameUp));
        assert!(health.is_up());
    }

    #[test]
    fn a_failed_probe_is_decisive_and_an_abandoned_trial_is_handed_on() {
        let now = Instant::now();
        let mut health = Health::new();
        assert!(health.failed(&POLICY, true, now).is_some());
        let later = now + Duration::from_secs(5);
        health.chosen(later);
        assert!(!health.is_eligible(later));
        health.abandoned(later);
        assert!(health.is_eligible(later));
    }

    #[test]
    fn without_a_cooldown_a_target_never_goes_down() {
        let policy = HealthPolicy {
            fail_threshold: 1,
            cooldown: None,
        };
        let mut health = Health::new();
        assert_eq!(health.failed(&policy, true, Instant::now()), None);
        assert!(health.is_up());
    }

    /// `n` targets of one route, all up.
    fn group(n: usize) -> (Arena<Target, TargetTag>, Vec<TargetId>) {
        let route = crate::config::Route::new(
            "r",
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let mut targets = Arena::new();
        let members = (0..n)
            .map(|i| {
                let name = format!("10.0.0.{i}:80");
                let target = crate::config::Target::new(name.clone(), name.parse().unwrap());
                targets.insert(Target::new(&route, &target))
            })
            .collect();
        (targets, members)
    }

    /// The positions `Candidates` admits.
    fn admitted(
        targets: &Arena<Target, TargetTag>,
        members: &[TargetId],
        tried: &[usize],
        now: Instant,
    ) -> Vec<usize> {
        let tried: Vec<TargetId> = tried.iter().map(|&p| members[p]).collect();
        let candidates = Candidates::new(members, targets, &tried, now);
        (0..members.len())
            .filter(|&p| candidates.get(p).is_some())
            .collect()
    }

    fn health(targets: &mut Arena<Target, TargetTag>, id: TargetId) -> &mut Health {
        &mut targets.get_mut(id).unwrap().health
    }

    #[test]
    fn a_trial_is_marked_by_health_only_not_by_being_picked() {
        use crate::upstream::balance::{Balancer, Member};
        let start = Instant::now();
        let (mut targets, members) = group(2);
        health(&mut targets, members[0]).failed(&POLICY, true, start);
        assert_eq!(admitted(&targets, &members, &[], start), [1]);
        let later = start + Duration::from_secs(5);
        assert_eq!(admitted(&targets, &members, &[], later), [0, 1]);
        // The balancer may pick the cooled-down target as often as it
        // likes: only health's `chosen` makes that pick its trial.
        let mut balancer = Balancer::new(crate::config::Balance::RoundRobin);
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        for _ in 0..4 {
            let candidates = Candidates::new(&members, &targets, &[], later);
            let member = |p| {
                candidates.get(p).map(|t| Member {
                    load: t.live_pipes,
                    name: &t.name,
                    weight: t.weight,
                })
            };
            balancer.pick(members.len(), ip, member);
        }
        assert_eq!(admitted(&targets, &members, &[], later), [0, 1]);
        health(&mut targets, members[0]).chosen(later);
        assert_eq!(
            admitted(&targets, &members, &[], later),
            [1],
            "one trial at a time"
        );
        health(&mut targets, members[0]).abandoned(later);
        assert_eq!(admitted(&targets, &members, &[], later), [0, 1]);
    }

    #[test]
    fn with_every_target_down_only_the_soonest_back_is_a_candidate() {
        let now = Instant::now();
        let (mut targets, members) = group(3);
        health(&mut targets, members[0]).failed(&POLICY, true, now + Duration::from_secs(2));
        health(&mut targets, members[1]).failed(&POLICY, true, now);
        health(&mut targets, members[2]).failed(&POLICY, true, now + Duration::from_secs(1));
        assert_eq!(admitted(&targets, &members, &[], now), [1]);
        assert_eq!(
            admitted(&targets, &members, &[1], now),
            [2],
            "the soonest back of those not tried"
        );
        // Once 1's cooldown is over it is a candidate as any other would be.
        let later = now + Duration::from_secs(5);
        assert_eq!(admitted(&targets, &members, &[], later), [1]);
        health(&mut targets, members[1]).chosen(later);
        assert_eq!(
            admitted(&targets, &members, &[], later),
            [1],
            "a trial under way goes before targets still cooling down"
        );
    }

    #[test]
    fn a_client_s_tried_targets_are_no_candidates_until_it_tried_them_all() {
        let now = Instant::now();
        let (targets, members) = group(3);
        assert_eq!(admitted(&targets, &members, &[0, 2], now), [1]);
        assert_eq!(admitted(&targets, &members, &[0, 1, 2], now), [0, 1, 2]);
    }

    #[test]
    fn backups_are_candidates_all_together_only_while_no_primary_is() {
        use crate::operator::TargetState;
        let now = Instant::now();
        let (mut targets, members) = group(4);
        for &backup in &members[2..] {
            targets.get_mut(backup).unwrap().backup = true;
        }
        assert_eq!(admitted(&targets, &members, &[], now), [0, 1]);
        health(&mut targets, members[0]).failed(&POLICY, true, now);
        assert_eq!(admitted(&targets, &members, &[], now), [1]);
        targets.get_mut(members[1]).unwrap().state = TargetState::Drain;
        assert_eq!(
            admitted(&targets, &members, &[], now),
            [2, 3],
            "every backup, not only the first"
        );
        targets.get_mut(members[1]).unwrap().state = TargetState::Ready;
        targets.get_mut(members[1]).unwrap().weight = 0;
        assert_eq!(admitted(&targets, &members, &[], now), [2, 3]);
        targets.get_mut(members[1]).unwrap().weight = 2;
        assert_eq!(
            admitted(&targets, &members, &[], now),
            [1],
            "back to the primary"
        );
    }

    #[test]
    fn the_operator_s_word_has_no_last_resort() {
        use crate::operator::TargetState;
        let now = Instant::now();
        let (mut targets, members) = group(2);
        targets.get_mut(members[0]).unwrap().state = TargetState::Maint;
        targets.get_mut(members[1]).unwrap().weight = 0;
        assert_eq!(admitted(&targets, &members, &[], now), Vec::<usize>::new());
        targets.get_mut(members[1]).unwrap().weight = 1;
        health(&mut targets, members[1]).failed(&POLICY, true, now);
        assert_eq!(
            admitted(&targets, &members, &[], now),
            [1],
            "a down target is still a last resort, a target in maintenance is not"
        );
    }
}
