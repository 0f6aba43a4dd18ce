//! What an operator asks of routes and targets, through the
//! [`Handle`](crate::Handle): show them, set a target's state or weight,
//! reset the pipes of a route or target, and wait for a target to empty.
//!
//! Every worker gets each question and answers for itself, once what it
//! asked for has taken effect in this loop; the handle answers its caller
//! when every worker has (`src/runtime.rs`). A wait for a target to empty
//! is a waiter the loop answers when the target's last pipe is freed or its
//! deadline passes: nothing polls.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::time::Instant;

use super::{Reactor, Timer};
use crate::arena::TargetId;
use crate::hooks::CommandError;
use crate::operator::{PipeFilter, RouteInfo, TargetInfo, TargetState};
use crate::pipe::Reason;
use crate::upstream::GroupId;

/// One operator's question, for one worker.
pub(crate) enum Ask {
    Routes(Sender<Vec<RouteInfo>>),
    Targets(Sender<Vec<TargetInfo>>),
    State {
        route: String,
        target: String,
        state: TargetState,
        reply: Sender<Result<(), CommandError>>,
    },
    Weight {
        route: String,
        target: String,
        weight: u32,
        reply: Sender<Result<(), CommandError>>,
    },
    /// Answered with how many pipes were reset, once they are freed.
    Abort {
        filter: PipeFilter,
        reply: Sender<Result<usize, CommandError>>,
    },
    /// Answered with the pipes left: 0 once the target has none, or how
    /// many remain at `deadline` (`None`: no deadline).
    WaitEmpty {
        route: String,
        target: String,
        deadline: Option<Instant>,
        reply: Sender<Result<usize, CommandError>>,
    },
}

/// A wait for a target to empty, until its deadline.
pub(super) struct Waiter {
    route: String,
    target: String,
    deadline: Option<Instant>,
    reply: Sender<Result<usize, CommandError>>,
}

impl Reactor {
    pub(super) fn on_operate(&mut self, ask: Ask) {
        // A caller that gave up waiting needs no answer.
        match ask {
            Ask::Routes(reply) => {
                let _ = reply.send(self.route_infos());
            }
            Ask::Targets(reply) => {
                let _ = reply.send(self.target_infos());
            }
            Ask::State {
                route,
                target,
                state,
                reply,
            } => {
                let set = self.members(&route, &target).map(|(_, members)| {
                    for id in members {
                        self.upstreams
                            .set_state(id, state, self.poll.registry(), self.now);
                    }
                });
                let _ = reply.send(set);
            }
            Ask::Weight {
                route,
                target,
                weight,
                reply,
            } => {
                let set = self.members(&route, &target).map(|(_, members)| {
                    for id in members {
                        self.upstreams
                            .set_weight(id, weight, self.poll.registry(), self.now);
                    }
                });
                let _ = reply.send(set);
            }
            Ask::Abort { filter, reply } => {
                let _ = reply.send(self.abort_matching(&filter));
            }
            Ask::WaitEmpty {
                route,
                target,
                deadline,
                reply,
            } => {
                if let Err(e) = self.members(&route, &target) {
                    let _ = reply.send(Err(e));
                    return;
                }
                if let Some(deadline) = deadline {
                    self.timers.push(deadline, Timer::WaitEmpty);
                }
                self.waiters.push(Waiter {
                    route,
                    target,
                    deadline,
                    reply,
                });
                self.answer_waiters();
            }
        }
    }

    /// The members of route `route` named `target`, with the route's
    /// group; an unknown route or target is an error that names it.
    fn members(&self, route: &str, target: &str) -> Result<(GroupId, Vec<TargetId>), CommandError> {
        let group = self
            .routes
            .active(route)
            .and_then(|id| self.routes.get(id))
            .map(|r| r.targets)
            .ok_or_else(|| CommandError::NoSuchRoute(route.to_string()))?;
        let members = self.upstreams.members_named(group, target);
        if members.is_empty() {
            return Err(CommandError::NoSuchTarget(format!("{route}/{target}")));
        }
        Ok((group, members))
    }

    /// Resets every pipe `filter` names, and frees them before answering
    /// how many.
    fn abort_matching(&mut self, filter: &PipeFilter) -> Result<usize, CommandError> {
        let matches: Box<dyn Fn(&crate::pipe::Pipe) -> bool> = match filter {
            PipeFilter::Route(name) => {
                // A route a reload removed still has its draining pipes.
                let ids: Vec<_> = (self.routes.routes.iter())
                    .filter(|(_, r)| r.name() == name)
                    .map(|(id, _)| id)
                    .collect();
                if self.routes.active(name).is_none() && ids.is_empty() {
                    return Err(CommandError::NoSuchRoute(name.clone()));
                }
                Box::new(move |pipe| pipe.route().is_some_and(|r| ids.contains(&r)))
            }
            PipeFilter::Target { route, target } => {
                self.members(route, target)?;
                let ids = self.upstreams.ids_named(route, target);
                Box::new(move |pipe| pipe.target().is_some_and(|t| ids.contains(&t)))
            }
        };
        let count = (self.pipes.iter())
            .filter(|(_, pipe)| !pipe.closing && matches(pipe))
            .count();
        if count > 0 {
            self.abort_all(|pipe| matches(pipe), || Reason::Aborted);
        }
        Ok(count)
    }

    /// Answers the waits whose target has emptied or whose deadline has
    /// passed.
    pub(super) fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let now = Instant::now();
        let upstreams = &self.upstreams;
        self.waiters.retain(|waiter| {
            let left = upstreams.live_pipes_named(&waiter.route, &waiter.target);
            if left > 0 && waiter.deadline.map_or(true, |d| d > now) {
                return true;
            }
            let _ = waiter.reply.send(Ok(left));
            false
        });
    }

    /// Every route that takes clients, in config order.
    fn route_infos(&self) -> Vec<RouteInfo> {
        (self.routes.order.iter())
            .filter_map(|&id| self.routes.get(id))
            .filter(|route| !route.retired)
            .map(|route| RouteInfo {
                name: route.name().to_string(),
                listen: (route.listeners.iter())
                    .filter_map(|&key| self.routes.listeners.get(key))
                    .map(|listener| listener.local)
                    .collect(),
                balance: route.config.balance.to_string(),
                targets: route
                    .config
                    .targets
                    .iter()
                    .map(|t| t.name.clone())
                    .collect(),
                live_pipes: route.live_pipes,
                total_pipes: route.stats.accepted,
            })
            .collect()
    }

    /// Every target of every route that takes clients, in config order.
    fn target_infos(&self) -> Vec<TargetInfo> {
        let mut live_bytes: HashMap<TargetId, [u64; 2]> = HashMap::new();
        for (_, pipe) in self.pipes.iter() {
            if let Some(target) = pipe.target() {
                let bytes = live_bytes.entry(target).or_default();
                bytes[0] += pipe.bytes_toward_target();
                bytes[1] += pipe.bytes_toward_client();
            }
        }
        (self.routes.order.iter())
            .filter_map(|&id| self.routes.get(id))
            .filter(|route| !route.retired)
            .flat_map(|route| self.upstreams.infos(route.targets, &live_bytes))
            .collect()
    }
}
