//! Re-resolves target host names on a thread of its own, so that a slow DNS
//! server never stalls forwarding. Results reach the event loop through a
//! channel and its waker.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, error, warn};
use mio::Waker;

use super::TargetId;

/// A target to watch: its id, its name, and the address it has now.
pub(crate) type Watched = (TargetId, String, SocketAddr);

/// The loop's end of the resolver: dropping it stops the thread.
pub(crate) struct Resolver {
    results: Receiver<(TargetId, SocketAddr)>,
    _stop: Sender<()>,
}

impl Resolver {
    /// Starts re-resolving every `interval` the targets given by name (IP
    /// literals never change). `None` if there is nothing to resolve.
    pub(crate) fn spawn(
        targets: Vec<Watched>,
        interval: Duration,
        waker: Arc<Waker>,
    ) -> Option<Resolver> {
        Resolver::spawn_with(targets, interval, waker, system_lookup)
    }

    /// `spawn` with the lookup given, so tests can change a name's answer.
    fn spawn_with(
        targets: Vec<Watched>,
        interval: Duration,
        waker: Arc<Waker>,
        lookup: fn(&str) -> io::Result<Vec<SocketAddr>>,
    ) -> Option<Resolver> {
        let names: Vec<Watched> = targets
            .into_iter()
            .filter(|(_, name, _)| name.parse::<SocketAddr>().is_err())
            .collect();
        if names.is_empty() {
            return None;
        }
        let (result_tx, results) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let spawned = thread::Builder::new()
            .name("tcpipe-resolver".into())
            .spawn(move || resolve_every(names, interval, lookup, &stop_rx, &result_tx, &waker));
        if let Err(e) = spawned {
            error!("cannot start the resolver thread; target addresses stay as resolved at startup: {e}");
            return None;
        }
        Some(Resolver {
            results,
            _stop: stop,
        })
    }

    /// New addresses found since the last call.
    pub(crate) fn drain(&self) -> impl Iterator<Item = (TargetId, SocketAddr)> + '_ {
        self.results.try_iter()
    }
}

fn system_lookup(name: &str) -> io::Result<Vec<SocketAddr>> {
    name.to_socket_addrs().map(Iterator::collect)
}

fn resolve_every(
    mut names: Vec<Watched>,
    interval: Duration,
    lookup: fn(&str) -> io::Result<Vec<SocketAddr>>,
    stop: &Receiver<()>,
    results: &Sender<(TargetId, SocketAddr)>,
    waker: &Waker,
) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let mut changed = false;
        for (id, name, current) in &mut names {
            match lookup(name) {
                // Keep the address while the name still lists it, so a name
                // with several records does not flap between them.
                Ok(addrs) => {
                    if let Some(&first) = addrs.first() {
                        if !addrs.contains(current) {
                            *current = first;
                            changed = true;
                            if results.send((*id, first)).is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(e) => warn!("cannot re-resolve target {name}; keeping {current}: {e}"),
            }
        }
        if changed {
            if let Err(e) = waker.wake() {
                debug!("resolver cannot wake the event loop: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arena::Arena;
    use crate::config;
    use crate::upstream::target::Target;
    use mio::{Events, Poll, Token};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    /// How many times the fake name has been looked up.
    static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

    /// `moving.test` answers 10.0.0.1 (and 10.0.0.9) at first, then only
    /// 10.0.0.2 from the third lookup on; anything else does not resolve.
    fn fake_lookup(name: &str) -> io::Result<Vec<SocketAddr>> {
        if name != "moving.test:80" {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such name"));
        }
        let n = LOOKUPS.fetch_add(1, Ordering::SeqCst);
        let answer: &[&str] = if n < 2 {
            &["10.0.0.9:80", "10.0.0.1:80"]
        } else {
            &["10.0.0.2:80"]
        };
        Ok(answer.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn a_new_address_reaches_the_loop_through_its_waker_and_a_listed_one_is_kept() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(7)).unwrap());
        let mut arena = Arena::new();
        let (moving, literal) = (new_target(&mut arena), new_target(&mut arena));
        let targets = vec![
            (
                moving,
                "moving.test:80".into(),
                "10.0.0.1:80".parse().unwrap(),
            ),
            // An IP literal is never looked up again.
            (
                literal,
                "10.0.0.5:80".into(),
                "10.0.0.5:80".parse().unwrap(),
            ),
        ];
        let resolver = Resolver::spawn_with(targets, Duration::from_millis(10), waker, fake_lookup)
            .expect("a name to resolve");

        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut updates = Vec::new();
        while updates.is_empty() && Instant::now() < deadline {
            poll.poll(&mut events, Some(Duration::from_secs(1)))
                .unwrap();
            if events.iter().any(|e| e.token() == Token(7)) {
                updates.extend(resolver.drain());
            }
        }
        // The first two answers still listed 10.0.0.1, so nothing was sent
        // for them; the third did not, and the woken loop got it.
        assert_eq!(updates, [(moving, "10.0.0.2:80".parse().unwrap())]);
        assert!(LOOKUPS.load(Ordering::SeqCst) >= 3);
    }

    #[test]
    fn only_names_are_watched() {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let id = new_target(&mut Arena::new());
        let literal = vec![(id, "127.0.0.1:80".into(), "127.0.0.1:80".parse().unwrap())];
        assert!(
            Resolver::spawn_with(literal, Duration::from_millis(10), waker, fake_lookup).is_none()
        );
    }

    /// An id for a target that exists only in these tests.
    fn new_target(arena: &mut Arena<Target, crate::arena::TargetTag>) -> TargetId {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let route = config::Route::new("r", addr, addr);
        arena.insert(Target::new(&route, &config::Target::from(addr)))
    }
}
