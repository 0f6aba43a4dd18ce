//! How the world reaches the loop: commands from other threads (through a
//! channel and the loop's waker), signals, and what they ask for: reloading
//! and shutting down.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
#[cfg(feature = "cli")]
use std::thread;
use std::time::Instant;

use log::{debug, error, info, warn};
use mio::{Interest, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use super::commands::{AttachOptions, PipeAction, PipeInfo};
use super::tokens::SIGNALS;
use super::{plural, Reactor, Run, Timer};
use crate::config::{format_duration, Config, ConfigError};
#[cfg(feature = "cli")]
use crate::config::{load_file_with, FileError, Overrides};
use crate::hooks::CommandError;
use crate::hooks::PipeId;
use crate::metrics::Snapshot;
use crate::pipe::Reason;
use crate::reply::Replier;
#[cfg(feature = "cli")]
use crate::text::format_elapsed;

/// What another thread asks the loop to do.
pub(crate) enum Command {
    /// As SIGTERM; a second one aborts the pipes still open.
    Shutdown,
    /// Apply this config, and answer on `reply`.
    Reload {
        config: Box<Config>,
        reply: Sender<Result<Reloaded, ReloadError>>,
    },
    /// The config file, read and checked by a loader thread.
    #[cfg(feature = "cli")]
    FileLoaded(Box<Result<Config, FileError>>),
    /// Reload the config file as SIGHUP does, and answer on `reply`.
    #[cfg(feature = "cli")]
    ReloadFile(Sender<Result<Reloaded, ReloadError>>),
    /// Pause, resume or abort one pipe.
    Pipe {
        id: PipeId,
        action: PipeAction,
        reply: Replier<Result<(), CommandError>>,
    },
    /// As `Shutdown`, answered once this loop no longer accepts.
    ShutdownAck(Sender<()>),
    /// Every live pipe.
    List(Sender<Vec<PipeInfo>>),
    /// What the metrics endpoint shows.
    Scrape(Sender<Snapshot>),
    /// Pipe two sockets the embedder connected.
    Attach {
        client: mio::net::TcpStream,
        target: mio::net::TcpStream,
        options: AttachOptions,
        reply: Replier<Result<PipeId, CommandError>>,
    },
    /// A reload the leader applied, for a follower to apply too.
    Follow(Box<super::crew::Relay>),
    /// The leader's probe verdicts and resolved addresses, for a follower.
    News(Vec<crate::upstream::News>),
    /// Another worker freed pipes while all were at `max-connections`.
    Freed,
    /// An operator's question about routes and targets.
    Operate(super::Ask),
    /// A live upgrade: export, then wait for the verdict.
    Export(Box<crate::upgrade::ExportRequest>),
    /// An upgrade started by SIGUSR2 failed; why.
    UpgradeFailed(String),
}

/// What a reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// One line per route (added, changed, unchanged or removed), and one
    /// for process-wide settings that changed, as logged.
    pub summary: Vec<String>,
    /// Every route's bound addresses after the reload: (route, address).
    pub listening: Vec<(String, SocketAddr)>,
}

/// Why a config could not be applied; the running one stays in force.
#[derive(Debug)]
pub enum ReloadError {
    /// The config does not validate.
    Invalid(ConfigError),
    /// The config file cannot be read or used.
    #[cfg(feature = "cli")]
    File(FileError),
    /// An address of the new config could not be bound.
    Bind(SocketAddr, io::Error),
    /// The access log file could not be opened.
    AccessLog(PathBuf, io::Error),
    /// A shutdown is under way.
    ShuttingDown,
    /// The forwarder is not running.
    Stopped,
    /// The event loop could not take the change.
    Io(io::Error),
    /// Called on an event loop's own thread (from a hook), where waiting
    /// for the answer would never end.
    OnLoopThread,
    /// [`Handle::reload_file`](crate::Handle::reload_file) of a forwarder
    /// whose config came from elsewhere than a file.
    NoFile,
}

impl ReloadError {
    /// The same error again, for a second caller waiting on one reload.
    fn duplicate(&self) -> ReloadError {
        let io = |e: &io::Error| io::Error::new(e.kind(), e.to_string());
        match self {
            ReloadError::Invalid(e) => ReloadError::Invalid(e.clone()),
            #[cfg(feature = "cli")]
            ReloadError::File(e) => ReloadError::File(e.clone()),
            ReloadError::Bind(addr, e) => ReloadError::Bind(*addr, io(e)),
            ReloadError::AccessLog(path, e) => ReloadError::AccessLog(path.clone(), io(e)),
            ReloadError::ShuttingDown => ReloadError::ShuttingDown,
            ReloadError::Stopped => ReloadError::Stopped,
            ReloadError::Io(e) => ReloadError::Io(io(e)),
            ReloadError::OnLoopThread => ReloadError::OnLoopThread,
            ReloadError::NoFile => ReloadError::NoFile,
        }
    }
}

/// Tells everyone waiting for a reload how it went; a caller that gave up
/// waiting needs nothing.
pub(super) fn answer_reload(
    replies: Vec<Sender<Result<Reloaded, ReloadError>>>,
    outcome: Result<Reloaded, ReloadError>,
) {
    let mut replies = replies.into_iter();
    let Some(last) = replies.next_back() else {
        return;
    };
    for reply in replies {
        let copy = match &outcome {
            Ok(reloaded) => Ok(reloaded.clone()),
            Err(e) => Err(e.duplicate()),
        };
        let _ = reply.send(copy);
    }
    let _ = last.send(outcome);
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Invalid(e) => e.fmt(f),
            #[cfg(feature = "cli")]
            ReloadError::File(e) => e.fmt(f),
            ReloadError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ReloadError::AccessLog(path, e) => {
                write!(f, "cannot open the access log {}: {e}", path.display())
            }
            ReloadError::ShuttingDown => f.write_str("shutting down"),
            ReloadError::Stopped => f.write_str("the forwarder is not running"),
            ReloadError::Io(e) => e.fmt(f),
            ReloadError::OnLoopThread => f.write_str(
                "called on the event loop's own thread (from a hook), where waiting would never end",
            ),
            ReloadError::NoFile => {
                f.write_str("tcpipe runs from flags, not --config: there is no file to reload")
            }
        }
    }
}

impl std::error::Error for ReloadError {}

/// Reloads of the config file: one loader thread at a time, and a request
/// that comes meanwhile is served after it.
#[cfg_attr(not(feature = "cli"), allow(dead_code))]
pub(super) struct FileReload {
    commands: Sender<Command>,
    /// Since when the loader thread has been reading the file.
    in_flight: Option<Instant>,
    again: bool,
    /// Who waits for the reload in flight ([`Command::ReloadFile`]).
    answering: Vec<Sender<Result<Reloaded, ReloadError>>>,
    /// Who waits for the one after it.
    answering_next: Vec<Sender<Result<Reloaded, ReloadError>>>,
}

impl FileReload {
    pub(super) fn new(commands: Sender<Command>) -> FileReload {
        FileReload {
            commands,
            in_flight: None,
            again: false,
            answering: Vec::new(),
            answering_next: Vec::new(),
        }
    }

    /// Where other threads send commands.
    pub(super) fn sender(&self) -> Sender<Command> {
        self.commands.clone()
    }
}

/// How the world reaches the loop: the command channel and the waker that
/// interrupts its poll, the signals, and the config file SIGHUP reloads.
pub(super) struct Inbox {
    commands: Receiver<Command>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    /// The file SIGHUP reloads, if the config came from one, and the
    /// `[global]` settings that win over it at every reload.
    #[cfg(feature = "cli")]
    config_file: Option<(PathBuf, Overrides)>,
    reloading: FileReload,
}

impl Inbox {
    pub(super) fn new(
        sender: Sender<Command>,
        commands: Receiver<Command>,
        waker: Arc<Waker>,
    ) -> Inbox {
        Inbox {
            commands,
            waker,
            signals: None,
            #[cfg(feature = "cli")]
            config_file: None,
            reloading: FileReload::new(sender),
        }
    }
}

impl Reactor {
    /// SIGTERM, SIGINT, SIGQUIT (nginx's graceful stop) and SIGUSR1
    /// (HAProxy's soft stop) drain; a second one aborts. SIGHUP reloads the
    /// config file. SIGUSR2 is logged and ignored. None of them kills the
    /// process by its default action.
    pub(crate) fn watch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGHUP, SIGUSR2])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.inbox.signals = Some(signals);
        Ok(())
    }

    /// The file that SIGHUP reloads, and what wins over its `[global]`.
    #[cfg(feature = "cli")]
    pub(crate) fn reload_from(&mut self, file: PathBuf, overrides: Overrides) {
        self.inbox.config_file = Some((file, overrides));
    }

    /// Where other threads send commands.
    pub(crate) fn commands(&self) -> (Sender<Command>, std::sync::Arc<mio::Waker>) {
        (
            self.inbox.reloading.sender(),
            std::sync::Arc::clone(&self.inbox.waker),
        )
    }

    pub(super) fn on_signals(&mut self) {
        let received: Vec<i32> = match self.inbox.signals.as_mut() {
            Some(signals) => signals.pending().collect(),
            None => Vec::new(),
        };
        for signal in received {
            match signal {
                SIGHUP => self.reload_file("SIGHUP", None),
                SIGUSR2 => self.upgrade_on_signal(),
                // One worker takes the signals; all of them drain.
                other => self.shut_every_worker_down(signal_name(other)),
            }
        }
    }

    pub(super) fn on_control(&mut self) {
        self.upstreams.apply_resolved();
        while let Ok(command) = self.inbox.commands.try_recv() {
            match command {
                Command::Shutdown => self.request_shutdown("Handle::shutdown"),
                Command::ShutdownAck(ack) => {
                    self.request_shutdown("the first worker");
                    let _ = ack.send(());
                }
                Command::Reload { config, reply } => {
                    let copy = self.share.has_peers().then(|| (*config).clone());
                    self.notify_reloading();
                    let applied = self.apply(*config, false);
                    self.log_reload(&applied);
                    self.notify_reloaded(applied.as_ref().err().map(|e| e as _));
                    if applied.is_ok() {
                        info!("reload: done");
                    }
                    match copy {
                        Some(config) => self.pass_reload(config, applied, vec![reply]),
                        None => answer_reload(vec![reply], applied),
                    }
                }
                Command::Follow(relay) => self.on_relay(relay),
                Command::News(news) => self.on_news(news),
                Command::Freed => self.accept_waiting(super::accept::Trigger::PipeFreed),
                Command::Operate(ask) => self.on_operate(ask),
                Command::Export(request) => self.on_export(*request),
                Command::UpgradeFailed(why) => self.on_upgrade_failed(why),
                #[cfg(feature = "cli")]
                Command::FileLoaded(loaded) => self.on_file_loaded(*loaded),
                #[cfg(feature = "cli")]
                Command::ReloadFile(reply) => self.reload_file("the admin API", Some(reply)),
                // Callers that gave up waiting need no answer.
                Command::Pipe { id, action, reply } => {
                    let _ = reply.send(self.on_pipe_command(id, action));
                }
                Command::List(reply) => {
                    let _ = reply.send(self.list_pipes());
                }
                Command::Scrape(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                Command::Attach {
                    client,
                    target,
                    options,
                    reply,
                } => {
                    let _ = reply.send(self.attach(client, target, &options));
                }
            }
        }
    }

    /// A library built without the `cli` feature has no config file.
    #[cfg(not(feature = "cli"))]
    fn reload_file(&mut self, asked_by: &str, _reply: Option<()>) {
        warn!("{asked_by}: no config file to reload (built without the cli feature), carrying on");
    }

    /// Reads the config file on a thread of its own (it resolves host
    /// names, which may take seconds), then applies it on the loop; `reply`
    /// hears the outcome. Asked while a reload is in flight, it is done
    /// again after that one (the file may have changed meanwhile).
    #[cfg(feature = "cli")]
    fn reload_file(
        &mut self,
        asked_by: &str,
        reply: Option<Sender<Result<Reloaded, ReloadError>>>,
    ) {
        let Some((path, overrides)) = self.inbox.config_file.clone() else {
            warn!(
                "{asked_by}: tcpipe runs from flags, not --config; nothing to reload, carrying on"
            );
            let mut waiting = std::mem::take(&mut self.inbox.reloading.answering);
            waiting.extend(reply);
            answer_reload(waiting, Err(ReloadError::NoFile));
            return;
        };
        if self.shutting_down() {
            info!("{asked_by}: shutting down; not reloading");
            let mut waiting = std::mem::take(&mut self.inbox.reloading.answering);
            waiting.extend(reply);
            answer_reload(waiting, Err(ReloadError::ShuttingDown));
            return;
        }
        if self.inbox.reloading.in_flight.is_some() {
            self.inbox.reloading.again = true;
            self.inbox.reloading.answering_next.extend(reply);
            return;
        }
        self.inbox.reloading.answering.extend(reply);
        info!("{asked_by}: reloading {}", path.display());
        self.notify_reloading();
        let (commands, waker) = self.commands();
        let spawned = thread::Builder::new()
            .name("tcpipe-reload".into())
            .spawn(move || {
                let loaded = load_file_with(&path, &overrides);
                if commands.send(Command::FileLoaded(Box::new(loaded))).is_ok() {
                    if let Err(e) = waker.wake() {
                        error!("cannot wake the event loop with the reloaded config: {e}");
                    }
                }
            });
        match spawned {
            Ok(_) => self.inbox.reloading.in_flight = Some(self.now),
            Err(e) => {
                error!("reload failed; the running config stays: cannot start a thread: {e}");
                self.notify_reloaded(Some(&e));
                let waiting = std::mem::take(&mut self.inbox.reloading.answering);
                answer_reload(waiting, Err(ReloadError::Io(e)));
            }
        }
    }

    #[cfg(feature = "cli")]
    fn on_file_loaded(&mut self, loaded: Result<Config, FileError>) {
        let asked = self.inbox.reloading.in_flight.take();
        let copy = match &loaded {
            Ok(config) if self.share.has_peers() => Some(config.clone()),
            _ => None,
        };
        let applied = loaded
            .map_err(ReloadError::File)
            .and_then(|config| self.apply(config, false));
        self.log_reload(&applied);
        self.notify_reloaded(applied.as_ref().err().map(|e| e as _));
        if let (Ok(_), Some(asked)) = (&applied, asked) {
            info!(
                "reload: done, {} after it was asked for",
                format_elapsed(self.now.saturating_duration_since(asked))
            );
        }
        let waiting = std::mem::take(&mut self.inbox.reloading.answering);
        match copy {
            Some(config) => self.pass_reload(config, applied, waiting),
            None => answer_reload(waiting, applied),
        }
        if std::mem::take(&mut self.inbox.reloading.again) {
            let next = std::mem::take(&mut self.inbox.reloading.answering_next);
            self.inbox.reloading.answering = next;
            self.reload_file("a reload asked for during the last one", None);
        }
    }

    fn log_reload(&self, applied: &Result<Reloaded, ReloadError>) {
        match applied {
            Ok(_) => self.observers.metrics.reloads_ok_total.add(1),
            Err(_) => self.observers.metrics.reloads_failed_total.add(1),
        }
        match applied {
            Ok(reloaded) => {
                for line in &reloaded.summary {
                    info!("reload: {line}");
                }
            }
            Err(e) => error!("reload failed; the running config stays: {e}"),
        }
    }

    /// Stops accepting and lets live pipes finish within the drain timeout;
    /// a second request aborts them at once. `cause` (a signal's name, or
    /// who asked) begins the log line, so an operator can tell a deploy's
    /// SIGTERM from a stray Ctrl-C.
    pub(super) fn request_shutdown(&mut self, cause: &str) {
        if self.shutting_down() {
            info!(
                "{cause}: second shutdown request: aborting {}",
                plural(self.open_pipes(), "pipe")
            );
            self.abort_all(|_| true, || Reason::Shutdown);
            self.run = Run::Exiting;
            return;
        }
        self.run = Run::Draining;
        // Clients still sending their PROXY header have had nothing
        // forwarded: turned away now rather than let in to be drained.
        self.refuse_awaiting(|_| true);
        self.refuse_inspecting(|_| true);
        // Closing the listeners makes new connects fail at once instead of
        // waiting in a backlog nobody will serve.
        self.routes.listeners.clear();
        self.upstreams.stop();
        self.accepting.more_pending = false;
        let within = match self.limits.drain_timeout {
            Some(drain) => {
                self.timers.push(self.now + drain, Timer::DrainDeadline);
                format!("within {}", format_duration(Some(drain)))
            }
            None => "however long they take".into(),
        };
        // With several workers the first one speaks for all, counting the
        // pipes of every worker.
        if !self.share.is_leader() {
            debug!("worker {}: shutting down", self.share.index + 1);
            return;
        }
        let open = if self.share.has_peers() {
            self.process_pipes()
        } else {
            self.open_pipes()
        };
        self.notify_stopping(open);
        info!(
            "{cause}: shutting down: no longer accepting; {} may finish {within}",
            plural(open, "pipe")
        );
    }
}

/// The signals that stop tcpipe, by the name an operator sent.
fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGQUIT => "SIGQUIT",
        SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}
