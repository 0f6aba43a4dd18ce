//! Why a forwarder could not start, and the exit code the binary gives
//! for it: 2 for settings that cannot be used, 1 for what the environment
//! refused.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::reactor::ReloadError;

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
    /// The admin endpoint could not be served at this address.
    Admin(String, io::Error),
    /// Started by a live upgrade, this process could not take over from
    /// the running one (which carries on); why.
    TakeOver(String),
}

impl StartError {
    /// 2 for a usage error, 1 for anything the environment refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            StartError::Bind(..)
            | StartError::AccessLog(..)
            | StartError::Io(_)
            | StartError::Admin(..)
            | StartError::TakeOver(_) => 1,
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
            StartError::Admin(addr, e) => write!(f, "cannot serve the admin API on {addr}: {e}"),
            StartError::TakeOver(why) => write!(f, "upgrade: {why}"),
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
