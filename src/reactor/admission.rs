//! Whether a route takes a client, by its real address: the route's
//! `allow`/`deny` rules and its `max-connections-per-source`, checked
//! before any target is dialed; and turning a client away.
//!
//! The real address is the socket's peer, or the source named by the
//! client's PROXY header on an `accept-proxy` route. IPv4 clients of a
//! dual-stack listener (`::ffff:a.b.c.d`) are counted and matched as the
//! IPv4 address they are.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use log::warn;
use mio::net::TcpStream;
use socket2::SockRef;

use super::routes::{Route, RouteId};
use super::Reactor;
use crate::acl;
use crate::net;
use crate::pipe::{Closing, Reason, Refusal};
use crate::throttle::Throttle;

/// Live pipes of one route per client address. Every pipe of a route is
/// counted, whether or not the route has a limit, so that a reload that
/// sets one finds the counts right.
#[derive(Default)]
pub(crate) struct SourceCounts(HashMap<IpAddr, usize>);

impl SourceCounts {
    fn get(&self, ip: IpAddr) -> usize {
        self.0.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    pub(super) fn add(&mut self, ip: IpAddr) {
        *self.0.entry(ip.to_canonical()).or_insert(0) += 1;
    }

    pub(super) fn remove(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(count) = self.0.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&ip);
            }
        }
    }
}

/// Whether `route` takes a client at `ip` now.
pub(super) fn check(route: &Route, ip: IpAddr) -> Result<(), Refusal> {
    let config = &route.config;
    if !acl::admits(&config.allow, &config.deny, ip) {
        return Err(Refusal::Denied);
    }
    match config.max_connections_per_source {
        Some(max) if route.per_source.get(ip) >= max => Err(Refusal::SourceLimit(max)),
        _ => Ok(()),
    }
}

/// One throttled warning per kind of refusal: a flood of one kind (a
/// scanner hitting a deny rule) must not hide another (a misconfigured
/// balancer sending no header).
#[derive(Default)]
pub(super) struct RefusalWarnings {
    proxy_header: Throttle,
    proxy_timeout: Throttle,
    denied: Throttle,
    source_limit: Throttle,
    gone: Throttle,
}

impl RefusalWarnings {
    fn of(&mut self, refusal: &Refusal) -> &mut Throttle {
        match refusal {
            Refusal::ProxyHeader(_) => &mut self.proxy_header,
            Refusal::ProxyTimeout => &mut self.proxy_timeout,
            Refusal::Denied => &mut self.denied,
            Refusal::SourceLimit(_) => &mut self.source_limit,
            Refusal::Gone => &mut self.gone,
        }
    }
}

impl Reactor {
    /// Turns client `id` of `route` away before any target was dialed:
    /// counted, logged (once a second per kind), reset as the close rules
    /// say, and told to the hooks as a pipe opened with no target and
    /// closed at once.
    pub(super) fn refuse(
        &mut self,
        id: u64,
        route: RouteId,
        client: TcpStream,
        peer: SocketAddr,
        refusal: Refusal,
    ) {
        let metrics = &self.metrics;
        match refusal {
            Refusal::ProxyHeader(_) => metrics.proxy_header_rejected_total.add(1),
            Refusal::ProxyTimeout => metrics.proxy_header_timeouts_total.add(1),
            Refusal::Denied => metrics.denied_total.add(1),
            Refusal::SourceLimit(_) => metrics.refused_per_source_total.add(1),
            Refusal::Gone => {}
        }
        metrics.aborted_total.add(1);
        if let Some(held_back) = self.refusal_warnings.of(&refusal).allow(self.now) {
            let name = self.routes.get(route).map_or("?", |r| r.name());
            warn!("route {name}: pipe {id}: resetting client {peer}: {refusal}{held_back}");
        }
        self.count_refusal(route, &refusal);
        let detail = self.access_log.logs_closes().then(|| refusal.to_string());
        let reason = Reason::Refused(refusal);
        if reason.closing() == Closing::Abort {
            net::abort_on_close(SockRef::from(&client));
        }
        drop(client);
        let end = super::stats::end_slot(&reason);
        self.count_turned_away(route, end);
        if self.hooks.is_some() {
            self.tell_refused(id, route, peer, reason.public());
        }
        if let Some(detail) = detail {
            self.log_turned_away(id, route, peer, (end, detail));
        }
    }
}
