//! What one worker's upstream side tells the others. The leader alone
//! probes and re-resolves names; its probes' verdicts and the new
//! addresses reach every other worker as [`News`], matched there by route
//! and target name (ids are each worker's own). Passive health (the
//! connects of each worker's own clients) stays with each worker: it
//! judges what that worker saw, and costs nothing to share.

use std::net::SocketAddr;
use std::time::Instant;

use log::debug;
use mio::Registry;

use super::health::Change;
use super::{TargetId, Upstreams};

/// A fact about a target that every worker must know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum News {
    /// A probe found it down, or up again.
    Health {
        route: String,
        target: String,
        up: bool,
    },
    /// Its name resolves to a new address.
    Address {
        route: String,
        target: String,
        addr: SocketAddr,
    },
}

impl Upstreams {
    /// Keeps news for the other workers, from now on (the leader of several).
    pub(crate) fn keep_news(&mut self) {
        self.news.get_or_insert_with(Vec::new);
    }

    /// News since the last call, oldest first.
    pub(crate) fn take_news(&mut self) -> Vec<News> {
        self.news.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn tell(&mut self, id: TargetId, make: impl FnOnce(String, String) -> News) {
        let Some(news) = self.news.as_mut() else {
            return;
        };
        if let Some(target) = self.targets.get(id) {
            news.push(make(target.route.clone(), target.name.clone()));
        }
    }

    /// Whether `id` is up: taken before a probe's outcome is applied.
    pub(super) fn is_up(&self, id: TargetId) -> bool {
        self.targets.get(id).is_some_and(|t| t.health.is_up())
    }

    /// A probe's outcome has been applied; if it changed the target's
    /// health, every worker hears it.
    pub(super) fn probe_decided(&mut self, id: TargetId, was_up: bool) {
        let up = self.is_up(id);
        if up != was_up {
            self.tell(id, |route, target| News::Health { route, target, up });
        }
    }

    /// The resolver moved `id` to `addr`.
    pub(super) fn readdressed(&mut self, id: TargetId, addr: SocketAddr) {
        self.tell(id, |route, target| News::Address {
            route,
            target,
            addr,
        });
    }

    /// The live target named `target` in route `route`.
    fn find(&self, route: &str, target: &str) -> Option<TargetId> {
        self.targets
            .iter()
            .find(|(_, t)| !t.retired && t.route == route && t.name == target)
            .map(|(id, _)| id)
    }

    /// News from the leader. The leader has logged it already; here it is
    /// applied quietly, as a probe of this worker's own would have been.
    pub(crate) fn apply_news(&mut self, news: News, registry: &Registry, now: Instant) {
        match news {
            News::Health { route, target, up } => {
                let Some(id) = self.find(&route, &target) else {
                    return;
                };
                let Some(entry) = self.targets.get_mut(id) else {
                    return;
                };
                if up {
                    if entry.health.succeeded() == Some(Change::CameUp) {
                        debug!(
                            "target {} is up again (probed by the first worker)",
                            entry.label()
                        );
                        self.refill(id, registry, now);
                    }
                } else {
                    let policy = entry.policy.health;
                    if let Some(Change::WentDown { .. }) = entry.health.failed(&policy, true, now) {
                        debug!(
                            "target {} is down (probed by the first worker)",
                            entry.label()
                        );
                        self.pool.discard_idle(id);
                    }
                }
            }
            News::Address {
                route,
                target,
                addr,
            } => {
                if let Some(entry) = self
                    .find(&route, &target)
                    .and_then(|id| self.targets.get_mut(id))
                {
                    entry.readdress(addr);
                }
            }
        }
    }
}
