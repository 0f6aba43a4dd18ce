//! How the harness learns that a forwarder is ready and where it listens:
//! the readiness notification of systemd's notify protocol, not a log line.
//! Each [`Tcpipe`](crate::common::Tcpipe) binds a datagram socket of its
//! own, names it in `NOTIFY_SOCKET`, and reads every `READY=1` the
//! forwarder sends (at startup and after each reload), which carries
//! `X_TCPIPE_LISTEN=<route> <address>` per listener and
//! `X_TCPIPE_METRICS=<address>` and `X_TCPIPE_ADMIN=<unix:/path or
//! address>`, as bound; `STOPPING=1` says a shutdown
//! has begun.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

/// A notify socket and every message that came to it, in order.
pub struct Notices {
    path: PathBuf,
    messages: Arc<Mutex<Vec<Ready>>>,
}

impl Notices {
    /// Binds a socket at a fresh path (unique per test process and
    /// forwarder) and reads it for as long as the value lives: a thread
    /// drains it, so the forwarder's blocking send never waits on a full
    /// queue (Linux queues 10 datagrams by default).
    pub fn bind() -> Notices {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "tcpipe-ready-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind a notify socket");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // An empty datagram (from `drop`) or an error ends it.
            while let Ok(n @ 1..) = socket.recv(&mut buf) {
                let lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .map(str::to_owned)
                    .collect();
                sink.lock().unwrap().push(Ready { lines });
            }
        });
        Notices { path, messages }
    }

    /// What `NOTIFY_SOCKET` must say.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The messages with `line` (`READY=1`, `STOPPING=1`), in order.
    pub fn with(&self, line: &str) -> Vec<Ready> {
        let messages = self.messages.lock().unwrap();
        messages.iter().filter(|m| m.has(line)).cloned().collect()
    }

    /// The messages whose `STATUS=` contains `text`, in order.
    pub fn with_status_containing(&self, text: &str) -> Vec<Ready> {
        let messages = self.messages.lock().unwrap();
        messages
            .iter()
            .filter(|m| m.status().contains(text))
            .cloned()
            .collect()
    }

    /// How many `READY=1` came so far.
    pub fn count(&self) -> usize {
        self.with("READY=1").len()
    }

    /// The newest `READY=1`, if any came.
    pub fn latest(&self) -> Option<Ready> {
        self.with("READY=1").pop()
    }

    /// The `READY=1` after the first `seen`, once it came.
    pub fn after(&self, seen: usize) -> Option<Ready> {
        self.with("READY=1").get(seen).cloned()
    }
}

impl Drop for Notices {
    fn drop(&mut self) {
        if let Ok(waker) = UnixDatagram::unbound() {
            let _ = waker.send_to(&[], &self.path);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One message (a `READY=1` unless said otherwise), as its `KEY=VALUE`
/// lines.
#[derive(Clone, Debug)]
pub struct Ready {
    pub lines: Vec<String>,
}

impl Ready {
    pub fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter_map(move |line| line.strip_prefix(key)?.strip_prefix('='))
    }

    /// `STATUS=`, as `systemctl status` shows it.
    pub fn status(&self) -> &str {
        self.values("STATUS").next().unwrap_or_default()
    }

    /// Why the reload this message ends failed, if it did.
    pub fn reload_failure(&self) -> Option<&str> {
        self.status()
            .split_once("the last reload failed: ")
            .map(|(_, why)| why)
    }

    /// Every (route, bound address), in route order.
    pub fn listening(&self) -> Vec<(String, SocketAddr)> {
        self.values("X_TCPIPE_LISTEN")
            .map(|value| {
                let (route, addr) = value.split_once(' ').expect("X_TCPIPE_LISTEN=ROUTE ADDR");
                let addr = addr.parse().expect("a socket address in X_TCPIPE_LISTEN");
                (route.to_string(), addr)
            })
            .collect()
    }

    /// The bound addresses of route `name`.
    pub fn route_addrs(&self, name: &str) -> Vec<SocketAddr> {
        self.listening()
            .into_iter()
            .filter(|(route, _)| route == name)
            .map(|(_, addr)| addr)
            .collect()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics(&self) -> Option<SocketAddr> {
        self.values("X_TCPIPE_METRICS")
            .next()
            .map(|addr| addr.parse().expect("a socket address in X_TCPIPE_METRICS"))
    }

    /// Where the admin API is served (`unix:/path` or an address), if it is.
    pub fn admin(&self) -> Option<String> {
        self.values("X_TCPIPE_ADMIN").next().map(str::to_string)
    }
}
