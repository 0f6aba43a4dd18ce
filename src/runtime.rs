//! What an operator changes while the forwarder runs: a target's state
//! (ready, drain, maint) and weight, and the pipes of a route or target as
//! a group. The admin endpoint and `tcpipe ctl` are thin clients of these
//! [`Handle`] methods; an embedder calls them directly.
//!
//! Runtime state belongs to the target, not to the file: a reload that
//! keeps a target (same route, same name) keeps its state.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::forwarder::Handle;
use crate::hooks::CommandError;

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

/// A route as [`Handle::routes`] sees it.
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

/// A target as [`Handle::targets`] sees it.
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

/// Which pipes [`Handle::abort_pipes`] ends.
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

impl Handle {
    /// Upgrades the binary with every live connection kept, as SIGUSR2
    /// does: starts the binary this process was started from (resolved at
    /// [`Builder::bind`](crate::Builder::bind); `Config::upgrade_binary`
    /// names another) with the same arguments, and hands it every
    /// listening socket and every worker's connections over an inherited
    /// Unix socket. The new process takes over in its own
    /// [`Builder::bind`](crate::Builder::bind): an embedder's program needs
    /// nothing more than to bind and run again when started the same way.
    /// What the admin API's `POST /v1/upgrade` calls.
    ///
    /// Returns once the new process has confirmed (then every worker of
    /// this one ends and [`Forwarder::run`](crate::Forwarder::run) returns
    /// `Ok`: exit), or with why it failed: it exited (a bad config),
    /// refused, or did not confirm in 10 s; then it is killed if still
    /// running, and this process carries on unchanged.
    pub fn upgrade(&self) -> Result<crate::Upgraded, crate::UpgradeError> {
        if self.crew.on_loop_thread() {
            return Err(crate::UpgradeError::OnLoopThread);
        }
        let upgraded = crate::upgrade::hand_over(&*self.crew);
        if let Err(crate::UpgradeError::Failed(why)) = &upgraded {
            self.crew.peers[0].send(crate::reactor::Command::UpgradeFailed(why.clone()));
        }
        upgraded
    }

    /// Every route, in config order.
    pub fn routes(&self) -> Result<Vec<RouteInfo>, CommandError> {
        Err(CommandError::Stopped)
    }

    /// Every target of every route (with several workers, their pipes and
    /// counters summed).
    pub fn targets(&self) -> Result<Vec<TargetInfo>, CommandError> {
        Err(CommandError::Stopped)
    }

    /// Sets a target's state in every worker; answers once it took effect
    /// (no new pipe reaches a drained target after this returns).
    pub fn set_target_state(
        &self,
        route: &str,
        target: &str,
        state: TargetState,
    ) -> Result<(), CommandError> {
        let _ = (route, target, state);
        Err(CommandError::Stopped)
    }

    /// Sets a target's weight in every worker (0: no new pipes); answers
    /// once it took effect.
    pub fn set_target_weight(
        &self,
        route: &str,
        target: &str,
        weight: u32,
    ) -> Result<(), CommandError> {
        let _ = (route, target, weight);
        Err(CommandError::Stopped)
    }

    /// Resets every pipe `filter` names (reason `aborted`); answers with
    /// how many, once they are gone.
    pub fn abort_pipes(&self, filter: PipeFilter) -> Result<usize, CommandError> {
        let _ = filter;
        Err(CommandError::Stopped)
    }

    /// Waits until the target has no live pipe, or `timeout` passes;
    /// answers how many remain (0: empty).
    pub fn wait_empty(
        &self,
        route: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<usize, CommandError> {
        let _ = (route, target, timeout);
        Err(CommandError::Stopped)
    }
}
