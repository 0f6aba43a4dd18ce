//! Telling the embedder's hooks what happened, and collecting what they
//! ask of the pipe. Only called when hooks are set.

use std::net::SocketAddr;
use std::time::Duration;

use super::access::target_label;
use super::Seen;
use crate::arena::RouteId;
use crate::hooks::{
    Asked, Connected, Direction, Hooks, PipeClosed, PipeControl, PipeId, PipeOpened, TargetHealth,
};
use crate::pipe::{Crossed, Pipe, Reason};
use crate::upstream::Upstreams;

const WAYS: [Direction; 2] = [Direction::ClientToTarget, Direction::TargetToClient];

/// A pipe was made: `pipe_opened`, where even a socket that came
/// connected may be swapped for another, since nothing has moved yet.
pub(super) fn opened(hooks: &mut dyn Hooks, seen: &Seen<'_>, pipe: &Pipe) -> Asked {
    let id = PipeId(pipe.id);
    let target = target_name(seen.upstreams, pipe);
    let mut control = PipeControl::new(id, pipe.can_retarget());
    hooks.pipe_opened(
        &PipeOpened {
            id,
            route: route_name(seen, pipe.route()),
            client: pipe.peer,
            target: Some(&target),
        },
        &mut control,
    );
    control.asked
}

/// What a drive crossed: its connect ended, bytes were delivered, a ring
/// filled or drained.
pub(super) fn crossed(
    hooks: &mut dyn Hooks,
    seen: &Seen<'_>,
    pipe: &Pipe,
    crossed: &Crossed,
) -> Asked {
    let id = PipeId(pipe.id);
    // Once connected it is too late, whatever has moved yet.
    let mut control = PipeControl::new(id, !pipe.is_open());
    if crossed.connected {
        let target = target_name(seen.upstreams, pipe);
        hooks.connected(
            &Connected {
                id,
                target: &target,
                connect_time: pipe.connect_time().unwrap_or(Duration::ZERO),
            },
            &mut control,
        );
    }
    for (i, way) in WAYS.into_iter().enumerate() {
        if crossed.delivered[i] > 0 {
            hooks.forwarded(id, way, crossed.delivered[i], &mut control);
        }
        if crossed.filled(i) {
            hooks.buffer_full(id, way, &mut control);
        }
        if crossed.drained(i) {
            hooks.buffer_drained(id, way, &mut control);
        }
    }
    control.asked
}

/// A pipe was freed.
pub(super) fn closed(hooks: &mut dyn Hooks, seen: &Seen<'_>, pipe: &Pipe, reason: &Reason) {
    hooks.pipe_closed(&PipeClosed {
        id: PipeId(pipe.id),
        route: route_name(seen, pipe.route()),
        reason: reason.public(),
        bytes_toward_target: pipe.bytes_toward_target(),
        bytes_toward_client: pipe.bytes_toward_client(),
        duration: pipe.age(seen.now),
    });
}

/// A client left before any pipe was made for it: a pipe opened with no
/// target and closed at once, as the hooks see it.
pub(super) fn turned_away(
    hooks: &mut dyn Hooks,
    seen: &Seen<'_>,
    (id, route): (u64, RouteId),
    client: SocketAddr,
    reason: &Reason,
) {
    let route = route_name(seen, Some(route));
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
        reason: reason.public(),
        bytes_toward_target: 0,
        bytes_toward_client: 0,
        duration: Duration::ZERO,
    });
}

/// Targets that went down or came up.
pub(super) fn health_changed(hooks: &mut dyn Hooks, upstreams: &mut Upstreams) {
    for change in upstreams.take_health_changes() {
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

/// The target's name as configured, or the address of an attached one.
fn target_name(upstreams: &Upstreams, pipe: &Pipe) -> String {
    target_label(upstreams, pipe).unwrap_or_else(|| "unknown".to_string())
}

fn route_name<'a>(seen: &'a Seen<'_>, route: Option<RouteId>) -> Option<&'a str> {
    route.and_then(|id| seen.routes.get(id)).map(|r| r.name())
}
