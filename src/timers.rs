//! Deadlines for a mio loop, which has no timers of its own.
//!
//! A binary heap of (deadline, what) with lazy cancellation: nothing is ever
//! removed early. When an entry comes due, its owner checks whether it still
//! applies (the pipe is alive and has this generation, the deadline was not
//! moved). Re-arming costs a push, and forwarding a byte costs nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

pub(crate) struct Timers<T: Ord> {
    heap: BinaryHeap<Reverse<(Instant, T)>>,
}

impl<T: Ord> Timers<T> {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
        }
    }

    pub(crate) fn push(&mut self, when: Instant, what: T) {
        self.heap.push(Reverse((when, what)));
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((when, _))| *when)
    }

    /// Removes and returns one entry that is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, T)> {
        match self.heap.peek() {
            Some(Reverse((when, _))) if *when <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_come_due_in_deadline_order() {
        let start = Instant::now();
        let mut timers = Timers::new();
        timers.push(start + Duration::from_millis(30), "c");
        timers.push(start + Duration::from_millis(10), "a");
        timers.push(start + Duration::from_millis(20), "b");
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_millis(10))
        );
        assert_eq!(timers.pop_due(start), None);
        let later = start + Duration::from_millis(25);
        assert_eq!(timers.pop_due(later).map(|(_, w)| w), Some("a"));
        assert_eq!(timers.pop_due(later).map(|(_, w)| w), Some("b"));
        assert_eq!(timers.pop_due(later), None);
        assert_eq!(
            timers.next_deadline(),
            Some(start + Duration::from_millis(30))
        );
    }
}
