//! Active health checks: a TCP connect to a target, closed as soon as it
//! is answered, every `health-interval` (as HAProxy's `check`). At most one
//! probe per target is under way.

use std::io;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

use super::target::TargetId;
use crate::net;

struct Probe {
    /// Unique for the life of the process: tells a stale timer from this
    /// probe.
    id: u64,
    target: TargetId,
    stream: TcpStream,
    started: Instant,
}

pub(crate) struct Probes {
    conns: Slab<Probe>,
    token_of: fn(usize) -> Token,
    next_id: u64,
}

impl Probes {
    pub(crate) fn new(token_of: fn(usize) -> Token) -> Probes {
        Probes {
            conns: Slab::new(),
            token_of,
            next_id: 1,
        }
    }

    pub(crate) fn is_probing(&self, target: TargetId) -> bool {
        self.conns.iter().any(|(_, probe)| probe.target == target)
    }

    /// Watches a connecting stream; returns its key and generation.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        target: TargetId,
        now: Instant,
    ) -> io::Result<(usize, u64)> {
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        registry.register(&mut stream, (self.token_of)(key), Interest::WRITABLE)?;
        let id = self.next_id;
        self.next_id += 1;
        entry.insert(Probe {
            id,
            target,
            stream,
            started: now,
        });
        Ok((key, id))
    }

    /// The probe's connect has ended, one way or the other: its outcome. A
    /// probe is closed as soon as it has one.
    pub(crate) fn on_event(
        &mut self,
        key: usize,
        _event: &Event,
    ) -> Option<(TargetId, io::Result<()>)> {
        let probe = self.conns.get(key)?;
        let outcome = match net::connect_outcome(&probe.stream) {
            Ok(false) => return None,
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        let probe = self.conns.remove(key);
        Some((probe.target, outcome))
    }

    /// When the probe `key` times out.
    pub(crate) fn deadline(
        &self,
        key: usize,
        connect_timeout: Option<Duration>,
    ) -> Option<Instant> {
        let probe = self.conns.get(key)?;
        connect_timeout.map(|t| probe.started + t)
    }

    /// The timer of `key`, generation `id`, came due: the probe's target if
    /// it timed out (the probe is then closed).
    pub(crate) fn on_timer(&mut self, key: usize, id: u64) -> Option<TargetId> {
        self.conns.get(key).filter(|probe| probe.id == id)?;
        Some(self.conns.remove(key).target)
    }

    /// Stops probing `target` (a reload removed it).
    pub(crate) fn forget(&mut self, target: TargetId) {
        self.conns.retain(|_, probe| probe.target != target);
    }

    /// Closes every probe (shutdown).
    pub(crate) fn clear(&mut self) {
        self.conns.clear();
    }
}
