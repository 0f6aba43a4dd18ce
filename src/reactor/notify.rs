//! What the loop tells systemd, and when: ready once it runs (every
//! listener is bound by then), reloading around a reload, stopping at a
//! shutdown, and a watchdog ping from a timer of the loop itself, so a
//! stuck loop stops the pings. See `src/systemd.rs` for the protocol.

use super::{Reactor, Timer};
use crate::systemd::Notifier;
use crate::text::plural;

impl Reactor {
    /// Speaks to systemd if `NOTIFY_SOCKET` asks for it; the first worker
    /// only, for the whole process. `admin`: where the admin API is served.
    pub(crate) fn notify_systemd(&mut self, admin: Option<String>) {
        if self.share.is_leader() {
            self.systemd = Notifier::from_env().map(|n| n.with_admin(admin));
        }
    }

    pub(super) fn notify_ready(&mut self) {
        let Some(systemd) = &self.systemd else {
            return;
        };
        systemd.ready(&self.status(), &self.listening(), self.metrics_addr());
        if let Some(every) = systemd.watchdog_interval() {
            systemd.alive();
            self.timers.push(self.now + every, Timer::Watchdog);
        }
    }

    pub(super) fn notify_reloading(&self) {
        if let Some(systemd) = &self.systemd {
            systemd.reloading();
        }
    }

    /// A reload is over, applied or not: ready again.
    pub(super) fn notify_reloaded(&self, failed: Option<&dyn std::fmt::Display>) {
        if let Some(systemd) = &self.systemd {
            let status = match failed {
                None => self.status(),
                Some(e) => format!("{}; the last reload failed: {e}", self.status()),
            };
            systemd.ready(&status, &self.listening(), self.metrics_addr());
        }
    }

    pub(super) fn notify_stopping(&self, pipes: usize) {
        if let Some(systemd) = &self.systemd {
            systemd.stopping(&format!("draining {}", plural(pipes, "pipe")));
        }
    }

    pub(super) fn on_watchdog(&mut self) {
        if let Some(systemd) = &self.systemd {
            systemd.alive();
            if let Some(every) = systemd.watchdog_interval() {
                self.timers.push(self.now + every, Timer::Watchdog);
            }
        }
    }

    /// `systemctl status`'s line: what the process serves now.
    pub(super) fn status(&self) -> String {
        let pipes = if self.share.has_peers() {
            self.process_pipes()
        } else {
            self.open_pipes()
        };
        format!(
            "forwarding: {}, {}",
            plural(self.share.count, "worker"),
            plural(pipes, "pipe")
        )
    }
}
