//! Connecting a pipe to its target: the stages of its life, failing over
//! to the next target while the route allows attempts, and re-targeting at
//! the embedder's request. While connecting, the client's first bytes wait
//! in the toward-target ring, so whichever target the pipe ends up on gets
//! each of them exactly once.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::direction::Flow;
use super::endpoint::Endpoint;
use super::limit::{Limits, Rates};
use super::Pipe;
use crate::arena::TargetId;
use crate::dial::{Dial, Dialed};
use crate::net;

/// The target side: which target (none for an attached socket), and the
/// socket to it.
pub(super) struct Upstream {
    pub(super) id: Option<TargetId>,
    pub(super) endpoint: Endpoint,
}

impl Upstream {
    pub(super) fn new(dialed: Dialed) -> Upstream {
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
pub(super) enum Stage {
    /// A connect to the upstream is under way since `since`; `dial` counts
    /// the attempts this client has cost.
    Connecting { since: Instant, dial: Dial },
    /// Both sides established: bytes flow both ways. `connect_time`: how
    /// long its own connect took; `None` for a socket that came connected
    /// (the warm pool, or attached).
    Open {
        connect_time: Option<Duration>,
        /// Its rate limits, if it has any (most pipes: `None`, nothing to
        /// do). Made once it is open: until then its client's bytes only
        /// gather, at most one buffer of them.
        limits: Option<Box<Limits>>,
    },
}

impl Stage {
    pub(super) fn limits_mut(&mut self) -> Option<&mut Limits> {
        match self {
            Stage::Open { limits, .. } => limits.as_deref_mut(),
            Stage::Connecting { .. } => None,
        }
    }

    pub(super) fn limits(&self) -> Option<&Limits> {
        match self {
            Stage::Open { limits, .. } => limits.as_deref(),
            Stage::Connecting { .. } => None,
        }
    }
}

impl Pipe {
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
        // Its limits went with the open stage; new ones come when it opens.
        self.client.limited = false;
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
        self.stage = stage_for(&dialed, dial, &self.settings.rates, Instant::now());
        self.keepalive_pending = self.wants_keepalive(dialed.connected);
        self.target = Upstream::new(dialed);
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

    /// How long its target took to accept, once it has; `None` while
    /// connecting and for a socket that came connected.
    pub(crate) fn connect_time(&self) -> Option<Duration> {
        match self.stage {
            Stage::Open { connect_time, .. } => connect_time,
            Stage::Connecting { .. } => None,
        }
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
}

/// A pooled connection is established already; any other is connecting,
/// timed from a fresh clock reading (one vDSO call per connect), since the
/// turn's `now` may be a batch of events old by the time a dial starts.
pub(super) fn stage_for(dialed: &Dialed, dial: Dial, rates: &Rates, now: Instant) -> Stage {
    if dialed.connected {
        Stage::Open {
            connect_time: None,
            limits: Limits::of(rates, now),
        }
    } else {
        Stage::Connecting {
            since: Instant::now(),
            dial,
        }
    }
}

/// Whether a non-blocking connect is done, once the socket turned writable
/// or reported an error.
pub(super) fn finish_connect(target: &mut Endpoint) -> io::Result<bool> {
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
