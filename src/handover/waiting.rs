//! Records of what is not a pipe: clients awaiting a PROXY header or being
//! inspected (whose bytes so far were only peeked, so they are still in
//! the socket), idle pooled upstream connections, and the upstream state
//! that survives (target health and cooldowns).

use std::net::SocketAddr;
use std::time::Duration;

use super::codec::{
    read_addr, read_count, read_opt_duration, write_addr, write_count, write_opt_duration,
    TargetName,
};
use super::HandoverError;
use crate::operator::TargetState;
use crate::wire::{Reader, WireError, Writer};

/// A client of an `accept-proxy` route whose header is not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwaitingRecord {
    pub(crate) id: u64,
    pub(crate) route: String,
    pub(crate) fd: u32,
    pub(crate) peer: SocketAddr,
    /// The listener's address: how the receiver finds the listener.
    pub(crate) listener: SocketAddr,
    pub(crate) read_closed: bool,
    /// Its first bytes choose its route after the header (a shared address).
    pub(crate) inspect: bool,
    /// Time left of its `proxy-timeout`.
    pub(crate) timeout_in: Option<Duration>,
}

/// A client of a shared address whose first bytes are awaited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InspectingRecord {
    pub(crate) id: u64,
    /// The route it counts under meanwhile.
    pub(crate) route: String,
    pub(crate) fd: u32,
    /// The listener it came in on, by address.
    pub(crate) listener: SocketAddr,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    pub(crate) local_from_header: bool,
    pub(crate) read_closed: bool,
    /// Time left of its `inspect-timeout`.
    pub(crate) timeout_in: Option<Duration>,
}

/// An idle, connected pooled upstream connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PooledRecord {
    pub(crate) target: TargetName,
    pub(crate) fd: u32,
    /// Time since it connected: its idle limit is this much nearer.
    pub(crate) idle_for: Duration,
}

/// Where a target's health stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HealthState {
    Up,
    /// Down for `left` more, then one trial; `cooldown` is the one it
    /// serves (the next doubles it).
    Down {
        left: Duration,
        cooldown: Duration,
    },
    /// A trial connection is under way.
    Trial {
        cooldown: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HealthRecord {
    pub(crate) target: TargetName,
    pub(crate) state: HealthState,
    pub(crate) consecutive_failures: u32,
    /// The operator's say: kept across an upgrade as across a reload.
    pub(crate) operator: TargetState,
    /// Its weight now (the operator may have set it), and the file's when
    /// it was last read: the weight set at runtime stays unless the new
    /// config's weight differs from the file's.
    pub(crate) weight: u32,
    pub(crate) configured_weight: u32,
}

/// The upstream state a worker hands over: every target's health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UpstreamRecord {
    pub(crate) health: Vec<HealthRecord>,
}

impl AwaitingRecord {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.id).str(&self.route).u32(self.fd);
        write_addr(w, self.peer);
        write_addr(w, self.listener);
        w.bool(self.read_closed).bool(self.inspect);
        write_opt_duration(w, self.timeout_in);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<AwaitingRecord, WireError> {
        Ok(AwaitingRecord {
            id: r.u64()?,
            route: r.str()?.to_string(),
            fd: r.u32()?,
            peer: read_addr(r)?,
            listener: read_addr(r)?,
            read_closed: r.bool()?,
            inspect: r.bool()?,
            timeout_in: read_opt_duration(r)?,
        })
    }
}

impl InspectingRecord {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.id).str(&self.route).u32(self.fd);
        for addr in [self.listener, self.peer, self.local] {
            write_addr(w, addr);
        }
        w.bool(self.local_from_header).bool(self.read_closed);
        write_opt_duration(w, self.timeout_in);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<InspectingRecord, WireError> {
        Ok(InspectingRecord {
            id: r.u64()?,
            route: r.str()?.to_string(),
            fd: r.u32()?,
            listener: read_addr(r)?,
            peer: read_addr(r)?,
            local: read_addr(r)?,
            local_from_header: r.bool()?,
            read_closed: r.bool()?,
            timeout_in: read_opt_duration(r)?,
        })
    }
}

impl PooledRecord {
    pub(crate) fn write(&self, w: &mut Writer) {
        self.target.write(w);
        w.u32(self.fd).duration(self.idle_for);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<PooledRecord, WireError> {
        Ok(PooledRecord {
            target: TargetName::read(r)?,
            fd: r.u32()?,
            idle_for: r.duration()?,
        })
    }
}

impl UpstreamRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        write_count(&mut w, self.health.len());
        for record in &self.health {
            record.target.write(&mut w);
            match record.state {
                HealthState::Up => {
                    w.u8(0);
                }
                HealthState::Down { left, cooldown } => {
                    w.u8(1).duration(left).duration(cooldown);
                }
                HealthState::Trial { cooldown } => {
                    w.u8(2).duration(cooldown);
                }
            }
            w.u32(record.consecutive_failures);
            w.u8(match record.operator {
                TargetState::Ready => 0,
                TargetState::Drain => 1,
                TargetState::Maint => 2,
            });
            w.u32(record.weight).u32(record.configured_weight);
        }
        w.finish()
    }

    /// An empty record (a bundle without upstream state) reads as no
    /// health at all.
    pub(crate) fn decode(bytes: &[u8]) -> Result<UpstreamRecord, HandoverError> {
        if bytes.is_empty() {
            return Ok(UpstreamRecord::default());
        }
        let mut r = Reader::new(bytes);
        // A target name (12), a state (1), a count (4), the operator's
        // state (1) and two weights (8) at least.
        let count = read_count(&mut r, 26)?;
        let mut health = Vec::with_capacity(count);
        for _ in 0..count {
            let target = TargetName::read(&mut r)?;
            let state = match r.u8()? {
                0 => HealthState::Up,
                1 => HealthState::Down {
                    left: r.duration()?,
                    cooldown: r.duration()?,
                },
                2 => HealthState::Trial {
                    cooldown: r.duration()?,
                },
                _ => return Err(WireError::Invalid("health state").into()),
            };
            let consecutive_failures = r.u32()?;
            let operator = match r.u8()? {
                0 => TargetState::Ready,
                1 => TargetState::Drain,
                2 => TargetState::Maint,
                _ => return Err(WireError::Invalid("operator state").into()),
            };
            health.push(HealthRecord {
                target,
                state,
                consecutive_failures,
                operator,
                weight: r.u32()?,
                configured_weight: r.u32()?,
            });
        }
        r.end()?;
        Ok(UpstreamRecord { health })
    }
}
