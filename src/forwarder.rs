//! The public face of a forwarder: bind it, run it, and talk to it from
//! other threads through a [`Handle`].

use std::io;
use std::net::SocketAddr;
#[cfg(feature = "cli")]
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};
use std::thread;

use log::error;

#[cfg(feature = "cli")]
use crate::config::Overrides;
use crate::config::{Config, ConfigError};
use crate::hooks::{CommandError, Direction, Hooks, PipeId};
use crate::metrics::Metrics;
use crate::reactor::workers::{Crew, Peer};
use crate::reactor::{
    AttachOptions, Command, PipeAction, PipeInfo, Reactor, ReloadError, Reloaded,
};
use crate::reply::Pending;
use crate::share::{owner_of, Share};
pub use crate::start_error::StartError;

/// Talks to a running forwarder from any thread: shutdown, reload, and
/// the pipe commands. Every method but [`shutdown`](Handle::shutdown),
/// [`metrics`](Handle::metrics), [`submit`](Handle::submit) and
/// [`attach_async`](Handle::attach_async) waits for the event loop's
/// answer, and none is answered before [`Forwarder::run`] has started.
/// Called on a loop's own thread (from a hook), where waiting would never
/// end, those return [`CommandError::OnLoopThread`] (or
/// [`ReloadError::OnLoopThread`]) at once: a hook acts on its pipe through
/// its [`PipeControl`](crate::PipeControl). With several workers
/// (`Config::workers`) each command goes to every worker, or to the one
/// that owns the pipe.
///
/// For async code, [`submit`](Handle::submit) and
/// [`attach_async`](Handle::attach_async) send the command and return a
/// [`Pending`] future at once, woken by the loop when it has answered; it
/// needs no particular runtime.
#[derive(Clone)]
pub struct Handle {
    pub(crate) crew: Arc<Crew>,
    /// With several workers: their metrics summed at each call.
    total: Arc<Metrics>,
}

impl Handle {
    fn of(crew: &Arc<Crew>) -> Handle {
        let total = Arc::default();
        Handle {
            crew: Arc::clone(crew),
            total,
        }
    }

    /// Same as SIGTERM: stop accepting and let live pipes finish within the
    /// drain timeout. A second call aborts the rest at once.
    pub fn shutdown(&self) {
        // The first worker last: it logs the shutdown for all.
        for peer in self.crew.peers.iter().rev() {
            peer.send(Command::Shutdown);
        }
    }

    /// Applies `config` in place, as SIGHUP does with the config file:
    /// routes are matched by name; live pipes keep their route, target and
    /// settings. Returns once the event loop has applied it, or refused it
    /// (then the running config stays in force, unchanged). With several
    /// workers the first applies it, then each of the others in turn; the
    /// summary is the first worker's, and an error is the first one met.
    /// The number of workers stays as it started.
    pub fn reload(&self, config: Config) -> Result<Reloaded, ReloadError> {
        if self.crew.on_loop_thread() {
            return Err(ReloadError::OnLoopThread);
        }
        self.ask(self.leader(), |reply| Command::Reload {
            config: Box::new(config),
            reply,
        })
        .ok_or(ReloadError::Stopped)?
    }

    /// Reads the config file again and applies it, as SIGHUP does (the file
    /// given to [`Forwarder::reload_on_sighup`], with its overrides), and
    /// answers how it went: [`ReloadError::NoFile`] if there is no file.
    /// A reload asked for while another is under way is done after it.
    /// Needs the `cli` feature.
    #[cfg(feature = "cli")]
    pub fn reload_file(&self) -> Result<Reloaded, ReloadError> {
        if self.crew.on_loop_thread() {
            return Err(ReloadError::OnLoopThread);
        }
        self.ask(self.leader(), Command::ReloadFile)
            .ok_or(ReloadError::Stopped)?
    }

    /// Stops reading both sides of a pipe. What it has buffered is still
    /// delivered, nothing is dropped, and the kernel's receive windows push
    /// back on the peers until [`resume`](Handle::resume). While paused, an
    /// open pipe's idle and half-close timeouts wait too.
    pub fn pause(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Pause(None))
    }

    /// Reads both sides of a paused pipe again, at once.
    pub fn resume(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Resume(None))
    }

    /// Stops reading one direction's source (the client for
    /// [`ClientToTarget`](Direction::ClientToTarget)); the other direction
    /// keeps flowing. Lossless as [`pause`](Handle::pause): what is
    /// buffered that way is still delivered, and the sender's kernel window
    /// pushes back on it. A FIN or reset from the paused source waits for
    /// the resume as its bytes do (a reset the OS reports is still heard).
    /// While either direction is paused, an open pipe's idle and half-close
    /// timeouts wait.
    pub fn pause_direction(&self, id: PipeId, direction: Direction) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Pause(Some(direction)))
    }

    /// Reads one direction's source again, at once.
    pub fn resume_direction(&self, id: PipeId, direction: Direction) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Resume(Some(direction)))
    }

    /// Ends a pipe with a reset on both sides; its hooks hear
    /// [`CloseReason::Aborted`](crate::CloseReason::Aborted).
    pub fn abort(&self, id: PipeId) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Abort)
    }

    /// Connects a pipe that has not connected yet to `target` instead
    /// (any address, in a route's targets or not): the bytes the client
    /// sent meanwhile wait in the ring and reach the new target exactly
    /// once, as after a failover. No failover follows if this connect
    /// fails. In the access log, `/metrics`' per-target series and
    /// [`PipeInfo::target`] it is named by its address, as an attached
    /// pipe's target is. [`CommandError::TooLate`] once it has connected.
    pub fn retarget(&self, id: PipeId, target: SocketAddr) -> Result<(), CommandError> {
        self.pipe_command(id, PipeAction::Retarget(target))
    }

    /// Sends `action` for pipe `id` and returns at once, without waiting
    /// for the loop: a future of the outcome, for async code (or to
    /// [`wait`](Pending::wait) for later). It may be called from a hook too.
    pub fn submit(&self, id: PipeId, action: PipeAction) -> Pending<()> {
        let owner = &self.crew.peers[owner_of(id.0, self.crew.count())];
        let (reply, pending) = Pending::new();
        if !owner.send(Command::Pipe { id, action, reply }) {
            return Pending::failed(CommandError::Stopped);
        }
        pending
    }

    /// Every live pipe, of every worker: its route, ends, state and counters.
    pub fn pipes(&self) -> Result<Vec<PipeInfo>, CommandError> {
        if self.crew.on_loop_thread() {
            return Err(CommandError::OnLoopThread);
        }
        let answers: Vec<_> = self
            .crew
            .peers
            .iter()
            .filter_map(|peer| {
                let (reply, answer) = mpsc::channel();
                peer.send(Command::List(reply)).then_some(answer)
            })
            .collect();
        let mut pipes: Option<Vec<PipeInfo>> = None;
        for answer in answers {
            if let Ok(listed) = answer.recv() {
                pipes.get_or_insert_with(Vec::new).extend(listed);
            }
        }
        pipes.ok_or(CommandError::Stopped)
    }

    /// Pipes two sockets the caller connected itself (Workerman's
    /// `setSource`/`setTarget`/`pipe()`), with route defaults: the same
    /// flow control, close rules and hooks as any other pipe. With several
    /// workers, pairs go to them in turn.
    pub fn attach(
        &self,
        client: impl IntoStream,
        target: impl IntoStream,
    ) -> Result<PipeId, CommandError> {
        self.attach_with(client, target, AttachOptions::default())
    }

    /// [`attach`](Handle::attach) with its buffer and timeouts chosen,
    /// and with the client bytes the caller already read
    /// ([`AttachOptions::early_bytes`]). The target socket may still be
    /// connecting; if its connect fails or times out, the client is reset.
    pub fn attach_with(
        &self,
        client: impl IntoStream,
        target: impl IntoStream,
        options: AttachOptions,
    ) -> Result<PipeId, CommandError> {
        if self.crew.on_loop_thread() {
            return Err(CommandError::OnLoopThread);
        }
        self.attach_async(client, target, options).wait()
    }

    /// [`attach_with`](Handle::attach_with) without waiting: a future of
    /// the new pipe's id, for async code.
    pub fn attach_async(
        &self,
        client: impl IntoStream,
        target: impl IntoStream,
        options: AttachOptions,
    ) -> Pending<PipeId> {
        let streams = client
            .into_stream()
            .and_then(|client| Ok((client, target.into_stream()?)));
        let (client, target) = match streams {
            Ok(both) => both,
            Err(e) => return Pending::failed(CommandError::Io(e)),
        };
        let (reply, pending) = Pending::new();
        let sent = self.crew.next_for_attach().send(Command::Attach {
            client,
            target,
            options,
            reply,
        });
        if !sent {
            return Pending::failed(CommandError::Stopped);
        }
        pending
    }

    /// The forwarder's counters and gauges. With one worker (the default)
    /// they are live: read them as often as you like. With several, each
    /// worker keeps its own (so that updating them stays a plain store on
    /// its own thread) and this returns their sum taken now: call it again
    /// for newer values.
    pub fn metrics(&self) -> &Metrics {
        match self.crew.metrics.as_slice() {
            [only] => only,
            all => {
                self.total.set_to_sum(all);
                &self.total
            }
        }
    }

    /// Every metric, per route and target, in the Prometheus text format:
    /// what `GET /metrics` serves (with several workers, their sum).
    pub fn prometheus(&self) -> Result<String, CommandError> {
        if self.crew.on_loop_thread() {
            return Err(CommandError::OnLoopThread);
        }
        self.crew
            .scrape()
            .map(|snapshot| crate::metrics::render(&snapshot))
            .ok_or(CommandError::Stopped)
    }

    fn pipe_command(&self, id: PipeId, action: PipeAction) -> Result<(), CommandError> {
        if self.crew.on_loop_thread() {
            return Err(CommandError::OnLoopThread);
        }
        self.submit(id, action).wait()
    }

    fn leader(&self) -> &Peer {
        &self.crew.peers[0]
    }

    /// Every worker, for the operator's commands (`src/runtime.rs`).
    pub(crate) fn crew(&self) -> &Crew {
        &self.crew
    }

    /// Sends `peer` the command `make` builds around a reply channel, and
    /// waits for the answer; `None` if the loop has ended.
    fn ask<T>(&self, peer: &Peer, make: impl FnOnce(Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = mpsc::channel();
        if !peer.send(make(reply)) {
            return None;
        }
        answer.recv().ok()
    }
}

/// A connected TCP socket the forwarder can take over: a
/// `std::net::TcpStream` (made non-blocking here) or a `mio::net::TcpStream`.
pub trait IntoStream {
    /// The socket as the event loop uses it.
    fn into_stream(self) -> io::Result<mio::net::TcpStream>;
}

impl IntoStream for std::net::TcpStream {
    fn into_stream(self) -> io::Result<mio::net::TcpStream> {
        self.set_nonblocking(true)?;
        Ok(mio::net::TcpStream::from_std(self))
    }
}

impl IntoStream for mio::net::TcpStream {
    fn into_stream(self) -> io::Result<mio::net::TcpStream> {
        Ok(self)
    }
}

/// Makes worker `n`'s hooks (0 for the first).
type HooksFactory = Box<dyn FnMut(usize) -> Box<dyn Hooks> + Send>;

/// A forwarder's settings before it binds: its config, and optionally the
/// embedder's [`Hooks`].
pub struct Builder {
    config: Config,
    hooks: Option<Box<dyn Hooks>>,
    factory: Option<HooksFactory>,
    systemd_sockets: bool,
}

impl Builder {
    /// Sets the hooks the forwarder calls on its event loop's thread. For
    /// a forwarder of one worker (the default); with several, use
    /// [`hooks_per_worker`](Builder::hooks_per_worker).
    pub fn hooks(mut self, hooks: impl Hooks + 'static) -> Builder {
        self.hooks = Some(Box::new(hooks));
        self.factory = None;
        self
    }

    /// Sets hooks for any number of workers: `make(n)` is called once per
    /// worker at [`bind`](Builder::bind) (`n` from 0), and each worker
    /// calls its own hooks on its own thread, about its own pipes, with no
    /// lock between them. Share what they count through an `Arc` of atomics
    /// or a channel; a [`PipeId`] names its worker, so a command for it
    /// from anywhere reaches the right one.
    pub fn hooks_per_worker<H, F>(mut self, mut make: F) -> Builder
    where
        H: Hooks + 'static,
        F: FnMut(usize) -> H + Send + 'static,
    {
        self.factory = Some(Box::new(move |n| Box::new(make(n)) as Box<dyn Hooks>));
        self.hooks = None;
        self
    }

    /// Listens on the sockets systemd passed (socket activation:
    /// `LISTEN_FDS`, when `LISTEN_PID` is this process) for the routes
    /// whose listen address is theirs, instead of binding those addresses;
    /// other addresses are bound as usual. A passed socket no route
    /// listens on, or one that is not a listening TCP socket, is logged
    /// and closed. The `LISTEN_*` variables are unset, so no child process
    /// takes the sockets too.
    pub fn systemd_sockets(mut self) -> Builder {
        self.systemd_sockets = true;
        self
    }

    /// Validates the config and binds every route's listeners, in every
    /// worker. In a process started by a live upgrade (`TCPIPE_UPGRADE_FD`
    /// set: see [`Handle::upgrade`]) it then takes over from the running
    /// one: its listening sockets, and every worker's connections.
    pub fn bind(self) -> Result<Forwarder, StartError> {
        self.config.validate().map_err(StartError::Config)?;
        crate::upgrade::launch::capture();
        let take_over = crate::upgrade::TakeOver::from_env().map_err(StartError::TakeOver)?;
        if self.systemd_sockets {
            crate::inherited::from_systemd();
        }
        let mut bound = self.bind_workers();
        if let (Some(take_over), Ok(forwarder)) = (&take_over, &mut bound) {
            take_over.adopt_surplus(&mut forwarder.workers());
        }
        // Every worker has its duplicates of what it was given.
        crate::inherited::settle();
        let mut forwarder = bound?;
        if let Some(take_over) = take_over {
            let finish = take_over
                .adopt_into(&mut forwarder.workers())
                .map_err(StartError::TakeOver)?;
            forwarder.reactor.took_over(finish);
        }
        Ok(forwarder)
    }

    fn bind_workers(self) -> Result<Forwarder, StartError> {
        let config = self.config;
        let count = config.workers;
        if self.hooks.is_some() && count > 1 {
            return Err(StartError::Config(ConfigError::new(
                "workers",
                count.to_string(),
                "must be 1 for hooks set with Builder::hooks: each worker calls hooks of its own, set them with Builder::hooks_per_worker",
            )));
        }
        let mut factory = self.factory;
        let mut hooks_of = |n: usize| factory.as_mut().map(|make| make(n));
        let first_hooks = self.hooks.or_else(|| hooks_of(0));
        let slot = Arc::new(OnceLock::new());
        let first = Share { index: 0, count };
        let leader = Reactor::new(config.clone(), first_hooks, first, Arc::clone(&slot), None)?;
        let mut followers = Vec::with_capacity(count - 1);
        for index in 1..count {
            let share = Share { index, count };
            let follow = Some(leader.follow(&config));
            let hooks = hooks_of(index);
            let follower = Reactor::new(config.clone(), hooks, share, Arc::clone(&slot), follow)?;
            followers.push(follower);
        }
        let workers = std::iter::once(&leader).chain(&followers);
        let peers = workers
            .clone()
            .map(|reactor| {
                let (commands, waker) = reactor.commands();
                Peer { commands, waker }
            })
            .collect();
        let metrics = workers
            .map(|reactor| Arc::clone(reactor.metrics()))
            .collect();
        let read_status = |crew: &Arc<Crew>| Handle::of(crew).status();
        let crew = Arc::new(Crew::new(peers, metrics, read_status));
        crew.set_upgrade_binary(config.upgrade_binary.clone());
        // Set once, here: nothing else fills the slot.
        let _ = slot.set(Arc::clone(&crew));
        Ok(Forwarder {
            reactor: leader,
            followers,
            crew,
            admin_endpoint: None,
        })
    }
}

/// A bound forwarder, ready to [`run`](Forwarder::run).
pub struct Forwarder {
    /// The first worker: it takes signals, reads the config file and
    /// serves `/metrics` for all.
    reactor: Reactor,
    followers: Vec<Reactor>,
    pub(crate) crew: Arc<Crew>,
    /// Where the admin API is served, for `READY=1`.
    admin_endpoint: Option<String>,
}

impl Forwarder {
    /// A forwarder of `config`, to add hooks to before it binds.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            hooks: None,
            factory: None,
            systemd_sockets: false,
        }
    }

    /// Validates `config` and binds every route's listeners: a forwarder
    /// with no hooks.
    pub fn bind(config: Config) -> Result<Forwarder, StartError> {
        Forwarder::builder(config).bind()
    }

    /// Every worker, the leader first.
    fn workers(&mut self) -> Vec<&mut Reactor> {
        std::iter::once(&mut self.reactor)
            .chain(self.followers.iter_mut())
            .collect()
    }

    /// The address the first route's first listener really bound (useful
    /// with port 0); `None` for a forwarder with no routes, which only
    /// pipes attached sockets.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.reactor.listening().first().map(|(_, addr)| *addr)
    }

    /// Where `GET /metrics` is served, as bound (`Config::metrics`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.reactor.metrics_addr()
    }

    /// Says where the admin API is served (`unix:/path` or `host:port`),
    /// for [`notify_systemd`](Forwarder::notify_systemd)'s `READY=1`
    /// (`X_TCPIPE_ADMIN=`); the binary serves it (`Config::admin`).
    pub fn announce_admin(&mut self, endpoint: impl Into<String>) {
        self.admin_endpoint = Some(endpoint.into());
    }

    /// Every route's bound addresses: (route name, address).
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.reactor.listening()
    }

    /// A handle to the forwarder for other threads.
    pub fn handle(&self) -> Handle {
        Handle::of(&self.crew)
    }

    /// The forwarder's counters and gauges: live with one worker; with
    /// several, their sum as of now (see [`Handle::metrics`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        if self.followers.is_empty() {
            return Arc::clone(self.reactor.metrics());
        }
        let total = Arc::new(Metrics::default());
        total.set_to_sum(&self.crew.metrics);
        total
    }

    /// The config file SIGHUP reloads. Reading it again happens on a thread
    /// of its own (it resolves host names); the result is applied on the
    /// event loop, or logged and ignored if anything in it is wrong. Needs
    /// the `cli` feature (the config file's parser).
    #[cfg(feature = "cli")]
    pub fn reload_on_sighup(&mut self, file: PathBuf) {
        self.reload_on_sighup_with(file, Overrides::default());
    }

    /// [`reload_on_sighup`](Forwarder::reload_on_sighup), with `overrides`
    /// set over the file's `[global]` each time it is read, as
    /// [`load_file_with`](crate::load_file_with) does. Needs the `cli`
    /// feature.
    #[cfg(feature = "cli")]
    pub fn reload_on_sighup_with(&mut self, file: PathBuf, overrides: Overrides) {
        self.reactor.reload_from(file, overrides);
    }

    /// Makes SIGTERM, SIGINT, SIGQUIT and SIGUSR1 request a graceful
    /// shutdown (a second one aborts at once), SIGHUP reload the config
    /// file given to `reload_on_sighup` (feature `cli`), and SIGUSR2 start
    /// a live upgrade ([`Handle::upgrade`]). A library user that owns signals
    /// leaves this out and uses the [`Handle`] instead.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        self.reactor.watch_signals()
    }

    /// Tells systemd how the forwarder is doing when it runs as a
    /// `Type=notify` (or `notify-reload`) service, as `NOTIFY_SOCKET` says:
    /// `READY=1` once the loop runs (every listener is bound by then),
    /// `RELOADING=1` and `READY=1` around each reload, `STOPPING=1` at a
    /// shutdown, `STATUS=` lines, and `WATCHDOG=1` at half of
    /// `WATCHDOG_USEC` if set. Without `NOTIFY_SOCKET` this does nothing.
    /// The binary calls it; an embedder that speaks to systemd itself
    /// leaves it out.
    pub fn notify_systemd(&mut self) {
        self.reactor.notify_systemd(self.admin_endpoint.clone());
    }

    /// Forwards until shut down. Returns `Ok` after a shutdown request once
    /// every pipe of every worker has finished or been aborted. The first
    /// worker runs on the calling thread, each other on a thread of its own.
    pub fn run(self) -> io::Result<()> {
        let Forwarder {
            mut reactor,
            followers,
            crew,
            ..
        } = self;
        let mut threads = Vec::with_capacity(followers.len());
        for (n, mut follower) in followers.into_iter().enumerate() {
            let done = Arc::clone(&crew);
            let spawned = thread::Builder::new()
                .name(format!("tcpipe-worker-{}", n + 2))
                .spawn(move || {
                    done.loop_started();
                    let ran = follower.run();
                    done.loop_ended();
                    done.finished();
                    ran
                });
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    abort_all(&crew);
                    let _ = join(threads);
                    return Err(e);
                }
            }
        }
        crew.loop_started();
        let ran = reactor.run();
        crew.loop_ended();
        if ran.is_err() {
            abort_all(&crew);
        }
        let followers_ran = join(threads);
        ran.and(followers_ran)
    }
}

/// Two shutdown requests: every worker aborts its pipes and ends.
fn abort_all(crew: &Crew) {
    for peer in &crew.peers {
        peer.send(Command::Shutdown);
        peer.send(Command::Shutdown);
    }
}

/// Waits for every follower's thread; the first error any of them met.
fn join(threads: Vec<thread::JoinHandle<io::Result<()>>>) -> io::Result<()> {
    let mut result = Ok(());
    for thread in threads {
        let ran = thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("a worker thread panicked")));
        if let Err(e) = ran {
            error!("a worker's event loop failed: {e}");
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result
}
