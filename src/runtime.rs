//! What an operator changes while the forwarder runs: a target's state
//! (ready, drain, maint) and weight, and the pipes of a route or target as
//! a group. The admin endpoint and `tcpipe ctl` are thin clients of these
//! [`Handle`] methods; an embedder calls them directly.
//!
//! Runtime state belongs to the target, not to the file: a reload that
//! keeps a target (same route, same name) keeps its state.

use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, MAX_WEIGHT};
use crate::forwarder::Handle;
use crate::hooks::CommandError;
use crate::reactor::{Ask, Command};
use crate::status_page::{RouteStatus, TargetStatus};

pub use crate::operator::{PipeFilter, RouteInfo, TargetInfo, TargetState};

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
        let mut answers = self.ask_every(Ask::Routes)?.into_iter();
        let mut routes = answers.next().ok_or(CommandError::Stopped)?;
        for other in answers {
            for route in other {
                if let Some(into) = routes.iter_mut().find(|r| r.name == route.name) {
                    into.live_pipes += route.live_pipes;
                    into.total_pipes += route.total_pipes;
                }
            }
        }
        Ok(routes)
    }

    /// Every target of every route, in config order (with several
    /// workers, their pipes and counters summed; healthy if every worker
    /// finds it so). A target in maintenance counts as not healthy.
    pub fn targets(&self) -> Result<Vec<TargetInfo>, CommandError> {
        let mut answers = self.ask_every(Ask::Targets)?.into_iter();
        let mut targets = answers.next().ok_or(CommandError::Stopped)?;
        for other in answers {
            for (position, target) in other.into_iter().enumerate() {
                let same = |t: &TargetInfo| t.route == target.route && t.name == target.name;
                let at = match targets.get(position) {
                    Some(t) if same(t) => Some(position),
                    _ => targets.iter().position(same),
                };
                if let Some(into) = at.and_then(|at| targets.get_mut(at)) {
                    into.healthy &= target.healthy;
                    into.live_pipes += target.live_pipes;
                    into.total_pipes += target.total_pipes;
                    into.bytes_toward_target += target.bytes_toward_target;
                    into.bytes_toward_client += target.bytes_toward_client;
                    into.connect_failures += target.connect_failures;
                }
            }
        }
        Ok(targets)
    }

    /// Sets a target's state in every worker; answers once it took effect
    /// in all of them: no new pipe reaches a drained target after this
    /// returns. A target listed more than once by the same name is set in
    /// each place.
    pub fn set_target_state(
        &self,
        route: &str,
        target: &str,
        state: TargetState,
    ) -> Result<(), CommandError> {
        let answers = self.ask_every(|reply| Ask::State {
            route: route.to_string(),
            target: target.to_string(),
            state,
            reply,
        })?;
        answers.into_iter().collect()
    }

    /// Sets a target's weight in every worker (0: no new pipes; at most
    /// [`MAX_WEIGHT`]); answers once it took effect in all of them. It
    /// stays across reloads until the config file's weight for the target
    /// changes.
    pub fn set_target_weight(
        &self,
        route: &str,
        target: &str,
        weight: u32,
    ) -> Result<(), CommandError> {
        if weight > MAX_WEIGHT {
            return Err(CommandError::Invalid(ConfigError::new(
                "weight",
                weight.to_string(),
                format!("must be at most {MAX_WEIGHT}"),
            )));
        }
        let answers = self.ask_every(|reply| Ask::Weight {
            route: route.to_string(),
            target: target.to_string(),
            weight,
            reply,
        })?;
        answers.into_iter().collect()
    }

    /// Resets every pipe `filter` names (reason `aborted` in metrics, the
    /// access log and hooks); answers with how many, once every worker has
    /// freed them.
    pub fn abort_pipes(&self, filter: PipeFilter) -> Result<usize, CommandError> {
        let answers = self.ask_every(|reply| Ask::Abort {
            filter: filter.clone(),
            reply,
        })?;
        answers.into_iter().sum()
    }

    /// Waits until the target has no live pipe in any worker, or `timeout`
    /// passes; answers how many remain (0: empty). The loops answer when
    /// the target's last pipe is freed, or at the deadline: nothing polls.
    /// Meant for a drained target: one that still takes clients may get a
    /// new pipe in a worker that has already answered.
    pub fn wait_empty(
        &self,
        route: &str,
        target: &str,
        timeout: Duration,
    ) -> Result<usize, CommandError> {
        let deadline = Instant::now().checked_add(timeout);
        let answers = self.ask_every(|reply| Ask::WaitEmpty {
            route: route.to_string(),
            target: target.to_string(),
            deadline,
            reply,
        })?;
        answers.into_iter().sum()
    }

    /// Puts the question `make` builds to every worker, and waits for
    /// every answer.
    fn ask_every<T>(&self, make: impl Fn(Sender<T>) -> Ask) -> Result<Vec<T>, CommandError> {
        let crew = self.crew();
        if crew.on_loop_thread() {
            return Err(CommandError::OnLoopThread);
        }
        let answers = (crew.peers.iter())
            .map(|peer| {
                let (reply, answer) = mpsc::channel();
                peer.send(Command::Operate(make(reply))).then_some(answer)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(CommandError::Stopped)?;
        answers
            .into_iter()
            .map(|answer| answer.recv().map_err(|_| CommandError::Stopped))
            .collect()
    }
}

impl Handle {
    /// What the status page shows (`src/status_page/`): every route with
    /// its targets.
    pub(crate) fn status(&self) -> Result<Vec<RouteStatus>, CommandError> {
        let (routes, targets) = (self.routes()?, self.targets()?);
        let shown = routes.iter().map(|route| RouteStatus {
            name: route.name.clone(),
            listen: route.listen.clone(),
            balance: route.balance.clone(),
            live_pipes: route.live_pipes,
            total_pipes: route.total_pipes,
            targets: (targets.iter().filter(|t| t.route == route.name))
                .map(|t| TargetStatus {
                    name: t.name.clone(),
                    addr: t.addr,
                    state: t.state.as_str(),
                    weight: t.weight,
                    backup: t.backup,
                    healthy: t.healthy,
                    live_pipes: t.live_pipes,
                    total_pipes: t.total_pipes,
                    bytes_toward_target: t.bytes_toward_target,
                    bytes_toward_client: t.bytes_toward_client,
                    connect_failures: t.connect_failures,
                })
                .collect(),
        });
        Ok(shown.collect())
    }
}
