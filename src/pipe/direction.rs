//! One direction of a pipe: a ring (or, spliced, a kernel pipe) between a
//! source and a destination, and the three states it goes through (open,
//! flushing after the source's FIN, done once the destination has its FIN).

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::time::Instant;

use super::endpoint::Endpoint;
use super::{Settings, Side};
use crate::kernel_pipe::{KernelPipePool, Lent};
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

/// One direction of a pipe: its bytes in flight and its flow-control state.
pub(super) struct Direction {
    pub(super) buffer: Buffer,
    pub(super) flow: Flow,
    /// The bytes waiting reached high-water and have not yet drained to
    /// low-water.
    pub(super) paused: bool,
    /// The embedder paused the pipe: the source is not read, whatever the
    /// ring holds.
    pub(super) held: bool,
    /// The source may still hold bytes, but its next read waits until the
    /// destination has taken some of those waiting. A splice that says
    /// `WouldBlock` while the kernel pipe holds bytes may mean the pipe ran
    /// out of slots (one per piece of a segment, often well before its size
    /// in bytes), not that the socket is drained: the source stays readable (losing that
    /// edge stalls the tail: sozu#1323) but is not retried before anything
    /// drained (which spins: h2o#3075) or a new readable edge came (then
    /// the `WouldBlock` meant "drained", and waiting for the destination
    /// would hold the direction below high-water).
    pub(super) read_waits: bool,
    /// Bytes at the front of the ring that are not the source's (a PROXY
    /// header for the target) and are not counted as delivered. A header
    /// is at most 107 bytes; the field sits in padding.
    pub(super) preamble: u8,
    /// What `preamble` was before any of it was written: a pipe whose
    /// target has had no byte yet may still be pointed elsewhere.
    pub(super) preamble_len: u8,
    pub(super) mode: Mode,
    /// Bytes of the source delivered to the destination.
    pub(super) forwarded: u64,
}

/// Where a direction's bytes in flight wait: a ring (copying) or a kernel
/// pipe (splicing), each lent by its pool only while it holds bytes. One
/// at a time, so the bytes keep their order whichever way they go; and no
/// bigger than the ring alone was.
pub(super) enum Buffer {
    Ring(Ring),
    /// A kernel pipe, or `None`: nothing in flight.
    Kernel(Option<Lent>),
}

impl Buffer {
    pub(super) const IDLE: Buffer = Buffer::Kernel(None);

    pub(super) fn len(&self) -> usize {
        match self {
            Buffer::Ring(ring) => ring.len(),
            Buffer::Kernel(lent) => lent.as_ref().map_or(0, Lent::len),
        }
    }
}

/// How a direction moves its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Copied through the ring: `splice never`, or the sockets cannot splice.
    Copy,
    /// `splice auto`, still copying: how many reads in a row filled the ring.
    Watching { full_reads: u8 },
    /// Spliced through a kernel pipe: `splice always`, or `auto` once the
    /// direction streamed.
    Splice,
}

impl Mode {
    fn of(splice: crate::config::Splice) -> Mode {
        match splice {
            crate::config::Splice::Never => Mode::Copy,
            crate::config::Splice::Auto => Mode::Watching { full_reads: 0 },
            crate::config::Splice::Always => Mode::Splice,
        }
    }
}

/// Reads in a row that filled the ring, after which `auto` splices. One
/// full read happens to any reply longer than the ring; two in a row mean
/// the source keeps more coming than the ring holds (with the default 64
/// KiB ring, a transfer past 128 KiB, about where splicing starts to pay).
/// HAProxy's `splice-auto` waits for its streamer flag the same way.
const FULL_READS_TO_SPLICE: u8 = 2;

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
    pub(crate) kernel_pipes: &'a mut KernelPipePool,
    pub(crate) metrics: &'a Metrics,
    pub(crate) now: Instant,
    /// Bytes the pipe may still read this turn before others get theirs.
    pub(crate) budget: usize,
    /// Bytes the direction being pumped may still read under its rate
    /// limit; `usize::MAX` for an unlimited one. Unlike `budget`, a read
    /// never goes past it.
    pub(crate) rate_cap: usize,
}

impl Direction {
    pub(super) fn new(splice: crate::config::Splice) -> Direction {
        Direction {
            buffer: Buffer::IDLE,
            flow: Flow::Open,
            paused: false,
            held: false,
            read_waits: false,
            preamble: 0,
            preamble_len: 0,
            mode: Mode::of(splice),
            forwarded: 0,
        }
    }

    /// Puts `bytes` ahead of anything the source sends. Called on a new
    /// direction only, whose ring is fresh and holds them whole (the config
    /// keeps rings of a route that sends a header large enough; an attach
    /// checks its early bytes fit). They wait in the ring even when the
    /// direction splices: a splice waits for the ring to drain first, so
    /// they still go first. A `preamble` (a PROXY header) is not the
    /// source's and is not counted as delivered; anything else is.
    pub(super) fn preload(
        &mut self,
        bytes: &[u8],
        preamble: bool,
        buffer_size: usize,
        pool: &mut RingPool,
        metrics: &Metrics,
    ) {
        debug_assert!(self.buffer.len() == 0 && bytes.len() <= buffer_size);
        debug_assert!(!preamble || bytes.len() <= usize::from(u8::MAX));
        if !matches!(self.buffer, Buffer::Ring(_)) {
            metrics.rings_in_use.add(1);
            self.buffer = Buffer::Ring(pool.take(buffer_size));
        }
        let Buffer::Ring(ring) = &mut self.buffer else {
            return;
        };
        // Reading from a slice cannot fail.
        let n = ring.read_from(bytes).unwrap_or(0);
        if preamble {
            self.preamble = u8::try_from(n).unwrap_or(u8::MAX);
            self.preamble_len = self.preamble;
        }
        metrics.buffered_bytes.add(n as u64);
        if ring.is_full() {
            self.paused = true;
        }
    }

    /// Nothing of this direction has reached its destination: no byte of
    /// the source, none of a preamble, no FIN.
    pub(super) fn wrote_nothing(&self) -> bool {
        self.forwarded == 0 && self.preamble == self.preamble_len && self.flow != Flow::Done
    }

    pub(super) fn has_pending_bytes(&self) -> bool {
        self.buffer.len() > 0
    }

    /// Whether its source may be read now: not at high-water, not held.
    pub(super) fn reads(&self) -> bool {
        // One branch for both: this is tested on every read.
        !(self.paused | self.held)
    }

    pub(super) fn wants_to_read(&self, source: &Endpoint) -> bool {
        self.flow == Flow::Open
            && source.readable
            && !(self.paused | self.held | source.limited | self.read_waits)
    }

    /// Bytes waiting, in the ring or the kernel pipe.
    pub(super) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// `open`: the destination is established (the target side is not
    /// while its connect is under way).
    pub(super) fn can_write(&self, destination: &Endpoint, open: bool) -> bool {
        open && destination.writable && self.has_pending_bytes()
    }

    /// Moves bytes from `source` to `destination` until both would block,
    /// the direction is at high-water, or the turn's budget of bytes read
    /// is spent. Returns whether anything moved or changed state. Until the
    /// destination is `open`, bytes only gather.
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
            if self.wants_to_read(source) && ctx.budget > 0 && ctx.rate_cap > 0 {
                progressed = if self.mode == Mode::Splice {
                    self.splice_in(source, settings, ctx)?
                } else {
                    self.read_in(source, settings, ctx)?
                };
            }
            if self.can_write(destination, open) {
                let wrote = match self.buffer {
                    Buffer::Ring(_) => self.write_out(destination, settings, ctx)?,
                    Buffer::Kernel(_) => self.splice_out(destination, settings, ctx)?,
                };
                progressed |= wrote;
            }
            if !progressed {
                break;
            }
            moved = true;
        }
        self.return_if_empty(ctx);
        if self.flow == Flow::Flushing && matches!(self.buffer, Buffer::Kernel(None)) && open {
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

    /// One read into the ring. Returns whether anything moved or changed.
    fn read_in(
        &mut self,
        source: &mut Endpoint,
        settings: &Settings,
        ctx: &mut Context<'_>,
    ) -> Result<bool, PumpError> {
        if self.buffer.len() > 0 && !matches!(self.buffer, Buffer::Ring(_)) {
            // A kernel pipe's bytes go first.
            self.read_waits = true;
            return Ok(false);
        }
        if !matches!(self.buffer, Buffer::Ring(_)) {
            self.return_if_empty(ctx);
            ctx.metrics.rings_in_use.add(1);
            self.buffer = Buffer::Ring(ctx.pool.take(settings.buffer_size));
        }
        let Buffer::Ring(ring) = &mut self.buffer else {
            return Ok(false);
        };
        let free = ring.free();
        // A rate limit's allowance bounds the read; the unlimited path
        // reads as it always did.
        let (room, read) = if ctx.rate_cap >= free {
            (free, ring.read_from(&source.stream))
        } else {
            let cap = ctx.rate_cap;
            (cap, ring.read_at_most(&source.stream, cap))
        };
        match read {
            Ok(0) => {
                self.flow = Flow::Flushing;
                Ok(true)
            }
            Ok(n) => {
                ctx.budget = ctx.budget.saturating_sub(n);
                ctx.rate_cap = ctx.rate_cap.saturating_sub(n);
                ctx.metrics.buffered_bytes.add(n as u64);
                ctx.metrics.note_direction_fill(ring.len());
                // A short read emptied the socket: the next byte comes
                // with a new edge, so skip the read that would only say
                // WouldBlock. Not so once FIN was reported.
                if n < room && !source.read_closed {
                    source.readable = false;
                }
                let full = ring.is_full();
                if full {
                    self.paused = true;
                }
                if let Mode::Watching { full_reads } = &mut self.mode {
                    *full_reads = if full { *full_reads + 1 } else { 0 };
                    if *full_reads >= FULL_READS_TO_SPLICE {
                        self.mode = Mode::Splice;
                    }
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                source.readable = false;
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(PumpError::Read(e)),
        }
    }

    /// One write from the ring.
    fn write_out(
        &mut self,
        destination: &mut Endpoint,
        settings: &Settings,
        ctx: &mut Context<'_>,
    ) -> Result<bool, PumpError> {
        let Buffer::Ring(ring) = &mut self.buffer else {
            return Ok(false);
        };
        let pending = ring.len();
        match ring.write_to(&destination.stream) {
            Ok(0) => Err(PumpError::Write(ErrorKind::WriteZero.into())),
            Ok(n) => {
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
                self.read_waits = false;
                if self.paused && ring.len() <= settings.low_water {
                    self.paused = false;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                destination.writable = false;
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) => Err(PumpError::Write(e)),
        }
    }

    /// Gives back a ring or a kernel pipe that has drained, so that an idle
    /// direction holds neither.
    pub(super) fn return_if_empty(&mut self, ctx: &mut Context<'_>) {
        if self.buffer.len() > 0 {
            return;
        }
        match std::mem::replace(&mut self.buffer, Buffer::IDLE) {
            Buffer::Ring(ring) => {
                ctx.metrics.rings_in_use.sub(1);
                ctx.pool.give_back(ring);
            }
            Buffer::Kernel(Some(lent)) => {
                ctx.metrics.kernel_pipes_in_use.sub(1);
                ctx.kernel_pipes.give_back(lent);
            }
            Buffer::Kernel(None) => {}
        }
    }

    /// The pipe is freed: bytes still waiting are dropped, and a kernel
    /// pipe that holds any is closed by its pool rather than reused.
    pub(super) fn release(
        &mut self,
        pool: &mut RingPool,
        kernel_pipes: &mut KernelPipePool,
        metrics: &Metrics,
    ) {
        metrics.buffered_bytes.sub(self.buffer.len() as u64);
        match std::mem::replace(&mut self.buffer, Buffer::IDLE) {
            Buffer::Ring(mut ring) => {
                metrics.rings_in_use.sub(1);
                ring.clear();
                self.preamble = 0;
                pool.give_back(ring);
            }
            Buffer::Kernel(Some(lent)) => {
                metrics.kernel_pipes_in_use.sub(1);
                kernel_pipes.give_back(lent);
            }
            Buffer::Kernel(None) => {}
        }
    }
}
