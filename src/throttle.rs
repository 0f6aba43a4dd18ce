//! Repeated warnings, one line per interval with a count.
//!
//! A peer can make the same warning happen thousands of times a second
//! (every client refused while all targets are down, every client denied by
//! an ACL). Logging each one would turn a fault into a disk-filling flood
//! and put formatting on the accept path; logging none would hide it. So a
//! warning site keeps a [`Throttle`]: the first occurrence is logged at
//! once, later ones within the interval are only counted, and the next line
//! says how many were held back.

use std::time::{Duration, Instant};

/// How often one repeated warning may be logged.
pub(crate) const WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// One warning site's state.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval: Duration,
    /// When the next line may be logged; `None` before the first.
    next: Option<Instant>,
    held_back: u64,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new(WARNING_INTERVAL)
    }
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            next: None,
            held_back: 0,
        }
    }

    /// Whether this occurrence is logged: `Some(n)` with the number held
    /// back since the last line that was, or `None` to count it silently.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<Suppressed> {
        match self.next {
            Some(next) if now < next => {
                self.held_back += 1;
                None
            }
            _ => {
                self.next = Some(now + self.interval);
                Some(Suppressed(std::mem::take(&mut self.held_back)))
            }
        }
    }
}

/// A condition that starts and ends, such as "at the connection limit",
/// logged once at its start and once at its end. Clients can make it come
/// and go many times a second, so starts are throttled, and an end is
/// logged only if its start was.
#[derive(Debug, Default)]
pub(crate) struct Episode {
    since: Option<Instant>,
    logged: bool,
    starts: Throttle,
}

impl Episode {
    /// Whether it is going on.
    pub(crate) fn is_on(&self) -> bool {
        self.since.is_some()
    }

    /// It starts (if it was not on already): `Some` if that is to be
    /// logged, with the number of starts not logged since the last one.
    pub(crate) fn start(&mut self, now: Instant) -> Option<Suppressed> {
        if self.since.is_some() {
            return None;
        }
        self.since = Some(now);
        let held_back = self.starts.allow(now);
        self.logged = held_back.is_some();
        held_back
    }

    /// It ends (if it was on): how long it lasted, if its start was logged.
    pub(crate) fn end(&mut self, now: Instant) -> Option<Duration> {
        let since = self.since.take()?;
        std::mem::take(&mut self.logged).then(|| now.saturating_duration_since(since))
    }
}

/// How many occurrences of a warning were not logged since its last line;
/// displays as nothing for none, else as `" (and 41 more like it)"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suppressed(pub(crate) u64);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " (and {n} more like it since the last such line)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_the_rest() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(1));
        assert_eq!(throttle.allow(start), Some(Suppressed(0)));
        for i in 1..=41 {
            assert_eq!(throttle.allow(start + Duration::from_millis(i * 10)), None);
        }
        assert_eq!(
            throttle.allow(start + Duration::from_millis(1000)),
            Some(Suppressed(41))
        );
        assert_eq!(throttle.allow(start + Duration::from_millis(1500)), None);
        assert_eq!(
            throttle.allow(start + Duration::from_secs(5)),
            Some(Suppressed(1))
        );
    }

    #[test]
    fn an_episode_is_logged_at_most_once_a_second_and_its_end_with_its_start() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut episode = Episode::default();
        assert_eq!(episode.start(at(0)), Some(Suppressed(0)));
        assert_eq!(episode.start(at(10)), None, "already on");
        assert_eq!(episode.end(at(100)), Some(Duration::from_millis(100)));
        assert_eq!(episode.end(at(110)), None, "already over");
        for ms in [200, 400, 600] {
            assert_eq!(episode.start(at(ms)), None, "throttled");
            assert!(episode.is_on());
            assert_eq!(episode.end(at(ms + 50)), None, "its start was not logged");
        }
        assert_eq!(episode.start(at(1000)), Some(Suppressed(3)));
        assert_eq!(episode.end(at(1500)), Some(Duration::from_millis(500)));
    }

    #[test]
    fn the_count_reads_as_a_sentence_or_not_at_all() {
        assert_eq!(Suppressed(0).to_string(), "");
        assert_eq!(
            Suppressed(3).to_string(),
            " (and 3 more like it since the last such line)"
        );
    }
}
