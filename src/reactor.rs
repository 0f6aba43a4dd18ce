//! The event loop: one `mio::Poll` on one thread, the listener, the pipes in
//! a slab, the timers, and shutdown.
//!
//! Each turn: block in poll (not at all while the ready list or the accept
//! queue has work), dispatch the events, serve the ready list, fire due
//! timers, then free the pipes that closed during the turn. Frees wait for
//! the end of the turn so that an event still in the batch for a closed pipe
//! can never reach a new pipe that reused its slab slot.

use std::collections::VecDeque;
use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, error, info, warn};
use mio::event::Event;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;
use socket2::{SockRef, Socket, TcpKeepalive};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::net;
use crate::pipe::{Closing, Context, Expiry, Failure, Outcome, Pipe, Side, Timeouts};
use crate::ring::RingPool;
use crate::timers::Timers;

const LISTENER: Token = Token(usize::MAX);
const CONTROL: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);

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
    pub(crate) waker: Waker,
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
    /// An upstream socket opened before `accept`, so that a client is only
    /// accepted when its target socket is already in hand.
    spare_socket: Option<Socket>,
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
        let waker = Waker::new(poll.registry(), CONTROL)?;
        Ok(Reactor {
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

    /// SIGTERM and SIGINT become shutdown requests.
    pub(crate) fn watch_signals(&mut self) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
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

    // ----- accepting -------------------------------------------------------

    fn accept_connections(&mut self, trigger: AcceptTrigger) {
        if self.accept_backoff.is_some() && trigger == AcceptTrigger::ListenerEvent {
            // Only the retry timer or a freed pipe may try again, or we spin.
            return;
        }
        self.accept_more_pending = false;
        for _ in 0..ACCEPTS_PER_TURN {
            if self.listener.is_none() {
                return;
            }
            if self.pipes.len() >= self.config.max_connections {
                self.pause_listener();
                return;
            }
            if !self.resume_listener() {
                return;
            }
            let socket = match self.spare_socket.take() {
                Some(socket) => socket,
                None => match net::upstream_socket(self.config.target, self.keepalive.as_ref()) {
                    Ok(socket) => socket,
                    Err(e) => return self.back_off_accepting(e),
                },
            };
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((client, peer)) => self.open_pipe(client, peer, socket),
                Err(e) => {
                    self.spare_socket = Some(socket);
                    if e.kind() == ErrorKind::WouldBlock {
                        self.backlog_drained();
                        return;
                    }
                    if net::is_transient_accept_error(&e) {
                        debug!("accept: {e}; going on");
                        continue;
                    }
                    return self.back_off_accepting(e);
                }
            }
        }
        self.accept_more_pending = true;
    }

    fn pause_listener(&mut self) {
        if !self.listener_registered {
            return;
        }
        if let Some(listener) = self.listener.as_mut() {
            if let Err(e) = self.poll.registry().deregister(listener) {
                error!("cannot pause the listener: {e}");
                return;
            }
        }
        self.listener_registered = false;
        if self.at_limit_since.is_none() {
            self.at_limit_since = Some(self.now);
            info!(
                "connection limit of {} reached; new clients wait in the backlog",
                self.config.max_connections
            );
        }
    }

    /// Returns false if the listener cannot be registered again.
    fn resume_listener(&mut self) -> bool {
        if self.listener_registered {
            return true;
        }
        let Some(listener) = self.listener.as_mut() else {
            return false;
        };
        match self
            .poll
            .registry()
            .register(listener, LISTENER, Interest::READABLE)
        {
            Ok(()) => {
                self.listener_registered = true;
                debug!("below the connection limit; accepting again");
                true
            }
            Err(e) => {
                self.back_off_accepting(e);
                false
            }
        }
    }

    /// Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or any
    /// other error that is not about one connection: never exit, never spin.
    /// Retry on a short timer and whenever a pipe closes; say so once per burst.
    fn back_off_accepting(&mut self, e: io::Error) {
        self.failed_accepts += 1;
        if self.accept_backoff.is_none() {
            self.accept_backoff = Some(self.now);
            warn!(
                "cannot accept: {e}; retrying every {} ms and whenever a pipe closes ({} live pipes)",
                ACCEPT_RETRY.as_millis(),
                self.pipes.len()
            );
        }
        if !self.accept_retry_armed {
            self.accept_retry_armed = true;
            self.timers
                .push(self.now + ACCEPT_RETRY, Timer::AcceptRetry);
        }
    }

    /// Every waiting client has been taken: a shortage or a stretch at the
    /// connection limit is over only now, not when one client got through,
    /// so each is logged once however many clients it held back.
    fn backlog_drained(&mut self) {
        if let Some(since) = self.accept_backoff.take() {
            info!(
                "accepting again after {:.1?} ({} attempts failed)",
                self.now.saturating_duration_since(since),
                self.failed_accepts
            );
            self.failed_accepts = 0;
        }
        if let Some(since) = self.at_limit_since.take() {
            info!(
                "below the connection limit again after {:.1?}",
                self.now.saturating_duration_since(since)
            );
        }
    }

    fn open_pipe(&mut self, client: TcpStream, peer: SocketAddr, socket: Socket) {
        let id = self.next_pipe_id;
        self.next_pipe_id += 1;
        self.metrics.accepted_total.add(1);
        let target = self.config.target;
        let upstream = match net::start_connect(socket, target) {
            Ok(stream) => stream,
            Err(e) => {
                warn!("pipe {id}: cannot connect to {target}: {e}; resetting client {peer}");
                self.metrics.connect_failures_total.add(1);
                self.metrics.aborted_total.add(1);
                net::abort_on_close(SockRef::from(&client));
                return;
            }
        };
        debug!("pipe {id}: accepted {peer}, connecting to {target}");
        let key = self.pipes.insert(Pipe::new(id, client, upstream, self.now));
        self.metrics.live_pipes.add(1);
        self.after_drive(key, Outcome::Waiting);
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
        let outcome = pipe.drive(&mut ctx, BYTES_PER_TURN);
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
        let id = pipe.id;
        match &failure {
            Failure::Connect(e) => {
                warn!("pipe {id}: cannot connect to {}: {e}", self.config.target);
                self.metrics.connect_failures_total.add(1);
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
        let mut ctx = Context {
            pool: &mut self.pool,
            metrics: &self.metrics,
            low_water: self.config.low_water,
            now: self.now,
        };
        for key in self.closing.drain(..) {
            if let Some(pipe) = self.pipes.try_remove(key) {
                let how = pipe.closing.unwrap_or(Closing::Abort);
                pipe.close(how, &mut ctx);
                ctx.metrics.live_pipes.sub(1);
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
        let requests = self.control.shutdown_requests.swap(0, Ordering::SeqCst);
        for _ in 0..requests {
            self.request_shutdown();
        }
    }

    fn on_signals(&mut self) {
        let received = match self.signals.as_mut() {
            Some(signals) => signals.pending().count(),
            None => 0,
        };
        for _ in 0..received {
            self.request_shutdown();
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
