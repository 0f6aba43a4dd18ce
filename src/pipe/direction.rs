//! One direction of a pipe: a ring between a source and a destination, and
//! the three states it goes through (open, flushing after the source's FIN,
//! done once the destination has its FIN).

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::time::Instant;

use super::endpoint::Endpoint;
use super::{Settings, Side};
use crate::metrics::Metrics;
use crate::ring::{Ring, RingPool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Reading the source and forwarding.
    Open,
    /// The source sent FIN: forward what is left, then shut the destination's
    /// write side.
    Flushing,
    /// The destination has been sent FIN. Nothing more moves this way.
    Done,
}

/// One direction of a pipe: its ring and its flow-control state.
pub(super) struct Direction {
    /// Lent by the pool while bytes are in flight; `None` when idle.
    pub(super) ring: Option<Ring>,
    pub(super) flow: Flow,
    /// The ring reached high-water and has not yet drained to low-water.
    pub(super) paused: bool,
    /// The embedder paused the pipe: the source is not read, whatever the
    /// ring holds.
    pub(super) held: bool,
    /// Bytes at the front of the ring that are not the source's (a PROXY
    /// header for the target) and are not counted as delivered. A header
    /// is at most 107 bytes; the field sits in padding.
    preamble: u8,
    /// Bytes of the source delivered to the destination.
    pub(super) forwarded: u64,
}

pub(super) enum PumpError {
    Read(io::Error),
    Write(io::Error),
}

impl PumpError {
    /// A read failed on the source side, a write on the destination side.
    pub(super) fn blame(self, source: Side, destination: Side) -> (Side, io::Error) {
        match self {
            PumpError::Read(e) => (source, e),
            PumpError::Write(e) => (destination, e),
        }
    }
}

/// What a pipe needs from the reactor while it moves bytes.
pub(crate) struct Context<'a> {
    pub(crate) pool: &'a mut RingPool,
    pub(crate) metrics: &'a Metrics,
    pub(crate) now: Instant,
    /// Bytes the pipe may still read this turn before others get theirs.
    pub(crate) budget: usize,
}

impl Direction {
    pub(super) fn new() -> Direction {
        Direction {
            ring: None,
            flow: Flow::Open,
            paused: false,
            held: false,
            preamble: 0,
            forwarded: 0,
        }
    }

    /// Puts `bytes` ahead of anything the source sends. Called on a new
    /// direction only, whose ring is fresh and holds them whole (the config
    /// keeps rings of a route that sends a header large enough).
    pub(super) fn preload(
        &mut self,
        bytes: &[u8],
        buffer_size: usize,
        pool: &mut RingPool,
        metrics: &Metrics,
    ) {
        debug_assert!(self.ring.is_none() && bytes.len() <= usize::from(u8::MAX));
        let ring = self.ring.get_or_insert_with(|| {
            metrics.rings_in_use.add(1);
            pool.take(buffer_size)
        });
        // Reading from a slice cannot fail.
        let n = ring.read_from(bytes).unwrap_or(0);
        self.preamble = u8::try_from(n).unwrap_or(u8::MAX);
        metrics.buffered_bytes.add(n as u64);
        if ring.is_full() {
            self.paused = true;
        }
    }

    pub(super) fn has_pending_bytes(&self) -> bool {
        self.ring.as_ref().is_some_and(|ring| !ring.is_empty())
    }

    /// Whether its source may be read now: not at high-water, not held.
    pub(super) fn reads(&self) -> bool {
        // One branch for both: this is tested on every read.
        !(self.paused | self.held)
    }

    pub(super) fn wants_to_read(&self, source: &Endpoint) -> bool {
        self.flow == Flow::Open && source.readable && self.reads()
    }

    pub(super) fn buffered(&self) -> usize {
        self.ring.as_ref().map_or(0, Ring::len)
    }

    /// `open`: the destination is established (the target side is not
    /// while its connect is under way).
    pub(super) fn can_write(&self, destination: &Endpoint, open: bool) -> bool {
        open && destination.writable && self.has_pending_bytes()
    }

    /// Moves bytes from `source` to `destination` until both would block,
    /// the ring is full, or the turn's budget of bytes read is spent.
    /// Returns whether anything moved or changed state. Until the
    /// destination is `open`, bytes only gather in the ring.
    ///
    /// `fin_by_close`: the other direction is done, so once this one is
    /// flushed the pipe is freed, and closing the destination sends the same
    /// FIN a `shutdown` would (nothing is left unread on either socket).
    pub(super) fn pump(
        &mut self,
        source: &mut Endpoint,
        destination: &mut Endpoint,
        open: bool,
        fin_by_close: bool,
        settings: &Settings,
        ctx: &mut Context<'_>,
    ) -> Result<bool, PumpError> {
        let mut moved = false;
        loop {
            let mut progressed = false;
            if self.wants_to_read(source) && ctx.budget > 0 {
                let ring = self.ring.get_or_insert_with(|| {
                    ctx.metrics.rings_in_use.add(1);
                    ctx.pool.take(settings.buffer_size)
                });
                let room = ring.free();
                match ring.read_from(&source.stream) {
                    Ok(0) => {
                        self.flow = Flow::Flushing;
                        progressed = true;
                    }
                    Ok(n) => {
                        progressed = true;
                        ctx.budget = ctx.budget.saturating_sub(n);
                        ctx.metrics.buffered_bytes.add(n as u64);
                        ctx.metrics.note_direction_fill(ring.len());
                        // A short read emptied the socket: the next byte comes
                        // with a new edge, so skip the read that would only say
                        // WouldBlock. Not so once FIN was reported.
                        if n < room && !source.read_closed {
                            source.readable = false;
                        }
                        if ring.is_full() {
                            self.paused = true;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => source.readable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(PumpError::Read(e)),
                }
            }
            if self.can_write(destination, open) {
                let Some(ring) = self.ring.as_mut() else {
                    break;
                };
                let pending = ring.len();
                match ring.write_to(&destination.stream) {
                    Ok(0) => return Err(PumpError::Write(ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        progressed = true;
                        let mut delivered = n;
                        if self.preamble > 0 {
                            let preamble = n.min(usize::from(self.preamble));
                            self.preamble -= preamble as u8;
                            delivered -= preamble;
                        }
                        self.forwarded += delivered as u64;
                        ctx.metrics.buffered_bytes.sub(n as u64);
                        // A short write filled the socket buffer; its draining
                        // brings a new edge.
                        if n < pending {
                            destination.writable = false;
                        }
                        if self.paused && ring.len() <= settings.low_water {
                            self.paused = false;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => destination.writable = false,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(PumpError::Write(e)),
                }
            }
            if !progressed {
                break;
            }
            moved = true;
        }
        if self.ring.as_ref().is_some_and(Ring::is_empty) {
            if let Some(ring) = self.ring.take() {
                ctx.metrics.rings_in_use.sub(1);
                ctx.pool.give_back(ring);
            }
        }
        if self.flow == Flow::Flushing && self.ring.is_none() && open {
            if !fin_by_close {
                destination
                    .stream
                    .shutdown(Shutdown::Write)
                    .map_err(PumpError::Write)?;
            }
            self.flow = Flow::Done;
            moved = true;
        }
        Ok(moved)
    }

    pub(super) fn release(&mut self, pool: &mut RingPool, metrics: &Metrics) {
        if let Some(mut ring) = self.ring.take() {
            metrics.buffered_bytes.sub(ring.len() as u64);
            metrics.rings_in_use.sub(1);
            ring.clear();
            self.preamble = 0;
            pool.give_back(ring);
        }
    }
}
