//! Whether a target is healthy enough to try, judged from connect outcomes.
//!
//! Health is passive (connects of real clients and of the warm pool) and,
//! when enabled, active (probe connects, whose failure counts at once).
//! After `fail_threshold` consecutive failures a target is down for a
//! cooldown that doubles on every failed trial, up to [`MAX_COOLDOWN`]. Once
//! the cooldown has run out, one trial connection decides whether it comes
//! back. This module only keeps the state and says what changed; the caller
//! logs it and acts on it.

use std::time::{Duration, Instant};

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
}
