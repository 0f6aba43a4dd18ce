//! The routes the reactor runs and the listening sockets they accept on.
//!
//! A route is created by the config that adds it and lives until a reload
//! removes it and its last pipe has ended; pipes point at it by [`RouteId`]
//! whatever reloads do meanwhile. A listening socket belongs to one route
//! at a time, and a reload may hand it to another route with the same
//! address, so its accept queue is never reset by a reload that keeps the
//! address.

use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpListener;
use slab::Slab;

use crate::arena::{Arena, RouteTag};
use crate::config::{self, format_size};
use crate::metrics::RouteStats;
use crate::pipe;
use crate::throttle::Episode;
use crate::upstream::GroupId;

pub(crate) use crate::arena::RouteId;

pub(crate) struct Route {
    /// As configured: what a reload compares and summaries describe.
    pub(crate) config: config::Route,
    /// What new pipes get.
    pub(crate) settings: Arc<pipe::Settings>,
    /// Its targets, in the upstream set.
    pub(crate) targets: GroupId,
    /// Keys of its listeners.
    pub(crate) listeners: Vec<usize>,
    pub(crate) live_pipes: usize,
    /// Its own connection limit keeps clients waiting.
    pub(crate) at_limit: Episode,
    /// Its live pipes per client address.
    pub(crate) per_source: super::admission::SourceCounts,
    /// Its new connections per client address, for a connection rate.
    pub(crate) per_source_rate: super::admission::SourceRates,
    /// Removed by a reload: no listener, no new pipe; freed with its last
    /// pipe.
    pub(crate) retired: bool,
    /// What metrics show of it; kept across reloads that keep the route.
    pub(crate) stats: RouteStats,
    /// The ClientHello server names of its live pipes that were chosen by
    /// one, by pipe id, for the access log (kept here, not in every pipe).
    pub(crate) server_names: std::collections::HashMap<u64, Box<str>>,
}

impl Route {
    pub(crate) fn new(
        id: RouteId,
        config: config::Route,
        targets: GroupId,
        worker: crate::share::Share,
    ) -> Route {
        Route {
            settings: Arc::new(settings_of(id, &config, (worker, Default::default()))),
            config,
            targets,
            listeners: Vec::new(),
            live_pipes: 0,
            at_limit: Episode::default(),
            per_source: Default::default(),
            per_source_rate: Default::default(),
            retired: false,
            stats: RouteStats::default(),
            server_names: Default::default(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether its own limit (this worker's part of it) keeps it from
    /// taking another pipe.
    pub(crate) fn is_at_limit(&self, share: crate::share::Share) -> bool {
        self.config
            .max_connections
            .is_some_and(|max| self.live_pipes >= share.limit(max))
    }
}

/// What a route's config says about each of its pipes.
/// `worker`: which worker takes its part of the route's rate; `share`: the
/// count of the route's pipes that share it (a kept route's own).
pub(crate) fn settings_of(
    id: RouteId,
    route: &config::Route,
    (worker, share): (crate::share::Share, pipe::RouteShare),
) -> pipe::Settings {
    pipe::Settings {
        route: Some(id),
        buffer_size: route.buffer_size,
        low_water: route.low_water,
        connect_timeout: route.connect_timeout,
        idle_timeout: route.idle_timeout,
        half_close_timeout: route.half_close_timeout,
        keepalive: route.keepalive,
        splice: route.splice,
        rates: pipe::Rates {
            pipe: [route.upload_rate, route.download_rate].map(|r| r.map(|r| r as u64)),
            // Each worker takes its part, as of `max-connections`.
            route: [route.route_upload_rate, route.route_download_rate]
                .map(|r| r.map(|r| worker.limit(r) as u64)),
            burst: route.rate_burst.unwrap_or(route.buffer_size) as u64,
            share,
        },
    }
}

pub(crate) struct Listener {
    /// The route its clients count under until they have one of their own:
    /// the default route of a shared address (the one without a `match`
    /// table), or else the first route listing it.
    pub(crate) route: RouteId,
    /// Every route it serves, in config order: more than one on a shared
    /// address.
    pub(crate) routes: Vec<RouteId>,
    /// Some route of it has a `match` table: each client's first bytes are
    /// read to choose its route, for at most this long (the longest
    /// `inspect-timeout` of its routes; `None` forever).
    pub(crate) inspect: Option<Option<std::time::Duration>>,
    /// As configured (port 0 included): what a reload compares.
    pub(crate) configured: SocketAddr,
    /// As bound.
    pub(crate) local: SocketAddr,
    pub(crate) socket: TcpListener,
    /// False while paused at a connection limit or backing off.
    pub(crate) registered: bool,
    /// The last accept stopped before it saw the backlog empty: clients
    /// may be waiting, and no new event will say so.
    pub(crate) backlog_pending: bool,
}

/// Every route, live or draining, and every listening socket.
pub(crate) struct Routes {
    pub(crate) routes: Arena<Route, RouteTag>,
    pub(crate) listeners: Slab<Listener>,
    /// The routes of the running config, in its order.
    pub(crate) order: Vec<RouteId>,
}

impl Routes {
    pub(crate) fn new() -> Routes {
        Routes {
            routes: Arena::new(),
            listeners: Slab::new(),
            order: Vec::new(),
        }
    }

    pub(crate) fn get(&self, id: RouteId) -> Option<&Route> {
        self.routes.get(id)
    }

    pub(crate) fn get_mut(&mut self, id: RouteId) -> Option<&mut Route> {
        self.routes.get_mut(id)
    }

    /// The route named `name` that takes new clients, if any.
    pub(crate) fn active(&self, name: &str) -> Option<RouteId> {
        self.routes
            .iter()
            .find(|(_, route)| !route.retired && route.name() == name)
            .map(|(id, _)| id)
    }

    /// Every (route name, bound address), in route order; an address
    /// listened on twice (a surplus socket taken over) once.
    pub(crate) fn listening(&self) -> Vec<(String, SocketAddr)> {
        let mut listening: Vec<(String, SocketAddr)> = Vec::new();
        for (_, route) in self.routes.iter().filter(|(_, route)| !route.retired) {
            for listener in route
                .listeners
                .iter()
                .filter_map(|&k| self.listeners.get(k))
            {
                let pair = (route.name().to_string(), listener.local);
                if !listening.contains(&pair) {
                    listening.push(pair);
                }
            }
        }
        listening
    }

    /// `keys`, and the other listeners bound where one of them is: the
    /// surplus sockets a live upgrade gave this worker, which a reload
    /// keeps with their twin.
    pub(crate) fn with_twins(&self, mut keys: Vec<usize>) -> Vec<usize> {
        let locals: Vec<SocketAddr> = keys
            .iter()
            .filter_map(|&key| self.listeners.get(key))
            .map(|listener| listener.local)
            .collect();
        for (key, listener) in self.listeners.iter() {
            if !keys.contains(&key) && locals.contains(&listener.local) {
                keys.push(key);
            }
        }
        keys
    }

    /// Tells every listener which of `routes` (in config order) it serves,
    /// which of them its clients count under, and whether it inspects.
    pub(crate) fn link_listeners(&mut self, routes: &[RouteId]) {
        self.order = routes.to_vec();
        for (key, listener) in self.listeners.iter_mut() {
            let serving: Vec<RouteId> = routes
                .iter()
                .copied()
                .filter(|&id| {
                    self.routes
                        .get(id)
                        .is_some_and(|route| route.listeners.contains(&key))
                })
                .collect();
            let config_of = |id: RouteId| self.routes.get(id).map(|route| &route.config);
            let default = serving
                .iter()
                .copied()
                .find(|&id| config_of(id).is_some_and(|c| c.matching.is_empty()));
            if let Some(&owner) = default.as_ref().or(serving.first()) {
                listener.route = owner;
            }
            let inspects = serving
                .iter()
                .any(|&id| config_of(id).is_some_and(|c| !c.matching.is_empty()));
            listener.inspect = inspects.then(|| {
                let mut timeouts = serving
                    .iter()
                    .filter_map(|&id| config_of(id).map(|c| c.inspect_timeout));
                // `None` (no timeout) is the longest of all.
                timeouts.try_fold(std::time::Duration::ZERO, |longest, t| {
                    t.map(|t| longest.max(t))
                })
            });
            listener.routes = serving;
        }
    }

    /// Keys of every listener, for a sweep that may touch each.
    pub(crate) fn listener_keys(&self) -> Vec<usize> {
        self.listeners.iter().map(|(key, _)| key).collect()
    }

    /// The bound addresses of these listeners, as the logs show them.
    pub(crate) fn addresses(&self, listeners: &[usize]) -> String {
        listeners
            .iter()
            .filter_map(|&key| self.listeners.get(key))
            .map(|listener| listener.local.to_string())
            .fold(Vec::new(), |mut seen: Vec<String>, addr| {
                if !seen.contains(&addr) {
                    seen.push(addr);
                }
                seen
            })
            .join(", ")
    }
}

/// How a route is described when it starts: where it listens, where it
/// forwards, and how (after `route NAME: ` in the log line).
pub(crate) fn describe(route: &config::Route, listening: &str) -> String {
    let targets: Vec<String> = route.targets.iter().map(config::Target::describe).collect();
    let pool = if route.pool > 0 {
        format!("; pool {} per target", route.pool)
    } else {
        String::new()
    };
    let limit = route
        .max_connections
        .map(|max| format!(", max-connections {max}"))
        .unwrap_or_default();
    let splice = match route.splice {
        config::Splice::Auto => String::new(),
        mode => format!(", splice {mode}"),
    };
    format!(
        "listening on {listening}; forwarding to {} ({}{pool}; buffer {}, low-water {}{limit}{splice}){}",
        targets.join(", "),
        route.balance,
        format_size(route.buffer_size),
        format_size(route.low_water),
        describe_proxying(route),
    )
}

/// The PROXY protocol and source rules of a route, if it has any.
fn describe_proxying(route: &config::Route) -> String {
    let mut parts = Vec::new();
    if route.accept_proxy {
        parts.push(format!(
            "accept-proxy within {}",
            config::format_duration(route.proxy_timeout)
        ));
    }
    if !route.matching.is_empty() {
        parts.push(format!(
            "match {} within {}",
            route.matching,
            config::format_duration(route.inspect_timeout)
        ));
    }
    if let Some(version) = route.send_proxy {
        parts.push(format!("send-proxy {version}"));
    }
    let blocks = |blocks: &[crate::acl::Cidr]| {
        blocks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !route.allow.is_empty() {
        parts.push(format!("allow {}", blocks(&route.allow)));
    }
    if !route.deny.is_empty() {
        parts.push(format!("deny {}", blocks(&route.deny)));
    }
    if let Some(max) = route.max_connections_per_source {
        parts.push(format!("max-connections-per-source {max}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}
