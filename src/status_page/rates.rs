//! Rates from two samples of the counters: new pipes and bytes each way
//! per second, per route and per target.
//!
//! The endpoint keeps one sample, the base. A page read at least
//! [`MIN_WINDOW`] after it gets rates over the time between them, and
//! becomes the base; one read sooner (a second viewer, a double click)
//! gets the rates last measured, so a window is never so short that one
//! burst reads as a flood. A base older than [`MAX_WINDOW`] (nobody looked
//! for a while) would give a long average, not a rate: that read shows no
//! rates and starts afresh. A counter that went down (a target removed by
//! a reload and added again) counts as 0 for that window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::RouteStatus;

/// The shortest time rates are measured over.
pub(super) const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest: beyond it, an average is not a rate.
pub(super) const MAX_WINDOW: Duration = Duration::from_secs(30);

/// A route (target `None`) or one of its targets.
type Key = (String, Option<String>);

/// New pipes, bytes toward the target, bytes toward the client.
type Counters = [u64; 3];

/// Per second, as [`Counters`].
pub(crate) type PerSecond = [f64; 3];

struct Sample {
    at: Instant,
    counters: HashMap<Key, Counters>,
}

impl Sample {
    fn of(at: Instant, routes: &[RouteStatus]) -> Sample {
        let mut counters = HashMap::new();
        for route in routes {
            let mut bytes = [0u64; 2];
            for target in &route.targets {
                bytes[0] = bytes[0].saturating_add(target.bytes_toward_target);
                bytes[1] = bytes[1].saturating_add(target.bytes_toward_client);
                counters.insert(
                    (route.name.clone(), Some(target.name.clone())),
                    [
                        target.total_pipes,
                        target.bytes_toward_target,
                        target.bytes_toward_client,
                    ],
                );
            }
            counters.insert(
                (route.name.clone(), None),
                [route.total_pipes, bytes[0], bytes[1]],
            );
        }
        Sample { at, counters }
    }
}

/// Rates measured over one window.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) window: Duration,
    per_second: HashMap<Key, PerSecond>,
}

impl Measured {
    fn between(base: &Sample, now: &Sample) -> Measured {
        let window = now.at.saturating_duration_since(base.at);
        let seconds = window.as_secs_f64();
        let per_second = now
            .counters
            .iter()
            .filter_map(|(key, new)| {
                let old = base.counters.get(key)?;
                let rate = |i: usize| new[i].saturating_sub(old[i]) as f64 / seconds;
                Some((key.clone(), [rate(0), rate(1), rate(2)]))
            })
            .collect();
        Measured { window, per_second }
    }

    /// The route's rates (its targets' bytes summed).
    pub(crate) fn route(&self, route: &str) -> Option<PerSecond> {
        self.per_second.get(&(route.to_string(), None)).copied()
    }

    /// `None` for a target the base did not have.
    pub(crate) fn target(&self, route: &str, target: &str) -> Option<PerSecond> {
        let key = (route.to_string(), Some(target.to_string()));
        self.per_second.get(&key).copied()
    }
}

/// One endpoint's base sample and the rates last measured.
#[derive(Default)]
pub(crate) struct Rates {
    base: Option<Sample>,
    last: Option<Measured>,
}

impl Rates {
    /// Takes in what `routes` counts at `now`; the rates to show with it,
    /// if any (see the module's comment).
    pub(crate) fn observe(&mut self, now: Instant, routes: &[RouteStatus]) -> Option<&Measured> {
        let current = Sample::of(now, routes);
        let age = self
            .base
            .as_ref()
            .map(|base| now.saturating_duration_since(base.at));
        match age {
            Some(age) if age < MIN_WINDOW => {}
            Some(age) if age <= MAX_WINDOW => {
                if let Some(base) = &self.base {
                    self.last = Some(Measured::between(base, &current));
                }
                self.base = Some(current);
            }
            _ => {
                self.last = None;
                self.base = Some(current);
            }
        }
        self.last.as_ref()
    }
}
