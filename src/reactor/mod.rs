//! The event loop: one `mio::Poll` on one thread, the routes and their
//! listeners, the pipes in a slab, the timers, and the loop's controls.
//!
//! Each turn: block in poll (not at all while the ready list or an accept
//! queue has work), dispatch the events, serve the ready list, fire due
//! timers, then free the pipes that closed during the turn. Frees wait for
//! the end of the turn so that an event still in the batch for a closed pipe
//! can never reach a new pipe that reused its slab slot.
//!
//! | module     | the idea                                                     |
//! |------------|--------------------------------------------------------------|
//! | `mod`      | poll, tokens, dispatch, driving pipes and carrying out their verdicts, timers |
//! | `routes`   | the routes and their listening sockets                       |
//! | `accept`   | accepting: the backlog, the per-turn cap, connection limits, back-off |
//! | `awaiting` | clients of `accept-proxy` routes until their PROXY header is read |
//! | `admission`| the routes' source rules and per-source limits; turning clients away |
//! | `reload`   | applying a new config in place                               |
//! | `control`  | commands from other threads, signals, reloads, shutdown      |
//! | `notify`   | telling systemd: ready, reloading, stopping, watchdog pings  |
//! | `commands` | what the embedder asks of single pipes: pause, resume, abort, list, attach |
//! | `events`   | telling the embedder's hooks what happened                    |
//! | `stats`    | counting for metrics, and the snapshot a scrape gets         |
//! | `access`   | the access log's lines                                       |
//! | `crew`     | one worker among several: following the leader's reloads and news |
//! | `workers`  | every worker of a forwarder, as its handles and the other loops reach them |

mod accept;
mod access;
mod admission;
mod awaiting;
mod commands;
mod control;
mod crew;
mod events;
mod notify;
mod reload;
mod routes;
mod stats;
pub(crate) mod workers;

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
#[cfg(feature = "cli")]
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::{Events, Poll, Token, Waker};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::hooks::Hooks;
use crate::kernel_pipe::{KernelPipePool, SPARE_KERNEL_PIPES};
use crate::metrics::{Exporter, Metrics};
use crate::pipe::{Closing, Context, Pipe, Reason, Side, Verdict};
use crate::ring::RingPool;
use crate::share::Share;
use crate::systemd::Notifier;
use crate::text::format_elapsed;
use crate::throttle::Throttle;
use crate::timers::Timers;
use crate::upstream::{self, Upstreams};
use routes::Routes;
use workers::Crew;

pub use commands::{AttachOptions, PipeAction, PipeInfo, PipeState};
pub(crate) use control::Command;
pub use control::{ReloadError, Reloaded};
pub(crate) use crew::Follow;
pub(crate) use routes::RouteId;

/// Bytes one pipe may read per turn before others get theirs.
const BYTES_PER_TURN: usize = 1 << 20;
/// Connections accepted per listener per turn before pipes get theirs.
const ACCEPTS_PER_TURN: usize = 256;
/// How soon to retry accepting after running out of descriptors or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Idle rings kept for reuse, beyond which freed rings go back to the allocator.
const SPARE_RINGS: usize = 64;

// ----- tokens ------------------------------------------------------------------

/// Tokens, from the bottom: a pipe's two sockets are `2 × key` (client) and
/// `2 × key + 1` (target), so one slab entry serves both; then listeners,
/// pooled connections, probes and clients awaiting a PROXY header, each in
/// a range of its own; the waker and the signals at the top.
const LISTENER_BASE: usize = usize::MAX / 2;
const POOLED_BASE: usize = LISTENER_BASE + (usize::MAX / 8);
const PROBE_BASE: usize = POOLED_BASE + (usize::MAX / 8);
const AWAITING_BASE: usize = PROBE_BASE + (usize::MAX / 8);
const CONTROL: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

enum Source {
    Pipe(usize, Side),
    Listener(usize),
    Pooled(usize),
    Probe(usize),
    Awaiting(usize),
    Control,
    Signals,
}

fn decode(token: Token) -> Source {
    match token {
        CONTROL => Source::Control,
        SIGNALS => Source::Signals,
        Token(t) if t >= AWAITING_BASE => Source::Awaiting(t - AWAITING_BASE),
        Token(t) if t >= PROBE_BASE => Source::Probe(t - PROBE_BASE),
        Token(t) if t >= POOLED_BASE => Source::Pooled(t - POOLED_BASE),
        Token(t) if t >= LISTENER_BASE => Source::Listener(t - LISTENER_BASE),
        Token(t) if t % 2 == 0 => Source::Pipe(t / 2, Side::Client),
        Token(t) => Source::Pipe(t / 2, Side::Target),
    }
}

fn pipe_tokens(key: usize) -> [Token; 2] {
    [Token(key * 2), Token(key * 2 + 1)]
}

fn listener_token(key: usize) -> Token {
    Token(LISTENER_BASE + key)
}

fn pooled_token(key: usize) -> Token {
    Token(POOLED_BASE + key)
}

fn probe_token(key: usize) -> Token {
    Token(PROBE_BASE + key)
}

fn awaiting_token(key: usize) -> Token {
    Token(AWAITING_BASE + key)
}

// ----- the reactor ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Pipe {
        key: usize,
        id: u64,
    },
    AcceptRetry,
    /// A shutdown's drain deadline.
    DrainDeadline,
    /// A removed route's drain deadline.
    RouteDrained(RouteId),
    /// The `proxy-timeout` of a client awaiting its PROXY header.
    ProxyHeader {
        key: usize,
        id: u64,
    },
    /// Time to tell systemd's watchdog the loop still turns.
    Watchdog,
}

/// Process-wide settings of the running config.
struct Limits {
    max_connections: usize,
    drain_timeout: Option<Duration>,
}

pub(crate) struct Reactor {
    poll: Poll,
    routes: Routes,
    upstreams: Upstreams,
    limits: Limits,
    pipes: Slab<Pipe>,
    /// Clients awaiting their PROXY header, not pipes yet.
    awaiting: Slab<awaiting::Awaiting>,
    /// Slots of `awaiting` to free at the end of this turn.
    awaiting_left: Vec<usize>,
    rings: RingPool,
    /// Kernel pipes for spliced directions.
    kernel_pipes: KernelPipePool,
    timers: Timers<Timer>,
    /// Pipes whose turn ended with bytes still ready to move.
    ready: VecDeque<(usize, u64)>,
    /// Pipes to free at the end of this turn, and why they ended.
    closing: Vec<(usize, Reason)>,
    next_pipe_id: u64,
    accepting: accept::State,
    commands: Receiver<Command>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    /// systemd's notify socket, when run as a notify service (the leader's).
    systemd: Option<Notifier>,
    /// The file SIGHUP reloads, if the config came from one, and the
    /// `[global]` settings that win over it at every reload.
    #[cfg(feature = "cli")]
    config_file: Option<(PathBuf, crate::config::Overrides)>,
    reloading: control::FileReload,
    metrics: Arc<Metrics>,
    /// The embedder's; `None` costs nothing on the forwarding path.
    hooks: Option<Box<dyn Hooks>>,
    access_log: AccessLog,
    /// The `/metrics` endpoint, with the address the config gave it.
    exporter: Option<(SocketAddr, Exporter)>,
    started: SystemTime,
    /// A shutdown is draining the pipes.
    shutting_down: bool,
    unreachable_warnings: Throttle,
    refusal_warnings: admission::RefusalWarnings,
    /// The time this turn started; all activity stamps in the turn use it.
    now: Instant,
    exit: bool,
    /// Which worker this is, of how many.
    share: Share,
    /// Every worker, once all are made.
    crew: Arc<OnceLock<Arc<Crew>>>,
    /// A follower's part of the config being applied, from the leader.
    follow: Option<Follow>,
}

impl Reactor {
    /// A reactor running `config`: every listener bound, every pool filling.
    /// Worker `share` of a forwarder whose workers make up `crew`; a
    /// follower binds where the leader did (`follow`).
    pub(crate) fn new(
        config: Config,
        hooks: Option<Box<dyn Hooks>>,
        share: Share,
        crew: Arc<OnceLock<Arc<Crew>>>,
        follow: Option<Follow>,
    ) -> Result<Reactor, ReloadError> {
        let poll = Poll::new().map_err(ReloadError::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), CONTROL).map_err(ReloadError::Io)?);
        let metrics = Arc::new(Metrics::default());
        let (commands, receiver) = std::sync::mpsc::channel();
        let tokens = upstream::Tokens {
            pool: pooled_token,
            probe: probe_token,
        };
        let mut reactor = Reactor {
            upstreams: Upstreams::new(tokens, Arc::clone(&waker), Arc::clone(&metrics), share),
            poll,
            routes: Routes::new(),
            limits: Limits {
                max_connections: config.max_connections,
                drain_timeout: config.drain_timeout,
            },
            pipes: Slab::new(),
            awaiting: Slab::new(),
            awaiting_left: Vec::new(),
            rings: RingPool::new(SPARE_RINGS),
            kernel_pipes: KernelPipePool::new(SPARE_KERNEL_PIPES),
            timers: Timers::new(),
            ready: VecDeque::new(),
            closing: Vec::new(),
            next_pipe_id: share.first_pipe_id(),
            accepting: accept::State::default(),
            commands: receiver,
            waker,
            signals: None,
            systemd: None,
            #[cfg(feature = "cli")]
            config_file: None,
            reloading: control::FileReload::new(commands),
            metrics,
            hooks,
            access_log: AccessLog::off(),
            exporter: None,
            started: SystemTime::now(),
            shutting_down: false,
            unreachable_warnings: Throttle::default(),
            refusal_warnings: admission::RefusalWarnings::default(),
            now: Instant::now(),
            exit: false,
            share,
            crew,
            follow,
        };
        if reactor.hooks.is_some() {
            reactor.upstreams.report_health();
        }
        if share.has_peers() && share.is_leader() {
            reactor.upstreams.keep_news();
        }
        let starting = format!(
            "tcpipe {}: {}, pid {}, max-connections {}",
            env!("CARGO_PKG_VERSION"),
            plural(share.count, "worker"),
            std::process::id(),
            config.max_connections
        );
        let started = reactor.apply(config, true)?;
        reactor.follow = None;
        if share.is_leader() {
            info!("{starting}");
        }
        for line in started.summary {
            if share.is_leader() {
                info!("{line}");
            } else {
                debug!("worker {}: {line}", share.index + 1);
            }
        }
        Ok(reactor)
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics` is served, as bound.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.exporter.as_ref().map(|(_, exporter)| exporter.addr())
    }

    /// Every (route name, bound address).
    pub(crate) fn listening(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.routes.listening()
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.notify_ready();
        while !self.exit {
            let timeout = if self.ready.is_empty() && !self.accepting.more_pending {
                let next = [self.timers.next_deadline(), self.upstreams.next_deadline()]
                    .into_iter()
                    .flatten()
                    .min();
                next.map(|due| due.saturating_duration_since(Instant::now()))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            for event in events.iter() {
                self.dispatch(event);
            }
            if self.accepting.more_pending {
                self.accept_pending();
            }
            self.serve_ready_list();
            self.fire_timers();
            self.free_closed_pipes();
            if self.hooks.is_some() {
                self.tell_health_changes();
            }
            if self.share.has_peers() && self.share.is_leader() {
                self.share_news();
            }
            if self.shutting_down && self.pipes.is_empty() && self.followers_done() {
                if self.share.is_leader() {
                    info!("every pipe has finished; exiting");
                }
                self.exit = true;
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, event: &Event) {
        let registry = self.poll.registry();
        match decode(event.token()) {
            Source::Pipe(key, side) => self.on_pipe_event(key, side, event),
            Source::Listener(key) => self.accept_on(key, accept::Trigger::ListenerEvent),
            Source::Pooled(key) => self.upstreams.on_pool_event(key, event, registry, self.now),
            Source::Probe(key) => self.upstreams.on_probe_event(key, registry, self.now),
            Source::Awaiting(key) => self.on_awaiting_event(key, event),
            Source::Control => self.on_control(),
            Source::Signals => self.on_signals(),
        }
    }

    // ----- pipes -------------------------------------------------------------

    /// A new pipe's id: the id in logs and hooks, and its generation.
    fn next_pipe_id(&mut self) -> u64 {
        let id = self.next_pipe_id;
        self.next_pipe_id += self.share.pipe_id_step();
        id
    }

    /// A new pipe joins the slab: counted, announced to the hooks, and
    /// driven at once (its client may have sent bytes already).
    fn start_pipe(&mut self, pipe: Pipe) {
        let key = self.pipes.insert(pipe);
        self.metrics.live_pipes.add(1);
        if self.share.has_peers() {
            self.count_opened();
        }
        let mut verdict = Verdict::Wait;
        if self.hooks.is_some() {
            verdict = self.tell_opened(key);
        }
        if self.access_log.logs_opens() {
            self.log_opened(key);
        }
        match verdict {
            Verdict::Wait | Verdict::Again => self.drive(key),
            ended => self.carry_out(key, ended),
        }
    }

    fn on_pipe_event(&mut self, key: usize, side: Side, event: &Event) {
        match self.pipes.get_mut(key) {
            Some(pipe) if !pipe.closing => pipe.note_event(side, event),
            _ => return,
        }
        self.drive(key);
    }

    fn drive(&mut self, key: usize) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            pool: &mut self.rings,
            kernel_pipes: &mut self.kernel_pipes,
            metrics: &self.metrics,
            now: self.now,
            budget: BYTES_PER_TURN,
        };
        let before = self.hooks.is_some().then(|| events::Before::of(pipe));
        let milestones = stats::Milestones::before(pipe);
        let was_open = pipe.is_open();
        let mut verdict = pipe.drive(&mut ctx);
        if !was_open && pipe.is_open() {
            if let Some(target) = pipe.target() {
                self.upstreams
                    .connect_succeeded(target, self.poll.registry(), self.now);
            }
        }
        if milestones.pending() {
            self.count_milestones(key, &milestones);
        }
        if let Some(before) = before {
            verdict = self.after_drive(key, before, verdict);
        }
        self.carry_out(key, verdict);
    }

    /// Does what the pipe decided.
    fn carry_out(&mut self, key: usize, verdict: Verdict) {
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

    fn serve_ready_list(&mut self) {
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

    fn on_pipe_timer(&mut self, key: usize, id: u64, due: Instant) {
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

    /// Marks a pipe for freeing at the end of the turn.
    fn close(&mut self, key: usize, reason: Reason) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        if pipe.closing {
            return;
        }
        pipe.closing = true;
        let how = reason.closing();
        if how == Closing::Abort {
            self.metrics.aborted_total.add(1);
        }
        if reason.is_timeout() {
            self.metrics.timed_out_total.add(1);
        }
        debug!(
            "pipe {}: closing ({reason}{}) after {}, {} toward target, {} toward client",
            pipe.id,
            if how == Closing::Abort {
                ", RST both sides"
            } else {
                ""
            },
            format_elapsed(pipe.age(self.now)),
            plural(pipe.bytes_toward_target() as usize, "byte"),
            plural(pipe.bytes_toward_client() as usize, "byte"),
        );
        let (id, peer) = (pipe.id, pipe.peer);
        match &reason {
            Reason::Unreachable { attempts } => self.log_unreachable(id, *attempts, peer),
            Reason::Poll(_) => error!("pipe {id}: {reason}"),
            _ => {}
        }
        self.closing.push((key, reason));
    }

    fn free_closed_pipes(&mut self) {
        let awaiting_freed = self.free_left_awaiting();
        if self.closing.is_empty() && !awaiting_freed {
            return;
        }
        let mut freed = 0;
        for (key, reason) in std::mem::take(&mut self.closing) {
            let Some(pipe) = self.pipes.try_remove(key) else {
                continue;
            };
            freed += 1;
            if self.hooks.is_some() {
                self.tell_closed(&pipe, &reason);
            }
            self.count_closed(&pipe, &reason);
            if self.access_log.logs_closes() {
                self.log_closed(&pipe, &reason);
            }
            if let Some(target) = pipe.target() {
                self.upstreams.pipe_left(target, pipe.is_open(), self.now);
            }
            if let Some(route) = pipe.route() {
                if let Some(counted) = self.routes.get_mut(route) {
                    counted.per_source.remove(pipe.peer.ip());
                }
                self.route_lost_pipe(route);
            }
            pipe.close(
                reason.closing(),
                &mut self.rings,
                &mut self.kernel_pipes,
                &self.metrics,
            );
            self.metrics.live_pipes.sub(1);
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
    fn route_lost_pipe(&mut self, id: RouteId) {
        let Some(route) = self.routes.get_mut(id) else {
            return;
        };
        route.live_pipes -= 1;
        if route.retired && route.live_pipes == 0 {
            info!("route {}: removed; its last pipe has ended", route.name());
            self.routes.routes.remove(id);
        }
    }

    // ----- timers ------------------------------------------------------------

    fn fire_timers(&mut self) {
        self.upstreams.fire_timers(self.poll.registry(), self.now);
        while let Some((due, timer)) = self.timers.pop_due(self.now) {
            match timer {
                Timer::Pipe { key, id } => self.on_pipe_timer(key, id, due),
                Timer::AcceptRetry => self.on_accept_retry(),
                Timer::DrainDeadline => {
                    info!(
                        "drain timeout: aborting {} still open",
                        plural(self.open_pipes(), "pipe")
                    );
                    self.abort_all(|_| true, || Reason::Drained);
                    self.exit = true;
                }
                Timer::RouteDrained(route) => self.on_route_drained(route),
                Timer::ProxyHeader { key, id } => self.on_proxy_header_timer(key, id),
                Timer::Watchdog => self.on_watchdog(),
            }
        }
    }

    fn open_pipes(&self) -> usize {
        self.pipes.len() - self.closing.len()
    }

    /// Closes every pipe for which `which` holds, and frees them at once.
    fn abort_all(&mut self, which: impl Fn(&Pipe) -> bool, reason: impl Fn() -> Reason) {
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

impl Reactor {
    /// Every connect the route allows failed: the client is reset, as a
    /// direct connection would have been refused. While every target is
    /// down this happens to every client, so it is logged once a second.
    fn log_unreachable(&mut self, id: u64, attempts: u32, client: std::net::SocketAddr) {
        if let Some(held_back) = self.unreachable_warnings.allow(self.now) {
            warn!(
                "pipe {id}: no target could be reached in {}; resetting client {client}{held_back}",
                plural(attempts as usize, "attempt")
            );
        }
    }
}

pub(crate) use crate::text::plural;
