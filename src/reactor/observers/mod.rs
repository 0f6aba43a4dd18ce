//! Everything that listens to what pipes and clients do: metrics, the
//! embedder's hooks, the access log, and the operator's warnings. The
//! reactor reports each fact once, here, and this fans it out:
//!
//! | report        | when                                                   |
//! |---------------|--------------------------------------------------------|
//! | `accepted`    | a client was accepted on a route                       |
//! | `opened`      | a pipe was made; the hooks may still point it elsewhere |
//! | `crossed`     | a pipe crossed something ([`Crossed`]): made, connected, first reply, bytes moved, a ring filled or drained |
//! | `closed`      | a pipe was freed, and why                              |
//! | `turned_away` | a client left without becoming a pipe, and why         |
//!
//! A forwarder with no hooks, no access log and no scrape pays for none of
//! it on the forwarding path: the reactor asks [`Observers::hears`] (one
//! branch on facts the pipe noted anyway) before reporting a crossing, and
//! everything below runs out of line.

mod access;
mod counts;
mod hooks;
mod warnings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use log::{debug, error};

use super::routes::{RouteId, Routes};
use super::Reactor;
use crate::access_log::AccessLog;
use crate::hooks::{Asked, Hooks};
use crate::metrics::{Exporter, Metrics};
use crate::pipe::{Closing, Crossed, Pipe, Reason, Verdict};
use crate::text::{format_elapsed, plural};
use crate::upstream::Upstreams;
use warnings::Warnings;

/// The listeners, and what they were told since the process started.
pub(super) struct Observers {
    pub(super) metrics: Arc<Metrics>,
    /// The embedder's; `None` costs nothing on the forwarding path.
    hooks: Option<Box<dyn Hooks>>,
    pub(super) access_log: AccessLog,
    warnings: Warnings,
    /// The `/metrics` endpoint, with the address the config gave it.
    pub(super) exporter: Option<(SocketAddr, Exporter)>,
    /// When this loop started, for the snapshot a scrape gets.
    pub(super) started: SystemTime,
}

/// What the observers read names from and count into: the routes (their
/// names and per-route counters) and the upstream set (target names and
/// per-target counters), as of `now`.
pub(super) struct Seen<'a> {
    pub(super) routes: &'a mut Routes,
    pub(super) upstreams: &'a mut Upstreams,
    pub(super) now: Instant,
}

/// The reactor's [`Seen`], borrowing only the fields it names, so that
/// `self.observers` (and a pipe of `self.pipes`) can be borrowed beside it.
macro_rules! seen {
    ($reactor:expr) => {
        $crate::reactor::observers::Seen {
            routes: &mut $reactor.routes,
            upstreams: &mut $reactor.upstreams,
            now: $reactor.now,
        }
    };
}
pub(super) use seen;

impl Observers {
    pub(super) fn new(metrics: Arc<Metrics>, hooks: Option<Box<dyn Hooks>>) -> Observers {
        Observers {
            metrics,
            hooks,
            access_log: AccessLog::off(),
            warnings: Warnings::default(),
            exporter: None,
            started: SystemTime::now(),
        }
    }

    pub(super) fn has_hooks(&self) -> bool {
        self.hooks.is_some()
    }

    /// Whether anyone listens to `crossed`: the connect and the first
    /// reply are always counted, the making of a pipe only the access log
    /// and the hooks hear of, every other move only the hooks.
    #[inline]
    pub(super) fn hears(&self, crossed: &Crossed) -> bool {
        crossed.is_counted()
            || (crossed.opened && self.access_log.logs_opens())
            || (self.hooks.is_some() && crossed.is_anything())
    }

    /// A client was accepted on `route`.
    pub(super) fn accepted(&mut self, seen: Seen<'_>, route: RouteId) {
        self.metrics.accepted_total.add(1);
        if let Some(route) = seen.routes.get_mut(route) {
            route.stats.accepted += 1;
        }
    }

    /// Pipe `pipe` was made. Returns what the hooks asked of it: this is
    /// the one moment a socket that came connected may still be swapped.
    /// Its [`Crossed::opened`] report follows once that is carried out.
    pub(super) fn opened(&mut self, seen: Seen<'_>, pipe: &Pipe) -> Asked {
        match self.hooks.as_mut() {
            Some(hooks) => hooks::opened(hooks.as_mut(), &seen, pipe),
            None => Asked::default(),
        }
    }

    /// Pipe `pipe` was taken over from another process (a live upgrade).
    /// The hooks hear of it as of a new pipe, `pipe_opened` and, if it is
    /// open, `connected`, since this process never told them of it and
    /// will tell them of its end. The access log and the counters do not:
    /// the old process logged and counted its opening. Returns what the
    /// hooks asked, in order.
    pub(super) fn adopted(&mut self, seen: Seen<'_>, pipe: &Pipe) -> Vec<Asked> {
        let Some(hooks) = self.hooks.as_mut() else {
            return Vec::new();
        };
        let mut asked = vec![hooks::opened(hooks.as_mut(), &seen, pipe)];
        if pipe.is_open() {
            let mut connected = Crossed::default();
            connected.connected = true;
            asked.push(hooks::crossed(hooks.as_mut(), &seen, pipe, &connected));
        }
        asked
    }

    /// What a drive (or the pipe's making) crossed; returns what the hooks
    /// asked of the pipe.
    #[cold]
    #[inline(never)]
    pub(super) fn crossed(&mut self, seen: Seen<'_>, pipe: &Pipe, crossed: &Crossed) -> Asked {
        if crossed.opened && self.access_log.logs_opens() {
            access::opened(&mut self.access_log, &seen, pipe);
        }
        counts::crossed(seen.upstreams, pipe, crossed);
        match self.hooks.as_mut() {
            Some(hooks) => hooks::crossed(hooks.as_mut(), &seen, pipe, crossed),
            None => Asked::default(),
        }
    }

    /// Pipe `pipe` is being freed for `reason`.
    pub(super) fn closed(&mut self, mut seen: Seen<'_>, pipe: &Pipe, reason: &Reason) {
        let how = reason.closing();
        if how == Closing::Abort {
            self.metrics.aborted_total.add(1);
        }
        if reason.is_timeout() {
            self.metrics.timed_out_total.add(1);
        }
        debug!(
            "pipe {}: closing ({reason}{}) after {}, {} toward target, {} toward client",
            pipe.id,
            if how == Closing::Abort {
                ", RST both sides"
            } else {
                ""
            },
            format_elapsed(pipe.age(seen.now)),
            plural(pipe.bytes_toward_target() as usize, "byte"),
            plural(pipe.bytes_toward_client() as usize, "byte"),
        );
        match reason {
            Reason::Unreachable { attempts } => {
                self.warnings
                    .unreachable(pipe.id, *attempts, pipe.peer, seen.now);
            }
            Reason::Poll(_) => error!("pipe {}: {reason}", pipe.id),
            _ => {}
        }
        if let Some(hooks) = self.hooks.as_mut() {
            hooks::closed(hooks.as_mut(), &seen, pipe, reason);
        }
        counts::closed(&mut seen, pipe, reason);
        if self.access_log.logs_closes() {
            access::closed(&mut self.access_log, &seen, pipe, reason);
        }
    }

    /// Client `id` of `route`, at `client`, left for `reason` without
    /// becoming a pipe (refused, no target could be dialed, or it could
    /// not be registered). It counts as a pipe that ended at once, the
    /// hooks hear of it as one opened with no target and closed, and the
    /// operator hears of it once a second per kind.
    pub(super) fn turned_away(
        &mut self,
        mut seen: Seen<'_>,
        (id, route): (u64, RouteId),
        client: SocketAddr,
        reason: &Reason,
    ) {
        if reason.closing() == Closing::Abort {
            self.metrics.aborted_total.add(1);
        }
        counts::turned_away(&self.metrics, &mut seen, route, reason);
        let name = seen.routes.get(route).map_or("?", |r| r.name());
        self.warnings
            .turned_away(name, (id, client), reason, seen.now);
        if let Some(hooks) = self.hooks.as_mut() {
            hooks::turned_away(hooks.as_mut(), &seen, (id, route), client, reason);
        }
        if self.access_log.logs_closes() {
            access::turned_away(&mut self.access_log, &seen, (id, route), client, reason);
        }
    }

    /// Targets that went down or came up during this turn.
    pub(super) fn health_changed(&mut self, upstreams: &mut Upstreams) {
        if let Some(hooks) = self.hooks.as_mut() {
            hooks::health_changed(hooks.as_mut(), upstreams);
        }
    }
}

impl Reactor {
    /// Tells the observers what pipe `key` crossed; returns `verdict` as
    /// what the hooks asked changed it.
    #[cold]
    #[inline(never)]
    pub(super) fn report_crossed(
        &mut self,
        key: usize,
        crossed: &Crossed,
        verdict: Verdict,
    ) -> Verdict {
        let Some(pipe) = self.pipes.get(key) else {
            return verdict;
        };
        let asked = self.observers.crossed(seen!(self), pipe, crossed);
        if !asked.anything() {
            return verdict;
        }
        self.apply_asked(key, asked, verdict)
    }
}
