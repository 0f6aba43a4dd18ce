//! What an embedder hears from a running forwarder, and the names it uses
//! to talk about pipes.
//!
//! Set a [`Hooks`] on the [`Builder`](crate::Builder): every method has a
//! default that does nothing, so implement only the events you want. The
//! forwarder calls them on its event loop's thread, between two turns of
//! forwarding: **a hook must not block** (no I/O that can wait, no lock
//! another thread may hold long), or every pipe waits with it. To act on an
//! event from elsewhere, send it over a channel; to act on a pipe, use the
//! [`Handle`](crate::Handle) from another thread.
//!
//! With no hooks set, none of this costs anything on the forwarding path.
//!
//! ```
//! use tcpipe::{CloseReason, Hooks, PipeClosed, PipeOpened};
//!
//! /// Counts clean ends and everything else.
//! #[derive(Default)]
//! struct Tally {
//!     clean: u64,
//!     other: u64,
//! }
//!
//! impl Hooks for Tally {
//!     fn pipe_opened(&mut self, pipe: &PipeOpened<'_>) {
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
use std::net::SocketAddr;
use std::time::Duration;

/// A pipe's identity: unique for the life of the forwarder, never reused.
/// Logs call it `pipe N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipeId(pub(crate) u64);

impl PipeId {
    /// The number logs show.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PipeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipe {}", self.0)
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
    /// Aborted through [`Handle::abort`](crate::Handle::abort).
    Aborted,
    /// The forwarder could not watch one of its sockets.
    Error,
    /// The client was turned away before any target was dialed: the
    /// route's `allow`/`deny` rules do not admit its address, or it has
    /// `max-connections-per-source` pipes already. The pipe's
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
/// block**.
///
/// For one pipe the order is: [`pipe_opened`](Hooks::pipe_opened), then
/// [`connected`](Hooks::connected) once its target accepts, then any number
/// of [`forwarded`](Hooks::forwarded), [`buffer_full`](Hooks::buffer_full)
/// and [`buffer_drained`](Hooks::buffer_drained), then
/// [`pipe_closed`](Hooks::pipe_closed) exactly once.
#[allow(unused_variables)]
pub trait Hooks: Send {
    /// A pipe was made: the first event of every pipe.
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>) {}

    /// A pipe's target accepted.
    fn connected(&mut self, pipe: &Connected<'_>) {}

    /// `bytes` were delivered in `direction` during one turn of the event
    /// loop: at most one call per pipe and direction per turn, however many
    /// writes it took.
    fn forwarded(&mut self, id: PipeId, direction: Direction, bytes: u64) {}

    /// The ring (or, spliced, the kernel pipe) of `direction` reached its
    /// high-water mark (`buffer-size`), so its source is no longer read: the kernel's
    /// window now pushes back on the sender. Reported as the state at the
    /// end of a turn, so a ring that fills and drains within one turn
    /// (reading never paused long enough to matter) reports nothing.
    fn buffer_full(&mut self, id: PipeId, direction: Direction) {}

    /// The ring (or kernel pipe) of `direction` drained to its low-water mark after
    /// [`buffer_full`](Hooks::buffer_full): its source is read again.
    fn buffer_drained(&mut self, id: PipeId, direction: Direction) {}

    /// Passive or active health checks marked a target down.
    fn target_down(&mut self, target: &TargetHealth<'_>) {}

    /// A down target answered again.
    fn target_up(&mut self, target: &TargetHealth<'_>) {}

    /// A pipe ended: the last event of every pipe.
    fn pipe_closed(&mut self, pipe: &PipeClosed<'_>) {}
}
