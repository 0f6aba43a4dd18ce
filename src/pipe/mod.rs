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
//! # Close rules
//!
//! Every way a pipe ends is decided here, and only here ([`Reason::closing`]
//! maps each reason to how both sockets are closed):
//!
//! | what happens                              | what tcpipe does                                              |
//! |-------------------------------------------|---------------------------------------------------------------|
//! | one side sends FIN (read returns 0)       | stop reading it; flush what is buffered toward the other side, then `shutdown(Write)` there. The opposite direction keeps flowing. |
//! | both directions have sent and flushed FIN | [`Reason::Finished`], closed cleanly: both sockets are closed (each has nothing unread, so close sends no RST). The second FIN is sent by that close rather than by a `shutdown` first: the same bytes on the wire, one syscall fewer |
//! | a read or write fails (RST, EPIPE, ...)   | [`Reason::Broken`]: abort, RST both sides (`SO_LINGER` 0, then close), so each peer sees a reset, not a clean end |
//! | an error is reported on an idle side      | the same abort, found through `SO_ERROR`                       |
//! | a write returns 0                         | treated as an error, never retried                             |
//! | the target cannot be reached              | [`Verdict::Redial`]: fail over to the next target (the client's bytes stay in the ring) while the route allows attempts; then [`Reason::Unreachable`]: abort the client with an RST, as a direct connection would have been refused |
//! | idle or half-close timeout                | [`Reason::IdleTimeout`], [`Reason::HalfCloseTimeout`]: abort both sides, since a timeout is not a clean end of stream |
//! | drain deadline (shutdown, removed route)  | [`Reason::Drained`]: the same abort                            |
//! | a second shutdown request                 | [`Reason::Shutdown`]: the same abort                           |
//! | the embedder aborts it (`Handle::abort`)  | [`Reason::Aborted`]: the same abort                            |
//! | a PROXY header is malformed, missing or late, or the client is denied by the route's ACL or per-source limit | [`Reason::Refused`]: the client is reset before any target is dialed (no pipe is made; the rule lives here all the same) |
//!
//! A hang-up or read-closed hint never ends a direction by itself: the
//! direction reads until `read` returns 0 or `WouldBlock`, so the peer's last
//! bytes are never lost.

mod direction;
mod endpoint;
mod splice;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use mio::event::Event;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::arena::RouteId;
use crate::config::Splice;
use crate::hooks::{CloseReason, Direction as Way, TimeoutKind};
use crate::kernel_pipe::KernelPipePool;
use crate::metrics::Metrics;
use crate::net;
use crate::ring::RingPool;
use crate::upstream::{Dial, Dialed, TargetId};
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

/// What the reactor must do with a pipe after an event, a timer or a turn.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Waiting for the OS.
    Wait,
    /// The per-turn budget ran out with bytes still ready to move: serve
    /// this pipe again before blocking in poll.
    Again,
    /// The connect failed: dial the next target, keeping the client's
    /// bytes in the ring, or end as [`Reason::Unreachable`] once the route
    /// allows no further attempt.
    Redial(io::Error),
    /// The pipe is over.
    Close(Reason),
}

/// Why a pipe ended.
#[derive(Debug)]
pub(crate) enum Reason {
    /// Both directions ended with FIN and every byte was delivered.
    Finished,
    /// A read, write or shutdown on one side failed, or the OS reported an
    /// error on it (RST, EPIPE, ...).
    Broken(Side, io::Error),
    /// Every connect attempt the route allows failed (`--retries`).
    Unreachable {
        attempts: u32,
    },
    IdleTimeout,
    HalfCloseTimeout,
    /// Still open at the drain deadline of a shutdown or a removed route.
    Drained,
    /// A second shutdown request.
    Shutdown,
    /// The embedder aborted it.
    Aborted,
    /// Registering with poll failed.
    Poll(io::Error),
    /// The client was turned away before any target was dialed.
    Refused(Refusal),
}

/// Why a client was turned away before it became a pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its PROXY header is malformed, of a kind tcpipe does not use, or the
    /// client ended or failed before completing it.
    ProxyHeader(String),
    /// Its PROXY header was not complete within the route's `proxy-timeout`.
    ProxyTimeout,
    /// The route's `allow`/`deny` rules do not admit its address.
    Denied,
    /// It has `max-connections-per-source` pipes on the route already.
    SourceLimit(usize),
    /// Its route was removed, or the forwarder is shutting down, while its
    /// PROXY header was awaited.
    Gone,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ProxyHeader(why) => write!(f, "bad PROXY header: {why}"),
            Refusal::ProxyTimeout => f.write_str("PROXY header not complete within proxy-timeout"),
            Refusal::Denied => f.write_str("denied by the route's allow/deny rules"),
            Refusal::SourceLimit(max) => {
                write!(
                    f,
                    "already {max} connections from this address (max-connections-per-source)"
                )
            }
            Refusal::Gone => f.write_str("shutting down or route removed"),
        }
    }
}

/// How a pipe's sockets are closed when it is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Each side gets the FIN it has not had yet.
    Clean,
    /// Each side gets an RST.
    Abort,
}

impl Reason {
    /// The close rule: only a pipe both of whose directions delivered
    /// every byte and their FIN ends cleanly. Anything else ends with a
    /// reset on both sides, so no application takes a truncated stream for
    /// a complete one.
    pub(crate) fn closing(&self) -> Closing {
        match self {
            Reason::Finished => Closing::Clean,
            Reason::Broken(..)
            | Reason::Unreachable { .. }
            | Reason::IdleTimeout
            | Reason::HalfCloseTimeout
            | Reason::Drained
            | Reason::Shutdown
            | Reason::Aborted
            | Reason::Poll(_)
            // Reset, as HAProxy's `tcp-request connection reject` does: the
            // client must not take the close for an answer.
            | Reason::Refused(_) => Closing::Abort,
        }
    }

    /// The reason as the embedder's hooks are told it.
    pub(crate) fn public(&self) -> CloseReason {
        match self {
            Reason::Finished => CloseReason::Clean,
            Reason::Broken(Side::Client, _) => CloseReason::ClientReset,
            Reason::Broken(Side::Target, _) => CloseReason::TargetReset,
            Reason::Unreachable { .. } => CloseReason::ConnectFailed,
            Reason::IdleTimeout => CloseReason::Timeout(TimeoutKind::Idle),
            Reason::HalfCloseTimeout => CloseReason::Timeout(TimeoutKind::HalfClose),
            Reason::Drained | Reason::Shutdown => CloseReason::Shutdown,
            Reason::Aborted => CloseReason::Aborted,
            Reason::Poll(_) => CloseReason::Error,
            Reason::Refused(Refusal::Denied | Refusal::SourceLimit(_)) => CloseReason::Denied,
            Reason::Refused(Refusal::ProxyHeader(_) | Refusal::ProxyTimeout) => {
                CloseReason::BadProxyHeader
            }
            Reason::Refused(Refusal::Gone) => CloseReason::Shutdown,
        }
    }

    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Reason::IdleTimeout | Reason::HalfCloseTimeout)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Finished => f.write_str("both sides finished"),
            Reason::Broken(side, e) => write!(f, "{} side: {e}", side.name()),
            Reason::Unreachable { attempts } => write!(
                f,
                "unreachable in {}",
                crate::text::plural(*attempts as usize, "attempt")
            ),
            Reason::IdleTimeout => f.write_str("idle timeout"),
            Reason::HalfCloseTimeout => f.write_str("half-close timeout"),
            Reason::Drained => f.write_str("drain timeout"),
            Reason::Shutdown => f.write_str("shutdown"),
            Reason::Aborted => f.write_str("aborted by the embedder"),
            Reason::Poll(e) => write!(f, "cannot register with poll: {e}"),
            Reason::Refused(why) => why.fmt(f),
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
    /// Ring capacity per direction: the high-water mark.
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
}

/// How old a pipe gets before its upstream socket's keepalive is set: a
/// second, or half the keepalive idle time if that is shorter. Most
/// connections are over by then, and four `setsockopt` calls are a sixth
/// of a short connection's syscalls; a dead peer is found that much later
/// at most, since the kernel starts counting idle time when keepalive is
/// switched on.
fn keepalive_delay(idle: Duration) -> Duration {
    (idle / 2).min(Duration::from_secs(1))
}

/// The target side: which target (none for an attached socket), and the
/// socket to it.
struct Upstream {
    id: Option<TargetId>,
    endpoint: Endpoint,
}

impl Upstream {
    fn new(dialed: Dialed) -> Upstream {
        Upstream {
            id: dialed.target,
            // A connecting socket is not writable until the OS says the
            // connect is done.
            endpoint: Endpoint::new(dialed.stream, dialed.connected),
        }
    }
}

/// Where a pipe is in its life. Each stage holds what only it needs; the
/// upstream lives beside it. A client whose PROXY header is awaited is not
/// a pipe yet: it waits in the reactor's table of its own
/// (`reactor::awaiting`), and becomes a pipe once its header is read.
enum Stage {
    /// A connect to the upstream is under way since `since`; `dial` counts
    /// the attempts this client has cost.
    Connecting { since: Instant, dial: Dial },
    /// Both sides established: bytes flow both ways. `connect_time`: how
    /// long its own connect took; `None` for a socket that came connected
    /// (the warm pool, or attached).
    Open { connect_time: Option<Duration> },
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
        let stage = stage_for(&dialed, dial);
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

    /// Whether the pipe can still be pointed at another target without
    /// losing or doubling a byte: it is connecting, or its target socket
    /// came connected and nothing has moved either way yet. (The reactor
    /// lets the embedder swap a connected one only at `pipe_opened`.)
    pub(crate) fn can_retarget(&self) -> bool {
        match self.stage {
            Stage::Connecting { .. } => true,
            Stage::Open { .. } => {
                self.toward_target.wrote_nothing()
                    && self.toward_client.wrote_nothing()
                    && self.toward_client.flow == Flow::Open
                    && !self.toward_client.has_pending_bytes()
            }
        }
    }

    /// Points the pipe at a target the embedder chose, connecting on
    /// `stream`; what the client sent so far stays in the ring, none of it
    /// delivered, so the new target gets every byte exactly once. No
    /// failover follows if this connect fails. The caller checked
    /// [`can_retarget`](Pipe::can_retarget).
    pub(crate) fn point_at(&mut self, stream: mio::net::TcpStream, addr: SocketAddr) {
        // Timed from a fresh clock, as every dial is (`stage_for`).
        self.stage = Stage::Connecting {
            since: Instant::now(),
            dial: Dial::chosen(addr),
        };
        self.keepalive_pending = self.wants_keepalive(false);
        self.target = Upstream::new(Dialed {
            target: None,
            stream,
            connected: false,
        });
        // Events of the old socket may still be in this turn's batch,
        // under the token the new one inherits.
        self.target.endpoint.verify_connect = true;
    }

    /// After a failed connect, moves to another target. What the client
    /// has sent so far is still in the ring, none of it delivered, so the
    /// new target gets every byte exactly once.
    pub(crate) fn retarget(&mut self, dialed: Dialed) {
        let Stage::Connecting { dial, .. } = &mut self.stage else {
            return debug_assert!(false, "retargeting an open pipe");
        };
        let dial = std::mem::take(dial);
        self.stage = stage_for(&dialed, dial);
        self.keepalive_pending = self.wants_keepalive(dialed.connected);
        self.target = Upstream::new(dialed);
    }

    /// Whether a new upstream socket needs its keepalive set: one that
    /// came connected is a pooled one (set when the pool made it) or the
    /// embedder's own.
    fn wants_keepalive(&self, connected: bool) -> bool {
        !connected && self.settings.keepalive.is_some()
    }

    /// When the upstream's keepalive is to be set, if it still is.
    fn keepalive_due(&self) -> Option<Instant> {
        let idle = self.settings.keepalive.filter(|_| self.keepalive_pending)?;
        Some(self.opened_at + keepalive_delay(idle))
    }

    pub(crate) fn route(&self) -> Option<RouteId> {
        self.settings.route
    }

    pub(crate) fn target(&self) -> Option<TargetId> {
        self.target.id
    }

    /// The address of the target's socket (for an attached one, which has
    /// no name).
    pub(crate) fn target_addr(&self) -> Option<SocketAddr> {
        // A connecting socket has no peer address yet.
        if let Stage::Connecting { dial, .. } = &self.stage {
            if let Some(chosen) = dial.chosen_addr() {
                return Some(chosen);
            }
        }
        self.target.endpoint.stream.peer_addr().ok()
    }

    /// Since when its connect is under way, if it is.
    pub(crate) fn connecting_since(&self) -> Option<Instant> {
        match self.stage {
            Stage::Connecting { since, .. } => Some(since),
            Stage::Open { .. } => None,
        }
    }

    /// How long its target took to accept, once it has; `None` while
    /// connecting and for a socket that came connected.
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        match self.stage {
            Stage::Open { connect_time } => connect_time,
            Stage::Connecting { .. } => None,
        }
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

    /// Whether the ring of `way` is at high-water, its source unread.
    pub(crate) fn is_full(&self, way: Way) -> bool {
        self.direction(way).paused
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

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.stage, Stage::Open { .. })
    }

    /// The connect attempts made so far, while connecting.
    pub(crate) fn dial_mut(&mut self) -> Option<&mut Dial> {
        match &mut self.stage {
            Stage::Connecting { dial, .. } => Some(dial),
            Stage::Open { .. } => None,
        }
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

    /// Moves every byte that can move now, within the turn's budget.
    pub(crate) fn drive(&mut self, ctx: &mut Context<'_>) -> Verdict {
        if let Stage::Connecting { since, .. } = self.stage {
            match finish_connect(&mut self.target.endpoint) {
                Ok(true) => {
                    debug!("pipe {}: connected to target", self.id);
                    // A fresh clock, not the turn's: every pipe that
                    // connects in one turn would show the same time.
                    let connect_time = Some(Instant::now().saturating_duration_since(since));
                    self.stage = Stage::Open { connect_time };
                }
                Ok(false) => {}
                Err(e) => return Verdict::Redial(e),
            }
        }
        if let Err((side, e)) = self.check_errors() {
            return Verdict::Close(Reason::Broken(side, e));
        }

        let forwarded_before = (self.toward_target.forwarded, self.toward_client.forwarded);
        let pumped = self.pump_both(ctx);
        let metrics = ctx.metrics;
        metrics
            .bytes_toward_target_total
            .add(self.toward_target.forwarded - forwarded_before.0);
        metrics
            .bytes_toward_client_total
            .add(self.toward_client.forwarded - forwarded_before.1);
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

    /// The next instant at which a timeout could run out, if any applies.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        earliest(self.timeout_deadline(), self.keepalive_due())
    }

    /// The next instant at which a timeout could run out, if any applies.
    fn timeout_deadline(&self) -> Option<Instant> {
        let settings = &self.settings;
        if let Stage::Connecting { since, .. } = self.stage {
            return settings.connect_timeout.map(|t| since + t);
        }
        if self.is_held() {
            return None;
        }
        let idle = settings.idle_timeout.map(|t| self.last_activity + t);
        let half_close = if self.is_half_closed() {
            settings.half_close_timeout.map(|t| self.last_activity + t)
        } else {
            None
        };
        match (idle, half_close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A timer of this pipe came due: its upstream keepalive may be due,
    /// a timeout may have run out.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Verdict {
        if self.keepalive_due().is_some_and(|due| now >= due) {
            self.keepalive_pending = false;
            if let Some(idle) = self.settings.keepalive {
                let socket = SockRef::from(&self.target.endpoint.stream);
                if let Err(e) = socket.set_tcp_keepalive(&net::keepalive(idle)) {
                    debug!(
                        "pipe {}: cannot set keepalive on the target side: {e}",
                        self.id
                    );
                }
            }
        }
        let settings = &self.settings;
        let ran_out =
            |start: Instant, limit: Option<Duration>| limit.is_some_and(|t| now >= start + t);
        if let Stage::Connecting { since, .. } = self.stage {
            if ran_out(since, settings.connect_timeout) {
                let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                return Verdict::Redial(e);
            }
            return Verdict::Wait;
        }
        if self.is_held() {
            return Verdict::Wait;
        }
        if self.is_half_closed() && ran_out(self.last_activity, settings.half_close_timeout) {
            return Verdict::Close(Reason::HalfCloseTimeout);
        }
        if ran_out(self.last_activity, settings.idle_timeout) {
            return Verdict::Close(Reason::IdleTimeout);
        }
        Verdict::Wait
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

/// A pooled connection is established already; any other is connecting,
/// timed from a fresh clock reading (one vDSO call per connect), since the
/// turn's `now` may be a batch of events old by the time a dial starts.
fn stage_for(dialed: &Dialed, dial: Dial) -> Stage {
    if dialed.connected {
        Stage::Open { connect_time: None }
    } else {
        Stage::Connecting {
            since: Instant::now(),
            dial,
        }
    }
}

/// Whether a non-blocking connect is done, once the socket turned writable
/// or reported an error.
fn finish_connect(target: &mut Endpoint) -> io::Result<bool> {
    if !target.writable && !target.error {
        return Ok(false);
    }
    if target.verify_connect {
        target.error = false;
        let connected = net::connect_outcome(&target.stream)?;
        target.writable = connected;
        return Ok(connected);
    }
    // EPOLLOUT with neither EPOLLERR nor a hang-up is the kernel saying the
    // handshake completed: no `getpeername` needed to believe it (one
    // syscall fewer per connection). The socket is new since its dial, so
    // no older event of another socket can have set these.
    if !target.error && !target.read_closed {
        return Ok(true);
    }
    target.error = false;
    let connected = net::connect_outcome(&target.stream)?;
    if !connected {
        target.writable = false;
    }
    Ok(connected)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
    use std::time::Duration;

    #[test]
    fn the_upstream_keepalive_waits_a_second_or_half_its_idle_time() {
        let delay = super::keepalive_delay;
        assert_eq!(delay(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(delay(Duration::from_secs(1)), Duration::from_millis(500));
    }

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
