//! Active health checks: a TCP connect to a target, closed as soon as it
//! is answered, every `health-interval` (as HAProxy's `check`). At most one
//! probe per target is under way.

use std::io;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::target::TargetId;
use crate::arena::{Arena, Id};
use crate::net;

pub(crate) type ProbeId = Id<Probe>;

pub(crate) struct Probe {
    target: TargetId,
    stream: TcpStream,
}

pub(crate) struct Probes {
    conns: Arena<Probe>,
    token_of: fn(usize) -> Token,
}

impl Probes {
    pub(crate) fn new(token_of: fn(usize) -> Token) -> Probes {
        Probes {
            conns: Arena::new(),
            token_of,
        }
    }

    pub(crate) fn is_probing(&self, target: TargetId) -> bool {
        self.conns.iter().any(|(_, probe)| probe.target == target)
    }

    /// Watches a connecting stream.
    pub(crate) fn add(
        &mut self,
        registry: &Registry,
        mut stream: TcpStream,
        target: TargetId,
    ) -> io::Result<ProbeId> {
        self.conns.try_insert_with(|key| {
            registry.register(&mut stream, (self.token_of)(key), Interest::WRITABLE)?;
            Ok(Probe { target, stream })
        })
    }

    /// An event for the probe in slot `key`: if its connect has ended, one
    /// way or the other, the outcome. A probe is closed once it has one.
    pub(crate) fn on_event(&mut self, key: usize) -> Option<(TargetId, io::Result<()>)> {
        let id = self.conns.id_at(key)?;
        let probe = self.conns.get(id)?;
        let outcome = match net::connect_outcome(&probe.stream) {
            Ok(false) => return None,
            Ok(true) => Ok(()),
            Err(e) => Err(e),
        };
        self.conns.remove(id).map(|probe| (probe.target, outcome))
    }

    /// The connect timeout of probe `id` ran out: its target, if the probe
    /// was still under way (it is then closed).
    pub(crate) fn timed_out(&mut self, id: ProbeId) -> Option<TargetId> {
        self.conns.remove(id).map(|probe| probe.target)
    }

    /// Stops probing `target` (a reload removed it).
    pub(crate) fn forget(&mut self, target: TargetId) {
        self.conns.retain(|probe| probe.target != target);
    }

    /// Closes every probe (shutdown).
    pub(crate) fn clear(&mut self) {
        self.conns.clear();
    }
}
