//! The access log's lines, from what the reactor knows of a pipe when it
//! opens and when it is freed. Nothing here runs when the log is off.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::{Reactor, RouteId};
use crate::access_log::{Entry, Event};
use crate::metrics::{close_reason_slot, CLOSE_REASON_LABELS};
use crate::pipe::{Pipe, Reason, Side};

impl Reactor {
    /// Pipe `key` was made.
    #[cold]
    pub(super) fn log_opened(&mut self, key: usize) {
        let Some(pipe) = self.pipes.get(key) else {
            return;
        };
        let target = self.target_label(pipe);
        let entry = Entry {
            event: Event::Open,
            time: SystemTime::now(),
            pipe: pipe.id,
            route: route_name(&self.routes, pipe.route()),
            client: pipe.peer,
            target: target.as_deref(),
            connect_time: None,
            duration: Duration::ZERO,
            bytes_to_target: 0,
            bytes_to_client: 0,
            end: None,
            first_fin: None,
            detail: None,
        };
        self.access_log.write(&entry);
    }

    /// Pipe `pipe` is being freed for `reason`.
    #[cold]
    pub(super) fn log_closed(&mut self, pipe: &Pipe, reason: &Reason) {
        let target = self.target_label(pipe);
        let detail = match reason {
            Reason::Broken(_, e) | Reason::Poll(e) => Some(e.to_string()),
            Reason::Unreachable { attempts } => Some(super::plural(*attempts as usize, "attempt")),
            _ => None,
        };
        let entry = Entry {
            event: Event::Close,
            time: SystemTime::now(),
            pipe: pipe.id,
            route: route_name(&self.routes, pipe.route()),
            client: pipe.peer,
            target: target.as_deref(),
            connect_time: pipe.connect_time(),
            duration: pipe.age(self.now),
            bytes_to_target: pipe.bytes_toward_target(),
            bytes_to_client: pipe.bytes_toward_client(),
            end: Some(CLOSE_REASON_LABELS[close_reason_slot(reason.public())]),
            first_fin: pipe.first_fin().map(Side::name),
            detail,
        };
        self.access_log.write(&entry);
    }

    /// A client of `route` was reset at accept: no target could be dialed.
    #[cold]
    pub(super) fn log_refused(
        &mut self,
        id: u64,
        route: RouteId,
        client: SocketAddr,
        attempts: u32,
    ) {
        let entry = Entry {
            event: Event::Close,
            time: SystemTime::now(),
            pipe: id,
            route: route_name(&self.routes, Some(route)),
            client,
            target: None,
            connect_time: None,
            duration: Duration::ZERO,
            bytes_to_target: 0,
            bytes_to_client: 0,
            end: Some(
                CLOSE_REASON_LABELS[close_reason_slot(crate::hooks::CloseReason::ConnectFailed)],
            ),
            first_fin: None,
            detail: Some(super::plural(attempts as usize, "attempt")),
        };
        self.access_log.write(&entry);
    }

    fn target_label(&self, pipe: &Pipe) -> Option<String> {
        match pipe.target().and_then(|t| self.upstreams.target_name(t)) {
            Some(name) => Some(name.to_string()),
            None => pipe.target_addr().map(|addr| addr.to_string()),
        }
    }
}

fn route_name(routes: &super::routes::Routes, route: Option<RouteId>) -> Option<&str> {
    route.and_then(|id| routes.get(id)).map(|r| r.name())
}
