//! A histogram of durations with fixed bucket bounds, kept by the loop
//! thread alone (plain integers: it is copied into a snapshot to be read).

use std::time::Duration;

/// Bounds (seconds) for things that take a round trip or a few: connect
/// time and time to the target's first byte. From 100 µs (loopback) to
/// 10 s (past every sane connect timeout).
pub(crate) const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Bounds (seconds) for how long a pipe lives: from a short request to a
/// day-long session.
pub(crate) const LIFETIME_BOUNDS: &[f64] = &[
    0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

/// Observations counted per bucket (not cumulative: the encoder adds them
/// up), with their sum.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, plus one for above the last (+Inf).
    counts: Vec<u64>,
    sum_seconds: f64,
}

impl Histogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum_seconds: 0.0,
        }
    }

    pub(crate) fn observe(&mut self, value: Duration) {
        let seconds = value.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket] += 1;
        self.sum_seconds += seconds;
    }

    /// Adds another histogram's observations (the same bounds).
    pub(crate) fn absorb(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.sum_seconds += other.sum_seconds;
    }

    /// Every observation so far.
    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of every observation, in seconds.
    pub(crate) fn sum_seconds(&self) -> f64 {
        self.sum_seconds
    }

    /// (upper bound in seconds, observations at or below it), cumulative,
    /// ending with `f64::INFINITY` and the total count.
    pub(crate) fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_lands_in_the_first_bucket_that_holds_it() {
        let mut histogram = Histogram::new(&[0.001, 0.01]);
        histogram.observe(Duration::from_micros(1000)); // on the bound: le="0.001"
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_secs(3));
        let buckets: Vec<(f64, u64)> = histogram.cumulative().collect();
        assert_eq!(buckets, vec![(0.001, 1), (0.01, 2), (f64::INFINITY, 3)]);
        assert_eq!(histogram.count(), 3);
        assert!((histogram.sum_seconds() - 3.006).abs() < 1e-9);
    }
}
