//! The public face of a forwarder: bind it, run it, and talk to it from
//! other threads through a [`Handle`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

use log::error;
use mio::Waker;

use crate::config::{Config, ConfigError};
use crate::hooks::{Hooks, PipeId};
use crate::metrics::Metrics;
use crate::reactor::{
    AttachOptions, Command, CommandError, PipeAction, PipeInfo, Reactor, ReloadError, Reloaded,
};

/// Why a forwarder could not start.
#[derive(Debug)]
pub enum StartError {
    /// A setting cannot be used.
    Config(ConfigError),
    /// An address could not be listened on.
    Bind(SocketAddr, io::Error),
    /// The access log file could not be opened.
    AccessLog(PathBuf, io::Error),
    /// The event loop could not be set up.
    Io(io::Error),
}

impl StartError {
    /// 2 for a usage error, 1 for anything the environment refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            StartError::Bind(..) | StartError::AccessLog(..) | StartError::Io(_) => 1,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::AccessLog(path, e) => {
                write!(f, "cannot open the access log {}: {e}", path.display())
            }
            StartError::Io(e) => write!(f, "cannot start the event loop: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ReloadError> for StartError {
    fn from(e: ReloadError) -> StartError {
        match e {
            ReloadError::Invalid(e) => StartError::Config(e),
            ReloadError::Bind(addr, e) => StartError::Bind(addr, e),
            ReloadError::AccessLog(path, e) => StartError::AccessLog(path, e),
            ReloadError::Io(e) => StartError::Io(e),
            other => StartError::Io(io::Error::other(other.to_string())),
        }
    }
}

/// Talks to a running forwarder from any thread: shutdown, reload, and
/// the pipe commands. Every method but [`shutdown`](Handle::shutdown) and
/// [`metrics`](Handle::metrics) waits for the event loop's answer, so none
/// may be called on the loop's own thread (from a hook), and none is
/// answered before [`Forwarder::run`] has started.
#[derive(Clone)]
pub struct Handle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Same as SIGTERM: stop accepting and let live pipes finish within the
    /// drain timeout. A second call aborts the rest at once.
    pub fn shutdown(&self) {
        self.send(Command::Shutdown);
    }

    /// Applies `config` in place, as SIGHUP does with the config file:
    /// routes are matched by name; live pipes keep their route, target and
    /// settings. Returns once the event loop has applied it, or refused it
    /// (then the running config stays in force, unchanged).
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        self.ask(|reply| Command::Reload {
            config: Box::new(config),
            reply,
        })
        .ok_or(ReloadError::Stopped)?
    }

    /// Stops reading both sides of a pipe. What it has buffered is still
    /// delivered, nothing is dropped, and the kernel's receive windows push
    /// back on the peers until [`resume`](Handle::resume). While paused, an
    /// open pipe's idle and half-close timeouts wait too.
    pub fn pause(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Pause)
    }

    /// Reads both sides of a paused pipe again, at once.
    pub fn resume(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Resume)
    }

    /// Ends a pipe with a reset on both sides; its hooks hear
    /// [`CloseReason::Aborted`](crate::CloseReason::Aborted).
    pub fn abort(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Abort)
    }

    /// Every live pipe: its route, ends, state and counters.
    pub fn pipes(&self) -> Result<Vec<PipeInfo>, CommandError> {
        self.ask(Command::List).ok_or(CommandError::Stopped)
    }

    /// Pipes two sockets the caller connected itself (Workerman's
    /// `setSource`/`setTarget`/`pipe()`), with route defaults: the same
    /// flow control, close rules and hooks as any other pipe.
    pub fn attach(
        &self,
        client: impl IntoStream,
        target: impl IntoStream,
    ) -> Result<PipeId, CommandError> {
        self.attach_with(client, target, AttachOptions::default())
    }

    /// [`attach`](Handle::attach) with its buffer and timeouts chosen. The
    /// target socket may still be connecting; if its connect fails or times
    /// out, the client is reset.
    pub fn attach_with(
        &self,
        client: impl IntoStream,
        target: impl IntoStream,
        options: AttachOptions,
    ) -> Result<PipeId, CommandError> {
        let client = client.into_stream().map_err(CommandError::Io)?;
        let target = target.into_stream().map_err(CommandError::Io)?;
        self.ask(|reply| Command::Attach {
            client,
            target,
            options,
            reply,
        })
        .ok_or(CommandError::Stopped)?
    }

    /// The forwarder's counters and gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every metric, per route and target, in the Prometheus text format:
    /// what `GET /metrics` serves.
    pub fn prometheus(&self) -> Result<String, CommandError> {
        self.ask(Command::Scrape)
            .map(|snapshot| crate::metrics::render(&snapshot))
            .ok_or(CommandError::Stopped)
    }

    fn pipe_command(&self, id: PipeId, action: PipeAction) -> Result<(), CommandError> {
        self.ask(|reply| Command::Pipe { id, action, reply })
            .ok_or(CommandError::Stopped)?
    }

    /// Sends the command `make` builds around a reply channel, and waits
    /// for the answer; `None` if the loop has ended.
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        self.send(make(reply));
        answer.recv().ok()
    }

    fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            return; // the loop has ended
        }
        if let Err(e) = self.waker.wake() {
            error!("cannot wake the event loop: {e}");
        }
    }
}

/// A connected TCP socket the forwarder can take over: a
/// `std::net::TcpStream` (made non-blocking here) or a `mio::net::TcpStream`.
pub trait IntoStream {
    /// The socket as the event loop uses it.
    fn into_stream(self) -> io::Result<mio::net::TcpStream>;
}

impl IntoStream for std::net::TcpStream {
    fn into_stream(self) -> io::Result<mio::net::TcpStream> {
        self.set_nonblocking(true)?;
        Ok(mio::net::TcpStream::from_std(self))
    }
}

impl IntoStream for mio::net::TcpStream {
    fn into_stream(self) -> io::Result<mio::net::TcpStream> {
        Ok(self)
    }
}

/// A forwarder's settings before it binds: its config, and optionally the
/// embedder's [`Hooks`].
pub struct Builder {
    config: Config,
    hooks: Option<Box<dyn Hooks>>,
}

impl Builder {
    /// Sets the hooks the forwarder calls on its event loop's thread.
    pub fn hooks(mut self, hooks: impl Hooks + 'static) -> Builder {
        self.hooks = Some(Box::new(hooks));
        self
    }

    /// Validates the config and binds every route's listeners.
    pub fn bind(self) -> Result<Forwarder, StartError> {
        self.config.validate().map_err(StartError::Config)?;
        let reactor = Reactor::new(self.config, self.hooks)?;
        Ok(Forwarder { reactor })
    }
}

/// A bound forwarder, ready to [`run`](Forwarder::run).
pub struct Forwarder {
    reactor: Reactor,
}

impl Forwarder {
    /// A forwarder of `config`, to add hooks to before it binds.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            hooks: None,
        }
    }

    /// Validates `config` and binds every route's listeners: a forwarder
    /// with no hooks.
    pub fn bind(config: Config) -> Result<Forwarder, StartError> {
        Forwarder::builder(config).bind()
    }

    /// The address the first route's first listener really bound (useful
    /// with port 0); `None` for a forwarder with no routes, which only
    /// pipes attached sockets.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.reactor.listening().first().map(|(_, addr)| *addr)
    }

    /// Where `GET /metrics` is served, as bound (`Config::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.reactor.metrics_addr()
    }

    /// Every route's bound addresses: (route name, address).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.reactor.listening()
    }

    /// A handle to the forwarder for other threads.
    pub fn handle(&self) -> Handle {
        let (commands, waker) = self.reactor.commands();
        Handle {
            commands,
            waker,
            metrics: Arc::clone(self.reactor.metrics()),
        }
    }

    /// The forwarder's counters and gauges.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(self.reactor.metrics())
    }

    /// The config file SIGHUP reloads. Reading it again happens on a thread
    /// of its own (it resolves host names); the result is applied on the
    /// event loop, or logged and ignored if anything in it is wrong.
    pub fn reload_on_sighup(&mut self, file: PathBuf) {
        self.reactor.reload_from(file);
    }

    /// Makes SIGTERM, SIGINT, SIGQUIT and SIGUSR1 request a graceful
    /// shutdown (a second one aborts at once), SIGHUP reload the config
    /// file given to [`reload_on_sighup`](Forwarder::reload_on_sighup), and
    /// SIGUSR2 log that it means nothing. A library user that owns signals
    /// leaves this out and uses the [`Handle`] instead.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.reactor.watch_signals()
    }

    /// Forwards until shut down. Returns `Ok` after a shutdown request once
    /// every pipe has finished or been aborted.
    pub fn run(self) -> io::Result<()> {
        self.reactor.run()
    }
}
