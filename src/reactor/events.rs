//! Telling the embedder's hooks what happened. Nothing here runs unless
//! hooks are set: every caller checks first, so a forwarder without hooks
//! pays one untaken branch per event site.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Reactor, RouteId};
use crate::hooks::{
    CloseReason, Connected, Direction, PipeClosed, PipeControl, PipeId, PipeOpened, TargetHealth,
};
use crate::pipe::{Pipe, Reason, Verdict};

const WAYS: [Direction; 2] = [Direction::ClientToTarget, Direction::TargetToClient];

/// A pipe as it was before a drive, to tell what the drive changed.
pub(super) struct Before {
    delivered: [u64; 2],
    full: [bool; 2],
    connecting: Option<Instant>,
}

impl Before {
    // Out of line, like every function here: the forwarding path of a
    // forwarder without hooks must stay as small as it was.
    #[cold]
    #[inline(never)]
    pub(super) fn of(pipe: &Pipe) -> Before {
        Before {
            delivered: [pipe.bytes_toward_target(), pipe.bytes_toward_client()],
            full: WAYS.map(|way| pipe.is_full(way)),
            connecting: pipe.connecting_since(),
        }
    }
}

impl Reactor {
    /// A pipe was made (`key`): opened, and connected at once if its target
    /// socket came established (the warm pool, or attached) and the hook
    /// did not point it elsewhere. Returns what to do with the pipe next:
    /// `Wait` to drive it as usual.
    #[cold]
    #[inline(never)]
    pub(super) fn tell_opened(&mut self, key: usize) -> Verdict {
        let (Some(hooks), Some(pipe)) = (self.hooks.as_mut(), self.pipes.get(key)) else {
            return Verdict::Wait;
        };
        let route = pipe
            .route()
            .and_then(|id| self.routes.get(id))
            .map(|r| r.name());
        let target = target_name(&self.upstreams, pipe);
        let id = PipeId(pipe.id);
        // Nothing has moved yet: even a socket that came connected may be
        // swapped for another.
        let mut control = PipeControl::new(id, pipe.can_retarget());
        hooks.pipe_opened(
            &PipeOpened {
                id,
                route,
                client: pipe.peer,
                target: Some(&target),
            },
            &mut control,
        );
        let verdict = self.apply_asked(key, control.asked, Verdict::Wait);
        let (Some(hooks), Some(pipe)) = (self.hooks.as_mut(), self.pipes.get(key)) else {
            return verdict;
        };
        if !pipe.is_open() || matches!(verdict, Verdict::Close(_)) {
            return verdict;
        }
        let mut control = PipeControl::new(id, false);
        hooks.connected(
            &Connected {
                id,
                target: &target,
                connect_time: std::time::Duration::ZERO,
            },
            &mut control,
        );
        self.apply_asked(key, control.asked, verdict)
    }

    /// A client was accepted, but turned away before any target was
    /// dialed (none could be, or the route does not admit it): it is reset
    /// at once, with no pipe made.
    #[cold]
    #[inline(never)]
    pub(super) fn tell_refused(
        &mut self,
        id: u64,
        route: RouteId,
        client: SocketAddr,
        reason: CloseReason,
    ) {
        let Some(hooks) = self.hooks.as_mut() else {
            return;
        };
        let route = self.routes.get(route).map(|r| r.name());
        let id = PipeId(id);
        // It is over already: nothing asked of it can apply.
        let mut control = PipeControl::new(id, false);
        hooks.pipe_opened(
            &PipeOpened {
                id,
                route,
                client,
                target: None,
            },
            &mut control,
        );
        hooks.pipe_closed(&PipeClosed {
            id,
            route,
            reason,
            bytes_toward_target: 0,
            bytes_toward_client: 0,
            duration: std::time::Duration::ZERO,
        });
    }

    /// What a drive of pipe `key` did: its connect ended, bytes were
    /// delivered, a ring filled or drained. The drive decided `verdict`;
    /// returns it as what the hooks asked changed it.
    #[cold]
    #[inline(never)]
    pub(super) fn after_drive(&mut self, key: usize, before: Before, verdict: Verdict) -> Verdict {
        let (Some(hooks), Some(pipe)) = (self.hooks.as_mut(), self.pipes.get(key)) else {
            return verdict;
        };
        let id = PipeId(pipe.id);
        // Once connected it is too late, whatever has moved yet.
        let mut control = PipeControl::new(id, !pipe.is_open());
        if let (Some(since), true) = (before.connecting, pipe.is_open()) {
            let target = target_name(&self.upstreams, pipe);
            hooks.connected(
                &Connected {
                    id,
                    target: &target,
                    connect_time: self.now.saturating_duration_since(since),
                },
                &mut control,
            );
        }
        let delivered = [pipe.bytes_toward_target(), pipe.bytes_toward_client()];
        for (i, way) in WAYS.into_iter().enumerate() {
            if delivered[i] > before.delivered[i] {
                hooks.forwarded(id, way, delivered[i] - before.delivered[i], &mut control);
            }
            match (before.full[i], pipe.is_full(way)) {
                (false, true) => hooks.buffer_full(id, way, &mut control),
                (true, false) => hooks.buffer_drained(id, way, &mut control),
                _ => {}
            }
        }
        if !control.asked.anything() {
            return verdict;
        }
        self.apply_asked(key, control.asked, verdict)
    }

    /// A pipe was freed.
    #[cold]
    #[inline(never)]
    pub(super) fn tell_closed(&mut self, pipe: &Pipe, reason: &Reason) {
        let Some(hooks) = self.hooks.as_mut() else {
            return;
        };
        let route = pipe
            .route()
            .and_then(|id| self.routes.get(id))
            .map(|r| r.name());
        hooks.pipe_closed(&PipeClosed {
            id: PipeId(pipe.id),
            route,
            reason: reason.public(),
            bytes_toward_target: pipe.bytes_toward_target(),
            bytes_toward_client: pipe.bytes_toward_client(),
            duration: pipe.age(self.now),
        });
    }

    /// Targets that went down or came up during this turn.
    #[cold]
    #[inline(never)]
    pub(super) fn tell_health_changes(&mut self) {
        let Some(hooks) = self.hooks.as_mut() else {
            return;
        };
        for change in self.upstreams.take_health_changes() {
            let health = TargetHealth {
                route: &change.route,
                target: &change.target,
                addr: change.addr,
            };
            if change.up {
                hooks.target_up(&health);
            } else {
                hooks.target_down(&health);
            }
        }
    }
}

/// The target's name as configured, or the address of an attached one.
fn target_name(upstreams: &crate::upstream::Upstreams, pipe: &Pipe) -> String {
    super::access::target_label(upstreams, pipe).unwrap_or_else(|| "unknown".to_string())
}
