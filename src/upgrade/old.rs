//! The process handing over: start the new binary, greet it, stop every
//! worker and send what each exported, then commit or roll back.

use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::channel::{Channel, ChannelError};
use super::envelope::{self, Counts, Hello};
use super::frame::Kind;
use super::{
    launch, ExportRequest, Exported, UnderWay, UpgradeError, Upgraded, Verdict, Workers, DEADLINE,
    ENV_FD, VERSION,
};

/// How long the old process waits for the new one to have told systemd
/// before it exits: systemd must hear `MAINPID=` before the old main pid
/// ends, or it counts the service as stopped.
const NOTIFIED_DEADLINE: Duration = Duration::from_secs(5);

/// Runs a whole upgrade on the calling thread: `Ok` once the new process
/// has taken over (every worker of this one then ends, and the process
/// exits), `Err` if it did not (every worker carries on).
pub(crate) fn hand_over(crew: &impl Workers) -> Result<Upgraded, UpgradeError> {
    let _under_way = UnderWay::claim(crew.under_way()).ok_or(UpgradeError::InProgress)?;
    let started = Instant::now();
    let (binary, args) = launch::command(crew.upgrade_binary()).map_err(UpgradeError::Failed)?;
    let failed = |why: String| UpgradeError::Failed(why);
    let (mut channel, theirs) =
        Channel::pair().map_err(|e| failed(format!("cannot make the handover socket: {e}")))?;
    let mut command = Command::new(&binary);
    command
        .args(&args)
        .env(ENV_FD, theirs.as_raw_fd().to_string());
    // systemd names this process as the watchdog's; the new one will be
    // the main process, so it pings for itself (unset means "whoever reads
    // it").
    if std::env::var("WATCHDOG_PID").is_ok_and(|pid| pid.trim() == std::process::id().to_string()) {
        command.env_remove("WATCHDOG_PID");
    }
    crate::sys::keep_open_in_child(&mut command, theirs.as_raw_fd());
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start {}: {e}", binary.display())))?;
    drop(theirs);
    info!(
        "upgrade: started {} (pid {}); handing over to it",
        binary.display(),
        child.id()
    );
    match run(&mut channel, &mut child, crew, started) {
        Ok(upgraded) => Ok(upgraded),
        Err(why) => {
            let why = format!("pid {}: {why}", child.id());
            stop(&mut child);
            Err(failed(why))
        }
    }
}

/// The steps after the new process started; `Err` with why it failed.
fn run(
    channel: &mut Channel,
    child: &mut Child,
    crew: &impl Workers,
    started: Instant,
) -> Result<Upgraded, String> {
    let pid = child.id();
    let hello = Hello {
        envelope: VERSION,
        records: crate::handover::VERSION,
        pid: std::process::id(),
        workers: crew.count() as u16,
    };
    let deadline = Instant::now() + DEADLINE;
    let said = |e: ChannelError| explain(e, child);
    channel
        .send(Kind::Hello, &hello.encode(), &[], deadline)
        .map_err(said)?;
    let answer = channel.recv(deadline).map_err(|e| explain(e, child))?;
    match answer.kind {
        Kind::Accept => {}
        Kind::Refuse => {
            return Err(format!(
                "refused to take over: {}",
                String::from_utf8_lossy(&answer.payload)
            ))
        }
        other => return Err(format!("answered the hello with {other:?}")),
    }

    // From here every worker is stopped until `held` says otherwise;
    // dropping it (any error below) resumes them all.
    let deadline = Instant::now() + DEADLINE;
    let (held, exported) = export_all(crew, deadline)?;
    let counts = send_all(channel, &exported, deadline).map_err(|e| explain(e, child))?;
    let confirm = channel.recv(deadline).map_err(|e| explain(e, child))?;
    if confirm.kind != Kind::Confirm {
        return Err(format!("answered the handover with {:?}", confirm.kind));
    }
    let adopted = envelope::decode_u32(&confirm.payload).map_err(|e| format!("a confirm: {e}"))?;
    // Committed: from the next line on, the new process runs everything.
    let sent = channel.send(Kind::Committed, &[], &[], Instant::now() + DEADLINE);
    if let Err(e) = sent {
        return Err(format!("could not be told to go on: {e}"));
    }
    let took = started.elapsed();
    held.commit_followers();
    match channel.recv(Instant::now() + NOTIFIED_DEADLINE) {
        Ok(frame) if frame.kind == Kind::Notified => {}
        Ok(frame) => warn!("upgrade: pid {pid} sent {:?} for Notified", frame.kind),
        Err(e) => warn!("upgrade: pid {pid} {e} after taking over; exiting all the same"),
    }
    info!(
        "upgrade: pid {pid} took over {} and {} ({adopted} adopted) in {} ms; exiting",
        crate::text::plural(counts.listeners as usize, "listener"),
        crate::text::plural(counts.parcels as usize, "connection"),
        took.as_millis()
    );
    held.commit_leader();
    Ok(Upgraded {
        pid,
        listeners: counts.listeners as usize,
        connections: counts.parcels as usize,
        took,
    })
}

/// Every worker stopped and waiting for its verdict, first the leader.
struct Held {
    verdicts: Vec<mpsc::Sender<Verdict>>,
}

impl Held {
    fn commit_followers(&self) {
        for verdict in self.verdicts.iter().skip(1) {
            let _ = verdict.send(Verdict::Commit);
        }
    }

    fn commit_leader(mut self) {
        if let Some(verdict) = self.verdicts.first() {
            let _ = verdict.send(Verdict::Commit);
        }
        self.verdicts.clear();
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        for verdict in &self.verdicts {
            let _ = verdict.send(Verdict::Resume);
        }
    }
}

/// Asks every worker to export; each then waits for its verdict.
fn export_all(crew: &impl Workers, deadline: Instant) -> Result<(Held, Vec<Exported>), String> {
    let mut held = Held {
        verdicts: Vec::new(),
    };
    let mut answers = Vec::new();
    for i in 0..crew.count() {
        let (reply, answer) = mpsc::channel();
        let (verdict, waits) = mpsc::channel();
        held.verdicts.push(verdict);
        let request = ExportRequest {
            reply,
            verdict: waits,
        };
        if !crew.export(i, request) {
            return Err(format!("worker {} has stopped", i + 1));
        }
        answers.push(answer);
    }
    let mut exported = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        match answer.recv_timeout(left) {
            Ok(Ok(part)) => exported.push(part),
            Ok(Err(why)) => return Err(format!("worker {}: {why}", i + 1)),
            Err(_) => return Err(format!("worker {} did not stop in time", i + 1)),
        }
    }
    Ok((held, exported))
}

/// Sends every listener, then each worker's parcels and upstream state,
/// then the counts.
fn send_all(
    channel: &Channel,
    exported: &[Exported],
    deadline: Instant,
) -> Result<Counts, ChannelError> {
    let listeners: Vec<(envelope::Listener, RawFd)> = exported
        .iter()
        .flat_map(|part| part.listeners.iter().cloned())
        .collect();
    let mut counts = Counts {
        listeners: listeners.len() as u32,
        parcels: 0,
    };
    for run in envelope::batches(listeners.len(), |_| 1, |_| 64) {
        let batch = &listeners[run];
        let described: Vec<envelope::Listener> = batch.iter().map(|(l, _)| l.clone()).collect();
        let fds: Vec<RawFd> = batch.iter().map(|(_, fd)| *fd).collect();
        let payload = envelope::encode_listeners(&described);
        channel.send(Kind::Listeners, &payload, &fds, deadline)?;
    }
    for part in exported {
        let parcels = &part.bundle.parcels;
        counts.parcels += parcels.len() as u32;
        let runs = envelope::batches(
            parcels.len(),
            |i| parcels[i].fds.len(),
            |i| parcels[i].record.len(),
        );
        for run in runs {
            let batch = &parcels[run];
            let fds: Vec<RawFd> = batch.iter().flat_map(|p| p.fds.iter().copied()).collect();
            let payload = envelope::encode_parcels(part.worker, batch);
            channel.send(Kind::Parcels, &payload, &fds, deadline)?;
        }
        let upstream = envelope::encode_upstream(part.worker, &part.bundle.upstream);
        channel.send(Kind::Upstream, &upstream, &[], deadline)?;
    }
    channel.send(Kind::End, &counts.encode(), &[], deadline)?;
    Ok(counts)
}

/// Why the new process went silent: its exit status if it exited.
fn explain(e: ChannelError, child: &mut Child) -> String {
    if let ChannelError::Closed = e {
        // Its socket closes as it exits: give the exit a moment to show.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("exited ({status}) before taking over");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    e.to_string()
}

/// The new process failed: it must not live on beside this one.
fn stop(child: &mut Child) {
    match child.try_wait() {
        Ok(Some(_)) => {}
        _ => {
            if let Err(e) = child.kill() {
                error!("upgrade: cannot kill pid {}: {e}", child.id());
            }
            let _ = child.wait();
        }
    }
}
