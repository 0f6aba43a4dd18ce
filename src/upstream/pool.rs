//! The warm pool: connected, idle upstream connections kept ready per
//! target, so a new client skips the handshake to its target.
//!
//! The safety rule: a pooled connection serves exactly one client and is
//! never returned. While it waits it is watched for any sign of life from
//! the upstream (bytes, FIN, RST), and any sign makes it stale: discarded,
//! never handed out. Just before it is handed out a non-blocking peek checks
//! once more that nothing has arrived, so no client ever gets a connection
//! the upstream has closed, reset, or written to.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::target::TargetId;
use crate::arena::{Arena, Id};
use crate::net;

pub(crate) type PooledId = Id<Pooled>;

pub(crate) struct Pooled {
    target: TargetId,
    stream: TcpStream,
    started: Instant,
    /// `None` while the connect is under way.
    connected_at: Option<Instant>,
}

/// What an event on a pooled connection meant.
#[derive(Debug)]
pub(crate) enum Change {
    /// The connect completed, and the connection waits in the pool as
    /// `kept`; `None` if bytes or a FIN came with it, so it was discarded.
    Connected {
        target: TargetId,
        kept: Option<PooledId>,
    },
    Failed {
        target: TargetId,
        error: io::Error,
    },
    /// The upstream closed, reset or wrote to an idle connection.
    Stale {
        target: TargetId,
        lived: Duration,
    },
    Nothing,
}

/// What a timer on a pooled connection found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Still connecting after the connect timeout.
    Connect(TargetId),
    /// Idle past the maximum: replace it before the upstream's own idle
    /// timeout bites.
    Idle(TargetId),
}

/// Per target: pooled connections, connecting or idle, and the idle ones
/// oldest first.
#[derive(Default)]
struct Reserve {
    count: usize,
    idle: Vec<PooledId>,
}

pub(crate) struct WarmPool {
    conns: Arena<Pooled>,
    reserves: HashMap<TargetId, Reserve>,
    token_of: fn(usize) -> Token,
}

impl WarmPool {
    pub(crate) fn new(token_of: fn(usize) -> Token) -> WarmPool {
        WarmPool {
            conns: Arena::new(),
            reserves: HashMap::new(),
            token_of,
        }
    }

    /// Pooled connections to `target`, connecting or idle.
    pub(crate) fn count(&self, target: TargetId) -> usize {
        self.reserves
            .get(&target)
            .map_or(0, |reserve| reserve.count)
    }

    /// Connected idle connections to `target`, ready for a client.
    pub(crate) fn idle(&self, target: TargetId) -> usize {
        self.reserves
            .get(&target)
            .map_or(0, |reserve| reserve.idle.len())
    }

    /// Takes over a connecting stream.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        stream: TcpStream,
        target: TargetId,
        now: Instant,
    ) -> io::Result<PooledId> {
        self.insert(registry, stream, target, now, None)
    }

    /// Registers `stream` in a new slot and counts it in `target`'s
    /// reserve. READABLE reports anything the upstream does while the
    /// connection waits; WRITABLE, the connect completing.
    fn insert(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        target: TargetId,
        started: Instant,
        connected_at: Option<Instant>,
    ) -> io::Result<PooledId> {
        let id = self.conns.try_insert_with(|key| {
            let interest = Interest::READABLE | Interest::WRITABLE;
            registry.register(&mut stream, (self.token_of)(key), interest)?;
            Ok::<_, io::Error>(Pooled {
                target,
                stream,
                started,
                connected_at,
            })
        })?;
        self.reserves.entry(target).or_default().count += 1;
        Ok(id)
    }

    /// An event for the connection in slot `key`.
    pub(crate) fn on_event(&mut self, key: usize, event: &Event, now: Instant) -> Change {
        let Some(id) = self.conns.id_at(key) else {
            return Change::Nothing;
        };
        let Some(conn) = self.conns.get_mut(id) else {
            return Change::Nothing;
        };
        let target = conn.target;
        match conn.connected_at {
            None => match net::connect_outcome(&conn.stream) {
                Ok(false) => Change::Nothing,
                Ok(true) => {
                    conn.connected_at = Some(now);
                    // The upstream spoke first (a greeting, or a close): no
                    // client may be handed this connection.
                    let touched = event.is_readable() || event.is_read_closed();
                    if touched {
                        self.remove(id);
                    } else {
                        self.reserves.entry(target).or_default().idle.push(id);
                    }
                    let kept = (!touched).then_some(id);
                    Change::Connected { target, kept }
                }
                Err(error) => {
                    self.remove(id);
                    Change::Failed { target, error }
                }
            },
            Some(connected_at) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.remove(id);
                    Change::Stale {
                        target,
                        lived: now.saturating_duration_since(connected_at),
                    }
                } else {
                    Change::Nothing
                }
            }
        }
    }

    pub(crate) fn target_of(&self, id: PooledId) -> Option<TargetId> {
        self.conns.get(id).map(|conn| conn.target)
    }

    /// The timer of `id` came due.
    pub(crate) fn on_timer(
        &mut self,
        id: PooledId,
        connect_timeout: Option<Duration>,
        max_idle: Duration,
        now: Instant,
    ) -> Option<Expired> {
        let conn = self.conns.get(id)?;
        let target = conn.target;
        let expired = match conn.connected_at {
            None => connect_timeout
                .is_some_and(|t| now >= conn.started + t)
                .then_some(Expired::Connect(target)),
            Some(since) => (now >= since + max_idle).then_some(Expired::Idle(target)),
        };
        if expired.is_some() {
            self.remove(id);
        }
        expired
    }

    /// Hands out the newest healthy pooled connection to `target`, if any,
    /// deregistered so its new owner can register it under its own token.
    pub(crate) fn take(&mut self, registry: &Registry, target: TargetId) -> Option<TcpStream> {
        loop {
            let id = self.reserves.get_mut(&target)?.idle.pop()?;
            let Some(mut conn) = self.detach(id) else {
                continue;
            };
            if is_untouched(&conn.stream) && registry.deregister(&mut conn.stream).is_ok() {
                return Some(conn.stream);
            }
        }
    }

    /// Closes the idle pooled connections to `target` (it went down: they
    /// must not stand in for its trial connection).
    pub(crate) fn discard_idle(&mut self, target: TargetId) {
        let idle = match self.reserves.get_mut(&target) {
            Some(reserve) => std::mem::take(&mut reserve.idle),
            None => return,
        };
        for id in idle {
            self.remove(id);
        }
    }

    /// Every idle, connected connection: its target, its descriptor and
    /// when it connected (for a live upgrade).
    pub(crate) fn idle_connections(&self) -> Vec<(TargetId, RawFd, Instant)> {
        let mut idle = Vec::new();
        for reserve in self.reserves.values() {
            for &id in &reserve.idle {
                if let Some(conn) = self.conns.get(id) {
                    let connected_at = conn.connected_at.unwrap_or(conn.started);
                    idle.push((conn.target, conn.stream.as_raw_fd(), connected_at));
                }
            }
        }
        idle
    }

    /// Takes over an idle connection another process made, connected at
    /// `connected_at`; watched for any sign of life like any other.
    pub(crate) fn adopt_idle(
        &mut self,
        registry: &Registry,
        stream: TcpStream,
        target: TargetId,
        connected_at: Instant,
    ) -> io::Result<PooledId> {
        let id = self.insert(registry, stream, target, connected_at, Some(connected_at))?;
        // Oldest first, whoever made it.
        self.reserves.entry(target).or_default().idle.insert(0, id);
        Ok(id)
    }

    /// Lets every idle connection go, deregistered and closed, for one
    /// another process took over: closing this copy sends nothing.
    pub(crate) fn hand_over_idle(&mut self, registry: &Registry) {
        let idle: Vec<PooledId> = self
            .reserves
            .values_mut()
            .flat_map(|reserve| std::mem::take(&mut reserve.idle))
            .collect();
        for id in idle {
            if let Some(mut conn) = self.detach(id) {
                let _ = registry.deregister(&mut conn.stream);
            }
        }
    }

    /// Closes idle connections to `target` beyond `keep` (its pool shrank).
    pub(crate) fn trim(&mut self, target: TargetId, keep: usize) {
        while self.count(target) > keep {
            let oldest = match self.reserves.get(&target) {
                Some(reserve) if !reserve.idle.is_empty() => reserve.idle[0],
                _ => return, // the rest are still connecting
            };
            self.remove(oldest);
        }
    }

    /// Closes every connection to `target`, connecting or idle.
    pub(crate) fn forget(&mut self, target: TargetId) {
        self.conns.retain(|conn| conn.target != target);
        self.reserves.remove(&target);
    }

    /// Closes every pooled connection (shutdown).
    pub(crate) fn clear(&mut self) {
        self.conns.clear();
        self.reserves.clear();
    }

    fn remove(&mut self, id: PooledId) {
        // Dropping the stream closes it and takes it out of the poll set.
        drop(self.detach(id));
    }

    fn detach(&mut self, id: PooledId) -> Option<Pooled> {
        let conn = self.conns.remove(id)?;
        if let Some(reserve) = self.reserves.get_mut(&conn.target) {
            reserve.count -= 1;
            reserve.idle.retain(|&idle| idle != id);
        }
        Some(conn)
    }
}

/// Nothing has arrived: no byte, no FIN, no error. A peek that would block
/// is the only answer that proves it.
fn is_untouched(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock)
}
