//! A live upgrade as the loops take part (the sequence is
//! `crate::upgrade`'s): SIGUSR2 starts one on a thread of its own; each
//! worker, asked to, exports its listeners and connections and then blocks
//! its own thread until the verdict, so it reads nothing the export
//! missed; on commit it lets go and ends, else it carries on.

use std::os::fd::AsRawFd;

use log::{error, info, warn};
use mio::Interest;

use super::workers::Crew;
use super::{Command, Reactor, Run};
use crate::handover::{Bundle, HandoverError};
use crate::upgrade::{
    self, Adopter, ExportRequest, Exported, Finish, Listener, UpgradeError, Verdict, Workers,
    WORKER_DEADLINE,
};

impl Reactor {
    /// SIGUSR2 (the leader's): upgrade on a thread of its own, so the loop
    /// turns while the new binary loads its config.
    pub(super) fn upgrade_on_signal(&mut self) {
        if self.shutting_down() {
            warn!("SIGUSR2: shutting down; not upgrading");
            return;
        }
        if self
            .crew
            .get()
            .is_some_and(|crew| crew.under_way().load(std::sync::atomic::Ordering::Acquire))
        {
            warn!("SIGUSR2: an upgrade is already under way; ignoring this one");
            return;
        }
        let Some(crew) = self.crew.get().cloned() else {
            return;
        };
        info!("SIGUSR2: live upgrade");
        let spawned = std::thread::Builder::new()
            .name("tcpipe-upgrade".into())
            .spawn(move || match upgrade::hand_over(&*crew) {
                Ok(_) => {}
                Err(UpgradeError::InProgress) => {
                    warn!("SIGUSR2: an upgrade is already under way; ignoring this one");
                }
                Err(e) => {
                    crew.peers[0].send(Command::UpgradeFailed(e.to_string()));
                }
            });
        if let Err(e) = spawned {
            self.on_upgrade_failed(format!("cannot start a thread: {e}"));
        }
    }

    /// An upgrade failed and this process carries on: said in the log, the
    /// metrics and systemd's status line.
    pub(super) fn on_upgrade_failed(&mut self, why: String) {
        error!("upgrade failed; carrying on: {why}");
        self.observers.metrics.upgrades_failed_total.add(1);
        if let Some(systemd) = &self.systemd {
            systemd.status(&format!(
                "{}; the last upgrade failed: {why}",
                self.status()
            ));
        }
    }

    /// Exports this worker and waits, reading nothing, for the verdict.
    pub(super) fn on_export(&mut self, request: ExportRequest) {
        if self.shutting_down() {
            // Pipes being drained stay to finish here.
            let _ = request.reply.send(Err("shutting down".into()));
            return;
        }
        let exported = Exported {
            worker: self.share.index as u16,
            listeners: self.handed_listeners(),
            bundle: self.export(),
        };
        if request.reply.send(Ok(exported)).is_err() {
            self.resume_after_failed_handover();
            return;
        }
        match request.verdict.recv_timeout(WORKER_DEADLINE) {
            Ok(Verdict::Commit) => self.hand_off(),
            Ok(Verdict::Resume) => self.resume_after_failed_handover(),
            Err(_) => {
                error!(
                    "worker {}: no verdict on the upgrade in time; carrying on",
                    self.share.index + 1
                );
                self.resume_after_failed_handover();
            }
        }
    }

    /// Every listening socket of this worker (and the leader's `/metrics`
    /// one), with the descriptor the loop still owns.
    fn handed_listeners(&self) -> Vec<(Listener, std::os::fd::RawFd)> {
        let worker = self.share.index as u16;
        let mut listeners: Vec<_> = self
            .routes
            .listeners
            .iter()
            .map(|(_, listener)| {
                // The first route listing it is the one binding asks for.
                let owner = [listener.routes.first(), Some(&listener.route)]
                    .into_iter()
                    .flatten()
                    .find_map(|&id| self.routes.get(id))
                    .map(|route| route.name().to_string())
                    .unwrap_or_default();
                let described = Listener {
                    worker,
                    owner,
                    configured: listener.configured,
                    local: listener.local,
                };
                (described, listener.socket.as_raw_fd())
            })
            .collect();
        let exporter = self.observers.exporter.as_ref();
        if let Some(((configured, exporter), fd)) =
            exporter.and_then(|e| Some((e, e.1.listener_fd()?)))
        {
            let described = Listener {
                worker,
                owner: "http metrics".into(),
                configured: *configured,
                local: exporter.addr(),
            };
            listeners.push((described, fd));
        }
        let admin = self.share.is_leader().then(|| self.crew.get()).flatten();
        if let Some((configured, local, fd)) = admin.and_then(|crew| crew.admin_listener()) {
            let described = Listener {
                worker,
                owner: crate::inherited::ADMIN_OWNER.into(),
                configured,
                local,
            };
            listeners.push((described, fd));
        }
        listeners
    }

    /// The new process has everything: drop this worker's copies (a close
    /// of a duplicate sends nothing; never a shutdown) and end.
    fn hand_off(&mut self) {
        self.release_exported();
        self.routes.listeners.clear();
        self.observers.exporter = None;
        self.upstreams.stop();
        self.run = Run::Exiting;
    }

    /// A listening socket handed over beyond one per worker (the old
    /// process had more workers): listened on beside this worker's own
    /// socket on that address, by the same routes, so that what is queued
    /// in it is served.
    fn listen_beside_twin(&mut self, mut socket: mio::net::TcpListener) {
        let Ok(local) = socket.local_addr() else {
            return;
        };
        let Some((_, twin)) = self.routes.listeners.iter().find(|(_, l)| l.local == local) else {
            warn!("upgrade: a surplus listener on {local} has no twin here; closing it");
            return;
        };
        let (route, routes, inspect, configured) = (
            twin.route,
            twin.routes.clone(),
            twin.inspect,
            twin.configured,
        );
        let entry = self.routes.listeners.vacant_entry();
        let key = entry.key();
        // Registering reports an accept queue that is not empty already.
        let registered = self
            .poll
            .registry()
            .register(
                &mut socket,
                super::tokens::listener_token(key),
                Interest::READABLE,
            )
            .map_err(|e| warn!("cannot watch the listener on {local}: {e}"))
            .is_ok();
        entry.insert(super::routes::Listener {
            route,
            routes: routes.clone(),
            inspect,
            configured,
            local,
            socket,
            registered,
            backlog_pending: !registered,
        });
        for id in routes {
            if let Some(route) = self.routes.get_mut(id) {
                route.listeners.push(key);
            }
        }
    }

    /// The leader of a process that took over: the new main pid is
    /// known to systemd (`READY=1` carries `MAINPID=`), so the old process
    /// may exit.
    pub(super) fn finish_take_over(&mut self) {
        if let Some(finish) = self.taken_over.take() {
            finish.notified();
        }
    }

    /// Set on the leader of a process that took over, before it runs.
    pub(crate) fn took_over(&mut self, finish: Finish) {
        self.observers.metrics.upgrades_ok_total.add(1);
        self.taken_over = Some(finish);
    }
}

impl Workers for Crew {
    fn count(&self) -> usize {
        self.peers.len()
    }

    fn export(&self, i: usize, request: ExportRequest) -> bool {
        self.peers
            .get(i)
            .is_some_and(|peer| peer.send(Command::Export(Box::new(request))))
    }

    fn upgrade_binary(&self) -> Option<std::path::PathBuf> {
        Crew::upgrade_binary(self)
    }

    fn under_way(&self) -> &std::sync::atomic::AtomicBool {
        &self.upgrading
    }
}

impl Adopter for Reactor {
    type Taken = super::handover::TakenIn;

    fn adopt_connections(
        &mut self,
        bundle: Bundle<std::os::fd::OwnedFd>,
    ) -> Result<(usize, Self::Taken), HandoverError> {
        let taken = self.take_in(bundle)?;
        Ok((taken.count(), taken))
    }

    fn start_adopted(&mut self, taken: Self::Taken) {
        Reactor::start_adopted(self, taken);
    }

    fn adopt_listener(&mut self, listener: mio::net::TcpListener) {
        self.listen_beside_twin(listener);
    }
}
