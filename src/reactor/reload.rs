//! Applying a config in place: at startup, and at every reload.
//!
//! A reload is a diff by route name, applied only once everything in it is
//! known to work:
//!
//! 1. every address the new config listens on gets a socket: the one
//!    already listening there if any (so its accept queue survives), else a
//!    new one bound now. If any bind fails, the new sockets are dropped and
//!    nothing else has changed;
//! 2. routes the new config keeps get its options for their new pipes, and
//!    their targets are matched by name (kept, added, retired);
//! 3. new routes start; removed routes lose their listeners at once and
//!    their pipes run on, until the drain timeout;
//! 4. listeners no route claims are closed.
//!
//! A live pipe never notices: it holds its route, its target and the
//! settings it opened with.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use log::{info, warn};
use mio::net::TcpListener;
use mio::Interest;
use socket2::SockRef;

use super::control::{ReloadError, Reloaded};
use super::routes::{describe, settings_of, Listener, Route, RouteId};
use super::tokens::listener_token;
use super::{accept, plural, Reactor, Timer};
use crate::access_log::AccessLog;
use crate::config::{self, admin_kept, format_duration, format_size, Config, Naming};
use crate::metrics::Exporter;
use crate::net;

/// The metrics endpoint and access log of a config being applied, made
/// before anything is committed; `None` keeps the running one.
struct Outputs {
    exporter: Option<Option<(SocketAddr, Exporter)>>,
    access_log: Option<AccessLog>,
}

/// A listen address of the new config, before anything is committed.
enum Socket {
    /// The listener with this key already listens there.
    Kept(usize),
    Bound(TcpListener, SocketAddr),
    /// An earlier route of the new config shares this address: its socket.
    Shared(SocketAddr),
}

impl Reactor {
    /// Applies `config`, at startup (`starting`) or as a reload; on error
    /// nothing has changed.
    pub(super) fn apply(
        &mut self,
        config: Config,
        starting: bool,
    ) -> Result<Reloaded, ReloadError> {
        if self.shutting_down() {
            return Err(ReloadError::ShuttingDown);
        }
        config.validate().map_err(ReloadError::Invalid)?;
        let sockets = self.claim_sockets(&config)?;
        let outputs = self.prepare_outputs(&config)?;
        // At startup the caller warns, naming settings as it was given them.
        if !starting && self.share.is_leader() {
            for warning in config.warnings(Naming::File) {
                warn!("reload: {warning}");
            }
        }

        let mut summary = Vec::new();
        let mut wanted: Vec<RouteId> = Vec::new();
        let mut claimed: Vec<usize> = Vec::new();
        for (route_config, sockets) in config.routes.iter().zip(sockets) {
            let kept = self.routes.active(&route_config.name);
            let before = kept.and_then(|id| self.routes.get(id)).map(|route| {
                let listening = self.routes.addresses(&route.listeners);
                (route.config.clone(), listening, route.targets)
            });
            let id = match kept {
                Some(id) => id,
                None => {
                    let registry = self.poll.registry();
                    let group = self.upstreams.add_group(route_config, registry, self.now);
                    let config = route_config.clone();
                    let worker = self.share;
                    self.routes
                        .routes
                        .insert_with(|id| Route::new(id, config, group, worker))
                }
            };
            // A shared address's socket is the one its first route got.
            let sockets = sockets.into_iter().map(|socket| match socket {
                Socket::Shared(addr) => claimed
                    .iter()
                    .copied()
                    .find(|&key| {
                        self.routes
                            .listeners
                            .get(key)
                            .is_some_and(|listener| listener.configured == addr)
                    })
                    .map_or(Socket::Shared(addr), Socket::Kept),
                socket => socket,
            });
            let sockets: Vec<Socket> = sockets.collect();
            let keys = self.install_listeners(id, route_config, sockets);
            let keys = self.routes.with_twins(keys);
            let listening = self.routes.addresses(&keys);
            claimed.extend(&keys);
            if let Some(route) = self.routes.get_mut(id) {
                route.listeners = keys;
            }
            let name = &route_config.name;
            let line = match before {
                None if starting => format!("route {name}: {}", describe(route_config, &listening)),
                None => format!(
                    "route {name}: added, {}",
                    describe(route_config, &listening)
                ),
                Some((old, listening_before, group)) => {
                    let mut changes = Vec::new();
                    if listening != listening_before {
                        changes.push(format!(
                            "now listening on {listening} (was {listening_before})"
                        ));
                    }
                    let registry = self.poll.registry();
                    let targets =
                        self.upstreams
                            .update_group(group, route_config, registry, self.now);
                    let moved: Vec<String> = (targets.added.iter().map(|t| format!("+{t}")))
                        .chain(targets.removed.iter().map(|t| format!("-{t}")))
                        .chain(targets.changed)
                        .collect();
                    if !moved.is_empty() {
                        changes.push(format!("targets {}", moved.join(", ")));
                    }
                    let options = option_changes(&old, route_config);
                    if !options.is_empty() {
                        changes.push(options.join(", "));
                    }
                    self.update_route(id, route_config);
                    if changes.is_empty() {
                        format!("route {name}: unchanged")
                    } else {
                        format!("route {name}: {}", changes.join("; "))
                    }
                }
            };
            summary.push(line);
            wanted.push(id);
        }

        self.routes.link_listeners(&wanted);
        for id in self.routes.routes.ids() {
            if !wanted.contains(&id) {
                if let Some(line) = self.retire_route(id) {
                    summary.push(line);
                }
            }
        }
        for key in self.routes.listener_keys() {
            if !claimed.contains(&key) {
                // Dropping the socket closes it and takes it out of the poll
                // set; an event of it still in this turn's batch finds no
                // listener, or one bound since, whose accept just finds an
                // empty backlog.
                self.routes.listeners.remove(key);
            }
        }
        summary.extend(self.apply_globals(&config, starting));
        summary.extend(self.install_outputs(outputs, starting));
        let sizes: Vec<usize> = config.routes.iter().map(|r| r.buffer_size).collect();
        self.rings.keep_sizes(&sizes);
        self.upstreams.resolve_every(config.resolve_interval);
        if !starting {
            // Limits may have moved: clients held back may now be served.
            self.accept_waiting(accept::Trigger::Reload);
        }
        Ok(Reloaded {
            summary,
            listening: self.routes.listening(),
        })
    }

    /// A socket for every listen address of `config`, in route order:
    /// the one already listening there, or a new one. All or nothing.
    fn claim_sockets(&self, config: &Config) -> Result<Vec<Vec<Socket>>, ReloadError> {
        let mut taken: Vec<usize> = Vec::new();
        let mut shared: Vec<SocketAddr> = Vec::new();
        let mut all = Vec::with_capacity(config.routes.len());
        for (i, route) in config.routes.iter().enumerate() {
            let keepalive = route.keepalive.map(net::keepalive);
            let mut sockets = Vec::with_capacity(route.listen.len());
            for (j, &addr) in route.listen.iter().enumerate() {
                if config::is_shared(&config.routes, addr) {
                    if shared.contains(&addr) {
                        sockets.push(Socket::Shared(addr));
                        continue;
                    }
                    shared.push(addr);
                }
                match self.listening_on(&route.name, addr, &taken) {
                    Some(key) => {
                        taken.push(key);
                        sockets.push(Socket::Kept(key));
                    }
                    // Returning drops every socket bound so far: closed.
                    None => {
                        // A follower binds the very address the leader got
                        // (port 0 included), to share it by SO_REUSEPORT.
                        let bind = self
                            .follow
                            .as_ref()
                            .map_or(addr, |f| f.bind_for(i, j, addr));
                        if let Some(given) = crate::inherited::take(&route.name, addr, bind) {
                            let given = given
                                .and_then(|listener| {
                                    net::tune(SockRef::from(&listener), keepalive.as_ref())?;
                                    Ok((listener.local_addr()?, listener))
                                })
                                .map_err(|e| ReloadError::Bind(addr, e))?;
                            sockets.push(Socket::Bound(given.1, given.0));
                            continue;
                        }
                        let reuse_port = self.share.has_peers();
                        // The leader makes the group, so it makes sure no
                        // one else's is there to join; a follower joins
                        // the group the leader just made.
                        let founding = reuse_port && self.share.is_leader() && bind.port() != 0;
                        let bound = (if founding {
                            net::ensure_unclaimed(bind)
                        } else {
                            Ok(())
                        })
                        .and_then(|()| net::bind_listener(bind, keepalive.as_ref(), reuse_port))
                        .and_then(|socket| Ok((socket.local_addr()?, socket)))
                        .map_err(|e| ReloadError::Bind(addr, e))?;
                        sockets.push(Socket::Bound(bound.1, bound.0));
                    }
                }
            }
            all.push(sockets);
        }
        Ok(all)
    }

    /// The listener already listening on `addr`, not yet taken. Port 0
    /// asks for a port of its own, so only the same route's listener
    /// configured with it stands for it.
    fn listening_on(&self, route: &str, addr: SocketAddr, taken: &[usize]) -> Option<usize> {
        let same_route = |listener: &Listener| {
            listener.routes.iter().any(|&id| {
                self.routes
                    .get(id)
                    .is_some_and(|owner| owner.name() == route && !owner.retired)
            })
        };
        self.routes
            .listeners
            .iter()
            .find(|(key, listener)| {
                !taken.contains(key)
                    && if addr.port() == 0 {
                        listener.configured == addr && same_route(listener)
                    } else {
                        listener.configured == addr || listener.local == addr
                    }
            })
            .map(|(key, _)| key)
    }

    /// Gives route `id` its sockets: kept ones move to it with its client
    /// socket options, new ones start accepting. Returns their keys.
    fn install_listeners(
        &mut self,
        id: RouteId,
        route: &config::Route,
        sockets: Vec<Socket>,
    ) -> Vec<usize> {
        let keepalive = route.keepalive.map(net::keepalive);
        let mut keys = Vec::with_capacity(sockets.len());
        for (socket, &configured) in sockets.into_iter().zip(&route.listen) {
            let key = match socket {
                Socket::Kept(key) => {
                    if let Some(listener) = self.routes.listeners.get_mut(key) {
                        listener.route = id;
                        listener.configured = configured;
                        // Accepted sockets inherit these from the listener.
                        let tuned = net::retune_listener(
                            SockRef::from(&listener.socket),
                            keepalive.as_ref(),
                        );
                        if let Err(e) = tuned {
                            warn!("cannot set TCP options on {}: {e}", listener.local);
                        }
                    }
                    key
                }
                Socket::Bound(mut socket, local) => {
                    let entry = self.routes.listeners.vacant_entry();
                    let key = entry.key();
                    // Should registering fail, the listener waits unregistered
                    // and accepting retries it like one paused at a limit.
                    let registered = self
                        .poll
                        .registry()
                        .register(&mut socket, listener_token(key), Interest::READABLE)
                        .map_err(|e| warn!("cannot watch the listener on {local}: {e}"))
                        .is_ok();
                    entry.insert(Listener {
                        route: id,
                        routes: vec![id],
                        inspect: None,
                        configured,
                        local,
                        socket,
                        registered,
                        backlog_pending: !registered,
                    });
                    key
                }
                // Resolved to its first route's socket by the caller.
                Socket::Shared(_) => continue,
            };
            keys.push(key);
        }
        keys
    }

    /// A kept route takes its new options; pipes open already keep theirs.
    fn update_route(&mut self, id: RouteId, config: &config::Route) {
        let worker = self.share;
        if let Some(route) = self.routes.get_mut(id) {
            let share = route.settings.rates.share.clone();
            let settings = settings_of(id, config, (worker, share));
            if *route.settings != settings {
                route.settings = Arc::new(settings);
            }
            route.config = config.clone();
        }
    }

    /// A route the new config no longer lists: its targets take no new
    /// pipes, and its pipes may run on until the drain timeout.
    fn retire_route(&mut self, id: RouteId) -> Option<String> {
        let route = self.routes.get_mut(id)?;
        if route.retired {
            return None;
        }
        route.retired = true;
        route.listeners.clear();
        let (name, live, group) = (route.name().to_string(), route.live_pipes, route.targets);
        self.upstreams.retire_group(group);
        if live == 0 {
            self.routes.routes.remove(id);
            return Some(format!("route {name}: removed"));
        }
        let within = match self.limits.drain_timeout {
            Some(drain) => {
                self.timers.push(self.now + drain, Timer::RouteDrained(id));
                format!("within {}", format_duration(Some(drain)))
            }
            None => "however long they take".into(),
        };
        Some(format!(
            "route {name}: removed; its {} may finish {within}",
            plural(live, "pipe")
        ))
    }

    /// A removed route's drain timeout ran out: its pipes still open are
    /// aborted.
    pub(super) fn on_route_drained(&mut self, id: RouteId) {
        let Some(route) = self.routes.get(id).filter(|route| route.retired) else {
            return;
        };
        info!(
            "route {}: drain timeout; aborting {} still open",
            route.name(),
            plural(route.live_pipes, "pipe")
        );
        self.refuse_awaiting(|route| route == id);
        self.refuse_inspecting(|route| route == id);
        self.abort_all(
            |pipe| pipe.route() == Some(id),
            || crate::pipe::Reason::Drained,
        );
    }

    /// The metrics endpoint and the access log `config` asks for, where
    /// they differ from the running ones: bound and opened now, so that a
    /// reload that cannot have them changes nothing.
    fn prepare_outputs(&self, config: &Config) -> Result<Outputs, ReloadError> {
        // A follower serves no endpoint and writes through the leader's log.
        if let Some(follow) = &self.follow {
            return Ok(Outputs {
                exporter: None,
                access_log: Some(follow.access_log.share()),
            });
        }
        let running = self
            .observers
            .exporter
            .as_ref()
            .map(|(configured, _)| *configured);
        let exporter = if config.metrics == running {
            None
        } else {
            Some(match config.metrics {
                Some(addr) => {
                    let exporter = self.start_exporter(addr).map_err(|e| {
                        let e = io::Error::new(e.kind(), format!("{e} (the metrics address)"));
                        ReloadError::Bind(addr, e)
                    })?;
                    Some((addr, exporter))
                }
                None => None,
            })
        };
        let access_log = if *self.observers.access_log.config() == config.access_log {
            None
        } else {
            let opened = AccessLog::open(&config.access_log).map_err(|e| {
                let path = config.access_log.destination.to_string();
                ReloadError::AccessLog(path.into(), e)
            })?;
            Some(opened)
        };
        Ok(Outputs {
            exporter,
            access_log,
        })
    }

    /// Puts prepared outputs in place; a line if a reload changed any. A
    /// reload that keeps the access log file reopens it, so that log
    /// rotation needs only a SIGHUP.
    fn install_outputs(&mut self, outputs: Outputs, starting: bool) -> Option<String> {
        let mut changes = Vec::new();
        if let Some(exporter) = outputs.exporter {
            let old = self.metrics_addr();
            self.observers.exporter = exporter;
            let new = self.metrics_addr();
            match new {
                Some(addr) => info!("metrics: serving http://{addr}/metrics and /, a status page"),
                None => info!("metrics: no longer served"),
            }
            let show = |a: Option<SocketAddr>| a.map_or_else(|| "off".into(), |a| a.to_string());
            changes.push(format!("metrics {} -> {}", show(old), show(new)));
        }
        match outputs.access_log {
            Some(access_log) => {
                let old = self.observers.access_log.config().clone();
                let new = access_log.config().clone();
                self.observers.access_log = access_log;
                if old.destination != new.destination {
                    changes.push(format!(
                        "access-log {} -> {}",
                        old.destination, new.destination
                    ));
                }
                if old.format != new.format {
                    changes.push(format!("log-format {} -> {}", old.format, new.format));
                }
                if old.opens != new.opens {
                    changes.push(format!("access-log-opens {} -> {}", old.opens, new.opens));
                }
            }
            None if !starting && self.share.is_leader() => self.observers.access_log.reopen(),
            None => {}
        }
        (!starting && !changes.is_empty()).then(|| format!("global: {}", changes.join(", ")))
    }

    /// The process-wide settings; a line if a reload changed any.
    fn apply_globals(&mut self, config: &Config, starting: bool) -> Option<String> {
        let changes: Vec<String> = [
            (
                "max-connections",
                self.limits.max_connections.to_string(),
                config.max_connections.to_string(),
            ),
            (
                "drain-timeout",
                format_duration(self.limits.drain_timeout),
                format_duration(config.drain_timeout),
            ),
        ]
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(key, old, new)| format!("{key} {old} -> {new}"))
        .chain(self.workers_kept(config, starting))
        .chain(admin_kept(self.limits.admin.as_ref(), config.admin.as_ref()).filter(|_| !starting))
        .collect();
        self.limits.max_connections = config.max_connections;
        self.limits.drain_timeout = config.drain_timeout;
        if let Some(crew) = self.crew.get().filter(|_| self.share.is_leader()) {
            crew.set_upgrade_binary(config.upgrade_binary.clone());
        }
        (!starting && !changes.is_empty()).then(|| format!("global: {}", changes.join(", ")))
    }
}

/// Every route option whose value differs, as `key old -> new`.
fn option_changes(old: &config::Route, new: &config::Route) -> Vec<String> {
    let retries = |route: &config::Route| {
        route
            .retries
            .map_or_else(|| "default".to_string(), |n| n.to_string())
    };
    let limit = |route: &config::Route| {
        route
            .max_connections
            .map_or_else(|| "none".to_string(), |n| n.to_string())
    };
    let per_source = |route: &config::Route| {
        route
            .max_connections_per_source
            .map_or_else(|| "none".to_string(), |n| n.to_string())
    };
    let blocks = |blocks: &[crate::acl::Cidr]| {
        let all: Vec<String> = blocks.iter().map(ToString::to_string).collect();
        format!("[{}]", all.join(" "))
    };
    let options = [
        ("balance", old.balance.to_string(), new.balance.to_string()),
        ("retries", retries(old), retries(new)),
        (
            "fail-threshold",
            old.fail_threshold.to_string(),
            new.fail_threshold.to_string(),
        ),
        (
            "cooldown",
            format_duration(old.cooldown),
            format_duration(new.cooldown),
        ),
        (
            "health-interval",
            format_duration(old.health_interval),
            format_duration(new.health_interval),
        ),
        ("pool", old.pool.to_string(), new.pool.to_string()),
        (
            "pool-max-idle",
            format_duration(Some(old.pool_max_idle)),
            format_duration(Some(new.pool_max_idle)),
        ),
        (
            "buffer-size",
            format_size(old.buffer_size),
            format_size(new.buffer_size),
        ),
        (
            "low-water",
            format_size(old.low_water),
            format_size(new.low_water),
        ),
        (
            "connect-timeout",
            format_duration(old.connect_timeout),
            format_duration(new.connect_timeout),
        ),
        (
            "idle-timeout",
            format_duration(old.idle_timeout),
            format_duration(new.idle_timeout),
        ),
        (
            "half-close-timeout",
            format_duration(old.half_close_timeout),
            format_duration(new.half_close_timeout),
        ),
        (
            "keepalive",
            format_duration(old.keepalive),
            format_duration(new.keepalive),
        ),
        ("max-connections", limit(old), limit(new)),
        (
            "send-proxy",
            old.send_proxy.map_or("none".into(), |v| v.to_string()),
            new.send_proxy.map_or("none".into(), |v| v.to_string()),
        ),
        (
            "accept-proxy",
            old.accept_proxy.to_string(),
            new.accept_proxy.to_string(),
        ),
        (
            "proxy-timeout",
            format_duration(old.proxy_timeout),
            format_duration(new.proxy_timeout),
        ),
        ("allow", blocks(&old.allow), blocks(&new.allow)),
        ("deny", blocks(&old.deny), blocks(&new.deny)),
        (
            "max-connections-per-source",
            per_source(old),
            per_source(new),
        ),
        ("splice", old.splice.to_string(), new.splice.to_string()),
        ("match", old.matching.to_string(), new.matching.to_string()),
        (
            "inspect-timeout",
            format_duration(old.inspect_timeout),
            format_duration(new.inspect_timeout),
        ),
    ];
    let size = |size: Option<usize>| size.map_or_else(|| "none".to_string(), format_size);
    let rate = |rate: Option<config::ConnectionRate>| {
        rate.map_or_else(|| "none".to_string(), |r| r.to_string())
    };
    let limits = [
        ("upload-rate", size(old.upload_rate), size(new.upload_rate)),
        (
            "download-rate",
            size(old.download_rate),
            size(new.download_rate),
        ),
        (
            "route-upload-rate",
            size(old.route_upload_rate),
            size(new.route_upload_rate),
        ),
        (
            "route-download-rate",
            size(old.route_download_rate),
            size(new.route_download_rate),
        ),
        ("rate-burst", size(old.rate_burst), size(new.rate_burst)),
        (
            "max-connection-rate-per-source",
            rate(old.max_connection_rate_per_source),
            rate(new.max_connection_rate_per_source),
        ),
    ];
    options
        .into_iter()
        .chain(limits)
        .filter(|(_, before, after)| before != after)
        .map(|(key, before, after)| format!("{key} {before} -> {after}"))
        .collect()
}
