//! tcpipe: a single-threaded TCP forwarder on one mio event loop.
//!
//! A [`Forwarder`] runs a [`Config`]: routes, each accepting clients on its
//! own addresses and joining each one to a connection to one of its
//! targets, in both directions, through a fixed ring per direction. Reading
//! a source pauses when its ring reaches the high-water mark and resumes at
//! the low-water mark; no byte is ever dropped. A FIN is passed on as a
//! half-close once the bytes before it are delivered; a reset is passed on
//! as a reset. The rules live in `src/pipe/mod.rs`.
//!
//! An embedder hears every pipe's life through [`Hooks`] set on the
//! [`Builder`], and acts on the pipe an event is about from inside the hook
//! through its [`PipeControl`]: pause or resume either direction, abort,
//! or point a pipe that has not connected yet elsewhere. From any other
//! thread it acts through a [`Handle`]: the same on any pipe by its
//! [`PipeId`], list the live ones, attach two sockets of its own (with
//! bytes it already read from the client), reload the config, shut down;
//! blocking, or as futures ([`Handle::submit`], [`Handle::attach_async`])
//! for async code.
//!
//! # Features
//!
//! `cli` (default) adds the command line (`tcpipe::cli`), its logger and the
//! config file (`tcpipe::load_file`): clap, env_logger, serde and toml. With
//! `default-features = false` the library depends on mio, slab, log,
//! socket2, libc and signal-hook only. Either way tcpipe logs through the
//! `log` crate: a library user sees its lines only with a logger installed
//! (env_logger, say).
//!
//! ```no_run
//! let config = tcpipe::Config::new(
//!     "127.0.0.1:7000".parse().unwrap(),
//!     "127.0.0.1:6379".parse().unwrap(),
//! );
//! let forwarder = tcpipe::Forwarder::bind(config).expect("bind");
//! let handle = forwarder.handle(); // commands and metrics from other threads
//! std::thread::spawn(move || forwarder.run().expect("event loop"));
//! println!("{} live pipes", handle.pipes().expect("running").len());
//! handle.shutdown();
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod access_log;
mod acl;
#[cfg(feature = "cli")]
mod admin;
mod arena;
#[cfg(feature = "cli")]
pub mod cli;
mod config;
mod descriptors;
mod dial;
mod forwarder;
mod handover;
mod hooks;
mod http;
mod inherited;
// Pure parsers for now: the route-matching stage that uses them follows.
#[allow(dead_code, unused_imports)]
mod inspect;
mod kernel_pipe;
mod metrics;
mod net;
mod operator;
mod pipe;
mod proxy_protocol;
mod rate;
mod reactor;
mod reply;
mod ring;
mod runtime;
mod share;
mod start_error;
mod status_page;
mod sys;
mod systemd;
mod text;
mod throttle;
mod timers;
mod upgrade;
mod upstream;
mod wire;

pub use acl::Cidr;
pub use config::{
    format_duration, format_size, parse_address, parse_connection_rate, parse_duration, parse_size,
    AccessLogConfig, AdminAddress, Balance, Config, ConfigError, ConfigWarning, ConnectionRate,
    LogDestination, LogFormat, Naming, Route, Splice, Target, MAX_WEIGHT,
};
#[cfg(feature = "cli")]
pub use config::{load_file, load_file_with, FileError, Overrides};
pub use descriptors::{raise_fd_limit, FdLimit};
pub use forwarder::{Builder, Forwarder, Handle, IntoStream, StartError};
pub use hooks::{
    CloseReason, CommandError, Connected, Direction, Hooks, PipeClosed, PipeControl, PipeId,
    PipeOpened, TargetHealth, TimeoutKind,
};
pub use metrics::{Gauge, Metrics};
pub use proxy_protocol::ProxyVersion;
pub use reactor::{AttachOptions, PipeAction, PipeInfo, PipeState, ReloadError, Reloaded};
pub use reply::Pending;
pub use runtime::{PipeFilter, RouteInfo, TargetInfo, TargetState};
pub use upgrade::{UpgradeError, Upgraded};
