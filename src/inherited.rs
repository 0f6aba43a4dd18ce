//! Listening sockets this process was given rather than bound: by systemd's
//! socket activation (`LISTEN_FDS`), or by the process it takes over from
//! in a live upgrade. Binding a route's address first asks here, so a
//! socket that is already listening goes on listening: no refused connect
//! and no connection lost from its backlog, as there would be if the
//! address were bound again.
//!
//! The store is process-wide because descriptors are. Each [`take`] hands
//! out a duplicate, so every worker of a `--workers N` process can listen
//! on one activated socket; several sockets offered for one address (one
//! per worker of the process handing over) go out one each, in order.
//! [`settle`] closes the originals once every worker has bound: the
//! duplicates keep listening, and a socket nothing took is reported and
//! closed (systemd keeps its own copy).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::{debug, info, warn};
use mio::net::TcpListener;
use socket2::{Domain, Socket, Type};

use crate::sys;

/// A listening socket waiting for the route that listens on its address.
struct Offered {
    addr: SocketAddr,
    /// How the giver named it (`LISTEN_FDNAMES`), for logs.
    name: String,
    socket: Socket,
    taken: bool,
    /// Handed over by the process this one took over from: whose it was
    /// (a route's name, or `http NAME`) and its configured address, which
    /// matches a listen address of port 0 across the upgrade.
    handed: Option<(String, SocketAddr)>,
}

static STORE: Mutex<Vec<Offered>> = Mutex::new(Vec::new());

/// The admin endpoint is served after the forwarder has bound (the binary
/// starts it), so [`settle`] leaves its handed-over socket for it, and
/// [`settle_late`] closes what it did not take.
pub(crate) const ADMIN_OWNER: &str = "http admin";

/// This process took over from another in a live upgrade.
static TOOK_OVER: AtomicBool = AtomicBool::new(false);

/// Says this process takes over from another (a live upgrade): a socket
/// file of that process's may then be replaced although it still answers.
pub(crate) fn note_take_over() {
    TOOK_OVER.store(true, Ordering::Relaxed);
}

/// Whether this process took over from another in a live upgrade.
pub(crate) fn took_over() -> bool {
    TOOK_OVER.load(Ordering::Relaxed)
}

fn store() -> std::sync::MutexGuard<'static, Vec<Offered>> {
    // A panic elsewhere while holding the lock leaves a plain Vec behind:
    // still consistent, so go on using it.
    STORE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why an inherited descriptor cannot serve as a route's listener.
fn unusable(socket: &Socket) -> Option<&'static str> {
    match socket.domain() {
        Ok(domain) if domain == Domain::IPV4 || domain == Domain::IPV6 => {}
        Ok(_) => return Some("not a TCP/IP socket (a Unix socket?)"),
        Err(_) => return Some("not a socket"),
    }
    if !matches!(socket.r#type(), Ok(kind) if kind == Type::STREAM) {
        return Some("not a stream (TCP) socket");
    }
    if !matches!(socket.is_listener(), Ok(true)) {
        return Some("not listening");
    }
    None
}

/// Offers a listening socket for the route that listens on its address.
/// Returns the address, or why it cannot serve (then it is closed).
pub(crate) fn offer(fd: OwnedFd, name: &str) -> Result<SocketAddr, String> {
    offer_as(fd, name.to_string(), None)
}

/// Offers a listening socket the process this one takes over from handed
/// over: `owner`'s, configured as `configured`.
pub(crate) fn offer_handed(
    fd: OwnedFd,
    owner: &str,
    configured: SocketAddr,
) -> Result<SocketAddr, String> {
    let name = format!("handed over for {owner}");
    offer_as(fd, name, Some((owner.to_string(), configured)))
}

fn offer_as(
    fd: OwnedFd,
    name: String,
    handed: Option<(String, SocketAddr)>,
) -> Result<SocketAddr, String> {
    let socket = Socket::from(fd);
    if let Some(why) = unusable(&socket) {
        return Err(why.to_string());
    }
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .ok_or("has no IP address")?;
    socket
        .set_nonblocking(true)
        .and_then(|()| socket.set_cloexec(true))
        .map_err(|e| e.to_string())?;
    store().push(Offered {
        addr,
        name,
        socket,
        taken: false,
        handed,
    });
    Ok(addr)
}

/// A duplicate of a socket offered for `owner` (a route's name, or
/// `http NAME`) configured with `configured`, to be bound at `bind`: the
/// next one not taken yet, else the last one again (for the next worker).
/// A socket matches by address; with port 0 (a new port asked for) only a
/// handed-over socket of the same owner and configured address does.
pub(crate) fn take(
    owner: &str,
    configured: SocketAddr,
    bind: SocketAddr,
) -> Option<io::Result<TcpListener>> {
    let matches = |o: &Offered| {
        if bind.port() != 0 {
            return o.addr == bind;
        }
        o.handed
            .as_ref()
            .is_some_and(|(whose, at)| whose == owner && *at == configured)
    };
    let mut store = store();
    let mut matching = store.iter_mut().filter(|o| matches(o)).peekable();
    matching.peek()?;
    let mut last = None;
    for offered in matching {
        if !offered.taken {
            offered.taken = true;
            return Some(duplicate(offered));
        }
        last = Some(offered);
    }
    last.map(|offered| duplicate(offered))
}

fn duplicate(offered: &Offered) -> io::Result<TcpListener> {
    match &offered.handed {
        // The upgrade's summary says how many it took over.
        Some((owner, _)) => debug!(
            "listening on {} with {owner}'s socket, handed over",
            offered.addr
        ),
        None => info!(
            "listening on {} with the socket {} was given",
            offered.addr, offered.name
        ),
    }
    let copy = offered.socket.try_clone()?;
    Ok(TcpListener::from_std(copy.into()))
}

/// Duplicates of the sockets handed over that no worker took although
/// this process listens on their address: the process handing over had
/// more workers, each with a socket of its own. Marked taken.
pub(crate) fn surplus() -> Vec<io::Result<TcpListener>> {
    let mut store = store();
    let listened: Vec<SocketAddr> = store.iter().filter(|o| o.taken).map(|o| o.addr).collect();
    store
        .iter_mut()
        .filter(|o| !o.taken && o.handed.is_some() && listened.contains(&o.addr))
        .map(|offered| {
            offered.taken = true;
            duplicate(offered)
        })
        .collect()
}

/// Closes the offered sockets, once every worker has bound; says which no
/// route listened on.
pub(crate) fn settle() {
    let late = |o: &Offered| {
        o.handed
            .as_ref()
            .is_some_and(|(owner, _)| owner == ADMIN_OWNER)
    };
    store().retain(|offered| {
        if late(offered) {
            return true;
        }
        if !offered.taken {
            warn!(
                "socket {} ({}) was given, but no route listens there; closing it",
                offered.name, offered.addr
            );
        }
        false
    });
}

/// Closes what was handed over for `owner`, served after [`settle`]: its
/// server has taken its duplicate by now, or does not run.
#[cfg(feature = "cli")]
pub(crate) fn settle_late(owner: &str) {
    store().retain(|offered| {
        let owned = offered.handed.as_ref().is_some_and(|(o, _)| o == owner);
        if owned && !offered.taken {
            warn!(
                "socket {} ({}) was given, but {owner} is not served; closing it",
                offered.name, offered.addr
            );
        }
        !owned
    });
}

/// Takes the sockets systemd passed (`LISTEN_FDS` descriptors from 3 on,
/// only when `LISTEN_PID` is this process), and unsets those variables so
/// that no child (a hook's command, the next binary of an upgrade) takes
/// them for its own.
pub(crate) fn from_systemd() {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(variable);
    }
    let (Some(pid), Some(count)) = (pid, count) else {
        return;
    };
    if pid.trim() != std::process::id().to_string() {
        return;
    }
    let Ok(count) = count.trim().parse::<i32>() else {
        warn!("LISTEN_FDS={count}: not a number; using no socket from systemd");
        return;
    };
    let names: Vec<&str> = names
        .as_deref()
        .map_or(Vec::new(), |n| n.split(':').collect());
    for (i, fd) in (sys::LISTEN_FDS_START..)
        .take(count.max(0) as usize)
        .enumerate()
    {
        let name = match names.get(i) {
            Some(name) if !name.is_empty() => format!("{name:?} (descriptor {fd})"),
            _ => format!("descriptor {fd}"),
        };
        let offered = sys::take_inherited(fd)
            .map_err(|e| e.to_string())
            .and_then(|fd| offer(fd, &name));
        match offered {
            Ok(addr) => info!("systemd passed {name}, listening on {addr}"),
            Err(why) => warn!("systemd passed {name}: {why}; not using it"),
        }
    }
}
