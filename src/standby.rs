//! Connections to targets that no client holds: the warm pool, and health
//! probes.
//!
//! The pool's safety rule: a pooled connection serves exactly one client and
//! is never returned. While it waits it is watched for any sign of life from
//! the upstream (bytes, FIN, RST), and any sign makes it stale: discarded,
//! never handed out. Just before it is handed out a non-blocking peek checks
//! once more that nothing has arrived, so no client ever gets a connection
//! the upstream has closed, reset, or written to.

use std::io::{self, ErrorKind};
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::net;

/// Why a standby connection exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Pool,
    Probe,
}

struct Standby {
    id: u64,
    target: usize,
    purpose: Purpose,
    stream: TcpStream,
    started: Instant,
    /// `None` while the connect is under way.
    connected_at: Option<Instant>,
}

/// What an event on a standby connection meant.
#[derive(Debug)]
pub(crate) enum Change {
    /// `touched`: bytes or a FIN came with the connect, so a pooled
    /// connection was discarded at once.
    Connected {
        target: usize,
        purpose: Purpose,
        touched: bool,
    },
    Failed {
        target: usize,
        purpose: Purpose,
        error: io::Error,
    },
    /// A pooled connection the upstream closed, reset or wrote to.
    Stale {
        target: usize,
        lived: Duration,
    },
    Nothing,
}

/// What a timer on a standby connection found.
#[derive(Debug)]
pub(crate) enum Expired {
    /// Still connecting after the connect timeout.
    Connect { target: usize, purpose: Purpose },
    /// Idle in the pool past the maximum.
    Idle { target: usize },
}

pub(crate) struct Standbys {
    conns: Slab<Standby>,
    /// Per target: keys of connected pooled connections, oldest first.
    idle: Vec<Vec<usize>>,
    /// Per target: pooled connections, connecting or idle.
    pooled: Vec<usize>,
    /// Per target: a probe is under way.
    probing: Vec<bool>,
    next_id: u64,
}

impl Standbys {
    pub(crate) fn new(targets: usize) -> Standbys {
        Standbys {
            conns: Slab::new(),
            idle: vec![Vec::new(); targets],
            pooled: vec![0; targets],
            probing: vec![false; targets],
            next_id: 1,
        }
    }

    pub(crate) fn id(&self, key: usize) -> Option<u64> {
        self.conns.get(key).map(|conn| conn.id)
    }

    pub(crate) fn pooled(&self, target: usize) -> usize {
        self.pooled[target]
    }

    pub(crate) fn probing(&self, target: usize) -> bool {
        self.probing[target]
    }

    /// Takes over a connecting stream; returns its key and generation.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        token_of: impl FnOnce(usize) -> Token,
        mut stream: TcpStream,
        target: usize,
        purpose: Purpose,
        now: Instant,
    ) -> io::Result<(usize, u64)> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        // READABLE reports anything the upstream does while the connection
        // waits; WRITABLE, the connect completing.
        registry.register(
            &mut stream,
            token_of(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        entry.insert(Standby {
            id,
            target,
            purpose,
            stream,
            started: now,
            connected_at: None,
        });
        match purpose {
            Purpose::Pool => self.pooled[target] += 1,
            Purpose::Probe => self.probing[target] = true,
        }
        Ok((key, id))
    }

    pub(crate) fn on_event(&mut self, key: usize, event: &Event, now: Instant) -> Change {
        let Some(conn) = self.conns.get_mut(key) else {
            return Change::Nothing;
        };
        let (target, purpose) = (conn.target, conn.purpose);
        match conn.connected_at {
            None => match net::connect_outcome(&conn.stream) {
                Ok(false) => Change::Nothing,
                Ok(true) => {
                    conn.connected_at = Some(now);
                    // The upstream spoke first (a greeting, or a close): no
                    // client may be handed this connection.
                    let touched = event.is_readable() || event.is_read_closed();
                    if purpose == Purpose::Pool && !touched {
                        self.idle[target].push(key);
                    } else {
                        self.remove(key);
                    }
                    Change::Connected {
                        target,
                        purpose,
                        touched,
                    }
                }
                Err(error) => {
                    self.remove(key);
                    Change::Failed {
                        target,
                        purpose,
                        error,
                    }
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

    /// A timer set for `key` at its start came due.
    pub(crate) fn on_timer(
        &mut self,
        key: usize,
        id: u64,
        connect_timeout: Option<Duration>,
        max_idle: Duration,
        now: Instant,
    ) -> Option<Expired> {
        let conn = self.conns.get(key).filter(|conn| conn.id == id)?;
        let (target, purpose) = (conn.target, conn.purpose);
        let expired = match conn.connected_at {
            None => connect_timeout
                .is_some_and(|t| now >= conn.started + t)
                .then_some(Expired::Connect { target, purpose }),
            Some(since) => (now >= since + max_idle).then_some(Expired::Idle { target }),
        };
        if expired.is_some() {
            self.remove(key);
        }
        expired
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

    /// Hands out the newest healthy pooled connection to `target`, if any,
    /// deregistered so its new owner can register it under its own token.
    pub(crate) fn take(&mut self, registry: &Registry, target: usize) -> Option<TcpStream> {
        while let Some(key) = self.idle[target].pop() {
            let mut conn = self.detach(key)?;
            if is_untouched(&conn.stream) && registry.deregister(&mut conn.stream).is_ok() {
                return Some(conn.stream);
            }
        }
        None
    }

    /// Closes the idle pooled connections to `target` (it went down: they
    /// must not stand in for its trial connection).
    pub(crate) fn discard_idle(&mut self, target: usize) {
        for key in std::mem::take(&mut self.idle[target]) {
            self.remove(key);
        }
    }

    /// Closes every standby connection (shutdown).
    pub(crate) fn clear(&mut self) {
        self.conns.clear();
        self.idle.iter_mut().for_each(Vec::clear);
        self.pooled.iter_mut().for_each(|n| *n = 0);
        self.probing.iter_mut().for_each(|p| *p = false);
    }

    fn remove(&mut self, key: usize) {
        // Dropping the stream closes it and takes it out of the poll set.
        drop(self.detach(key));
    }

    fn detach(&mut self, key: usize) -> Option<Standby> {
        let conn = self.conns.try_remove(key)?;
        match conn.purpose {
            Purpose::Pool => {
                self.pooled[conn.target] -= 1;
                self.idle[conn.target].retain(|&k| k != key);
            }
            Purpose::Probe => self.probing[conn.target] = false,
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
