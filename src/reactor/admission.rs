//! Whether a route takes a client, by its real address: the route's
//! `allow`/`deny` rules, its `max-connections-per-source` and its
//! `max-connection-rate-per-source`, checked before any target is dialed;
//! and the one way a client that never becomes a pipe is turned away.
//!
//! The real address is the socket's peer, or the source named by the
//! client's PROXY header on an `accept-proxy` route. IPv4 clients of a
//! dual-stack listener (`::ffff:a.b.c.d`) are counted and matched as the
//! IPv4 address they are.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;
use socket2::SockRef;

use super::observers::seen;
use super::routes::{Route, RouteId};
use super::Reactor;
use crate::acl;
use crate::config::ConnectionRate;
use crate::net;
use crate::pipe::{Closing, Reason, Refusal};
use crate::rate::TokenBucket;
use crate::share::Share;

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

/// New connections of one route per client address: a token bucket each
/// (`max-connection-rate-per-source`), forgotten once full again, so the
/// table holds only the addresses seen within about one period.
#[derive(Default)]
pub(crate) struct SourceRates {
    buckets: HashMap<IpAddr, TokenBucket>,
    /// The table is swept of full buckets when it grows past this.
    sweep_at: usize,
}

/// A table this small is never swept.
const MIN_SWEEP: usize = 1024;

impl SourceRates {
    /// Whether one more connection from `ip` is within `rate` (this
    /// worker's part of it); counts it if so.
    fn admit(&mut self, ip: IpAddr, rate: ConnectionRate, now: Instant) -> bool {
        if self.buckets.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.buckets.retain(|_, bucket| !bucket.is_full_by(now));
            self.sweep_at = self.buckets.len() * 2;
        }
        let count = u64::from(rate.count);
        self.buckets
            .entry(ip.to_canonical())
            .or_insert_with(|| TokenBucket::new(count, rate.per, count, now))
            .try_take_one(now)
    }
}

/// Whether `route` takes a client at `ip` now; `worker` takes its part
/// of the route's connection rate.
pub(super) fn check(
    route: &mut Route,
    ip: IpAddr,
    (now, worker): (Instant, Share),
) -> Result<(), Refusal> {
    let config = &route.config;
    if !acl::admits(&config.allow, &config.deny, ip) {
        return Err(Refusal::Denied);
    }
    if let Some(max) = config.max_connections_per_source {
        if route.per_source.get(ip) >= max {
            return Err(Refusal::SourceLimit(max));
        }
    }
    if let Some(rate) = config.max_connection_rate_per_source {
        let part = ConnectionRate {
            count: worker.limit(rate.count as usize) as u32,
            per: rate.per,
        };
        if !route.per_source_rate.admit(ip, part, now) {
            return Err(Refusal::ConnectionRate(rate));
        }
    }
    Ok(())
}

impl Reactor {
    /// The one way out for a client that never becomes a pipe: refused by
    /// a rule, a bad or late PROXY header, no target that can be dialed,
    /// or a registration that failed. Its socket is closed as the close
    /// rules say for `reason` (an RST, for every reason there is), and the
    /// observers count it, tell the hooks and log it.
    pub(super) fn turn_away(
        &mut self,
        (id, route): (u64, RouteId),
        client: TcpStream,
        peer: SocketAddr,
        reason: Reason,
    ) {
        // Counted before the client can see its reset, so that whoever
        // watches the metrics finds the refusal there once it has.
        self.observers
            .turned_away(seen!(self), (id, route), peer, &reason);
        if reason.closing() == Closing::Abort {
            net::abort_on_close(SockRef::from(&client));
        }
        drop(client);
    }
}
