//! What the embedder asks of single pipes through the
//! [`Handle`](crate::Handle) or a hook's [`PipeControl`](crate::PipeControl):
//! pause, resume, abort, re-target, list, and attach two sockets of its own.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use log::debug;

use mio::net::TcpStream;
use socket2::SockRef;

use super::Reactor;
use crate::config::{self, format_size, ConfigError};
use crate::dial::{Dial, Dialed};
use crate::hooks::{slot, Asked, CommandError, Direction, PipeId};
use crate::net;
use crate::pipe::{self, Pipe, Reason, Verdict};

const WAYS: [Direction; 2] = [Direction::ClientToTarget, Direction::TargetToClient];

/// Where a live pipe is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PipeState {
    /// Its target has not accepted yet; the client's first bytes wait.
    Connecting,
    /// Bytes flow both ways.
    Open,
    /// One direction has ended with a FIN; the other still flows.
    HalfClosed,
}

/// A live pipe as [`Handle::pipes`](crate::Handle::pipes) sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PipeInfo {
    /// Its identity, as the hooks name it.
    pub id: PipeId,
    /// The route it came in on; `None` for an attached pipe.
    pub route: Option<String>,
    /// The client's address.
    pub client: SocketAddr,
    /// The target's name, or the address of an attached one.
    pub target: String,
    /// Where it is in its life.
    pub state: PipeState,
    /// Either direction is paused by the embedder.
    pub paused: bool,
    /// Which directions the embedder paused: client → target, then
    /// target → client.
    pub paused_directions: [bool; 2],
    /// Bytes delivered to the target so far.
    pub bytes_toward_target: u64,
    /// Bytes delivered to the client so far.
    pub bytes_toward_client: u64,
    /// Bytes read from the client and not yet delivered.
    pub buffered_toward_target: usize,
    /// Bytes read from the target and not yet delivered.
    pub buffered_toward_client: usize,
    /// Since accept (or attach).
    pub age: Duration,
}

/// How a pipe of two attached sockets is run: what a route says of its
/// pipes. The default is a route's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachOptions {
    /// Ring capacity per direction: the high-water mark.
    pub buffer_size: usize,
    /// Reading resumes once the ring drains to this.
    pub low_water: usize,
    /// If the target socket is still connecting, how long it may take.
    pub connect_timeout: Option<Duration>,
    /// Reset the pipe after this long with no byte either way.
    pub idle_timeout: Option<Duration>,
    /// Once one direction has ended, reset the pipe if the other moves
    /// no byte for this long.
    pub half_close_timeout: Option<Duration>,
    /// Whether bytes move with `splice(2)`.
    pub splice: config::Splice,
    /// Bytes the embedder already read from the client (to sniff its
    /// protocol, say): delivered to the target before anything the client
    /// sends from now on, exactly once, and counted as the client's. At
    /// most `buffer_size`.
    pub early_bytes: Vec<u8>,
}

impl Default for AttachOptions {
    fn default() -> AttachOptions {
        AttachOptions {
            buffer_size: config::DEFAULT_BUFFER_SIZE,
            low_water: config::DEFAULT_BUFFER_SIZE / 2,
            connect_timeout: Some(config::DEFAULT_CONNECT_TIMEOUT),
            idle_timeout: None,
            half_close_timeout: Some(config::DEFAULT_HALF_CLOSE_TIMEOUT),
            splice: config::Splice::Auto,
            early_bytes: Vec::new(),
        }
    }
}

/// What to do to one pipe, for [`Handle::submit`](crate::Handle::submit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipeAction {
    /// Stop reading one direction's source, or both's (`None`).
    Pause(Option<Direction>),
    /// Read one direction's source again, or both's (`None`).
    Resume(Option<Direction>),
    /// End it with a reset on both sides.
    Abort,
    /// Connect it to this address instead; only before it has connected.
    Retarget(SocketAddr),
}

impl PipeAction {
    /// The same request as a hook would make it.
    fn asked(self) -> Asked {
        let mut asked = Asked::default();
        let ways = |way: Option<Direction>| match way {
            Some(way) => slot(way)..slot(way) + 1,
            None => 0..2,
        };
        match self {
            PipeAction::Pause(way) => ways(way).for_each(|i| asked.hold[i] = Some(true)),
            PipeAction::Resume(way) => ways(way).for_each(|i| asked.hold[i] = Some(false)),
            PipeAction::Abort => asked.abort = true,
            PipeAction::Retarget(addr) => asked.target = Some(addr),
        }
        asked
    }
}

impl Reactor {
    fn key_of(&self, id: PipeId) -> Result<usize, CommandError> {
        self.pipes
            .iter()
            .find(|(_, pipe)| pipe.id == id.0 && !pipe.closing)
            .map(|(key, _)| key)
            .ok_or(CommandError::NoSuchPipe(id))
    }

    pub(super) fn on_pipe_command(
        &mut self,
        id: PipeId,
        action: PipeAction,
    ) -> Result<(), CommandError> {
        let key = self.key_of(id)?;
        let pipe = self.pipes.get(key).ok_or(CommandError::NoSuchPipe(id))?;
        if let PipeAction::Retarget(_) = action {
            // Only `pipe_opened` may swap a socket that came connected.
            if pipe.is_open() || !pipe.can_retarget() {
                return Err(CommandError::TooLate(id));
            }
        }
        match self.apply_asked(key, action.asked(), Verdict::Wait) {
            // Registrations and timers follow from what the pipe wants now.
            Verdict::Wait => self.carry_out(key, Verdict::Wait),
            // Re-registering READABLE would bring an event for a source
            // that filled while unwatched; driving the pipe reads it at
            // once instead, a poll round trip sooner.
            Verdict::Again => self.drive(key),
            other => self.carry_out(key, other),
        }
        Ok(())
    }

    /// Carries out what a hook (or a command) asked of pipe `key`, whose
    /// last drive decided `verdict`; returns what the reactor does next. A
    /// pipe that is ending anyway ends as it would have. A new target
    /// replaces a failover.
    pub(super) fn apply_asked(&mut self, key: usize, asked: Asked, verdict: Verdict) -> Verdict {
        if let Verdict::Close(_) = verdict {
            return verdict;
        }
        if asked.abort {
            return Verdict::Close(Reason::Aborted);
        }
        let mut verdict = verdict;
        if let Some(addr) = asked.target {
            verdict = match self.point_pipe_at(key, addr) {
                Ok(true) => Verdict::Wait,
                Ok(false) => verdict,
                Err(e) => {
                    debug!("cannot connect to {addr}: {e}");
                    return Verdict::Close(Reason::Unreachable { attempts: 1 });
                }
            };
        }
        let Some(pipe) = self.pipes.get_mut(key) else {
            return verdict;
        };
        let mut resumed = false;
        for (way, hold) in WAYS.into_iter().zip(asked.hold) {
            match hold {
                Some(true) => pipe.hold(way),
                Some(false) if pipe.holds(way) => {
                    pipe.release_hold(way, self.now);
                    resumed = true;
                }
                _ => {}
            }
        }
        match verdict {
            Verdict::Wait if resumed => Verdict::Again,
            other => other,
        }
    }

    /// Connects pipe `key` to `addr` in place of its target, if it may
    /// still be re-targeted; `Ok(false)` if not. The target it leaves
    /// counts the pipe no more; the new one is known by its address only,
    /// as an attached socket's is.
    fn point_pipe_at(&mut self, key: usize, addr: SocketAddr) -> io::Result<bool> {
        let Some(pipe) = self.pipes.get_mut(key) else {
            return Ok(false);
        };
        if !pipe.can_retarget() {
            return Ok(false);
        }
        let socket = net::upstream_socket(addr, None)?;
        let stream = net::start_connect(socket, addr)?;
        let (left, was_open) = (pipe.target(), pipe.is_open());
        pipe.point_at(stream, addr);
        debug!("pipe {}: re-targeted to {addr}", pipe.id);
        if let Some(left) = left {
            self.upstreams.pipe_left(left, was_open, self.now);
        }
        Ok(true)
    }

    pub(super) fn list_pipes(&self) -> Vec<PipeInfo> {
        self.pipes
            .iter()
            .filter(|(_, pipe)| !pipe.closing)
            .map(|(_, pipe)| PipeInfo {
                id: PipeId(pipe.id),
                route: pipe
                    .route()
                    .and_then(|id| self.routes.get(id))
                    .map(|r| r.name().to_string()),
                client: pipe.peer,
                target: pipe
                    .target()
                    .and_then(|t| self.upstreams.target_name(t))
                    .map(str::to_string)
                    .or_else(|| pipe.target_addr().map(|a| a.to_string()))
                    .unwrap_or_default(),
                state: if !pipe.is_open() {
                    PipeState::Connecting
                } else if pipe.is_half_closed() {
                    PipeState::HalfClosed
                } else {
                    PipeState::Open
                },
                paused: pipe.is_held(),
                paused_directions: WAYS.map(|way| pipe.holds(way)),
                bytes_toward_target: pipe.bytes_toward_target(),
                bytes_toward_client: pipe.bytes_toward_client(),
                buffered_toward_target: pipe.buffered(Direction::ClientToTarget),
                buffered_toward_client: pipe.buffered(Direction::TargetToClient),
                age: pipe.age(self.now),
            })
            .collect()
    }

    /// Pipes two sockets the embedder connected itself, with the same flow
    /// control and close rules as any other pipe. It belongs to no route:
    /// only the process-wide connection limit counts it.
    pub(super) fn attach(
        &mut self,
        client: TcpStream,
        target: TcpStream,
        options: &AttachOptions,
    ) -> Result<PipeId, CommandError> {
        if self.shutting_down() {
            return Err(CommandError::ShuttingDown);
        }
        check(options).map_err(CommandError::Invalid)?;
        if options.early_bytes.len() > options.buffer_size {
            return Err(CommandError::Invalid(ConfigError::new(
                "early_bytes",
                format_size(options.early_bytes.len()),
                format!(
                    "must fit in buffer_size ({})",
                    format_size(options.buffer_size)
                ),
            )));
        }
        let peer = client.peer_addr().map_err(CommandError::Io)?;
        // A still-connecting target is watched like one the forwarder dialed.
        let connected = net::connect_outcome(&target).map_err(CommandError::Io)?;
        for socket in [&client, &target] {
            // A forwarder must not add Nagle delay.
            net::tune(SockRef::from(socket), None).map_err(CommandError::Io)?;
        }
        let settings = Arc::new(pipe::Settings {
            route: None,
            buffer_size: options.buffer_size,
            low_water: options.low_water,
            connect_timeout: options.connect_timeout,
            idle_timeout: options.idle_timeout,
            half_close_timeout: options.half_close_timeout,
            // The embedder's sockets keep the options it gave them.
            keepalive: None,
            splice: options.splice,
            rates: Default::default(),
        });
        let mut dial = Dial::new(1);
        dial.attempts = 1;
        let dialed = Dialed {
            target: None,
            stream: target,
            connected,
        };
        let id = self.next_pipe_id();
        let mut pipe = Pipe::new(id, settings, (client, peer), (dialed, dial), self.now);
        if !options.early_bytes.is_empty() {
            pipe.send_early_bytes(
                &options.early_bytes,
                &mut self.rings,
                &self.observers.metrics,
            );
        }
        self.start_pipe(pipe);
        Ok(PipeId(id))
    }
}

fn check(options: &AttachOptions) -> Result<(), ConfigError> {
    if let Some(reason) = config::buffer_size_problem(options.buffer_size) {
        return Err(ConfigError::new(
            "buffer_size",
            format_size(options.buffer_size),
            reason,
        ));
    }
    if options.low_water >= options.buffer_size {
        return Err(ConfigError::new(
            "low_water",
            format_size(options.low_water),
            format!(
                "must be below buffer_size ({})",
                format_size(options.buffer_size)
            ),
        ));
    }
    Ok(())
}
