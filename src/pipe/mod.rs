//! One client connection joined to one target connection.
//!
//! A pipe is two [`Direction`]s (client → target and target → client), each
//! a three-state machine in the manner of tokio's `copy_bidirectional`, over
//! two [`Endpoint`]s that keep apart what the OS said is ready from what we
//! have registered interest in (as sozu's pipe does).
//!
//! # Close rules
//!
//! Every way a pipe ends is decided here, and only here:
//!
//! | what happens                              | what tcpipe does                                              |
//! |-------------------------------------------|---------------------------------------------------------------|
//! | one side sends FIN (read returns 0)       | stop reading it; flush what is buffered toward the other side, then `shutdown(Write)` there. The opposite direction keeps flowing. |
//! | both directions have sent and flushed FIN | free the pipe: close both sockets (each has nothing unread, so close sends no RST). The second FIN is sent by that close rather than by a `shutdown` first: the same bytes on the wire, one syscall fewer |
//! | a read or write fails (RST, EPIPE, ...)   | abort: RST both sides (`SO_LINGER` 0, then close), so each peer sees a reset, not a clean end |
//! | an error is reported on an idle side      | the same abort, found through `SO_ERROR`                       |
//! | a write returns 0                         | treated as an error, never retried                             |
//! | the target cannot be reached              | fail over to the next target (the client's bytes stay in the ring); once every attempt has failed, abort the client with an RST, as a direct connection would have been refused |
//! | idle, half-close or drain timeout         | abort both sides: a timeout is not a clean end of stream       |
//!
//! A hang-up or read-closed hint never ends a direction by itself: the
//! direction reads until `read` returns 0 or `WouldBlock`, so the peer's last
//! bytes are never lost.

mod direction;
mod endpoint;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::debug;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::metrics::Metrics;
use crate::net;
use crate::ring::RingPool;
use crate::upstream::Tried;
use direction::{Direction, Flow};
use endpoint::Endpoint;

pub(crate) use direction::Context;

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

/// Why a pipe must be aborted.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The target could not be reached.
    Connect(io::Error),
    /// A read, write or shutdown on one side failed.
    Io(Side, io::Error),
    /// Registering interest with poll failed.
    Poll(io::Error),
}

/// What the reactor must do with a pipe after driving it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Waiting for the OS.
    Waiting,
    /// The per-turn budget ran out with bytes still ready to move: serve
    /// this pipe again before blocking in poll.
    Unfinished,
    /// Both directions ended with FIN and every byte was delivered.
    Finished,
    Failed(Failure),
}

/// Which timeout, if any, has run out for a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Connect,
    Idle,
    HalfClose,
}

/// The timeouts that apply to every pipe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Option<Duration>,
    pub(crate) idle: Option<Duration>,
    pub(crate) half_close: Option<Duration>,
}

pub(crate) struct Pipe {
    /// Unique for the life of the process: the id in logs, and the generation
    /// that tells a stale timer or ready-list entry from this pipe.
    pub(crate) id: u64,
    /// The client's address, for balancing by source and for logs.
    pub(crate) peer: SocketAddr,
    client: Endpoint,
    target: Endpoint,
    connected: bool,
    /// Index of the target in the upstream set.
    pub(crate) target_index: usize,
    /// Targets whose connect failed for this pipe.
    pub(crate) tried: Tried,
    /// Connects started for this pipe, the current one included.
    pub(crate) attempts: usize,
    toward_target: Direction,
    toward_client: Direction,
    opened_at: Instant,
    connect_started: Instant,
    last_activity: Instant,
    /// The earliest timer this pipe has in the reactor's heap.
    pub(crate) timer_due: Option<Instant>,
    /// On the reactor's ready list.
    pub(crate) queued: bool,
    /// Marked for freeing at the end of the event batch; set once.
    pub(crate) closing: Option<Closing>,
}

/// How a pipe is closed when it is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    Clean,
    Abort,
}

impl Pipe {
    /// A pipe from an accepted client to target `target_index`: a stream
    /// still connecting, or (from the warm pool) one `connected` already.
    pub(crate) fn new(
        id: u64,
        (client, peer): (TcpStream, SocketAddr),
        (target, target_index): (TcpStream, usize),
        connected: bool,
        now: Instant,
    ) -> Pipe {
        Pipe {
            id,
            peer,
            client: Endpoint::new(client, true),
            target: Endpoint::new(target, connected),
            connected,
            target_index,
            tried: Tried::default(),
            attempts: 0,
            toward_target: Direction::new(),
            toward_client: Direction::new(),
            opened_at: now,
            connect_started: now,
            last_activity: now,
            timer_due: None,
            queued: false,
            closing: None,
        }
    }

    /// After a failed connect, moves to another target (the reactor keeps
    /// `tried` and `attempts`). What the client has sent so far is still in
    /// the ring, none of it delivered, so the new target gets every byte
    /// exactly once.
    pub(crate) fn retarget(
        &mut self,
        target: TcpStream,
        target_index: usize,
        connected: bool,
        now: Instant,
    ) {
        debug_assert!(!self.connected);
        self.target = Endpoint::new(target, connected);
        self.connected = connected;
        self.target_index = target_index;
        self.connect_started = now;
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    pub(crate) fn note_event(&mut self, side: Side, event: &Event) {
        match side {
            Side::Client => self.client.note(event),
            Side::Target => self.target.note(event),
        }
    }

    /// Moves every byte that can move now, within `budget` bytes read.
    pub(crate) fn drive(&mut self, ctx: &mut Context<'_>, budget: usize) -> Outcome {
        if !self.connected {
            match self.finish_connect() {
                Ok(true) => debug!("pipe {}: connected to target", self.id),
                Ok(false) => {}
                Err(e) => return Outcome::Failed(Failure::Connect(e)),
            }
        }
        if let Err(failure) = self.check_errors() {
            return Outcome::Failed(failure);
        }

        let mut budget = budget;
        let forwarded_before = (self.toward_target.forwarded, self.toward_client.forwarded);
        let pumped = self.pump_both(ctx, &mut budget);
        let metrics = ctx.metrics;
        metrics
            .bytes_toward_target_total
            .add(self.toward_target.forwarded - forwarded_before.0);
        metrics
            .bytes_toward_client_total
            .add(self.toward_client.forwarded - forwarded_before.1);
        match pumped {
            Ok(true) => self.last_activity = ctx.now,
            Ok(false) => {}
            Err(failure) => return Outcome::Failed(failure),
        }

        if self.toward_target.flow == Flow::Done && self.toward_client.flow == Flow::Done {
            Outcome::Finished
        } else if self.toward_target.wants_to_read(&self.client)
            || (self.connected && self.toward_client.wants_to_read(&self.target))
            || self.toward_target.can_write(&self.target, self.connected)
            || self.toward_client.can_write(&self.client, true)
        {
            Outcome::Unfinished
        } else {
            Outcome::Waiting
        }
    }

    /// Pumps client → target, then (once connected) target → client.
    fn pump_both(&mut self, ctx: &mut Context<'_>, budget: &mut usize) -> Result<bool, Failure> {
        let moved_toward_target = self
            .toward_target
            .pump(
                &mut self.client,
                &mut self.target,
                self.connected,
                self.toward_client.flow == Flow::Done,
                ctx,
                budget,
            )
            .map_err(|e| e.blame(Side::Client, Side::Target))?;
        if !self.connected {
            return Ok(moved_toward_target);
        }
        let moved_toward_client = self
            .toward_client
            .pump(
                &mut self.target,
                &mut self.client,
                true,
                self.toward_target.flow == Flow::Done,
                ctx,
                budget,
            )
            .map_err(|e| e.blame(Side::Target, Side::Client))?;
        Ok(moved_toward_target || moved_toward_client)
    }

    fn finish_connect(&mut self) -> io::Result<bool> {
        if !self.target.writable && !self.target.error {
            return Ok(false);
        }
        self.target.error = false;
        self.connected = net::connect_outcome(&self.target.stream)?;
        if !self.connected {
            self.target.writable = false;
        }
        Ok(self.connected)
    }

    /// An error reported on a side we are not reading (its direction ended,
    /// or is paused) would otherwise go unnoticed until the next write.
    fn check_errors(&mut self) -> Result<(), Failure> {
        for (side, endpoint) in [
            (Side::Client, &mut self.client),
            (Side::Target, &mut self.target),
        ] {
            if endpoint.error {
                endpoint.error = false;
                match endpoint.stream.take_error() {
                    Ok(None) => {}
                    Ok(Some(e)) | Err(e) => return Err(Failure::Io(side, e)),
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
            !self.toward_target.paused,
            self.toward_client.has_pending_bytes() || self.client.has_writable_interest(),
        );
        let target_wants = interest(
            !self.toward_client.paused,
            !self.connected
                || self.toward_target.has_pending_bytes()
                || self.target.has_writable_interest(),
        );
        self.client
            .set_interest(registry, tokens[0], client_wants)?;
        self.target.set_interest(registry, tokens[1], target_wants)
    }

    /// The next instant at which a timeout could run out, if any applies.
    pub(crate) fn next_deadline(&self, timeouts: &Timeouts) -> Option<Instant> {
        if !self.connected {
            return timeouts.connect.map(|t| self.connect_started + t);
        }
        let idle = timeouts.idle.map(|t| self.last_activity + t);
        let half_close = if self.is_half_closed() {
            timeouts.half_close.map(|t| self.last_activity + t)
        } else {
            None
        };
        match (idle, half_close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn expired(&self, timeouts: &Timeouts, now: Instant) -> Option<Expiry> {
        let ran_out =
            |start: Instant, limit: Option<Duration>| limit.is_some_and(|t| now >= start + t);
        if !self.connected {
            return ran_out(self.connect_started, timeouts.connect).then_some(Expiry::Connect);
        }
        if self.is_half_closed() && ran_out(self.last_activity, timeouts.half_close) {
            return Some(Expiry::HalfClose);
        }
        ran_out(self.last_activity, timeouts.idle).then_some(Expiry::Idle)
    }

    fn is_half_closed(&self) -> bool {
        self.toward_target.flow != Flow::Open || self.toward_client.flow != Flow::Open
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

    /// Returns the rings to the pool and closes both sockets; with
    /// [`Closing::Abort`] each side gets an RST.
    pub(crate) fn close(mut self, how: Closing, pool: &mut RingPool, metrics: &Metrics) {
        self.toward_target.release(pool, metrics);
        self.toward_client.release(pool, metrics);
        if how == Closing::Abort {
            self.client.abort();
            self.target.abort();
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
