//! The access log's lines, from what the reactor knows of a pipe when it
//! opens and when it is freed. Nothing here runs when the log is off.

use std::net::SocketAddr;

use super::routes::Routes;
use super::stats::end_slot;
use super::{plural, Reactor, RouteId};
use crate::access_log::{Entry, Event};
use crate::metrics::CLOSE_REASON_LABELS;
use crate::pipe::{Pipe, Reason, Side};
use crate::upstream::Upstreams;

impl Reactor {
    /// Pipe `key` was made.
    #[cold]
    pub(super) fn log_opened(&mut self, key: usize) {
        let Some(pipe) = self.pipes.get(key) else {
            return;
        };
        let target = target_label(&self.upstreams, pipe);
        let route = route_name(&self.routes, pipe.route());
        let entry = Entry::new(Event::Open, pipe.id, route, pipe.peer, target.as_deref());
        self.access_log.write(&entry);
    }

    /// Pipe `pipe` is being freed for `reason`.
    #[cold]
    pub(super) fn log_closed(&mut self, pipe: &Pipe, reason: &Reason) {
        let target = target_label(&self.upstreams, pipe);
        let route = route_name(&self.routes, pipe.route());
        let mut entry = Entry::new(Event::Close, pipe.id, route, pipe.peer, target.as_deref());
        entry.connect_time = pipe.connect_time();
        entry.duration = pipe.age(self.now);
        entry.bytes_to_target = pipe.bytes_toward_target();
        entry.bytes_to_client = pipe.bytes_toward_client();
        entry.end = Some(CLOSE_REASON_LABELS[end_slot(reason)]);
        entry.first_fin = pipe.first_fin().map(Side::name);
        entry.detail = match reason {
            Reason::Broken(_, e) | Reason::Poll(e) => Some(e.to_string()),
            Reason::Unreachable { attempts } => Some(plural(*attempts as usize, "attempt")),
            _ => None,
        };
        self.access_log.write(&entry);
    }

    /// A client of `route` was reset before a pipe was made for it: no
    /// target could be dialed, or it was refused; `end` is its
    /// [`end_slot`], `detail` says why.
    #[cold]
    pub(super) fn log_turned_away(
        &mut self,
        id: u64,
        route: RouteId,
        client: SocketAddr,
        (end, detail): (usize, String),
    ) {
        let route = route_name(&self.routes, Some(route));
        let mut entry = Entry::new(Event::Close, id, route, client, None);
        entry.end = Some(CLOSE_REASON_LABELS[end]);
        entry.detail = Some(detail);
        self.access_log.write(&entry);
    }
}

/// The pipe's target by name as configured, or an attached one's address.
pub(super) fn target_label(upstreams: &Upstreams, pipe: &Pipe) -> Option<String> {
    match pipe.target().and_then(|t| upstreams.target_name(t)) {
        Some(name) => Some(name.to_string()),
        None => pipe.target_addr().map(|addr| addr.to_string()),
    }
}

fn route_name(routes: &Routes, route: Option<RouteId>) -> Option<&str> {
    route.and_then(|id| routes.get(id)).map(|r| r.name())
}
