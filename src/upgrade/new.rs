//! The process taking over: found by [`super::ENV_FD`], it answers the
//! hello once its config is loaded, takes the listening sockets into the
//! store binding asks first (`crate::inherited`), gives each worker its
//! bundles once bound, confirms, and runs once the old process has let go.

use std::os::fd::OwnedFd;
use std::time::Instant;

use log::info;

use super::channel::{Channel, ChannelError};
use super::envelope::{self, Counts, Hello};
use super::frame::Kind;
use super::{Adopter, DEADLINE, ENV_FD, VERSION};
use crate::handover::{regroup, Bundle};

/// For tests only: set in the new process's environment, it aborts right
/// before confirming, with everything received and adopted, as a process
/// that crashes mid-handover would. Without it nothing changes.
const TEST_ABORT: &str = "TCPIPE_TEST_ABORT_BEFORE_CONFIRM";

/// What came from the old process, until the workers adopt it.
pub(crate) struct TakeOver {
    channel: Channel,
    from: u32,
    /// Per old worker (by index), its bundle.
    bundles: Vec<Bundle<OwnedFd>>,
    counts: Counts,
}

/// What is left once the new process runs: telling the old one that
/// systemd knows the new main pid.
pub(crate) struct Finish {
    channel: Channel,
}

impl Finish {
    /// systemd has heard `MAINPID=` and `READY=1`: the old process may exit.
    pub(crate) fn notified(self) {
        // The old process exits either way, after a deadline.
        let _ = self
            .channel
            .send(Kind::Notified, &[], &[], Instant::now() + DEADLINE);
    }
}

impl TakeOver {
    /// If this process was started by an upgrade (`TCPIPE_UPGRADE_FD`),
    /// greets the old process and receives everything it hands over; the
    /// listening sockets are offered to binding. The variable is unset, so
    /// no child of this process sees it.
    pub(crate) fn from_env() -> Result<Option<TakeOver>, String> {
        let Some(value) = std::env::var_os(ENV_FD) else {
            return Ok(None);
        };
        std::env::remove_var(ENV_FD);
        crate::inherited::note_take_over();
        let fd = value
            .to_str()
            .and_then(|text| text.parse::<i32>().ok())
            .filter(|&fd| fd > 2)
            .ok_or_else(|| format!("{ENV_FD}={value:?}: not a descriptor number"))?;
        let fd = crate::sys::take_inherited(fd).map_err(|e| format!("{ENV_FD}={fd}: {e}"))?;
        let mut channel = Channel::inherited(fd).map_err(|e| format!("{ENV_FD}: {e}"))?;
        let deadline = Instant::now() + DEADLINE;
        let said = |e: ChannelError| format!("the old process {e}");
        let hello = channel.recv(deadline).map_err(said)?;
        if hello.kind != Kind::Hello {
            return Err(format!("the old process began with {:?}", hello.kind));
        }
        let refusal = match Hello::decode(&hello.payload) {
            Ok(hello) if hello.envelope != VERSION => Some(format!(
                "handover envelope version {} (this binary knows {VERSION})",
                hello.envelope
            )),
            Ok(hello) if hello.records != crate::handover::VERSION => Some(format!(
                "connection record version {} (this binary knows {})",
                hello.records,
                crate::handover::VERSION
            )),
            Ok(hello) => {
                info!(
                    "upgrade: taking over from pid {} ({} workers)",
                    hello.pid, hello.workers
                );
                None
            }
            Err(e) => Some(format!("an unreadable hello: {e}")),
        };
        if let Some(why) = refusal {
            let _ = channel.send(Kind::Refuse, why.as_bytes(), &[], deadline);
            return Err(format!("cannot take over: {why}"));
        }
        let from = Hello::decode(&hello.payload).map_or(0, |h| h.pid);
        let me = envelope::encode_u32(std::process::id());
        channel
            .send(Kind::Accept, &me, &[], deadline)
            .map_err(said)?;
        let mut take_over = TakeOver {
            channel,
            from,
            bundles: Vec::new(),
            counts: Counts::default(),
        };
        take_over.receive()?;
        Ok(Some(take_over))
    }

    /// Frames until `End`, whose counts must match what came.
    fn receive(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        let mut came = Counts::default();
        loop {
            let frame = self
                .channel
                .recv(deadline)
                .map_err(|e| format!("the old process {e}"))?;
            let bad = |e: crate::wire::WireError| format!("a {:?} frame: {e}", frame.kind);
            match frame.kind {
                Kind::Listeners => {
                    let listeners = envelope::decode_listeners(&frame.payload).map_err(bad)?;
                    if listeners.len() != frame.fds.len() {
                        return Err("listeners without their descriptors".into());
                    }
                    for (listener, fd) in listeners.into_iter().zip(frame.fds) {
                        came.listeners += 1;
                        crate::inherited::offer_handed(fd, &listener.owner, listener.configured)
                            .map_err(|why| {
                                format!(
                                    "the listener of {} on {}: {why}",
                                    listener.owner, listener.local
                                )
                            })?;
                    }
                }
                Kind::Parcels => {
                    let (worker, parcels) =
                        envelope::decode_parcels(&frame.payload, frame.fds).map_err(bad)?;
                    came.parcels += parcels.len() as u32;
                    self.bundle(worker).parcels.extend(parcels);
                }
                Kind::Upstream => {
                    let (worker, state) = envelope::decode_upstream(&frame.payload).map_err(bad)?;
                    self.bundle(worker).upstream = state;
                }
                Kind::End => {
                    let said = Counts::decode(&frame.payload).map_err(bad)?;
                    if said != came {
                        return Err(format!("the old process sent {came:?} but said {said:?}"));
                    }
                    self.counts = came;
                    return Ok(());
                }
                other => return Err(format!("the old process sent {other:?} mid-handover")),
            }
        }
    }

    fn bundle(&mut self, worker: u16) -> &mut Bundle<OwnedFd> {
        let at = worker as usize;
        while self.bundles.len() <= at {
            self.bundles.push(Bundle::default());
        }
        &mut self.bundles[at]
    }

    /// Listening sockets handed over that no worker took because the old
    /// process had more workers (one socket each, `SO_REUSEPORT`): each may
    /// hold connections in its accept queue, so none is closed; the new
    /// workers take them in turn, each as a second socket on that address.
    pub(crate) fn adopt_surplus<A: Adopter>(&self, workers: &mut [&mut A]) {
        let surplus = crate::inherited::surplus();
        if workers.is_empty() {
            return;
        }
        let count = workers.len();
        for (i, listener) in surplus.into_iter().enumerate() {
            match listener {
                Ok(listener) => workers[i % count].adopt_listener(listener),
                Err(e) => log::warn!("upgrade: cannot take a surplus listener: {e}"),
            }
        }
    }

    /// Gives each worker its connections (each pipe to the worker that
    /// owns its id, so ids never collide and commands by id find it,
    /// whatever the two worker counts; see `handover::regroup`), confirms,
    /// and waits for the old process to let go. Each worker registers its
    /// connections first and drives them (reads, writes) only once the old
    /// process has committed: a byte moved before then would be moved again
    /// by the old process, were it to resume.
    pub(crate) fn adopt_into<A: Adopter>(
        mut self,
        workers: &mut [&mut A],
    ) -> Result<Finish, String> {
        let mut adopted = 0;
        let mut taken = Vec::with_capacity(workers.len());
        let bundles = regroup(std::mem::take(&mut self.bundles), workers.len());
        for (i, (worker, bundle)) in workers.iter_mut().zip(bundles).enumerate() {
            let (count, took) = worker
                .adopt_connections(bundle)
                .map_err(|e| format!("worker {} cannot adopt its connections: {e}", i + 1))?;
            adopted += count;
            taken.push(took);
        }
        if std::env::var_os(TEST_ABORT).is_some() {
            std::process::abort();
        }
        let deadline = Instant::now() + DEADLINE;
        let said = |e: ChannelError| format!("the old process {e}");
        let confirm = envelope::encode_u32(adopted as u32);
        self.channel
            .send(Kind::Confirm, &confirm, &[], deadline)
            .map_err(said)?;
        let answer = self.channel.recv(deadline).map_err(said)?;
        if answer.kind != Kind::Committed {
            return Err(format!("the old process answered {:?}", answer.kind));
        }
        for (worker, took) in workers.iter_mut().zip(taken) {
            worker.start_adopted(took);
        }
        info!(
            "upgrade: took over from pid {}: {} and {}",
            self.from,
            crate::text::plural(self.counts.listeners as usize, "listener"),
            crate::text::plural(adopted, "connection")
        );
        Ok(Finish {
            channel: self.channel,
        })
    }
}
