//! systemd's notify protocol (`sd_notify(3)`), spoken directly: one
//! datagram of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`,
//! no libsystemd. With `Type=notify` (or `notify-reload`) systemd then
//! knows when tcpipe is ready (every listener bound), reloading, stopping,
//! and alive (`WATCHDOG=1`), and shows its `STATUS=` line in
//! `systemctl status`.
//!
//! Only the first worker speaks, for the whole process. The variables are
//! left in the environment: unsetting `NOTIFY_SOCKET` after the first
//! message silences the watchdog pings (traefik #1353, where systemd then
//! killed the service every few seconds).
//!
//! Each `READY=1` also says where tcpipe listens, as bound (port 0 resolved
//! to the real port), in variables of its own: sd_notify(3) reserves the
//! `X_` prefix for them and systemd ignores them. Scripts and tests that
//! start tcpipe on port 0 learn its ports from there instead of parsing a
//! log line:
//!
//! ```text
//! X_TCPIPE_LISTEN=<route name> <address>   one line per listener of every route
//! X_TCPIPE_METRICS=<address>                where /metrics is served, if it is
//! X_TCPIPE_ADMIN=<unix:/path or address>     where the admin API is served, if it is
//! ```

use std::fmt::Write;
use std::io;
use std::net::SocketAddr as TcpAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use log::debug;

use crate::sys;

/// Where systemd listens, and how often it wants to hear that we live.
pub(crate) struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    watchdog: Option<Duration>,
    /// Where the admin API is served, for `READY=1`.
    admin: Option<String>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` in the abstract
    /// namespace) and `WATCHDOG_USEC` (when `WATCHDOG_PID` is unset or this
    /// process); `None` when not run by systemd's notify service types.
    pub(crate) fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        let to = match notify_address(path.as_encoded_bytes()) {
            Ok(to) => to,
            Err(e) => {
                log::warn!(
                    "NOTIFY_SOCKET={}: {e}; not notifying systemd",
                    path.to_string_lossy()
                );
                return None;
            }
        };
        // Non-blocking: a notify socket nobody reads must never stall the
        // loop; a message it cannot take is dropped (and said at debug).
        let socket = match UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(socket) => socket,
            Err(e) => {
                log::warn!("cannot make a socket to notify systemd: {e}");
                return None;
            }
        };
        let ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && ours)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            to,
            watchdog,
            admin: None,
        })
    }

    /// `READY=1` also says where the admin API is served.
    pub(crate) fn with_admin(mut self, admin: Option<String>) -> Notifier {
        self.admin = admin;
        self
    }

    /// How often to send `WATCHDOG=1`: half of what systemd allows, as
    /// `sd_watchdog_enabled(3)` advises.
    pub(crate) fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|limit| limit / 2)
    }

    /// Every listener (each route's, in `listening`, and the metrics
    /// endpoint's) is bound and the loop runs.
    pub(crate) fn ready(
        &self,
        status: &str,
        listening: &[(String, TcpAddr)],
        metrics: Option<TcpAddr>,
    ) {
        let mut message = ready_message(status, listening, metrics);
        if let Some(admin) = &self.admin {
            let _ = write!(message, "\nX_TCPIPE_ADMIN={admin}");
        }
        self.send(&message);
    }

    /// A reload has begun; [`ready`](Notifier::ready) ends it, whatever
    /// its outcome. systemd wants the monotonic time it began.
    pub(crate) fn reloading(&self) {
        self.send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
            sys::monotonic_micros()
        ));
    }

    /// A shutdown has begun: listeners are closed, pipes drain.
    pub(crate) fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// A new status line, nothing else (an upgrade failed, say).
    pub(crate) fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub(crate) fn alive(&self) {
        self.send("WATCHDOG=1");
    }

    /// A lost notification costs systemd's view of us, never forwarding.
    fn send(&self, state: &str) {
        if let Err(e) = self.socket.send_to_addr(state.as_bytes(), &self.to) {
            debug!("cannot notify systemd ({state:?}): {e}");
        }
    }
}

/// `READY=1` with the status, the main pid and where tcpipe listens.
fn ready_message(
    status: &str,
    listening: &[(String, TcpAddr)],
    metrics: Option<TcpAddr>,
) -> String {
    let mut message = format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id());
    // Route names are plain (letters, digits, `-_.`): no space, no newline.
    for (route, addr) in listening {
        let _ = write!(message, "\nX_TCPIPE_LISTEN={route} {addr}");
    }
    if let Some(addr) = metrics {
        let _ = write!(message, "\nX_TCPIPE_METRICS={addr}");
    }
    message
}

/// `NOTIFY_SOCKET`'s address: an absolute path, or `@name` for the
/// abstract namespace.
fn notify_address(path: &[u8]) -> io::Result<SocketAddr> {
    match path {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => {
            let path = std::str::from_utf8(path)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not UTF-8"))?;
            SocketAddr::from_pathname(path)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor @abstract",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{notify_address, ready_message};

    #[test]
    fn paths_and_abstract_names_are_addresses_and_nothing_else_is() {
        assert!(notify_address(b"/run/systemd/notify").is_ok());
        assert!(notify_address(b"@tcpipe-notify").is_ok());
        assert!(notify_address(b"relative/path").is_err());
        assert!(notify_address(b"").is_err());
    }

    #[test]
    fn ready_names_every_listener_and_the_metrics_endpoint() {
        let listening = [
            ("web".to_string(), "127.0.0.1:8080".parse().unwrap()),
            ("web".to_string(), "[::1]:8080".parse().unwrap()),
            ("db".to_string(), "127.0.0.1:5432".parse().unwrap()),
        ];
        let message = ready_message("forwarding", &listening, "127.0.0.1:9100".parse().ok());
        let lines: Vec<&str> = message.lines().collect();
        assert_eq!(lines[..2], ["READY=1", "STATUS=forwarding"]);
        assert!(lines[2].starts_with("MAINPID="), "{message}");
        assert_eq!(
            lines[3..],
            [
                "X_TCPIPE_LISTEN=web 127.0.0.1:8080",
                "X_TCPIPE_LISTEN=web [::1]:8080",
                "X_TCPIPE_LISTEN=db 127.0.0.1:5432",
                "X_TCPIPE_METRICS=127.0.0.1:9100",
            ]
        );
        assert_eq!(ready_message("idle", &[], None).lines().count(), 3);
    }
}
