//! The event loop: one `mio::Poll` on one thread, the routes and their
//! listeners, the pipes in a slab, the timers, and the loop's controls.
//!
//! Each turn: block in poll (not at all while the ready list or an accept
//! queue has work), dispatch the events, serve the ready list, fire due
//! timers, then free the pipes that closed during the turn. Frees wait for
//! the end of the turn so that an event still in the batch for a closed pipe
//! can never reach a new pipe that reused its slab slot.
//!
//! The reactor only dispatches: each module below is one idea, and a new
//! feature is a module of its own plus a few lines here.
//!
//! | module      | the idea                                                    |
//! |-------------|-------------------------------------------------------------|
//! | `mod`       | the loop: poll, dispatch, timers                            |
//! | `tokens`    | which socket an event is for                                |
//! | `lifecycle` | a pipe's life: made, driven, its verdicts carried out, freed |
//! | `observers` | metrics, hooks, access log and warnings: one fan-out of what pipes and clients did |
//! | `routes`    | the routes and their listening sockets                      |
//! | `accept`    | accepting: the backlog, the per-turn cap, connection limits, back-off |
//! | `awaiting`  | clients of `accept-proxy` routes until their PROXY header is read |
//! | `inspecting` | clients of a shared address until their first bytes choose their route |
//! | `admission` | the routes' source rules and per-source limits; the one way a client is turned away |
//! | `reload`    | applying a new config in place                              |
//! | `control`   | commands from other threads, signals, reloads, shutdown     |
//! | `notify`    | telling systemd: ready, reloading, stopping, watchdog pings |
//! | `commands`  | what the embedder asks of single pipes: pause, resume, abort, list, attach |
//! | `operate`   | what an operator asks of routes and targets: show, state, weight, reset, wait for empty |
//! | `scrape`    | the snapshot a scrape of `/metrics` gets                    |
//! | `crew`      | one worker among several: following the leader's reloads and news |
//! | `workers`   | every worker of a forwarder, as its handles and the other loops reach them |
//! | `upgrade`   | a live upgrade as the loops take part: SIGUSR2, export, wait for the verdict, let go or resume |

mod accept;
mod admission;
mod awaiting;
mod commands;
mod control;
mod crew;
mod handover;
mod inspecting;
mod lifecycle;
mod notify;
mod observers;
mod operate;
mod reload;
mod routes;
mod scrape;
mod tokens;
mod upgrade;
mod waiting;
pub(crate) mod workers;

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{debug, info};
use mio::event::Event;
use mio::{Events, Poll, Waker};
use slab::Slab;

use crate::config::Config;
use crate::hooks::Hooks;
use crate::kernel_pipe::{KernelPipePool, SPARE_KERNEL_PIPES};
use crate::metrics::Metrics;
use crate::pipe::{Pipe, Reason};
use crate::ring::RingPool;
use crate::share::Share;
use crate::systemd::Notifier;
use crate::timers::Timers;
use crate::upstream::{self, Upstreams};
use observers::Observers;
use routes::Routes;
use tokens::{decode, Source, CONTROL};
use workers::Crew;

pub use commands::{AttachOptions, PipeAction, PipeInfo, PipeState};
pub(crate) use control::Command;
pub use control::{ReloadError, Reloaded};
pub(crate) use crew::Follow;
pub(crate) use operate::Ask;
pub(crate) use routes::RouteId;

/// Bytes one pipe may read per turn before others get theirs.
const BYTES_PER_TURN: usize = 1 << 20;
/// Connections accepted per listener per turn before pipes get theirs.
const ACCEPTS_PER_TURN: usize = 256;
/// How soon to retry accepting after running out of descriptors or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Idle rings kept for reuse, beyond which freed rings go back to the allocator.
const SPARE_RINGS: usize = 64;

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
    /// The `inspect-timeout` of a client of a shared address.
    Inspect {
        key: usize,
        id: u64,
    },
    /// Time to tell systemd's watchdog the loop still turns.
    Watchdog,
    /// A wait for a target to empty has reached its deadline.
    WaitEmpty,
}

/// Where the loop is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Running,
    /// A shutdown drains the pipes: nothing new is accepted.
    Draining,
    /// The loop ends after this turn.
    Exiting,
}

/// Process-wide settings of the running config.
struct Limits {
    max_connections: usize,
    drain_timeout: Option<Duration>,
    /// The admin endpoint's address: set at startup, kept by reloads.
    admin: Option<crate::config::AdminAddress>,
}

pub(crate) struct Reactor {
    poll: Poll,
    routes: Routes,
    upstreams: Upstreams,
    limits: Limits,
    pipes: Slab<Pipe>,
    /// Clients awaiting their PROXY header, not pipes yet.
    awaiting: awaiting::Table,
    /// Clients whose first bytes are read to choose their route, not pipes yet.
    inspecting: inspecting::Table,
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
    /// How other threads, signals and the config file reach the loop.
    inbox: control::Inbox,
    /// systemd's notify socket, when run as a notify service (the leader's).
    systemd: Option<Notifier>,
    /// Everything that hears what pipes and clients did.
    observers: Observers,
    /// Running, draining the pipes for a shutdown, or ending.
    run: Run,
    /// The time this turn started; all activity stamps in the turn use it.
    now: Instant,
    /// Which worker this is, of how many.
    share: Share,
    /// Every worker, once all are made.
    crew: Arc<OnceLock<Arc<Crew>>>,
    /// A follower's part of the config being applied, from the leader.
    follow: Option<Follow>,
    /// Operators waiting for a target to empty.
    waiters: Vec<operate::Waiter>,
    /// The leader of a process that took over in a live upgrade, until
    /// it has told systemd so and the old process may exit.
    taken_over: Option<crate::upgrade::Finish>,
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
            pool: tokens::pooled_token,
            probe: tokens::probe_token,
        };
        let mut reactor = Reactor {
            upstreams: Upstreams::new(tokens, Arc::clone(&waker), Arc::clone(&metrics), share),
            poll,
            routes: Routes::new(),
            limits: Limits {
                max_connections: config.max_connections,
                drain_timeout: config.drain_timeout,
                admin: config.admin.clone(),
            },
            pipes: Slab::new(),
            awaiting: awaiting::Table::default(),
            inspecting: inspecting::Table::default(),
            rings: RingPool::new(SPARE_RINGS),
            kernel_pipes: KernelPipePool::new(SPARE_KERNEL_PIPES),
            timers: Timers::new(),
            ready: VecDeque::new(),
            closing: Vec::new(),
            next_pipe_id: share.first_pipe_id(),
            accepting: accept::State::default(),
            inbox: control::Inbox::new(commands, receiver, waker),
            systemd: None,
            observers: Observers::new(metrics, hooks),
            run: Run::Running,
            now: Instant::now(),
            share,
            crew,
            follow,
            waiters: Vec::new(),
            taken_over: None,
        };
        if reactor.observers.has_hooks() {
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

    /// A shutdown is under way (draining, or ending now).
    fn shutting_down(&self) -> bool {
        self.run != Run::Running
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.observers.metrics
    }

    /// Where `/metrics` is served, as bound.
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        self.observers
            .exporter
            .as_ref()
            .map(|(_, exporter)| exporter.addr())
    }

    /// Every (route name, bound address).
    pub(crate) fn listening(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.routes.listening()
    }

    pub(crate) fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.notify_ready();
        self.finish_take_over();
        while self.run != Run::Exiting {
            self.turn(&mut events, None)?;
        }
        Ok(())
    }

    /// One turn of the loop, blocking in poll for at most `longest` (a
    /// test's bound) beyond what the timers allow.
    fn turn(&mut self, events: &mut Events, longest: Option<Duration>) -> io::Result<()> {
        let timeout = if self.ready.is_empty() && !self.accepting.more_pending {
            let next = [self.timers.next_deadline(), self.upstreams.next_deadline()]
                .into_iter()
                .flatten()
                .min();
            next.map(|due| due.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let timeout = match (timeout, longest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match self.poll.poll(events, timeout) {
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
        self.answer_waiters();
        self.observers.health_changed(&mut self.upstreams);
        if self.share.has_peers() && self.share.is_leader() {
            self.share_news();
        }
        if self.run == Run::Draining && self.pipes.is_empty() && self.followers_done() {
            if self.share.is_leader() {
                info!("every pipe has finished; exiting");
            }
            self.run = Run::Exiting;
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
            Source::Inspecting(key) => self.on_inspecting_event(key, event),
            Source::Control => self.on_control(),
            Source::Signals => self.on_signals(),
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
                    self.run = Run::Exiting;
                }
                Timer::RouteDrained(route) => self.on_route_drained(route),
                Timer::ProxyHeader { key, id } => self.on_proxy_header_timer(key, id),
                Timer::Inspect { key, id } => self.on_inspect_timer(key, id),
                Timer::Watchdog => self.on_watchdog(),
                // The waiters look at their own deadlines after the timers.
                Timer::WaitEmpty => {}
            }
        }
    }
}

pub(crate) use crate::text::plural;
