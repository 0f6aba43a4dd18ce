//! The event loop: one `mio::Poll` on one thread, the listener, the pipes in
//! a slab, the timers, and shutdown.
//!
//! Each turn: block in poll (not at all while the ready list or the accept
//! queue has work), dispatch the events, serve the ready list, fire due
//! timers, then free the pipes that closed during the turn. Frees wait for
//! the end of the turn so that an event still in the batch for a closed pipe
//! can never reach a new pipe that reused its slab slot.

mod accept;
mod connector;

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use socket2::TcpKeepalive;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::net;
use crate::pipe::{Closing, Context, Expiry, Failure, Outcome, Pipe, Side, Timeouts};
use crate::resolver::Resolver;
use crate::ring::RingPool;
use crate::standby::Standbys;
use crate::timers::Timers;
use crate::upstream::{HealthPolicy, Upstreams};
use connector::SpareSocket;

const LISTENER: Token = Token(usize::MAX);
const CONTROL: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// Standby connections (warm pool, probes) are tokens from here up; pipes
/// stay below.
const STANDBY_BASE: usize = usize::MAX / 2;

/// A pipe's two sockets are tokens `2 × key` (client) and `2 × key + 1`
/// (target), so one slab entry serves both.
fn pipe_tokens(key: usize) -> [Token; 2] {
    [Token(key * 2), Token(key * 2 + 1)]
}

fn decode_token(token: Token) -> (usize, Side) {
    let side = if token.0 % 2 == 0 {
        Side::Client
    } else {
        Side::Target
    };
    (token.0 / 2, side)
}

/// Bytes one pipe may read per turn before others get theirs.
const BYTES_PER_TURN: usize = 1 << 20;
/// Connections accepted per turn before pipes get theirs.
const ACCEPTS_PER_TURN: usize = 256;
/// How soon to retry accepting after running out of descriptors or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Idle rings kept for reuse, beyond which freed rings go back to the allocator.
const SPARE_RINGS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Pipe { key: usize, id: u64 },
    Standby { key: usize, id: u64 },
    PoolRefill { target: usize },
    HealthProbe,
    AcceptRetry,
    DrainDeadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptTrigger {
    ListenerEvent,
    /// The last turn stopped at the per-turn cap.
    Continue,
    Retry,
    PipeFreed,
}

/// How other threads reach the loop: a waker and a count of shutdown
/// requests.
pub(crate) struct Control {
    pub(crate) waker: Arc<Waker>,
    pub(crate) shutdown_requests: AtomicUsize,
}

pub(crate) struct Reactor {
    config: Config,
    timeouts: Timeouts,
    keepalive: Option<TcpKeepalive>,
    poll: Poll,
    /// `None` once shutdown has begun.
    listener: Option<TcpListener>,
    /// False while paused at the connection limit.
    listener_registered: bool,
    upstreams: Upstreams,
    standbys: Standbys,
    resolver: Option<Resolver>,
    /// An upstream socket opened before `accept`, so that a client is only
    /// accepted when its target socket is already in hand.
    spare_socket: Option<SpareSocket>,
    /// The accept cap was hit with connections possibly still queued.
    accept_more_pending: bool,
    /// Since when accepting fails for lack of descriptors or memory.
    accept_backoff: Option<Instant>,
    /// Since when the connection limit has kept clients waiting.
    at_limit_since: Option<Instant>,
    accept_retry_armed: bool,
    failed_accepts: u64,
    pipes: Slab<Pipe>,
    pool: RingPool,
    timers: Timers<Timer>,
    /// Pipes whose turn ended with bytes still ready to move.
    ready: VecDeque<(usize, u64)>,
    /// Pipes to free at the end of this turn.
    closing: Vec<usize>,
    next_pipe_id: u64,
    metrics: Arc<Metrics>,
    control: Arc<Control>,
    signals: Option<Signals>,
    drain_deadline: Option<Instant>,
    /// The time this turn started; all activity stamps in the turn use it.
    now: Instant,
    exit: bool,
}

impl Reactor {
    /// A reactor over a bound listener; `bind` in forwarder.rs does the
    /// fallible setup.
    pub(crate) fn new(config: Config, listener: TcpListener) -> io::Result<Reactor> {
        let mut listener = listener;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), CONTROL)?);
        let resolver = config
            .resolve_interval
            .and_then(|interval| Resolver::spawn(&config.targets, interval, Arc::clone(&waker)));
        let upstreams = Upstreams::new(
            &config.targets,
            config.balance,
            HealthPolicy {
                fail_threshold: config.fail_threshold,
                cooldown: config.cooldown,
            },
        );
        Ok(Reactor {
            standbys: Standbys::new(config.targets.len()),
            upstreams,
            resolver,
            timeouts: Timeouts {
                connect: config.connect_timeout,
                idle: config.idle_timeout,
                half_close: config.half_close_timeout,
            },
            keepalive: config.keepalive.map(net::keepalive),
            pool: RingPool::new(config.buffer_size, SPARE_RINGS),
            config,
            poll,
            listener: Some(listener),
            listener_registered: true,
            spare_socket: None,
            accept_more_pending: false,
            accept_backoff: None,
            at_limit_since: None,
            accept_retry_armed: false,
            failed_accepts: 0,
            pipes: Slab::new(),
            timers: Timers::new(),
            ready: VecDeque::new(),
            closing: Vec::new(),
            next_pipe_id: 1,
            metrics: Arc::new(Metrics::default()),
            control: Arc::new(Control {
                waker,
                shutdown_requests: AtomicUsize::new(0),
            }),
            signals: None,
            drain_deadline: None,
            now: Instant::now(),
            exit: false,
        })
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn control(&self) -> &Arc<Control> {
        &self.control
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// SIGTERM and SIGINT become shutdown requests. SIGHUP, which operators
    /// send to forwarders to reload them, must not kill the process by its
    /// default action while reloading is not supported.
    pub(crate) fn watch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.fill_pools();
        self.probe_targets();
        while !self.exit {
            let timeout = if self.ready.is_empty() && !self.accept_more_pending {
                self.timers.time_to_next(Instant::now())
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
                match event.token() {
                    LISTENER => self.accept_connections(AcceptTrigger::ListenerEvent),
                    CONTROL => self.on_control(),
                    SIGNALS => self.on_signals(),
                    token if token.0 >= STANDBY_BASE => self.on_standby_event(token, event),
                    token => self.on_pipe_event(token, event),
                }
            }
            if self.accept_more_pending {
                self.accept_connections(AcceptTrigger::Continue);
            }
            self.serve_ready_list();
            self.fire_timers();
            self.free_closed_pipes();
            if self.drain_deadline.is_some() && self.pipes.is_empty() {
                info!("every pipe has finished; exiting");
                self.exit = true;
            }
        }
        Ok(())
    }

    // ----- pipes -------------------------------------------------------------

    fn on_pipe_event(&mut self, token: Token, event: &Event) {
        let (key, side) = decode_token(token);
        match self.pipes.get_mut(key) {
            Some(pipe) if pipe.closing.is_none() => pipe.note_event(side, event),
            _ => return,
        }
        self.drive(key);
    }

    fn drive(&mut self, key: usize) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        let mut ctx = Context {
            pool: &mut self.pool,
            metrics: &self.metrics,
            low_water: self.config.low_water,
            now: self.now,
        };
        let was_connected = pipe.is_connected();
        let outcome = pipe.drive(&mut ctx, BYTES_PER_TURN);
        if !was_connected && pipe.is_connected() {
            let target = pipe.target_index;
            self.target_succeeded(target);
        }
        self.after_drive(key, outcome);
    }

    fn after_drive(&mut self, key: usize, outcome: Outcome) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        match outcome {
            Outcome::Finished => return self.close(key, Closing::Clean, "both sides finished"),
            Outcome::Failed(failure) => return self.fail(key, failure),
            Outcome::Waiting => {}
            Outcome::Unfinished => {
                if !pipe.queued {
                    pipe.queued = true;
                    self.ready.push_back((key, pipe.id));
                }
            }
        }
        if let Err(e) = pipe.update_interest(self.poll.registry(), pipe_tokens(key)) {
            return self.fail(key, Failure::Poll(e));
        }
        if let Some(due) = pipe.next_deadline(&self.timeouts) {
            if pipe.timer_due.map_or(true, |armed| due < armed) {
                pipe.timer_due = Some(due);
                self.timers.push(due, Timer::Pipe { key, id: pipe.id });
            }
        }
    }

    fn serve_ready_list(&mut self) {
        for _ in 0..self.ready.len() {
            let Some((key, id)) = self.ready.pop_front() else {
                break;
            };
            match self.pipes.get_mut(key) {
                Some(pipe) if pipe.id == id => {
                    pipe.queued = false;
                    if pipe.closing.is_none() {
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
        if pipe.id != id || pipe.closing.is_some() || pipe.timer_due != Some(due) {
            return; // stale: the slot was reused, or a newer deadline replaced this one
        }
        pipe.timer_due = None;
        match pipe.expired(&self.timeouts, self.now) {
            Some(Expiry::Connect) => {
                let e = io::Error::new(ErrorKind::TimedOut, "connect timed out");
                self.fail(key, Failure::Connect(e));
            }
            Some(Expiry::Idle) => {
                self.metrics.timed_out_total.add(1);
                self.close(key, Closing::Abort, "idle timeout");
            }
            Some(Expiry::HalfClose) => {
                self.metrics.timed_out_total.add(1);
                self.close(key, Closing::Abort, "half-close timeout");
            }
            None => self.after_drive(key, Outcome::Waiting),
        }
    }

    fn fail(&mut self, key: usize, failure: Failure) {
        let Some(pipe) = self.pipes.get(key) else {
            return;
        };
        let (id, peer) = (pipe.id, pipe.peer);
        match &failure {
            Failure::Connect(e) => {
                if self.fail_over(key, e) {
                    return;
                }
                let attempts = self.pipes.get(key).map_or(0, |pipe| pipe.attempts);
                warn!("pipe {id}: no target could be reached in {attempts} attempts; resetting client {peer}");
            }
            Failure::Io(side, e) => debug!("pipe {id}: {} side: {e}", side.name()),
            Failure::Poll(e) => error!("pipe {id}: cannot register with poll: {e}"),
        }
        self.close(key, Closing::Abort, "reset");
    }

    /// Marks a pipe for freeing at the end of the turn.
    fn close(&mut self, key: usize, how: Closing, reason: &str) {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return;
        };
        if pipe.closing.is_some() {
            return;
        }
        pipe.closing = Some(how);
        if how == Closing::Abort {
            self.metrics.aborted_total.add(1);
        }
        debug!(
            "pipe {}: closing ({reason}{}) after {:.1?}, {} bytes toward target, {} toward client",
            pipe.id,
            if how == Closing::Abort {
                ", RST both sides"
            } else {
                ""
            },
            pipe.age(self.now),
            pipe.bytes_toward_target(),
            pipe.bytes_toward_client(),
        );
        self.closing.push(key);
    }

    fn free_closed_pipes(&mut self) {
        if self.closing.is_empty() {
            return;
        }
        for key in self.closing.drain(..) {
            if let Some(pipe) = self.pipes.try_remove(key) {
                let how = pipe.closing.unwrap_or(Closing::Abort);
                self.upstreams.pipe_released(pipe.target_index);
                if !pipe.is_connected() {
                    self.upstreams
                        .attempt_abandoned(pipe.target_index, self.now);
                }
                pipe.close(how, &mut self.pool, &self.metrics);
                self.metrics.live_pipes.sub(1);
            }
        }
        // Descriptors and a slot were freed: a client waiting in the backlog
        // may now be served, with no new event to say so.
        if !self.listener_registered || self.accept_backoff.is_some() {
            self.accept_connections(AcceptTrigger::PipeFreed);
        }
    }

    // ----- timers, control, shutdown ----------------------------------------

    fn fire_timers(&mut self) {
        while let Some((due, timer)) = self.timers.pop_due(self.now) {
            match timer {
                Timer::Pipe { key, id } => self.on_pipe_timer(key, id, due),
                Timer::Standby { key, id } => self.on_standby_timer(key, id),
                Timer::PoolRefill { target } => self.refill_pool(target),
                Timer::HealthProbe => self.probe_targets(),
                Timer::AcceptRetry => {
                    self.accept_retry_armed = false;
                    if self.accept_backoff.is_some() {
                        self.accept_connections(AcceptTrigger::Retry);
                    }
                }
                Timer::DrainDeadline => {
                    info!(
                        "drain timeout: aborting {} pipes still open",
                        self.pipes.len() - self.closing.len()
                    );
                    self.abort_all();
                    self.exit = true;
                }
            }
        }
    }

    fn on_control(&mut self) {
        self.apply_resolved();
        let requests = self.control.shutdown_requests.swap(0, Ordering::SeqCst);
        for _ in 0..requests {
            self.request_shutdown();
        }
    }

    fn on_signals(&mut self) {
        let received: Vec<i32> = match self.signals.as_mut() {
            Some(signals) => signals.pending().collect(),
            None => Vec::new(),
        };
        for signal in received {
            if signal == SIGHUP {
                warn!("SIGHUP: reloading the configuration is not supported yet; carrying on");
            } else {
                self.request_shutdown();
            }
        }
    }

    fn request_shutdown(&mut self) {
        if self.drain_deadline.is_some() {
            info!(
                "second shutdown request: aborting {} pipes",
                self.pipes.len() - self.closing.len()
            );
            self.abort_all();
            self.exit = true;
            return;
        }
        // Closing the listener makes new connects fail at once instead of
        // waiting in a backlog nobody will serve.
        self.listener = None;
        self.spare_socket = None;
        self.standbys.clear();
        self.accept_more_pending = false;
        let deadline = self.now + self.config.drain_timeout;
        self.drain_deadline = Some(deadline);
        self.timers.push(deadline, Timer::DrainDeadline);
        info!(
            "shutting down: no longer accepting; {} pipes may finish within {:?}",
            self.pipes.len() - self.closing.len(),
            self.config.drain_timeout
        );
    }

    fn abort_all(&mut self) {
        let keys: Vec<usize> = self.pipes.iter().map(|(key, _)| key).collect();
        for key in keys {
            self.close(key, Closing::Abort, "shutdown");
        }
        self.free_closed_pipes();
    }
}
