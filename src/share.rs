//! Which worker of how many an event loop is, and what that decides: who
//! leads (probes, resolves, takes signals, serves `/metrics`), each one's
//! part of a limit, and which pipe ids it gives out. A value every layer
//! holds (the upstream set splits its pools by it), so it sits below them.

/// Which worker a reactor is, of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Share {
    pub(crate) index: usize,
    pub(crate) count: usize,
}

impl Share {
    /// The leader probes, resolves, takes signals and serves `/metrics`.
    pub(crate) fn is_leader(self) -> bool {
        self.index == 0
    }

    pub(crate) fn has_peers(self) -> bool {
        self.count > 1
    }

    /// This worker's part of `total`: the parts of all workers add up to
    /// `total`, the first ones taking the remainder.
    pub(crate) fn of(self, total: usize) -> usize {
        total / self.count + usize::from(self.index < total % self.count)
    }

    /// As [`of`](Share::of), but never 0: a limit that leaves a worker
    /// nothing would keep its listener's clients waiting for ever.
    pub(crate) fn limit(self, total: usize) -> usize {
        self.of(total).max(1)
    }

    /// Pipe ids are partitioned: worker `i` of `n` gives `i + 1`,
    /// `i + 1 + n`, ... so an id names its worker. With one worker this is
    /// 1, 2, 3, ...
    pub(crate) fn first_pipe_id(self) -> u64 {
        self.index as u64 + 1
    }

    pub(crate) fn pipe_id_step(self) -> u64 {
        self.count as u64
    }
}

/// The worker that owns pipe `id`, of `count`.
pub(crate) fn owner_of(id: u64, count: usize) -> usize {
    (id.saturating_sub(1) % count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total_and_limits_never_reach_zero() {
        for count in 1..6 {
            for total in 0..20 {
                let sum: usize = (0..count)
                    .map(|index| Share { index, count }.of(total))
                    .sum();
                assert_eq!(sum, total, "{total} over {count} workers");
                for index in 0..count {
                    assert!(Share { index, count }.limit(total) >= 1);
                }
            }
        }
    }

    #[test]
    fn a_pipe_id_names_the_worker_that_gave_it() {
        for count in 1..5 {
            for index in 0..count {
                let share = Share { index, count };
                for k in 0..10 {
                    let id = share.first_pipe_id() + k * share.pipe_id_step();
                    assert_eq!(owner_of(id, count), index);
                }
            }
        }
        let alone = Share { index: 0, count: 1 };
        assert_eq!(alone.first_pipe_id(), 1);
        assert_eq!(alone.pipe_id_step(), 1);
    }
}
