//! Live upgrade: the running process starts the new binary with the same
//! arguments and hands it, over an inherited Unix socket, every listening
//! socket and every worker's live connections; it lets go only once the
//! new process confirms it has registered everything, and carries on
//! unchanged if anything fails before that.
//!
//! | module     | the idea                                                   |
//! |------------|------------------------------------------------------------|
//! | `frame`    | frames over `SOCK_SEQPACKET`: kind, length, descriptor count, chunks |
//! | `envelope` | what the frames say: hello, listeners, batches of parcels, counts |
//! | `channel`  | the socket pair, frames with descriptors, deadlines        |
//! | `launch`   | which binary and arguments, captured at startup            |
//! | `old`      | the sequence of the process handing over                   |
//! | `new`      | the sequence of the process taking over                    |
//!
//! The sequence (old → new unless said):
//!
//! 1. `Hello` (envelope and record versions, pid, workers); new → old
//!    `Accept` once its config is loaded and it knows both versions, or
//!    `Refuse` with why (or it exits: a bad config).
//! 2. Every worker of the old process stops reading and exports; then
//!    `Listeners`, each worker's `Parcels` and `Upstream`, and `End` with
//!    the counts.
//! 3. New → old `Confirm` once every listener is bound (the same
//!    descriptors) and every bundle adopted; old → new `Committed`. The old
//!    workers let go (close their copies, nothing else) and end.
//! 4. New → old `Notified` once systemd has heard `MAINPID=` and
//!    `READY=1` from the new process; the old one exits 0.
//!
//! Before `Committed` the old process still owns everything: if the new
//! one refuses, exits, closes the socket or is late ([`DEADLINE`]), the
//! old process kills it (if still running) and resumes every worker.

mod channel;
mod envelope;
mod frame;
pub(crate) mod launch;
mod new;
mod old;

use std::fmt;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

pub(crate) use envelope::Listener;
pub(crate) use new::{Finish, TakeOver};
pub(crate) use old::hand_over;

use crate::handover::Bundle;

/// The envelope's version (frames and what they say, apart from the
/// connection records, which `handover::VERSION` versions).
pub(crate) const VERSION: u16 = 1;

/// Names the inherited handover socket's descriptor in the new process.
pub(crate) const ENV_FD: &str = "TCPIPE_UPGRADE_FD";

/// How long each side waits for the other at each step: the new process
/// to load its config and accept, then to register everything and
/// confirm.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// How long an exporting worker waits for its verdict before it resumes on
/// its own: past every deadline of the sequence, so that it only fires if
/// the thread running the sequence died.
pub(crate) const WORKER_DEADLINE: Duration = Duration::from_secs(30);

/// A successful upgrade, as the old process saw it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Upgraded {
    /// The new process.
    pub pid: u32,
    /// Listening sockets handed over.
    pub listeners: usize,
    /// Connections handed over (pipes, clients not yet pipes, pooled
    /// upstream connections).
    pub connections: usize,
    /// From starting the new binary to its confirmation.
    pub took: Duration,
}

/// Why an upgrade did not happen; the running process carries on
/// unchanged.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Another upgrade is under way.
    InProgress,
    /// Called on an event loop's own thread (from a hook).
    OnLoopThread,
    /// The new process could not start or take over; why.
    Failed(String),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::InProgress => f.write_str("an upgrade is already under way"),
            UpgradeError::OnLoopThread => f.write_str(
                "called on the event loop's own thread (from a hook), where waiting would never end",
            ),
            UpgradeError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for UpgradeError {}

/// What a worker hands over, apart from its parcels' encoding.
pub(crate) struct Exported {
    pub(crate) worker: u16,
    /// Its listening sockets, with their descriptors (still the worker's).
    pub(crate) listeners: Vec<(Listener, RawFd)>,
    pub(crate) bundle: Bundle<RawFd>,
}

/// What the sequence tells an exporting worker at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The new process took everything: let go and end.
    Commit,
    /// The handover failed: carry on.
    Resume,
}

/// Asks a worker to export and then wait, reading nothing, for the verdict.
pub(crate) struct ExportRequest {
    /// What it exported, or why it will not (a shutdown is under way).
    pub(crate) reply: Sender<Result<Exported, String>>,
    pub(crate) verdict: Receiver<Verdict>,
}

/// The workers of the process handing over, as the sequence reaches them
/// (the reactor's crew).
pub(crate) trait Workers {
    fn count(&self) -> usize;
    /// Asks worker `i` to export and wait for its verdict; false if its
    /// loop has ended.
    fn export(&self, i: usize, request: ExportRequest) -> bool;
    /// The binary the running config names, if any.
    fn upgrade_binary(&self) -> Option<std::path::PathBuf>;
    /// Set while an upgrade of these workers runs.
    fn under_way(&self) -> &AtomicBool;
}

/// A worker of the process taking over, before it runs (a reactor).
pub(crate) trait Adopter {
    /// What a worker took in and has not driven yet.
    type Taken;
    /// Takes over one old worker's connections: registers each, moves no
    /// byte yet; how many, and what to start once the old process let go.
    fn adopt_connections(
        &mut self,
        bundle: Bundle<std::os::fd::OwnedFd>,
    ) -> Result<(usize, Self::Taken), crate::handover::HandoverError>;
    /// The old process has let go: drives every connection taken in.
    fn start_adopted(&mut self, taken: Self::Taken);
    /// Listens on a surplus socket beside its twin (same address).
    fn adopt_listener(&mut self, listener: mio::net::TcpListener);
}

/// Held while an upgrade runs: one at a time per forwarder (its crew's
/// flag).
pub(crate) struct UnderWay<'a>(&'a AtomicBool);

impl UnderWay<'_> {
    pub(crate) fn claim(flag: &AtomicBool) -> Option<UnderWay<'_>> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(UnderWay(flag))
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
