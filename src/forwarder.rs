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
use crate::metrics::Metrics;
use crate::reactor::{Command, Reactor, ReloadError, Reloaded};

/// Why a forwarder could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Bind(SocketAddr, io::Error),
    Io(io::Error),
}

impl StartError {
    /// 2 for a usage error, 1 for anything the environment refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            StartError::Bind(..) | StartError::Io(_) => 1,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
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
            ReloadError::Io(e) => StartError::Io(e),
            other => StartError::Io(io::Error::other(other.to_string())),
        }
    }
}

/// Talks to a running forwarder from any thread.
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
    /// settings. Blocks until the event loop has applied it or refused it
    /// (then the running config stays in force, unchanged); so it must not
    /// be called on the event loop's own thread.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        let (reply, answer) = mpsc::channel();
        self.send(Command::Reload {
            config: Box::new(config),
            reply,
        });
        answer.recv().map_err(|_| ReloadError::Stopped)?
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

/// A bound forwarder, ready to [`run`](Forwarder::run).
pub struct Forwarder {
    reactor: Reactor,
    local_addr: SocketAddr,
}

impl Forwarder {
    /// Validates `config` and binds every route's listeners.
    pub fn bind(config: Config) -> Result<Forwarder, StartError> {
        config.validate().map_err(StartError::Config)?;
        let reactor = Reactor::new(config)?;
        let local_addr = reactor
            .listening()
            .first()
            .map(|(_, addr)| *addr)
            .ok_or_else(|| StartError::Io(io::Error::other("no listener was bound")))?;
        Ok(Forwarder {
            reactor,
            local_addr,
        })
    }

    /// The address the first route's first listener really bound (useful
    /// with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every route's bound addresses: (route name, address).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.reactor.listening()
    }

    pub fn handle(&self) -> Handle {
        let (commands, waker) = self.reactor.commands();
        Handle {
            commands,
            waker,
            metrics: Arc::clone(self.reactor.metrics()),
        }
    }

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
