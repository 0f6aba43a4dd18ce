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
//! [`Builder`], and acts from any thread through a [`Handle`]: pause,
//! resume or abort a pipe, list the live ones, attach two sockets of its
//! own, reload the config, shut down.
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
mod arena;
pub mod cli;
mod config;
mod descriptors;
mod forwarder;
mod hooks;
mod http;
mod kernel_pipe;
mod metrics;
mod net;
mod pipe;
mod proxy_protocol;
mod reactor;
mod ring;
mod sys;
mod systemd;
mod text;
mod throttle;
mod timers;
mod upstream;
mod workers;

pub use acl::Cidr;
pub use config::{
    format_duration, format_size, load_file, load_file_with, parse_address, parse_duration,
    parse_size, AccessLogConfig, Balance, Config, ConfigError, ConfigWarning, FileError,
    LogDestination, LogFormat, Naming, Overrides, Route, Splice, Target,
};
pub use descriptors::{raise_fd_limit, FdLimit};
pub use forwarder::{Builder, Forwarder, Handle, IntoStream, StartError};
pub use hooks::{
    CloseReason, Connected, Direction, Hooks, PipeClosed, PipeId, PipeOpened, TargetHealth,
    TimeoutKind,
};
pub use metrics::{Gauge, Metrics};
pub use proxy_protocol::ProxyVersion;
pub use reactor::{AttachOptions, CommandError, PipeInfo, PipeState, ReloadError, Reloaded};
