//! A direction's bytes through a kernel pipe: socket → pipe → socket with
//! `splice(2)`, never copied through user space. The same rules as the
//! ring's, with a higher mark ([`SPLICED_BUFFER_FACTOR`] times the ring's,
//! in kernel memory): high-water counts the pipe's bytes, a splice of 0 from the
//! source is its FIN, a failed write breaks the pipe; what differs is how
//! readiness is told (see [`Direction::read_waits`]).

use std::io::{self, ErrorKind};
use std::os::fd::AsFd;

use log::debug;

use super::direction::{Buffer, Context, Direction, Flow, Mode, PumpError};
use super::endpoint::Endpoint;
use super::Settings;
#[cfg(doc)]
use super::SPLICED_BUFFER_FACTOR;

impl Direction {
    /// One splice from the source into the kernel pipe. Returns whether
    /// anything moved or changed.
    pub(super) fn splice_in(
        &mut self,
        source: &mut Endpoint,
        settings: &Settings,
        ctx: &mut Context<'_>,
    ) -> Result<bool, PumpError> {
        if let Buffer::Ring(_) = self.buffer {
            if self.buffer.len() > 0 {
                // Bytes read before splicing began go first.
                self.read_waits = true;
                return Ok(false);
            }
            self.return_if_empty(ctx);
        }
        let high_water = settings.spliced_high_water();
        if let Buffer::Kernel(None) = self.buffer {
            match ctx.kernel_pipes.take(high_water) {
                Ok(lent) if ctx.kernel_pipes.capacity(&lent) < settings.buffer_size => {
                    // Past the user's pipe allowance (fs.pipe-user-pages-soft)
                    // the kernel makes two-page pipes: the ring moves more
                    // per call than such a pipe.
                    debug!("the kernel gave a kernel pipe smaller than the ring; copying for now");
                    ctx.kernel_pipes.give_back(lent);
                    self.mode = Mode::Watching { full_reads: 0 };
                    return Ok(true);
                }
                Ok(lent) => {
                    ctx.metrics.kernel_pipes_in_use.add(1);
                    self.buffer = Buffer::Kernel(Some(lent));
                }
                Err(e) => {
                    // Out of descriptors or pipe memory: copy, and splice
                    // again once the direction has streamed a while more.
                    debug!("cannot make a kernel pipe ({e}); copying for now");
                    self.mode = Mode::Watching { full_reads: 0 };
                    return Ok(true);
                }
            }
        }
        let Buffer::Kernel(Some(lent)) = &mut self.buffer else {
            return Ok(false);
        };
        let room = ctx.kernel_pipes.room(lent, high_water);
        if room == 0 {
            self.paused = true;
            return Ok(true);
        }
        // A rate limit's allowance bounds the splice's length, as it does
        // a read's: a limited direction keeps splicing.
        match ctx
            .kernel_pipes
            .fill(lent, source.stream.as_fd(), room.min(ctx.rate_cap))
        {
            Ok(0) => {
                self.flow = Flow::Flushing;
                Ok(true)
            }
            Ok(n) => {
                // Unlike a read, a short splice does not say the socket is
                // drained: the pipe may have run out of slots first. Only
                // `WouldBlock` tells.
                ctx.budget = ctx.budget.saturating_sub(n);
                ctx.rate_cap = ctx.rate_cap.saturating_sub(n);
                ctx.metrics.buffered_bytes.add(n as u64);
                ctx.metrics.note_direction_fill(lent.len());
                if ctx.kernel_pipes.room(lent, high_water) == 0 {
                    self.paused = true;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if lent.is_empty() {
                    source.readable = false;
                } else {
                    self.read_waits = true;
                }
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) if cannot_splice(&e) => {
                debug!("the source cannot splice ({e}); copying this direction");
                self.copy_from_now_on(settings, ctx)
                    .map_err(PumpError::Read)?;
                Ok(true)
            }
            Err(e) => Err(PumpError::Read(e)),
        }
    }

    /// One splice from the kernel pipe to the destination.
    pub(super) fn splice_out(
        &mut self,
        destination: &mut Endpoint,
        settings: &Settings,
        ctx: &mut Context<'_>,
    ) -> Result<bool, PumpError> {
        let Buffer::Kernel(Some(lent)) = &mut self.buffer else {
            return Ok(false);
        };
        match ctx.kernel_pipes.drain(lent, destination.stream.as_fd()) {
            Ok(0) => Err(PumpError::Write(ErrorKind::WriteZero.into())),
            Ok(n) => {
                self.forwarded += n as u64;
                ctx.metrics.spliced_bytes_total.add(n as u64);
                ctx.metrics.buffered_bytes.sub(n as u64);
                // A short splice need not mean the socket's buffer is full,
                // so no edge is assumed: the next splice says `WouldBlock`
                // if it is.
                self.read_waits = false;
                if self.paused && lent.len() <= settings.spliced_low_water() {
                    self.paused = false;
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                destination.writable = false;
                Ok(false)
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(e) if cannot_splice(&e) => {
                debug!("the destination cannot splice ({e}); copying this direction");
                self.copy_from_now_on(settings, ctx)
                    .map_err(PumpError::Write)?;
                Ok(true)
            }
            Err(e) => Err(PumpError::Write(e)),
        }
    }

    /// Gives up splicing for good: what the kernel pipe holds moves into a
    /// ring, to be written from there.
    fn copy_from_now_on(&mut self, settings: &Settings, ctx: &mut Context<'_>) -> io::Result<()> {
        self.mode = Mode::Copy;
        self.read_waits = false;
        let Buffer::Kernel(Some(lent)) = &mut self.buffer else {
            return Ok(());
        };
        if lent.is_empty() {
            self.return_if_empty(ctx);
            return Ok(());
        }
        // A kernel pipe may hold more than a ring: the one that takes its
        // bytes is as large as they need, once.
        let mut ring = ctx.pool.take(settings.buffer_size.max(lent.len()));
        ctx.metrics.rings_in_use.add(1);
        let moved = ctx.kernel_pipes.move_into(lent, &mut ring);
        if let Buffer::Kernel(Some(lent)) = std::mem::replace(&mut self.buffer, Buffer::Ring(ring))
        {
            // Nothing is left unless the move failed, and then it is lost.
            ctx.metrics.buffered_bytes.sub(lent.len() as u64);
            ctx.metrics.kernel_pipes_in_use.sub(1);
            ctx.kernel_pipes.give_back(lent);
        }
        moved
    }
}

/// The errors that say a socket cannot be spliced (a socket type or
/// protocol without splice support), rather than that it failed.
fn cannot_splice(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}
