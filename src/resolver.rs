//! Re-resolves target host names on a thread of its own, so that a slow DNS
//! server never stalls forwarding. Results reach the event loop through a
//! channel and its waker.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use log::{debug, error, warn};
use mio::Waker;

use crate::config::Target;

/// The loop's end of the resolver: dropping it stops the thread.
pub(crate) struct Resolver {
    results: Receiver<(usize, SocketAddr)>,
    _stop: Sender<()>,
}

impl Resolver {
    /// Starts re-resolving every `interval` the targets given by name (IP
    /// literals never change). `None` if there is nothing to resolve.
    pub(crate) fn spawn(
        targets: &[Target],
        interval: Duration,
        waker: Arc<Waker>,
    ) -> Option<Resolver> {
        let names: Vec<(usize, String, SocketAddr)> = targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.name.parse::<SocketAddr>().is_err())
            .map(|(i, t)| (i, t.name.clone(), t.addr))
            .collect();
        if names.is_empty() {
            return None;
        }
        let (result_tx, results) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let spawned = thread::Builder::new()
            .name("tcpipe-resolver".into())
            .spawn(move || resolve_every(names, interval, &stop_rx, &result_tx, &waker));
        if let Err(e) = spawned {
            error!("cannot start the resolver thread; target addresses stay as resolved at startup: {e}");
            return None;
        }
        Some(Resolver {
            results,
            _stop: stop,
        })
    }

    /// New addresses found since the last call: (target index, address).
    pub(crate) fn drain(&self) -> impl Iterator<Item = (usize, SocketAddr)> + '_ {
        self.results.try_iter()
    }
}

fn resolve_every(
    mut names: Vec<(usize, String, SocketAddr)>,
    interval: Duration,
    stop: &Receiver<()>,
    results: &Sender<(usize, SocketAddr)>,
    waker: &Waker,
) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
        let mut changed = false;
        for (index, name, current) in &mut names {
            match name.to_socket_addrs() {
                // Keep the address while the name still lists it, so a name
                // with several records does not flap between them.
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    if let Some(&first) = addrs.first() {
                        if !addrs.contains(current) {
                            *current = first;
                            changed = true;
                            if results.send((*index, first)).is_err() {
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
