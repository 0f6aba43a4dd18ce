//! The close rules: how every pipe ends, and every client that never
//! became one.
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
//!
//! A client turned away before it became a pipe (a rule refused it, its
//! PROXY header was bad or late, no target could be dialed, it could not
//! be registered) leaves through `Reactor::turn_away`, which asks
//! [`Reason::closing`] like every pipe's end does.

use std::fmt;
use std::io;

use super::Side;
use crate::hooks::{CloseReason, TimeoutKind};

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
    /// Its address opened more than `max-connection-rate-per-source`
    /// connections to the route (this worker's part of it).
    ConnectionRate(crate::config::ConnectionRate),
    /// Its route was removed, or the forwarder is shutting down, while its
    /// PROXY header or first bytes were awaited.
    Gone,
    /// On a shared address without a default route, its first bytes
    /// matched no route, or said nothing in time, or were malformed.
    NoRoute(String),
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
            Refusal::ConnectionRate(rate) => write!(
                f,
                "more than {rate} connections from this address (max-connection-rate-per-source)"
            ),
            Refusal::Gone => f.write_str("shutting down or route removed"),
            Refusal::NoRoute(why) => write!(f, "no route for it: {why}"),
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
            Reason::Refused(
                Refusal::Denied
                | Refusal::SourceLimit(_)
                | Refusal::ConnectionRate(_)
                | Refusal::NoRoute(_),
            ) => CloseReason::Denied,
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
