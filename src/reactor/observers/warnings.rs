//! The operator's warnings about clients and pipes that ended badly, each
//! kind throttled to a line a second: a flood of one kind (a scanner
//! hitting a deny rule, every target down) must not hide another (a
//! misconfigured balancer sending no header).

use std::net::SocketAddr;
use std::time::Instant;

use log::{error, warn};

use crate::pipe::{Reason, Refusal};
use crate::text::plural;
use crate::throttle::Throttle;

#[derive(Default)]
pub(super) struct Warnings {
    unreachable: Throttle,
    unregistered: Throttle,
    proxy_header: Throttle,
    proxy_timeout: Throttle,
    denied: Throttle,
    source_limit: Throttle,
    connection_rate: Throttle,
    gone: Throttle,
    no_route: Throttle,
}

impl Warnings {
    /// Every connect the route allows failed: the client is reset, as a
    /// direct connection would have been refused. While every target is
    /// down this happens to every client.
    pub(super) fn unreachable(&mut self, id: u64, attempts: u32, client: SocketAddr, now: Instant) {
        if let Some(held_back) = self.unreachable.allow(now) {
            warn!(
                "pipe {id}: no target could be reached in {}; resetting client {client}{held_back}",
                plural(attempts as usize, "attempt")
            );
        }
    }

    /// Client `id` of route `route` left for `reason` without becoming a pipe.
    pub(super) fn turned_away(
        &mut self,
        route: &str,
        (id, client): (u64, SocketAddr),
        reason: &Reason,
        now: Instant,
    ) {
        let refusal = match reason {
            Reason::Refused(refusal) => refusal,
            Reason::Unreachable { attempts } => {
                return self.unreachable(id, *attempts, client, now)
            }
            Reason::Poll(_) => {
                if let Some(held_back) = self.unregistered.allow(now) {
                    error!(
                        "route {route}: pipe {id}: resetting client {client}: {reason}{held_back}"
                    );
                }
                return;
            }
            _ => return,
        };
        let throttle = match refusal {
            Refusal::ProxyHeader(_) => &mut self.proxy_header,
            Refusal::ProxyTimeout => &mut self.proxy_timeout,
            Refusal::Denied => &mut self.denied,
            Refusal::SourceLimit(_) => &mut self.source_limit,
            Refusal::ConnectionRate(_) => &mut self.connection_rate,
            Refusal::Gone => &mut self.gone,
            Refusal::NoRoute(_) => &mut self.no_route,
        };
        if let Some(held_back) = throttle.allow(now) {
            warn!("route {route}: pipe {id}: resetting client {client}: {refusal}{held_back}");
        }
    }
}
