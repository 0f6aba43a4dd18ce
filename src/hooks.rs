//! What an embedder hears from a running forwarder, and the names it uses
//! to talk about pipes.
//!
//! Set a [`Hooks`] on the [`Builder`](crate::Builder): every method has a
//! default that does nothing, so implement only the events you want. The
//! forwarder calls them on its event loop's thread, between two turns of
//! forwarding: **a hook must not block** (no I/O that can wait, no lock
//! another thread may hold long), or every pipe waits with it.
//!
//! To act on the pipe an event is about, use the [`PipeControl`] each pipe
//! hook is handed: pause or resume either direction, abort it, or (until
//! it has connected) point it at another target. What it asks is applied
//! on the loop thread as soon as the hook returns, with no round trip. The
//! blocking [`Handle`](crate::Handle) methods called from a hook return
//! [`CommandError::OnLoopThread`] at once; [`Handle::submit`](crate::Handle::submit)
//! does not block and may be used from a hook for other pipes.
//!
//! With several workers (`Config::workers`), set hooks with
//! [`Builder::hooks_per_worker`](crate::Builder::hooks_per_worker): each
//! worker calls its own, made for it, so no hook needs a lock.
//!
//! With no hooks set, none of this costs anything on the forwarding path.
//!
//! ```
//! use tcpipe::{CloseReason, Hooks, PipeClosed, PipeControl, PipeOpened};
//!
//! /// Counts clean ends and everything else.
//! #[derive(Default)]
//! struct Tally {
//!     clean: u64,
//!     other: u64,
//! }
//!
//! impl Hooks for Tally {
//!     fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, _control: &mut PipeControl) {
//!         println!("{} from {} to {:?}", pipe.id, pipe.client, pipe.target);
//!     }
//!     fn pipe_closed(&mut self, pipe: &PipeClosed<'_>) {
//!         match pipe.reason {
//!             CloseReason::Clean => self.clean += 1,
//!             _ => self.other += 1,
//!         }
//!     }
//! }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::ConfigError;

/// A pipe's identity: unique for the life of the forwarder, never reused.
/// Logs call it `pipe N`, the access log `pipe=N`; `Display` writes the
/// bare `N`, and `PipeId::from(N)` makes the id of such a line back (to
/// [`abort`](crate::Handle::abort) it, say).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipeId(pub(crate) u64);

impl PipeId {
    /// The number logs show.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for PipeId {
    fn from(n: u64) -> PipeId {
        PipeId(n)
    }
}

impl From<PipeId> for u64 {
    fn from(id: PipeId) -> u64 {
        id.0
    }
}

impl fmt::Display for PipeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a hook may do to the pipe its event is about. Each call is a
/// request, applied on the loop thread right after the hook returns, in
/// this order: an abort (then nothing else), a new target, then pauses
/// and resumes. The last request for a direction wins.
#[derive(Debug)]
pub struct PipeControl {
    id: PipeId,
    retargetable: bool,
    pub(crate) asked: Asked,
}

/// What a hook asked of its pipe.
#[derive(Debug, Default)]
pub(crate) struct Asked {
    /// Per direction (client → target, target → client): `Some(true)` to
    /// pause, `Some(false)` to resume.
    pub(crate) hold: [Option<bool>; 2],
    pub(crate) abort: bool,
    pub(crate) target: Option<SocketAddr>,
}

impl Asked {
    pub(crate) fn anything(&self) -> bool {
        self.abort || self.target.is_some() || self.hold.iter().any(Option::is_some)
    }
}

impl PipeControl {
    pub(crate) fn new(id: PipeId, retargetable: bool) -> PipeControl {
        PipeControl {
            id,
            retargetable,
            asked: Asked::default(),
        }
    }

    /// The pipe this control acts on.
    pub fn id(&self) -> PipeId {
        self.id
    }

    /// Stops reading the source of `direction` (the client for
    /// [`ClientToTarget`](Direction::ClientToTarget)), as
    /// [`Handle::pause_direction`](crate::Handle::pause_direction) does.
    pub fn pause(&mut self, direction: Direction) {
        self.asked.hold[slot(direction)] = Some(true);
    }

    /// Reads the source of `direction` again.
    pub fn resume(&mut self, direction: Direction) {
        self.asked.hold[slot(direction)] = Some(false);
    }

    /// Pauses both directions, as [`Handle::pause`](crate::Handle::pause).
    pub fn pause_both(&mut self) {
        self.asked.hold = [Some(true); 2];
    }

    /// Resumes both directions.
    pub fn resume_both(&mut self) {
        self.asked.hold = [Some(false); 2];
    }

    /// Ends the pipe with a reset on both sides, as
    /// [`Handle::abort`](crate::Handle::abort).
    pub fn abort(&mut self) {
        self.asked.abort = true;
    }

    /// Whether the pipe may still be pointed elsewhere: it has not
    /// connected yet, or its target socket came connected (warm pool,
    /// attach) and this is its [`pipe_opened`](Hooks::pipe_opened).
    pub fn can_retarget(&self) -> bool {
        self.retargetable
    }

    /// Connects the pipe to `target` instead, any address: what the
    /// client sent so far waits and reaches the new target exactly once.
    /// No failover follows if that connect fails (the pipe ends with
    /// [`CloseReason::ConnectFailed`]). Errs with
    /// [`CommandError::TooLate`] once the pipe has connected.
    pub fn retarget(&mut self, target: SocketAddr) -> Result<(), CommandError> {
        if !self.retargetable {
            return Err(CommandError::TooLate(self.id));
        }
        self.asked.target = Some(target);
        Ok(())
    }
}

pub(crate) fn slot(direction: Direction) -> usize {
    match direction {
        Direction::ClientToTarget => 0,
        Direction::TargetToClient => 1,
    }
}

/// One of a pipe's two directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Bytes the client sends, on their way to the target.
    ClientToTarget,
    /// Bytes the target sends, on their way to the client.
    TargetToClient,
}

/// Which timeout ended a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// No byte moved either way for the route's `idle-timeout`.
    Idle,
    /// One direction had ended and the other moved nothing for the route's
    /// `half-close-timeout`.
    HalfClose,
}

/// How a pipe ended. Every reason but [`Clean`](CloseReason::Clean) ends
/// with a reset on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Both sides sent FIN and every byte was delivered both ways.
    Clean,
    /// The client's side failed: it reset the connection, or a read or
    /// write on it failed.
    ClientReset,
    /// The target's side failed, after it had accepted.
    TargetReset,
    /// No target could be reached within the attempts the route allows.
    ConnectFailed,
    /// A timeout of the route ran out.
    Timeout(TimeoutKind),
    /// Still open when a shutdown (or the removal of its route by a
    /// reload) ran out of drain time, or at a second shutdown request.
    Shutdown,
    /// Aborted through [`Handle::abort`](crate::Handle::abort) or a hook's
    /// [`PipeControl::abort`].
    Aborted,
    /// The forwarder could not watch one of its sockets.
    Error,
    /// The client was turned away before any target was dialed: the
    /// route's `allow`/`deny` rules do not admit its address, it has
    /// `max-connections-per-source` pipes already, or on a shared address
    /// without a default route its first bytes chose no route. The pipe's
    /// [`PipeOpened`] names no target.
    Denied,
    /// The route accepts the PROXY protocol and the client's header was
    /// malformed, of a kind tcpipe does not use, cut short, or not complete
    /// within `proxy-timeout`. The pipe's [`PipeOpened`] names no target.
    BadProxyHeader,
}

/// A client was accepted (or two sockets attached) and a pipe made for it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PipeOpened<'a> {
    /// Its identity from now on.
    pub id: PipeId,
    /// The route it came in on; `None` for an attached pipe.
    pub route: Option<&'a str>,
    /// The client's address.
    pub client: SocketAddr,
    /// The target it is being sent to, by name; `None` if no target could
    /// even be dialed (a [`PipeClosed`] with
    /// [`ConnectFailed`](CloseReason::ConnectFailed) follows at once).
    pub target: Option<&'a str>,
}

/// A pipe's target accepted: bytes now flow both ways.
#[derive(Debug)]
#[non_exhaustive]
pub struct Connected<'a> {
    /// The pipe.
    pub id: PipeId,
    /// By name, or the address of an attached pipe's target.
    pub target: &'a str,
    /// From the start of the connect that succeeded to its end; zero for a
    /// connection from the warm pool or an attached socket.
    pub connect_time: Duration,
}

/// A target went down or came back up.
#[derive(Debug)]
#[non_exhaustive]
pub struct TargetHealth<'a> {
    /// The route it belongs to.
    pub route: &'a str,
    /// Its name as configured.
    pub target: &'a str,
    /// The address it resolved to.
    pub addr: SocketAddr,
}

/// A pipe ended and its sockets were closed.
#[derive(Debug)]
#[non_exhaustive]
pub struct PipeClosed<'a> {
    /// The pipe.
    pub id: PipeId,
    /// The route it came in on; `None` for an attached pipe.
    pub route: Option<&'a str>,
    /// How it ended.
    pub reason: CloseReason,
    /// Bytes delivered to the target.
    pub bytes_toward_target: u64,
    /// Bytes delivered to the client.
    pub bytes_toward_client: u64,
    /// From accept (or attach) to close.
    pub duration: Duration,
}

/// What a forwarder tells its embedder. Every method does nothing unless
/// implemented. They run on the event loop's thread: **they must not
/// block**. Each event about a live pipe comes with a [`PipeControl`] to
/// act on that pipe.
///
/// For one pipe the order is: [`pipe_opened`](Hooks::pipe_opened), then
/// [`connected`](Hooks::connected) once its target accepts, then any number
/// of [`forwarded`](Hooks::forwarded), [`buffer_full`](Hooks::buffer_full)
/// and [`buffer_drained`](Hooks::buffer_drained), then
/// [`pipe_closed`](Hooks::pipe_closed) exactly once.
#[allow(unused_variables)]
pub trait Hooks: Send {
    /// A pipe was made: the first event of every pipe.
    /// Its target may still be chosen here
    /// ([`PipeControl::retarget`]), and the client's bytes held
    /// ([`PipeControl::pause`]) before any is read.
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, control: &mut PipeControl) {}

    /// A pipe's target accepted.
    fn connected(&mut self, pipe: &Connected<'_>, control: &mut PipeControl) {}

    /// `bytes` were delivered in `direction` during one turn of the event
    /// loop: at most one call per pipe and direction per turn, however many
    /// writes it took.
    fn forwarded(
        &mut self,
        id: PipeId,
        direction: Direction,
        bytes: u64,
        control: &mut PipeControl,
    ) {
    }

    /// The ring (or, spliced, the kernel pipe) of `direction` reached its
    /// high-water mark (`buffer-size`), so its source is no longer read: the kernel's
    /// window now pushes back on the sender. Reported as the state at the
    /// end of a turn, so a ring that fills and drains within one turn
    /// (reading never paused long enough to matter) reports nothing.
    fn buffer_full(&mut self, id: PipeId, direction: Direction, control: &mut PipeControl) {}

    /// The ring (or kernel pipe) of `direction` drained to its low-water mark after
    /// [`buffer_full`](Hooks::buffer_full): its source is read again.
    fn buffer_drained(&mut self, id: PipeId, direction: Direction, control: &mut PipeControl) {}

    /// Passive or active health checks marked a target down.
    fn target_down(&mut self, target: &TargetHealth<'_>) {}

    /// A down target answered again.
    fn target_up(&mut self, target: &TargetHealth<'_>) {}

    /// A pipe ended: the last event of every pipe.
    fn pipe_closed(&mut self, pipe: &PipeClosed<'_>) {}
}

/// Why a command to the forwarder could not be carried out.
#[derive(Debug)]
#[non_exhaustive]
pub enum CommandError {
    /// No live pipe has this id (it may have ended meanwhile).
    NoSuchPipe(PipeId),
    /// The options of an attach do not hold together.
    Invalid(ConfigError),
    /// A socket given to attach is unusable (not connected, not TCP, ...).
    Io(io::Error),
    /// The forwarder is shutting down and takes no new pipes.
    ShuttingDown,
    /// The forwarder is not running.
    Stopped,
    /// A blocking [`Handle`](crate::Handle) method was called on an event
    /// loop's own thread (from a hook), where waiting for the loop's answer
    /// would wait forever. Use the hook's
    /// [`PipeControl`](crate::PipeControl), or
    /// [`Handle::submit`](crate::Handle::submit), which does not wait.
    OnLoopThread,
    /// The pipe has connected to its target (or passed bytes to one): it
    /// can no longer be re-targeted.
    TooLate(PipeId),
    /// No route has this name.
    NoSuchRoute(String),
    /// The route has no target of this name (`route/target`).
    NoSuchTarget(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NoSuchPipe(id) => write!(f, "no live pipe {id}"),
            CommandError::Invalid(e) => e.fmt(f),
            CommandError::Io(e) => write!(f, "unusable socket: {e}"),
            CommandError::ShuttingDown => f.write_str("shutting down"),
            CommandError::Stopped => f.write_str("the forwarder is not running"),
            CommandError::OnLoopThread => f.write_str(
                "called on the event loop's own thread (from a hook), where waiting would never end",
            ),
            CommandError::TooLate(id) => {
                write!(f, "pipe {id} has connected already; it cannot be re-targeted")
            }
            CommandError::NoSuchRoute(route) => write!(f, "no route {route:?}"),
            CommandError::NoSuchTarget(target) => write!(f, "no target {target:?}"),
        }
    }
}

impl std::error::Error for CommandError {}
