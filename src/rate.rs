//! A token bucket: what a traffic limit allows, and when it next allows
//! more. Pure (it is told the time), so every limit tcpipe keeps (bytes of
//! a pipe's direction, connections of a source) is one of these, and the
//! one rule is proven once: over any window of length `t`, no more than
//! `amount × t / per + burst` is taken.
//!
//! The level is kept in integer units of `1 / per_ns` tokens, so refills
//! are exact whatever the rate and however often they happen (no drift of
//! rounding, no float).

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// Tokens added per `per`.
    amount: u64,
    /// `per` in nanoseconds, at least 1.
    per_ns: u64,
    /// Most tokens it holds, at least 1.
    burst: u64,
    /// Tokens × `per_ns`; at most `burst × per_ns`.
    level: u128,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// `amount` tokens every `per`, at most `burst` at once; it starts
    /// full.
    pub(crate) fn new(amount: u64, per: Duration, burst: u64, now: Instant) -> TokenBucket {
        let per_ns = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX).max(1);
        let burst = burst.max(1);
        TokenBucket {
            amount: amount.max(1),
            per_ns,
            burst,
            level: u128::from(burst) * u128::from(per_ns),
            at: now,
        }
    }

    /// `rate` tokens a second (bytes per second, for a pipe's direction).
    pub(crate) fn per_second(rate: u64, burst: u64, now: Instant) -> TokenBucket {
        TokenBucket::new(rate, Duration::from_secs(1), burst, now)
    }

    fn cap(&self) -> u128 {
        u128::from(self.burst) * u128::from(self.per_ns)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        if elapsed == 0 {
            return;
        }
        self.at = now;
        let added = elapsed.saturating_mul(u128::from(self.amount));
        self.level = self.level.saturating_add(added).min(self.cap());
    }

    /// Changes the rate from now on (what was earned so far, at the old
    /// rate, stays).
    pub(crate) fn set_amount(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.amount = amount.max(1);
    }

    /// Whole tokens that may be taken now.
    pub(crate) fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.level / u128::from(self.per_ns)).unwrap_or(u64::MAX)
    }

    /// Takes `n` tokens, at most what [`available`](Self::available) said.
    pub(crate) fn take(&mut self, n: u64) {
        let cost = u128::from(n) * u128::from(self.per_ns);
        self.level = self.level.saturating_sub(cost);
    }

    /// Takes one token if there is one now.
    pub(crate) fn try_take_one(&mut self, now: Instant) -> bool {
        if self.available(now) == 0 {
            return false;
        }
        self.take(1);
        true
    }

    /// How long from the last refill until `n` tokens (at most the burst)
    /// are there; zero if they are now.
    pub(crate) fn wait_for(&self, n: u64) -> Duration {
        let want = u128::from(n.min(self.burst)) * u128::from(self.per_ns);
        let missing = want.saturating_sub(self.level);
        let ns = missing.div_ceil(u128::from(self.amount));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// When `n` tokens will be there.
    pub(crate) fn ready_at(&self, n: u64) -> Instant {
        self.at + self.wait_for(n)
    }

    /// Whether it is full by `now`: a source that has not been seen for
    /// this long has nothing to remember.
    pub(crate) fn is_full_by(&self, now: Instant) -> bool {
        now >= self.ready_at(self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::TokenBucket;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    #[test]
    fn it_starts_full_and_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::per_second(1000, 100, start);
        assert_eq!(bucket.available(start), 100);
        bucket.take(100);
        assert_eq!(bucket.available(start), 0);
        assert_eq!(bucket.wait_for(10), Duration::from_millis(10));
        assert_eq!(bucket.available(start + Duration::from_millis(50)), 50);
        assert_eq!(bucket.available(start + Duration::from_secs(9)), 100);
    }

    #[test]
    fn a_rate_of_so_many_per_minute_gives_one_every_so_often() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(6, Duration::from_secs(60), 6, start);
        for _ in 0..6 {
            assert!(bucket.try_take_one(start));
        }
        assert!(!bucket.try_take_one(start + Duration::from_secs(9)));
        assert!(bucket.try_take_one(start + Duration::from_secs(10)));
        assert!(!bucket.is_full_by(start + Duration::from_secs(10)));
        assert!(bucket.is_full_by(start + Duration::from_secs(70)));
    }

    proptest! {
        /// Whatever is asked and whenever, what was taken over any window
        /// of time is at most the rate over it plus the burst; and a
        /// taker that always asks gets at least the rate over the window
        /// minus what one step can hold back.
        #[test]
        fn no_window_ever_gets_more_than_rate_times_time_plus_burst(
            rate in 1u64..10_000_000,
            burst in 1u64..1_000_000,
            steps in proptest::collection::vec((0u64..50_000_000, 0u64..2_000_000), 1..60),
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::per_second(rate, burst, start);
            let mut now = start;
            // (when, how many) of each take.
            let mut taken: Vec<(Instant, u64)> = Vec::new();
            for (advance_ns, want) in steps {
                now += Duration::from_nanos(advance_ns);
                let n = want.min(bucket.available(now));
                bucket.take(n);
                taken.push((now, n));
            }
            for i in 0..taken.len() {
                let mut sum: u128 = 0;
                for j in i..taken.len() {
                    sum += u128::from(taken[j].1);
                    let window = taken[j].0.duration_since(taken[i].0).as_nanos();
                    let allowed = u128::from(rate) * window / 1_000_000_000 + u128::from(burst);
                    prop_assert!(sum <= allowed, "{sum} > {allowed} over {window} ns");
                }
            }
        }

        #[test]
        fn a_greedy_taker_gets_the_rate(
            rate in 1_000u64..10_000_000,
            burst in 1u64..100_000,
            step_ms in 1u64..50,
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::per_second(rate, burst, start);
            let mut now = start;
            let mut sum: u128 = 0;
            for _ in 0..100 {
                now += Duration::from_millis(step_ms);
                let n = bucket.available(now);
                bucket.take(n);
                sum += u128::from(n);
            }
            let window = now.duration_since(start).as_nanos();
            let earned = u128::from(rate) * window / 1_000_000_000;
            // Each step may lose what overflows the burst.
            let per_step = u128::from(rate) * u128::from(step_ms) / 1000;
            if per_step <= u128::from(burst) {
                prop_assert!(sum + 1 >= earned, "{sum} < {earned}");
            }
        }

        #[test]
        fn the_wait_it_names_is_when_the_tokens_are_there(
            rate in 1u64..10_000_000,
            burst in 1u64..1_000_000,
            want in 1u64..1_000_000,
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::per_second(rate, burst, start);
            bucket.take(burst);
            let due = bucket.ready_at(want);
            prop_assert!(bucket.clone().available(due) >= want.min(burst));
            if due > start {
                let before = due - Duration::from_nanos(1);
                prop_assert!(bucket.available(before) < want.min(burst));
            }
        }
    }
}
