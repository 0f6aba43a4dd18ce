//! The public face of a forwarder: bind it, run it, and talk to it from
//! other threads through a [`Handle`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use log::{error, info};

use crate::config::{format_size, Config, ConfigError};
use crate::metrics::Metrics;
use crate::net;
use crate::reactor::{Control, Reactor};

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

/// Talks to a running forwarder from any thread.
#[derive(Clone)]
pub struct Handle {
    control: Arc<Control>,
    metrics: Arc<Metrics>,
}

impl Handle {
    /// Same as SIGTERM: stop accepting and let live pipes finish within the
    /// drain timeout. A second call aborts the rest at once.
    pub fn shutdown(&self) {
        self.control
            .shutdown_requests
            .fetch_add(1, Ordering::SeqCst);
        if let Err(e) = self.control.waker.wake() {
            error!("cannot wake the event loop for shutdown: {e}");
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// A bound forwarder, ready to [`run`](Forwarder::run).
pub struct Forwarder {
    reactor: Reactor,
    local_addr: SocketAddr,
}

impl Forwarder {
    /// Validates `config` and binds the listener.
    pub fn bind(config: Config) -> Result<Forwarder, StartError> {
        config.validate().map_err(StartError::Config)?;
        let keepalive = config.keepalive.map(net::keepalive);
        let listener = net::bind_listener(config.listen, keepalive.as_ref())
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let local_addr = listener.local_addr().map_err(StartError::Io)?;
        let reactor = Reactor::new(config, listener).map_err(StartError::Io)?;
        Ok(Forwarder {
            reactor,
            local_addr,
        })
    }

    /// The address really bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn handle(&self) -> Handle {
        Handle {
            control: Arc::clone(self.reactor.control()),
            metrics: Arc::clone(self.reactor.metrics()),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(self.reactor.metrics())
    }

    /// Makes SIGTERM and SIGINT request a graceful shutdown (a second one
    /// aborts at once), and SIGHUP log that reloading is not supported
    /// instead of killing the process. A library user that owns signals
    /// leaves this out and calls [`Handle::shutdown`] instead.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.reactor.watch_signals()
    }

    /// Forwards until shut down. Returns `Ok` after a shutdown request once
    /// every pipe has finished or been aborted.
    pub fn run(self) -> io::Result<()> {
        let config = self.reactor.config();
        let targets: Vec<&str> = config.targets.iter().map(|t| t.name.as_str()).collect();
        let pool = if config.pool > 0 {
            format!("; pool {} per target", config.pool)
        } else {
            String::new()
        };
        info!(
            "listening on {}, forwarding to {} ({}{pool}; buffer {}, low-water {}, max {} connections)",
            self.local_addr,
            targets.join(", "),
            config.balance,
            format_size(config.buffer_size),
            format_size(config.low_water),
            config.max_connections,
        );
        self.reactor.run()
    }
}
