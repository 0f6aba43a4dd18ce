//! A pipe's life in the reactor: made, driven on its events, its ready-list
//! turns and its timers, its verdicts carried out, and freed at the end of
//! the turn it closed in. What each drive crossed goes to the observers;
//! how the pipe ends the pipe decides ([`Reason::closing`]).

use std::io;

use log::{debug, info};

use super::observers::seen;
use super::routes::RouteId;
use super::tokens::pipe_tokens;
use super::{accept, Reactor, Timer, BYTES_PER_TURN};
use crate::pipe::{Context, Crossed, Pipe, Reason, Side, Verdict};

impl Reactor {
    /// A new pipe's id: the id in logs and hooks, and its generation.
    pub(super) fn next_pipe_id(&mut self) -> u64 {
        let id = self.next_pipe_id;
        self.next_pipe_id += self.share.pipe_id_step();
        id
    }

    /// A new pipe joins the slab: counted, announced, and driven at once
    /// (its client may have sent bytes already).
    pub(super) fn start_pipe(&mut self, pipe: Pipe) {
        let key = self.pipes.insert(pipe);
        self.observers.metrics.live_pipes.add(1);
        if self.share.has_peers() {
            self.count_opened();
        }
        let Some(pipe) = self.pipes.get(key) else {
            return;
        };
        let asked = self.observers.opened(seen!(self), pipe);
        let mut verdict = Verdict::Wait;
        if asked.anything() {
            verdict = self.apply_asked(key, asked, verdict);
        }
        if let (Some(pipe), false) = (self.pipes.get(key), matches!(verdict, Verdict::Close(_))) {
            let opened = Crossed::opened(pipe.is_open());
            if self.observers.hears(&opened) {
                verdict = self.report_crossed(key, &opened, verdict);
            }
        }
        match verdict {
            Verdict::Wait | Verdict::Again => self.drive(key),
            ended => self.carry_out(key, ended),
        }
    }

    pub(super) fn on_pipe_event(&mut self, key: usize, side: Side, event: &mio::event::Event) {
        match self.pipes.get_mut(key) {
            Some(pipe) if !pipe.closing => pipe.note_event(side, event),
            _ => return,
        }
        self.drive(key);
    }

    pub(super) fn drive(&mut self, key: usize) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            pool: &mut self.rings,
            kernel_pipes: &mut self.kernel_pipes,
            metrics: &self.observers.metrics,
            now: self.now,
            budget: BYTES_PER_TURN,
            rate_cap: usize::MAX,
        };
        let mut crossed = Crossed::default();
        let mut verdict = pipe.drive(&mut ctx, &mut crossed);
        if crossed.connected {
            if let Some(target) = pipe.target() {
                self.upstreams
                    .connect_succeeded(target, self.poll.registry(), self.now);
            }
        }
        if self.observers.hears(&crossed) {
            verdict = self.report_crossed(key, &crossed, verdict);
        }
        self.carry_out(key, verdict);
    }

    /// Does what the pipe decided.
    pub(super) fn carry_out(&mut self, key: usize, verdict: Verdict) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        match verdict {
            Verdict::Close(reason) => return self.close(key, reason),
            Verdict::Redial(error) => return self.redial(key, &error),
            Verdict::Wait => {}
            Verdict::Again => {
                if !pipe.queued {
                    pipe.queued = true;
                    self.ready.push_back((key, pipe.id));
                }
            }
        }
        if let Err(e) = pipe.update_interest(self.poll.registry(), pipe_tokens(key)) {
            return self.close(key, Reason::Poll(e));
        }
        if let Some(due) = pipe.next_deadline() {
            if pipe.timer_due.map_or(true, |armed| due < armed) {
                pipe.timer_due = Some(due);
                self.timers.push(due, Timer::Pipe { key, id: pipe.id });
            }
        }
    }

    /// The pipe's connect failed: passive health counts it, and the next
    /// target is dialed with the bytes the client already sent; with no
    /// attempt left, the client is reset.
    fn redial(&mut self, key: usize, error: &io::Error) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        let (id, failed, client_ip) = (pipe.id, pipe.target(), pipe.peer.ip());
        // An attached socket has no target to count against, nor a route to
        // dial another; nor has a route removed by a reload.
        let group = pipe
            .route()
            .and_then(|route| self.routes.get(route))
            .filter(|route| !route.retired)
            .map(|route| route.targets);
        let Some(dial) = pipe.dial_mut() else {
            return;
        };
        if let Some(failed) = failed {
            self.upstreams.connect_failed(id, failed, error, self.now);
            dial.failed(failed);
        }
        let dialed = group.and_then(|group| {
            let registry = self.poll.registry();
            self.upstreams
                .dial(id, group, client_ip, dial, registry, self.now)
        });
        let attempts = dial.attempts;
        let Some(dialed) = dialed else {
            return self.close(key, Reason::Unreachable { attempts });
        };
        debug!(
            "pipe {id}: trying {} (attempt {attempts})",
            self.upstreams.label_of(dialed.target)
        );
        if let Some(failed) = failed {
            self.upstreams.pipe_left(failed, true, self.now);
        }
        pipe.retarget(dialed);
        self.drive(key);
    }

    pub(super) fn serve_ready_list(&mut self) {
        for _ in 0..self.ready.len() {
            let Some((key, id)) = self.ready.pop_front() else {
                break;
            };
            match self.pipes.get_mut(key) {
                Some(pipe) if pipe.id == id => {
                    pipe.queued = false;
                    if !pipe.closing {
                        self.drive(key);
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn on_pipe_timer(&mut self, key: usize, id: u64, due: std::time::Instant) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        if pipe.id != id || pipe.closing || pipe.timer_due != Some(due) {
            return; // stale: the slot was reused, or a newer deadline replaced this one
        }
        pipe.timer_due = None;
        let verdict = pipe.on_timer(self.now);
        self.carry_out(key, verdict);
    }

    /// Marks a pipe for freeing at the end of the turn, for `reason`.
    pub(super) fn close(&mut self, key: usize, reason: Reason) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        if pipe.closing {
            return;
        }
        pipe.closing = true;
        self.closing.push((key, reason));
    }

    pub(super) fn free_closed_pipes(&mut self) {
        let awaiting_freed = self.awaiting.free_left();
        let inspecting_freed = self.inspecting.free_left();
        if self.closing.is_empty() && !awaiting_freed && !inspecting_freed {
            return;
        }
        let mut freed = 0;
        for (key, reason) in std::mem::take(&mut self.closing) {
            let Some(pipe) = self.pipes.try_remove(key) else {
                continue;
            };
            freed += 1;
            self.observers.closed(seen!(self), &pipe, &reason);
            if let Some(target) = pipe.target() {
                self.upstreams.pipe_left(target, pipe.is_open(), self.now);
            }
            if let Some(route) = pipe.route() {
                if let Some(counted) = self.routes.get_mut(route) {
                    counted.per_source.remove(pipe.peer.ip());
                    if !counted.server_names.is_empty() {
                        counted.server_names.remove(&pipe.id);
                    }
                }
                self.route_lost_pipe(route);
            }
            let metrics = &self.observers.metrics;
            pipe.close(
                reason.closing(),
                &mut self.rings,
                &mut self.kernel_pipes,
                metrics,
            );
            metrics.live_pipes.sub(1);
        }
        let was_full = self.share.has_peers() && self.count_freed(freed);
        // Descriptors and slots were freed: clients waiting in a backlog may
        // now be served, with no new event to say so.
        self.accept_waiting(accept::Trigger::PipeFreed);
        if was_full {
            self.offer_freed_places();
        }
    }

    /// A pipe of `route` was freed; a removed route goes with its last pipe.
    pub(super) fn route_lost_pipe(&mut self, id: RouteId) {
        let Some(route) = self.routes.get_mut(id) else {
            return;
        };
        route.live_pipes -= 1;
        if route.retired && route.live_pipes == 0 {
            info!("route {}: removed; its last pipe has ended", route.name());
            self.routes.routes.remove(id);
        }
    }

    pub(super) fn open_pipes(&self) -> usize {
        self.pipes.len() - self.closing.len()
    }

    /// Closes every pipe for which `which` holds, and frees them at once.
    pub(super) fn abort_all(&mut self, which: impl Fn(&Pipe) -> bool, reason: impl Fn() -> Reason) {
        let keys: Vec<usize> = self
            .pipes
            .iter()
            .filter(|(_, pipe)| which(pipe))
            .map(|(key, _)| key)
            .collect();
        for key in keys {
            self.close(key, reason());
        }
        self.free_closed_pipes();
    }
}
