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
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::target::TargetId;
use crate::net;

struct Pooled {
    /// Unique for the life of the process: tells a stale timer from this
    /// connection.
    id: u64,
    target: TargetId,
    stream: TcpStream,
    started: Instant,
    /// `None` while the connect is under way.
    connected_at: Option<Instant>,
}

/// What an event on a pooled connection meant.
#[derive(Debug)]
pub(crate) enum Change {
    /// The connect completed. `touched`: bytes or a FIN came with it, so
    /// the connection was discarded at once.
    Connected {
        target: TargetId,
        touched: bool,
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
    idle: Vec<usize>,
}

pub(crate) struct WarmPool {
    conns: Slab<Pooled>,
    reserves: HashMap<TargetId, Reserve>,
    token_of: fn(usize) -> Token,
    next_id: u64,
}

impl WarmPool {
    pub(crate) fn new(token_of: fn(usize) -> Token) -> WarmPool {
        WarmPool {
            conns: Slab::new(),
            reserves: HashMap::new(),
            token_of,
            next_id: 1,
        }
    }

    /// Pooled connections to `target`, connecting or idle.
    pub(crate) fn count(&self, target: TargetId) -> usize {
        self.reserves
            .get(&target)
            .map_or(0, |reserve| reserve.count)
    }

    /// Takes over a connecting stream; returns its key and generation.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        target: TargetId,
        now: Instant,
    ) -> io::Result<(usize, u64)> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // READABLE reports anything the upstream does while the connection
        // waits; WRITABLE, the connect completing.
        registry.register(
            &mut stream,
            (self.token_of)(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        entry.insert(Pooled {
            id,
            target,
            stream,
            started: now,
            connected_at: None,
        });
        self.reserves.entry(target).or_default().count += 1;
        Ok((key, id))
    }

    pub(crate) fn id(&self, key: usize) -> Option<u64> {
        self.conns.get(key).map(|conn| conn.id)
    }

    pub(crate) fn on_event(&mut self, key: usize, event: &Event, now: Instant) -> Change {
        let Some(conn) = self.conns.get_mut(key) else {
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
                        self.remove(key);
                    } else {
                        self.reserves.entry(target).or_default().idle.push(key);
                    }
                    Change::Connected { target, touched }
                }
                Err(error) => {
                    self.remove(key);
                    Change::Failed { target, error }
                }
            },
            Some(connected_at) => {
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.remove(key);
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

    /// When the timer of `key` should next look at it.
    pub(crate) fn deadline(
        &self,
        key: usize,
        connect_timeout: Option<Duration>,
        max_idle: Duration,
    ) -> Option<Instant> {
        let conn = self.conns.get(key)?;
        match conn.connected_at {
            None => connect_timeout.map(|t| conn.started + t),
            Some(since) => Some(since + max_idle),
        }
    }

    /// The target of `key`, if it is still generation `id`.
    pub(crate) fn target_of(&self, key: usize, id: u64) -> Option<TargetId> {
        self.conns
            .get(key)
            .filter(|conn| conn.id == id)
            .map(|conn| conn.target)
    }

    /// The timer of `key`, generation `id`, came due.
    pub(crate) fn on_timer(
        &mut self,
        key: usize,
        id: u64,
        connect_timeout: Option<Duration>,
        max_idle: Duration,
        now: Instant,
    ) -> Option<Expired> {
        let conn = self.conns.get(key).filter(|conn| conn.id == id)?;
        let target = conn.target;
        let expired = match conn.connected_at {
            None => connect_timeout
                .is_some_and(|t| now >= conn.started + t)
                .then_some(Expired::Connect(target)),
            Some(since) => (now >= since + max_idle).then_some(Expired::Idle(target)),
        };
        if expired.is_some() {
            self.remove(key);
        }
        expired
    }

    /// Hands out the newest healthy pooled connection to `target`, if any,
    /// deregistered so its new owner can register it under its own token.
    pub(crate) fn take(&mut self, registry: &Registry, target: TargetId) -> Option<TcpStream> {
        loop {
            let key = self.reserves.get_mut(&target)?.idle.pop()?;
            let Some(mut conn) = self.detach(key) else {
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
        for key in idle {
            self.remove(key);
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
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.target == target)
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.remove(key);
        }
        self.reserves.remove(&target);
    }

    /// Closes every pooled connection (shutdown).
    pub(crate) fn clear(&mut self) {
        self.conns.clear();
        self.reserves.clear();
    }

    fn remove(&mut self, key: usize) {
        // Dropping the stream closes it and takes it out of the poll set.
        drop(self.detach(key));
    }

    fn detach(&mut self, key: usize) -> Option<Pooled> {
        let conn = self.conns.try_remove(key)?;
        if let Some(reserve) = self.reserves.get_mut(&conn.target) {
            reserve.count -= 1;
            reserve.idle.retain(|&k| k != key);
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
