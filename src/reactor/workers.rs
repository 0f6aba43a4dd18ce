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

use super::Command;
use crate::hooks::CommandError;
use crate::metrics::{Metrics, Snapshot};
use crate::status_page::RouteStatus;

/// How long a scrape waits for each loop; a loop that takes longer is stuck.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// How the status page reads every route and target: `Handle::status`,
/// given by the forwarder, which the loops cannot name.
pub(crate) type ReadStatus = fn(&Arc<Crew>) -> Result<Vec<RouteStatus>, CommandError>;

/// Every worker of a forwarder, as its handles and its loops see them.
pub(crate) struct Crew {
    pub(crate) peers: Vec<Peer>,
    pub(crate) metrics: Vec<Arc<Metrics>>,
    /// What the status page shows, read as a handle reads it.
    pub(crate) read_status: ReadStatus,
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
    /// The binary a live upgrade starts, as the running config says.
    upgrade_binary: Mutex<Option<std::path::PathBuf>>,
    /// A live upgrade runs: another is refused.
    pub(crate) upgrading: AtomicBool,
    /// The admin endpoint's TCP listener (configured address, a copy of
    /// the socket), for a live upgrade to hand over with the others.
    admin_listener: Mutex<Option<(std::net::SocketAddr, socket2::Socket)>>,
}

impl Crew {
    pub(crate) fn new(
        peers: Vec<Peer>,
        metrics: Vec<Arc<Metrics>>,
        read_status: ReadStatus,
    ) -> Crew {
        let running = AtomicUsize::new(peers.len());
        Crew {
            peers,
            metrics,
            read_status,
            next_attach: AtomicUsize::new(0),
            loop_threads: Mutex::new(Vec::new()),
            running,
            live: AtomicUsize::new(0),
            at_limit: AtomicBool::new(false),
            upgrade_binary: Mutex::new(None),
            upgrading: AtomicBool::new(false),
            admin_listener: Mutex::new(None),
        }
    }

    /// The admin endpoint listens on this TCP socket, configured as
    /// `configured`: a live upgrade hands it over.
    #[cfg(feature = "cli")]
    pub(crate) fn set_admin_listener(
        &self,
        configured: std::net::SocketAddr,
        socket: socket2::Socket,
    ) {
        *self
            .admin_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((configured, socket));
    }

    /// The admin endpoint's listener as a live upgrade hands it over:
    /// configured address, bound address, descriptor (valid while the
    /// crew lives).
    pub(crate) fn admin_listener(
        &self,
    ) -> Option<(
        std::net::SocketAddr,
        std::net::SocketAddr,
        std::os::fd::RawFd,
    )> {
        let held = self
            .admin_listener
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (configured, socket) = held.as_ref()?;
        let local = socket.local_addr().ok()?.as_socket()?;
        Some((*configured, local, std::os::fd::AsRawFd::as_raw_fd(socket)))
    }

    pub(crate) fn set_upgrade_binary(&self, binary: Option<std::path::PathBuf>) {
        *self
            .upgrade_binary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = binary;
    }

    pub(crate) fn upgrade_binary(&self) -> Option<std::path::PathBuf> {
        self.upgrade_binary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
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
