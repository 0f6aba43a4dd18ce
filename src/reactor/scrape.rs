//! The snapshot a scrape of `/metrics` gets, and the endpoint that asks
//! this loop for it (and serves the status page beside it).

use std::collections::HashMap;

use super::{Command, Reactor};
use crate::arena::TargetId;
use crate::hooks::CommandError;
use crate::metrics::{Exporter, Snapshot};
use crate::status_page::StatusPage;

/// How long a scrape waits for the loop; a loop that takes longer is stuck.
const SCRAPE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Reactor {
    /// Serves `/metrics` on `addr`; each scrape asks this loop for a
    /// snapshot through the command channel. The status page at `/` reads
    /// every worker as a handle does, once the forwarder has them all.
    pub(super) fn start_exporter(&self, addr: std::net::SocketAddr) -> std::io::Result<Exporter> {
        let crew = std::sync::Arc::clone(&self.crew);
        let page = StatusPage::new();
        let status_page = move || {
            page.respond(match crew.get() {
                Some(crew) => (crew.read_status)(crew),
                None => Err(CommandError::Stopped),
            })
        };
        // With several workers a scrape asks each and merges the answers.
        if self.share.has_peers() {
            let crew = std::sync::Arc::clone(&self.crew);
            return Exporter::start(addr, move || crew.get()?.scrape(), status_page);
        }
        let (commands, waker) = self.commands();
        let scrape = move || {
            let (reply, answer) = std::sync::mpsc::channel();
            commands.send(Command::Scrape(reply)).ok()?;
            waker.wake().ok()?;
            answer.recv_timeout(SCRAPE_TIMEOUT).ok()
        };
        Exporter::start(addr, scrape, status_page)
    }

    /// Everything a scrape shows, as of now.
    pub(super) fn snapshot(&self) -> Snapshot {
        let observers = &self.observers;
        let mut snapshot = Snapshot::new(&observers.metrics, observers.started);
        for (_, route) in self.routes.routes.iter() {
            snapshot
                .route(route.name())
                .add(route.live_pipes, &route.stats);
        }
        let mut live_bytes: HashMap<TargetId, [u64; 2]> = HashMap::new();
        for (_, pipe) in self.pipes.iter() {
            let limited = pipe.rate_limited_for(self.now);
            let route = pipe.route().and_then(|id| self.routes.get(id));
            if let (Some(limited), Some(route)) = (limited, route) {
                snapshot.route(route.name()).stats.add_rate_limited(limited);
            }
            if let Some(target) = pipe.target() {
                let bytes = live_bytes.entry(target).or_default();
                bytes[0] += pipe.bytes_toward_target();
                bytes[1] += pipe.bytes_toward_client();
            }
        }
        self.upstreams.snapshot_into(&mut snapshot, &live_bytes);
        snapshot
    }
}
