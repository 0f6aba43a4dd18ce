//! A pipe's deadlines: its connect, idle and half-close timeouts, and when
//! its upstream socket's keepalive is switched on.

use std::io;
use std::time::{Duration, Instant};

use log::debug;
use socket2::SockRef;

use super::connect::Stage;
use super::{Pipe, Reason, Verdict};
use crate::net;

/// How old a pipe gets before its upstream socket's keepalive is set: a
/// second, or half the keepalive idle time if that is shorter. Most
/// connections are over by then, and four `setsockopt` calls are a sixth
/// of a short connection's syscalls; a dead peer is found that much later
/// at most, since the kernel starts counting idle time when keepalive is
/// switched on.
pub(super) fn keepalive_delay(idle: Duration) -> Duration {
    (idle / 2).min(Duration::from_secs(1))
}

impl Pipe {
    /// Whether a new upstream socket needs its keepalive set: one that
    /// came connected is a pooled one (set when the pool made it) or the
    /// embedder's own.
    pub(super) fn wants_keepalive(&self, connected: bool) -> bool {
        !connected && self.settings.keepalive.is_some()
    }

    /// When the upstream's keepalive is to be set, if it still is.
    fn keepalive_due(&self) -> Option<Instant> {
        let idle = self.settings.keepalive.filter(|_| self.keepalive_pending)?;
        Some(self.opened_at + keepalive_delay(idle))
    }

    /// The next instant at which a timeout could run out, if any applies.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let deadline = earliest(self.timeout_deadline(), self.keepalive_due());
        if self.stage.limits().is_none() {
            return deadline;
        }
        earliest(deadline, self.limit_wake())
    }

    /// The next instant at which a timeout could run out, if any applies.
    fn timeout_deadline(&self) -> Option<Instant> {
        let settings = &self.settings;
        if let Stage::Connecting { since, .. } = self.stage {
            return settings.connect_timeout.map(|t| since + t);
        }
        if self.is_held() | self.is_limited() {
            return None;
        }
        let idle = settings.idle_timeout.map(|t| self.last_activity + t);
        let half_close = if self.is_half_closed() {
            settings.half_close_timeout.map(|t| self.last_activity + t)
        } else {
            None
        };
        match (idle, half_close) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A timer of this pipe came due: its upstream keepalive may be due,
    /// a timeout may have run out.
    pub(crate) fn on_timer(&mut self, now: Instant) -> Verdict {
        if self.keepalive_due().is_some_and(|due| now >= due) {
            self.keepalive_pending = false;
            if let Some(idle) = self.settings.keepalive {
                let socket = SockRef::from(&self.target.endpoint.stream);
                if let Err(e) = socket.set_tcp_keepalive(&net::keepalive(idle)) {
                    debug!(
                        "pipe {}: cannot set keepalive on the target side: {e}",
                        self.id
                    );
                }
            }
        }
        let released = self.release_limits(now);
        let settings = &self.settings;
        let ran_out =
            |start: Instant, limit: Option<Duration>| limit.is_some_and(|t| now >= start + t);
        if let Stage::Connecting { since, .. } = self.stage {
            if ran_out(since, settings.connect_timeout) {
                let e = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                return Verdict::Redial(e);
            }
            return if released {
                Verdict::Again
            } else {
                Verdict::Wait
            };
        }
        if released {
            return Verdict::Again;
        }
        if self.is_held() | self.is_limited() {
            return Verdict::Wait;
        }
        if self.is_half_closed() && ran_out(self.last_activity, settings.half_close_timeout) {
            return Verdict::Close(Reason::HalfCloseTimeout);
        }
        if ran_out(self.last_activity, settings.idle_timeout) {
            return Verdict::Close(Reason::IdleTimeout);
        }
        Verdict::Wait
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_upstream_keepalive_waits_a_second_or_half_its_idle_time() {
        let delay = super::keepalive_delay;
        assert_eq!(delay(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(delay(Duration::from_secs(1)), Duration::from_millis(500));
    }
}
