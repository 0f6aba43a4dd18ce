//! Several event loops in one process: which worker a loop is, what it
//! owns of the process-wide totals, and how the loops and the handles
//! reach one another.
//!
//! Each worker is a whole reactor (its own poll, pipes, rings, timers and
//! listening sockets on the same addresses with `SO_REUSEPORT`), so the
//! per-byte path shares nothing. What must not be multiplied by the
//! number of workers is split or done once:
//! - the warm pool and the connection limits are split ([`Share`]), so
//!   that their sums are what the operator asked for;
//! - probes and DNS re-resolution run in the first worker (the leader),
//!   which sends their verdicts and answers to the others;
//! - the leader alone receives signals, reads the config file, serves
//!   `/metrics` (asking every worker) and owns the access log's writer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::Duration;

use log::error;
use mio::Waker;

use crate::metrics::{Metrics, Snapshot};
use crate::reactor::Command;

/// How long a scrape waits for each loop; a loop that takes longer is stuck.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// One worker as others reach it: its command channel and its waker.
#[derive(Clone)]
pub(crate) struct Peer {
    pub(crate) commands: Sender<Command>,
    pub(crate) waker: Arc<Waker>,
}

impl Peer {
    /// Sends `command` and wakes the loop; false once the loop has ended.
    pub(crate) fn send(&self, command: Command) -> bool {
        if self.commands.send(command).is_err() {
            return false;
        }
        if let Err(e) = self.waker.wake() {
            error!("cannot wake an event loop: {e}");
        }
        true
    }
}

/// Every worker of a forwarder, as its handles and its loops see them.
pub(crate) struct Crew {
    pub(crate) peers: Vec<Peer>,
    pub(crate) metrics: Vec<Arc<Metrics>>,
    /// Where the next attached pair goes.
    next_attach: AtomicUsize,
    /// Workers whose loop has not ended yet.
    running: AtomicUsize,
    /// Live pipes of every worker: what `max-connections` limits.
    live: AtomicUsize,
    /// Some worker is paused at `max-connections`: the process's episode,
    /// counted once however many workers pause in it.
    at_limit: AtomicBool,
    /// The threads running a loop now: a blocking handle call there (from
    /// a hook) would wait for itself.
    loop_threads: Mutex<Vec<ThreadId>>,
}

impl Crew {
    pub(crate) fn new(peers: Vec<Peer>, metrics: Vec<Arc<Metrics>>) -> Crew {
        let running = AtomicUsize::new(peers.len());
        Crew {
            peers,
            metrics,
            next_attach: AtomicUsize::new(0),
            loop_threads: Mutex::new(Vec::new()),
            running,
            live: AtomicUsize::new(0),
            at_limit: AtomicBool::new(false),
        }
    }

    /// The calling thread runs a loop of this forwarder until
    /// [`loop_ended`](Crew::loop_ended).
    pub(crate) fn loop_started(&self) {
        self.threads().push(thread::current().id());
    }

    pub(crate) fn loop_ended(&self) {
        let me = thread::current().id();
        self.threads().retain(|&t| t != me);
    }

    /// Whether the calling thread is running one of the loops.
    pub(crate) fn on_loop_thread(&self) -> bool {
        self.threads().contains(&thread::current().id())
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<ThreadId>> {
        // The list stays whole whatever panicked while holding it.
        self.loop_threads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn count(&self) -> usize {
        self.peers.len()
    }

    /// The worker that takes the next attached pair: round-robin.
    pub(crate) fn next_for_attach(&self) -> &Peer {
        let at = self.next_attach.fetch_add(1, Ordering::Relaxed) % self.peers.len();
        &self.peers[at]
    }

    /// A worker's loop has ended; the leader, which waits for every worker
    /// before it exits, is woken to look.
    pub(crate) fn finished(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        if let Some(leader) = self.peers.first() {
            let _ = leader.waker.wake();
        }
    }

    /// Whether every worker but the leader has ended.
    pub(crate) fn followers_done(&self) -> bool {
        self.running.load(Ordering::Acquire) <= 1
    }

    /// Live pipes of every worker. Checked before an accept and counted
    /// after it, like the per-worker count, so two workers accepting at
    /// the same instant may each take the last place (one over per extra
    /// worker at most, until the next close).
    pub(crate) fn live_pipes(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    pub(crate) fn pipe_opened(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// `n` pipes were freed; returns how many were live before.
    pub(crate) fn pipes_freed(&self, n: usize) -> usize {
        self.live.fetch_sub(n, Ordering::AcqRel)
    }

    /// A worker pauses at the limit: true if it is the first of this
    /// episode, which is counted once.
    pub(crate) fn limit_reached(&self) -> bool {
        !self.at_limit.swap(true, Ordering::AcqRel)
    }

    /// A worker's stretch at the limit is over; the next pause starts a
    /// new episode.
    pub(crate) fn limit_left(&self) {
        self.at_limit.store(false, Ordering::Release);
    }

    /// Every worker's snapshot, merged; `None` if no loop answered.
    pub(crate) fn scrape(&self) -> Option<Snapshot> {
        let answers: Vec<_> = self
            .peers
            .iter()
            .filter_map(|peer| {
                let (reply, answer) = mpsc::channel();
                peer.send(Command::Scrape(reply)).then_some(answer)
            })
            .collect();
        let mut merged: Option<Snapshot> = None;
        for answer in answers {
            let Ok(snapshot) = answer.recv_timeout(SCRAPE_TIMEOUT) else {
                continue;
            };
            match merged.as_mut() {
                Some(merged) => merged.merge(snapshot),
                None => merged = Some(snapshot),
            }
        }
        merged
    }
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
