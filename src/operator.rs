//! What an operator sees of routes and targets, and says to them: a
//! target's state (ready, drain, maint), the routes and targets as the
//! operator's tools show them, and which pipes to reset as a group. The
//! [`Handle`](crate::Handle) methods that take and give these are in
//! `runtime.rs`; the loops that act on them know only these types.

use std::fmt;
use std::net::SocketAddr;

/// An operator's say over a target, apart from its health (HAProxy's
/// `set server state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TargetState {
    /// Takes new pipes when healthy.
    #[default]
    Ready,
    /// Takes no new pipe; live ones run on and health probes go on.
    Drain,
    /// As drain, and probes stop: the target counts as down.
    Maint,
}

impl TargetState {
    /// As the admin API and metrics write it.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Ready => "ready",
            TargetState::Drain => "drain",
            TargetState::Maint => "maint",
        }
    }

    /// `ready`, `drain` or `maint`.
    pub fn parse(text: &str) -> Option<TargetState> {
        match text {
            "ready" => Some(TargetState::Ready),
            "drain" => Some(TargetState::Drain),
            "maint" => Some(TargetState::Maint),
            _ => None,
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route as [`Handle::routes`](crate::Handle::routes) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RouteInfo {
    /// Its name (`default` for the command line's one route).
    pub name: String,
    /// The addresses it listens on.
    pub listen: Vec<SocketAddr>,
    /// `round-robin`, `least-conn`, ... as the config writes it.
    pub balance: String,
    /// Its targets' names, in config order.
    pub targets: Vec<String>,
    /// Live pipes.
    pub live_pipes: usize,
    /// Pipes since start.
    pub total_pipes: u64,
}

/// A target as [`Handle::targets`](crate::Handle::targets) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TargetInfo {
    /// The route it belongs to.
    pub route: String,
    /// As the config names it.
    pub name: String,
    /// What the name resolves to now.
    pub addr: SocketAddr,
    /// The operator's state.
    pub state: TargetState,
    /// Its weight now (0: no new pipes).
    pub weight: u32,
    /// Takes clients only while no primary target can.
    pub backup: bool,
    /// What health checks and connects say.
    pub healthy: bool,
    /// Pipes assigned here now, connecting or open.
    pub live_pipes: usize,
    /// Pipes assigned here since start.
    pub total_pipes: u64,
    /// Bytes delivered to it.
    pub bytes_toward_target: u64,
    /// Bytes delivered from it to clients.
    pub bytes_toward_client: u64,
    /// Connects that failed or timed out.
    pub connect_failures: u64,
}

/// Which pipes [`Handle::abort_pipes`](crate::Handle::abort_pipes) ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PipeFilter {
    /// Every pipe of this route.
    Route(String),
    /// Every pipe of this route's target.
    Target {
        /// The route's name.
        route: String,
        /// The target's name within it.
        target: String,
    },
}
