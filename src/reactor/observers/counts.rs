//! Counting for metrics: where a pipe or client crosses something (accept,
//! connect done, first reply, free, turned away), never per byte. Bytes
//! per target are summed from the live pipes when a scrape asks, plus
//! what freed pipes left in their target's counters.

use std::time::{Duration, Instant};

use super::Seen;
use crate::arena::RouteId;
use crate::metrics::{close_reason_slot, Metrics};
use crate::pipe::{Crossed, Pipe, Reason, Refusal};
use crate::upstream::Upstreams;

/// Where `reason` counts in `tcpipe_pipes_closed_total` and what the
/// access log's `end` calls it: the hooks' `CloseReason`, with a refusal
/// named as `tcpipe_connections_refused_total` names it, so that one client
/// refused for its source's limit is `per_source_limit` everywhere.
pub(crate) fn end_slot(reason: &Reason) -> usize {
    match reason {
        Reason::Refused(Refusal::SourceLimit(_)) => 11,
        Reason::Refused(Refusal::ProxyTimeout) => 12,
        Reason::Refused(Refusal::ConnectionRate(_)) => 13,
        Reason::Refused(Refusal::NoRoute(_)) => 14,
        other => close_reason_slot(other.public()),
    }
}

/// The connect time and the time to the first reply, once each per pipe.
pub(super) fn crossed(upstreams: &mut Upstreams, pipe: &Pipe, crossed: &Crossed) {
    let Some(stats) = pipe.target().and_then(|id| upstreams.stats_mut(id)) else {
        return;
    };
    // Only a connect of its own: a pooled socket came connected.
    if let Some(connect_time) = pipe.connect_time().filter(|_| crossed.connected) {
        stats.connect_time.observe(connect_time);
    }
    if crossed.first_reply {
        // A fresh clock: the turn's would give every reply of one turn the
        // same time.
        stats.first_byte.observe(pipe.age(Instant::now()));
    }
}

/// Pipe `pipe` is being freed for `reason`.
pub(super) fn closed(seen: &mut Seen<'_>, pipe: &Pipe, reason: &Reason) {
    if let Some(route) = pipe.route().and_then(|id| seen.routes.get_mut(id)) {
        route.stats.closed[end_slot(reason)] += 1;
        route.stats.duration.observe(pipe.age(seen.now));
        if let Some(limited) = pipe.rate_limited_for(seen.now) {
            route.stats.add_rate_limited(limited);
        }
    }
    if let Some(stats) = pipe.target().and_then(|id| seen.upstreams.stats_mut(id)) {
        stats.closed_bytes[0] += pipe.bytes_toward_target();
        stats.closed_bytes[1] += pipe.bytes_toward_client();
    }
}

/// A client of `route` left for `reason` before any pipe was made for
/// it: it counts as a pipe that ended at once, and a refusal by kind.
pub(super) fn turned_away(metrics: &Metrics, seen: &mut Seen<'_>, route: RouteId, reason: &Reason) {
    let refused = match reason {
        Reason::Refused(Refusal::Denied) => Some((&metrics.denied_total, 0)),
        Reason::Refused(Refusal::SourceLimit(_)) => Some((&metrics.refused_per_source_total, 1)),
        Reason::Refused(Refusal::ProxyHeader(_)) => Some((&metrics.proxy_header_rejected_total, 2)),
        Reason::Refused(Refusal::ProxyTimeout) => Some((&metrics.proxy_header_timeouts_total, 3)),
        Reason::Refused(Refusal::ConnectionRate(_)) => {
            Some((&metrics.refused_connection_rate_total, 4))
        }
        Reason::Refused(Refusal::NoRoute(_)) => Some((&metrics.no_route_total, 5)),
        _ => None,
    };
    if let Some((counter, _)) = refused {
        counter.add(1);
    }
    let Some(route) = seen.routes.get_mut(route) else {
        return;
    };
    if let Some((_, slot)) = refused {
        route.stats.refused[slot] += 1;
    }
    route.stats.closed[end_slot(reason)] += 1;
    route.stats.duration.observe(Duration::ZERO);
}
