//! One client connection joined to one target connection.
//!
//! A pipe goes through explicit [stages](Stage): `Connecting` to a target
//! (failing over to the next while attempts remain), then `Open`. In both,
//! two [`Direction`]s (client → target and target → client), each a
//! three-state machine in the manner of tokio's `copy_bidirectional`, move
//! bytes between two [`Endpoint`]s that keep apart what the OS said is
//! ready from what we have registered interest in (as sozu's pipe does).
//! While connecting, the client's first bytes wait in the toward-target
//! ring, so a failover delivers each of them exactly once.
//!
//! The pipe decides how it ends and says so as a [`Verdict`]; the reactor
//! carries it out.
//!
//! How a pipe ends is decided in [`close`]: the close rules, in one place.
//! What a drive crossed (connected, first reply, a ring filled or
//! drained) is reported beside its verdict as [`Crossed`], for the
//! reactor's observers.

mod close;
mod connect;
mod crossed;
mod deadlines;
mod direction;
mod endpoint;
mod limit;
mod parcel;
mod splice;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use mio::event::Event;
use mio::{Interest, Registry, Token};

use crate::arena::RouteId;
use crate::config::Splice;
use crate::dial::{Dial, Dialed};
use crate::hooks::Direction as Way;
use crate::kernel_pipe::KernelPipePool;
use crate::metrics::Metrics;
use crate::ring::RingPool;
use connect::{finish_connect, stage_for, Stage, Upstream};
use direction::{Direction, Flow};
use endpoint::Endpoint;

pub(crate) use close::{Closing, Reason, Refusal, Verdict};
pub(crate) use crossed::Crossed;
pub(crate) use direction::Context;
use limit::Limits;
pub(crate) use limit::{Rates, RouteShare};
pub(crate) use parcel::{check as check_record, settings_from, Lenders, Names, Placed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client = 0,
    Target = 1,
}

impl Side {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Target => "target",
        }
    }
}

/// A pipe's route, and what it says about its pipes. A pipe keeps the
/// settings it opened with: a reload changes them for new pipes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The route it came in on, whatever a reload does since; `None` for a
    /// pipe the embedder attached.
    pub(crate) route: Option<RouteId>,
    /// Ring capacity per direction: the high-water mark (a spliced
    /// direction's is [`SPLICED_BUFFER_FACTOR`] times it).
    pub(crate) buffer_size: usize,
    pub(crate) low_water: usize,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) half_close_timeout: Option<Duration>,
    /// TCP keepalive idle time of its upstream socket, set once the pipe
    /// has lived [`keepalive_delay`]; `None`: none (the client's socket
    /// has it from the listener).
    pub(crate) keepalive: Option<Duration>,
    /// When its directions move bytes through kernel pipes (`--splice`).
    pub(crate) splice: Splice,
    /// Its traffic limits, if any.
    pub(crate) rates: Rates,
}

/// How many times its ring's bytes a spliced direction may hold in its
/// kernel pipe. Each splice moves at most what the pipe has room for, and a
/// lone stream through a 64 KiB high-water spent its time waking to move
/// 64 KiB at a time: 4x gave one iperf3 stream 16% more upload and 5% more
/// download (README, splice(2)). Kernel memory, lent only while the
/// direction streams; HAProxy's default pipe is 4x its buffer too.
pub(crate) const SPLICED_BUFFER_FACTOR: usize = 4;

impl Settings {
    /// The high-water mark of a spliced direction.
    pub(crate) fn spliced_high_water(&self) -> usize {
        self.buffer_size.saturating_mul(SPLICED_BUFFER_FACTOR)
    }

    /// Where a spliced direction paused at high-water resumes reading.
    pub(crate) fn spliced_low_water(&self) -> usize {
        self.low_water.saturating_mul(SPLICED_BUFFER_FACTOR)
    }
}

pub(crate) struct Pipe {
    /// Unique for the life of the process: the id in logs, and the generation
    /// that tells a stale timer or ready-list entry from this pipe.
    pub(crate) id: u64,
    settings: Arc<Settings>,
    /// The client's address, for balancing by source and for logs.
    pub(crate) peer: SocketAddr,
    client: Endpoint,
    target: Upstream,
    stage: Stage,
    toward_target: Direction,
    toward_client: Direction,
    opened_at: Instant,
    last_activity: Instant,
    /// The earliest timer this pipe has in the reactor's heap.
    pub(crate) timer_due: Option<Instant>,
    /// On the reactor's ready list.
    pub(crate) queued: bool,
    /// Marked for freeing at the end of the event batch (the reactor keeps
    /// the reason); set once.
    pub(crate) closing: bool,
    /// Which side sent FIN first, for the access log.
    first_fin: Option<Side>,
    /// The upstream socket's keepalive is still to be set.
    keepalive_pending: bool,
}

impl Pipe {
    /// A pipe from an accepted client to a dialed target: connecting, or
    /// open at once with a connection from the warm pool.
    pub(crate) fn new(
        id: u64,
        settings: Arc<Settings>,
        (client, peer): (mio::net::TcpStream, SocketAddr),
        (dialed, dial): (Dialed, Dial),
        now: Instant,
    ) -> Pipe {
        let stage = stage_for(&dialed, dial, &settings.rates, now);
        let connected = dialed.connected;
        let splice = settings.splice;
        let mut pipe = Pipe {
            id,
            settings,
            peer,
            client: Endpoint::new(client, true),
            target: Upstream::new(dialed),
            stage,
            toward_target: Direction::new(splice),
            toward_client: Direction::new(splice),
            opened_at: now,
            last_activity: now,
            timer_due: None,
            queued: false,
            closing: false,
            first_fin: None,
            keepalive_pending: false,
        };
        pipe.keepalive_pending = pipe.wants_keepalive(connected);
        pipe
    }

    /// Sends `header` (a PROXY protocol header) to the target ahead of
    /// every client byte. It waits at the front of the ring toward the
    /// target, so it goes first to whichever target the pipe ends up
    /// connected to (after a failover too, since nothing is written before
    /// a connect succeeds), and to a pooled connection at once; it is not
    /// counted as bytes delivered.
    pub(crate) fn send_proxy_header(
        &mut self,
        header: &[u8],
        pool: &mut RingPool,
        metrics: &Metrics,
    ) {
        self.toward_target
            .preload(header, true, self.settings.buffer_size, pool, metrics);
    }

    /// Puts client bytes the embedder read itself ahead of everything the
    /// client sends from now on: delivered to the target first, exactly
    /// once, and counted as the client's. They must fit in the ring.
    pub(crate) fn send_early_bytes(
        &mut self,
        bytes: &[u8],
        pool: &mut RingPool,
        metrics: &Metrics,
    ) {
        self.toward_target
            .preload(bytes, false, self.settings.buffer_size, pool, metrics);
    }

    pub(crate) fn route(&self) -> Option<RouteId> {
        self.settings.route
    }

    /// Which side sent the first FIN, if any has.
    pub(crate) fn first_fin(&self) -> Option<Side> {
        self.first_fin
    }

    /// Stops reading the source of `way`, as the embedder asked; what is
    /// buffered is still delivered, and the kernel's window pushes back on
    /// the sender. Timeouts of an open pipe wait while either way is held.
    pub(crate) fn hold(&mut self, way: Way) {
        self.direction_mut(way).held = true;
    }

    /// Reads the source of `way` again; the idle time starts over.
    pub(crate) fn release_hold(&mut self, way: Way, now: Instant) {
        self.direction_mut(way).held = false;
        self.last_activity = now;
    }

    /// Either way is held.
    pub(crate) fn is_held(&self) -> bool {
        self.toward_target.held | self.toward_client.held
    }

    /// The embedder holds `way`.
    pub(crate) fn holds(&self, way: Way) -> bool {
        self.direction(way).held
    }

    fn direction_mut(&mut self, way: Way) -> &mut Direction {
        match way {
            Way::ClientToTarget => &mut self.toward_target,
            Way::TargetToClient => &mut self.toward_client,
        }
    }

    /// Bytes waiting in the ring or kernel pipe of `way`.
    pub(crate) fn buffered(&self, way: Way) -> usize {
        self.direction(way).buffered()
    }

    fn direction(&self, way: Way) -> &Direction {
        match way {
            Way::ClientToTarget => &self.toward_target,
            Way::TargetToClient => &self.toward_client,
        }
    }

    pub(crate) fn is_half_closed(&self) -> bool {
        self.toward_target.flow != Flow::Open || self.toward_client.flow != Flow::Open
    }

    pub(crate) fn note_event(&mut self, side: Side, event: &Event) {
        let reader = match side {
            Side::Client => {
                self.client.note(event);
                &mut self.toward_target
            }
            Side::Target => {
                self.target.endpoint.note(event);
                &mut self.toward_client
            }
        };
        // New bytes arrived since a splice said `WouldBlock`: that one meant
        // "drained", so the next may move some. One retry per edge.
        if event.is_readable() {
            reader.read_waits = false;
        }
    }

    /// Moves every byte that can move now, within the turn's budget; says
    /// what to do next, and notes in `crossed` (fresh for each drive) what
    /// the drive crossed on the way.
    pub(crate) fn drive(&mut self, ctx: &mut Context<'_>, crossed: &mut Crossed) -> Verdict {
        if let Stage::Connecting { since, .. } = self.stage {
            match finish_connect(&mut self.target.endpoint) {
                Ok(true) => {
                    debug!("pipe {}: connected to target", self.id);
                    // A fresh clock, not the turn's: every pipe that
                    // connects in one turn would show the same time.
                    let connect_time = Some(Instant::now().saturating_duration_since(since));
                    self.stage = Stage::Open {
                        connect_time,
                        limits: Limits::of(&self.settings.rates, ctx.now),
                    };
                    crossed.connected = true;
                }
                Ok(false) => {}
                Err(e) => return Verdict::Redial(e),
            }
        }
        if let Err((side, e)) = self.check_errors() {
            return Verdict::Close(Reason::Broken(side, e));
        }

        let delivered_before = [self.toward_target.forwarded, self.toward_client.forwarded];
        let full_before = [self.toward_target.paused, self.toward_client.paused];
        let pumped = self.pump_both(ctx);
        crossed.note_moves(
            delivered_before,
            [self.toward_target.forwarded, self.toward_client.forwarded],
            full_before,
            [self.toward_target.paused, self.toward_client.paused],
        );
        let metrics = ctx.metrics;
        metrics.bytes_toward_target_total.add(crossed.delivered[0]);
        metrics.bytes_toward_client_total.add(crossed.delivered[1]);
        match pumped {
            Ok(true) => {
                self.last_activity = ctx.now;
                if self.first_fin.is_none() {
                    self.note_first_fin();
                }
            }
            Ok(false) => {}
            Err((side, e)) => return Verdict::Close(Reason::Broken(side, e)),
        }

        let open = self.is_open();
        let target = &self.target.endpoint;
        if self.toward_target.flow == Flow::Done && self.toward_client.flow == Flow::Done {
            Verdict::Close(Reason::Finished)
        } else if self.toward_target.wants_to_read(&self.client)
            || (open && self.toward_client.wants_to_read(target))
            || self.toward_target.can_write(target, open)
            || self.toward_client.can_write(&self.client, true)
        {
            Verdict::Again
        } else {
            Verdict::Wait
        }
    }

    /// A FIN ends a read that moved nothing, which still counts as a move.
    #[cold]
    fn note_first_fin(&mut self) {
        if self.toward_target.flow != Flow::Open {
            self.first_fin = Some(Side::Client);
        } else if self.toward_client.flow != Flow::Open {
            self.first_fin = Some(Side::Target);
        }
    }

    /// Pumps client → target, then (once open) target → client.
    fn pump_both(&mut self, ctx: &mut Context<'_>) -> Result<bool, (Side, io::Error)> {
        if self.stage.limits().is_some() {
            return self.pump_both_limited(ctx);
        }
        let settings = &*self.settings;
        let open = self.is_open();
        let target = &mut self.target.endpoint;
        let moved_toward_target = self
            .toward_target
            .pump(
                &mut self.client,
                target,
                open,
                self.toward_client.flow == Flow::Done,
                settings,
                ctx,
            )
            .map_err(|e| e.blame(Side::Client, Side::Target))?;
        if !open {
            return Ok(moved_toward_target);
        }
        let moved_toward_client = self
            .toward_client
            .pump(
                target,
                &mut self.client,
                true,
                self.toward_target.flow == Flow::Done,
                settings,
                ctx,
            )
            .map_err(|e| e.blame(Side::Target, Side::Client))?;
        Ok(moved_toward_target || moved_toward_client)
    }

    /// An error reported on a side we are not reading (its direction ended,
    /// or is paused) would otherwise go unnoticed until the next write.
    fn check_errors(&mut self) -> Result<(), (Side, io::Error)> {
        for (side, endpoint) in [
            (Side::Client, &mut self.client),
            (Side::Target, &mut self.target.endpoint),
        ] {
            if endpoint.error {
                endpoint.error = false;
                match endpoint.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => return Err((side, e)),
                }
            }
        }
        Ok(())
    }

    /// Brings both registrations in line with what the pipe wants now. No
    /// syscall is made for a side whose interest did not change.
    ///
    /// READABLE goes only while the direction reading that side is paused at
    /// high-water; it stays after the side's FIN, so that a later reset on it
    /// is heard at once. WRITABLE is added when bytes wait for a side (or
    /// while connecting) and then kept: an edge-triggered EPOLLOUT only fires
    /// once a write has found the send buffer full, so keeping it costs no
    /// wakeups, while dropping it would cost an `epoll_ctl` each time.
    pub(crate) fn update_interest(
        &mut self,
        registry: &Registry,
        tokens: [Token; 2],
    ) -> io::Result<()> {
        let client_wants = interest(
            self.toward_target.reads(),
            self.toward_client.has_pending_bytes() || self.client.has_writable_interest(),
        );
        let target_wants = interest(
            self.toward_client.reads(),
            !self.is_open()
                || self.toward_target.has_pending_bytes()
                || self.target.endpoint.has_writable_interest(),
        );
        self.client
            .set_interest(registry, tokens[0], client_wants)?;
        self.target
            .endpoint
            .set_interest(registry, tokens[1], target_wants)
    }

    pub(crate) fn bytes_toward_target(&self) -> u64 {
        self.toward_target.forwarded
    }

    pub(crate) fn bytes_toward_client(&self) -> u64 {
        self.toward_client.forwarded
    }

    pub(crate) fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.opened_at)
    }

    /// Returns the rings and kernel pipes to their pools and closes both
    /// sockets as the close rules say for `how` it ended.
    pub(crate) fn close(
        mut self,
        how: Closing,
        pool: &mut RingPool,
        kernel_pipes: &mut KernelPipePool,
        metrics: &Metrics,
    ) {
        self.toward_target.release(pool, kernel_pipes, metrics);
        self.toward_client.release(pool, kernel_pipes, metrics);
        if how == Closing::Abort {
            self.client.abort();
            self.target.endpoint.abort();
        }
        // Dropping the streams closes the sockets, which also removes them
        // from the poll set.
    }
}

fn interest(read: bool, write: bool) -> Option<Interest> {
    match (read, write) {
        (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
        (true, false) => Some(Interest::READABLE),
        (false, true) => Some(Interest::WRITABLE),
        (false, false) => None,
    }
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    /// Idle pipes cost memory in proportion to this: routes, stages and
    /// target identities fit in the bytes a pipe had before them.
    #[test]
    fn a_pipe_stays_within_280_bytes() {
        assert!(
            std::mem::size_of::<super::Pipe>() <= 280,
            "{}",
            std::mem::size_of::<super::Pipe>()
        );
    }
}
