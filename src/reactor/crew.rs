//! One reactor among several workers (see `src/workers.rs`): the leader
//! passes each reload it applied on to the others, and its probes'
//! verdicts and resolved addresses; a follower applies them as the leader
//! did, bound to the same addresses.

use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use log::{debug, error, warn};

use super::control::{Command, ReloadError, Reloaded};
use super::workers::Peer;
use super::Reactor;
use crate::access_log::AccessLog;
use crate::config::Config;
use crate::upstream::News;

/// What a follower takes from the leader when it applies a config: where
/// the leader's listeners are bound, and its access log.
pub(crate) struct Follow {
    /// Per route of the config, per listen address: the address bound.
    binds: Vec<Vec<SocketAddr>>,
    pub(crate) access_log: AccessLog,
}

impl Follow {
    /// Where to bind listen address `j` of route `i` (configured `addr`).
    pub(crate) fn bind_for(&self, i: usize, j: usize, addr: SocketAddr) -> SocketAddr {
        self.binds
            .get(i)
            .and_then(|route| route.get(j))
            .copied()
            .unwrap_or(addr)
    }
}

/// A reload on its way through the workers, the leader first: each
/// applies it and sends it to the next; the last answers the caller.
pub(crate) struct Relay {
    config: Config,
    follow: Follow,
    /// The worker it goes to next.
    next: usize,
    /// The leader's result, or the first follower's failure.
    outcome: Result<Reloaded, ReloadError>,
    /// Who waits for the outcome.
    replies: Vec<Sender<Result<Reloaded, ReloadError>>>,
}

impl Reactor {
    fn peers(&self) -> &[Peer] {
        self.crew.get().map_or(&[], |crew| crew.peers.as_slice())
    }

    /// What a follower needs to apply `config` as this leader just did.
    pub(crate) fn follow(&self, config: &Config) -> Follow {
        let binds = config
            .routes
            .iter()
            .map(|route| {
                let listeners = self
                    .routes
                    .active(&route.name)
                    .and_then(|id| self.routes.get(id))
                    .map(|route| route.listeners.clone())
                    .unwrap_or_default();
                listeners
                    .iter()
                    .filter_map(|&key| self.routes.listeners.get(key))
                    .map(|listener| listener.local)
                    .collect()
            })
            .collect();
        Follow {
            binds,
            access_log: self.observers.access_log.share(),
        }
    }

    /// The leader applied (or refused) a reload: a refused one, or one
    /// with no other worker, is answered now; else it goes on to worker 2.
    pub(super) fn pass_reload(
        &mut self,
        config: Config,
        outcome: Result<Reloaded, ReloadError>,
        replies: Vec<Sender<Result<Reloaded, ReloadError>>>,
    ) {
        if outcome.is_err() || !self.share.has_peers() {
            super::control::answer_reload(replies, outcome);
            return;
        }
        let follow = self.follow(&config);
        let relay = Relay {
            config,
            follow,
            next: 1,
            outcome,
            replies,
        };
        self.relay(Box::new(relay));
    }

    /// Sends `relay` to its next worker, or answers once every worker has it.
    fn relay(&self, relay: Box<Relay>) {
        match self.peers().get(relay.next) {
            Some(peer) => {
                let worker = relay.next + 1;
                if !peer.send(Command::Follow(relay)) {
                    error!("worker {worker} has stopped; it did not get the reload");
                }
            }
            None => {
                super::control::answer_reload(relay.replies, relay.outcome);
            }
        }
    }

    /// A follower applies the reload the leader applied.
    pub(super) fn on_relay(&mut self, mut relay: Box<Relay>) {
        let worker = self.share.index + 1;
        self.follow = Some(Follow {
            binds: std::mem::take(&mut relay.follow.binds),
            access_log: relay.follow.access_log.share(),
        });
        let applied = self.apply(relay.config.clone(), false);
        relay.follow.binds = self.follow.take().map(|f| f.binds).unwrap_or_default();
        match applied {
            Ok(reloaded) => {
                for line in reloaded.summary {
                    debug!("worker {worker}: reload: {line}");
                }
            }
            Err(e) => {
                error!("worker {worker}: reload failed; this worker keeps the running config: {e}");
                if relay.outcome.is_ok() {
                    relay.outcome = Err(e);
                }
            }
        }
        relay.next += 1;
        self.relay(relay);
    }

    /// A reload cannot change the number of workers: said once, by the
    /// leader, as a summary line.
    pub(super) fn workers_kept(&self, config: &Config, starting: bool) -> Option<String> {
        if starting || config.workers == self.share.count {
            return None;
        }
        if self.share.is_leader() {
            warn!(
                "reload: workers stays {} (the config asks for {}): the number of workers is set at startup",
                self.share.count, config.workers
            );
        }
        Some(format!(
            "workers {} kept (asked for {}; set at startup only)",
            self.share.count, config.workers
        ))
    }

    /// Every follower gets the command `make` builds (shutdown on a signal).
    pub(super) fn tell_followers(&self, make: impl Fn() -> Command) {
        for peer in self.peers().iter().skip(1) {
            peer.send(make());
        }
    }

    /// A shutdown signal: the first time, every follower closes its
    /// listeners before this one does and logs it, so that once the log
    /// says so no worker accepts (each waited for at most a second); a
    /// second time, every worker aborts.
    pub(super) fn shut_every_worker_down(&mut self, cause: &str) {
        if self.shutting_down() {
            self.request_shutdown(cause);
            self.tell_followers(|| Command::Shutdown);
            return;
        }
        let acks: Vec<_> = self
            .peers()
            .iter()
            .skip(1)
            .filter_map(|peer| {
                let (ack, acked) = std::sync::mpsc::channel();
                peer.send(Command::ShutdownAck(ack)).then_some(acked)
            })
            .collect();
        for acked in acks {
            let _ = acked.recv_timeout(std::time::Duration::from_secs(1));
        }
        self.request_shutdown(cause);
    }

    /// Live pipes of the whole process, as `max-connections` counts them.
    pub(super) fn process_pipes(&self) -> usize {
        match self.crew.get() {
            Some(crew) if self.share.has_peers() => crew.live_pipes(),
            _ => self.pipes.len(),
        }
    }

    /// Whether this worker's pause at `max-connections` starts an episode
    /// of the process (always, with one worker).
    pub(super) fn first_at_limit(&self) -> bool {
        match self.crew.get() {
            Some(crew) if self.share.has_peers() => crew.limit_reached(),
            _ => true,
        }
    }

    pub(super) fn left_limit(&self) {
        if let Some(crew) = self.crew.get() {
            crew.limit_left();
        }
    }

    pub(super) fn count_opened(&self) {
        if let Some(crew) = self.crew.get() {
            crew.pipe_opened();
        }
    }

    /// `freed` pipes were freed here; returns whether the process was at
    /// its limit before.
    pub(super) fn count_freed(&self, freed: usize) -> bool {
        let Some(crew) = self.crew.get().filter(|_| freed > 0) else {
            return false;
        };
        crew.pipes_freed(freed) >= self.limits.max_connections
    }

    /// The process was at its limit and this worker has served its own
    /// waiting clients first: places still free go to the other workers,
    /// whose waiting clients no event of theirs will announce.
    pub(super) fn offer_freed_places(&self) {
        let Some(crew) = self.crew.get() else {
            return;
        };
        if crew.live_pipes() >= self.limits.max_connections {
            return;
        }
        for (index, peer) in crew.peers.iter().enumerate() {
            if index != self.share.index {
                peer.send(Command::Freed);
            }
        }
    }

    /// The leader's probe verdicts and new addresses go to every follower.
    pub(super) fn share_news(&mut self) {
        let news = self.upstreams.take_news();
        if news.is_empty() {
            return;
        }
        for peer in self.peers().iter().skip(1) {
            peer.send(Command::News(news.clone()));
        }
    }

    pub(super) fn on_news(&mut self, news: Vec<News>) {
        for news in news {
            self.upstreams
                .apply_news(news, self.poll.registry(), self.now);
        }
    }

    /// The leader waits for every follower before it exits, so that a
    /// second signal still reaches them and the process ends with the last.
    pub(super) fn followers_done(&self) -> bool {
        !self.share.is_leader() || self.crew.get().map_or(true, |crew| crew.followers_done())
    }
}
