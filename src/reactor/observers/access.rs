//! The access log's lines, from what is known of a pipe when it opens and
//! when it is freed, and of a client turned away. Only called when the
//! log is on.

use std::net::SocketAddr;

use super::counts::end_slot;
use super::Seen;
use crate::access_log::{AccessLog, Entry, Event};
use crate::arena::RouteId;
use crate::metrics::CLOSE_REASON_LABELS;
use crate::pipe::{Pipe, Reason, Side};
use crate::text::plural;
use crate::upstream::Upstreams;

/// Pipe `pipe` was made.
pub(super) fn opened(log: &mut AccessLog, seen: &Seen<'_>, pipe: &Pipe) {
    let target = target_label(seen.upstreams, pipe);
    let route = route_name(seen, pipe.route());
    let mut entry = Entry::new(Event::Open, pipe.id, route, pipe.peer, target.as_deref());
    entry.sni = server_name(seen, pipe);
    log.write(&entry);
}

/// Pipe `pipe` is being freed for `reason`.
pub(super) fn closed(log: &mut AccessLog, seen: &Seen<'_>, pipe: &Pipe, reason: &Reason) {
    let target = target_label(seen.upstreams, pipe);
    let route = route_name(seen, pipe.route());
    let mut entry = Entry::new(Event::Close, pipe.id, route, pipe.peer, target.as_deref());
    entry.sni = server_name(seen, pipe);
    entry.connect_time = pipe.connect_time();
    entry.duration = pipe.age(seen.now);
    entry.bytes_to_target = pipe.bytes_toward_target();
    entry.bytes_to_client = pipe.bytes_toward_client();
    entry.end = Some(CLOSE_REASON_LABELS[end_slot(reason)]);
    entry.first_fin = pipe.first_fin().map(Side::name);
    entry.rate_limited = pipe
        .rate_limited_for(seen.now)
        .map(|[upload, download]| upload + download);
    entry.detail = detail(reason);
    log.write(&entry);
}

/// Client `id` of `route` left for `reason` before a pipe was made for it.
pub(super) fn turned_away(
    log: &mut AccessLog,
    seen: &Seen<'_>,
    (id, route): (u64, RouteId),
    client: SocketAddr,
    reason: &Reason,
) {
    let mut entry = Entry::new(
        Event::Close,
        id,
        route_name(seen, Some(route)),
        client,
        None,
    );
    entry.end = Some(CLOSE_REASON_LABELS[end_slot(reason)]);
    entry.detail = detail(reason);
    log.write(&entry);
}

/// The `detail` field: what the `end` field alone does not say.
fn detail(reason: &Reason) -> Option<String> {
    match reason {
        Reason::Broken(_, e) | Reason::Poll(e) => Some(e.to_string()),
        Reason::Unreachable { attempts } => Some(plural(*attempts as usize, "attempt")),
        Reason::Refused(refusal) => Some(refusal.to_string()),
        _ => None,
    }
}

/// The pipe's target by name as configured, or an attached one's address.
pub(crate) fn target_label(upstreams: &Upstreams, pipe: &Pipe) -> Option<String> {
    match pipe.target().and_then(|t| upstreams.target_name(t)) {
        Some(name) => Some(name.to_string()),
        None => pipe.target_addr().map(|addr| addr.to_string()),
    }
}

/// What the pipe's ClientHello named, if its route was chosen by it.
fn server_name<'a>(seen: &'a Seen<'_>, pipe: &Pipe) -> Option<&'a str> {
    let route = seen.routes.get(pipe.route()?)?;
    route.server_names.get(&pipe.id).map(|name| &**name)
}

fn route_name<'a>(seen: &'a Seen<'_>, route: Option<RouteId>) -> Option<&'a str> {
    route.and_then(|id| seen.routes.get(id)).map(|r| r.name())
}
