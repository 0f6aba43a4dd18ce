//! Socket setup: the listener, the upstream socket, and the TCP options
//! both sides of a pipe get.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// Connections the kernel may queue while the forwarder is not accepting
/// (at `--max-connections`, or out of file descriptors).
const LISTEN_BACKLOG: i32 = 1024;

/// The listener carries the client side's TCP options: Linux copies
/// `TCP_NODELAY` and the keepalive settings (and starts the keepalive timer)
/// into every accepted socket, which saves five syscalls per client.
/// `reuse_port`: several workers each bind a socket of their own to `addr`
/// and the kernel spreads new connections over them (`SO_REUSEPORT`); a
/// single worker does without.
pub(crate) fn bind_listener(
    addr: SocketAddr,
    keepalive: Option<&TcpKeepalive>,
    reuse_port: bool,
) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    tune(SockRef::from(&socket), keepalive)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Fails with `EADDRINUSE` if anything listens on `addr` already, as the
/// first socket of a group of several workers' listeners would not: a
/// socket with `SO_REUSEPORT` joins any group of the same user's, another
/// tcpipe's included. This plain socket (`SO_REUSEADDR` only, like every
/// listener, so connections in `TIME_WAIT` do not count) can join none, so
/// its bind fails exactly when a single worker's would. It is closed
/// before the group is bound; a port left 0 needs no check, as the kernel
/// never picks a port someone listens on.
pub(crate) fn ensure_unclaimed(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// Keepalive probes start after `idle`; then one every quarter of `idle`
/// (at least 1 s), and after 4 unanswered probes the kernel resets the
/// connection. A dead peer is thus found about `2 × idle` after it went
/// silent.
pub(crate) fn keepalive(idle: Duration) -> TcpKeepalive {
    let interval = (idle / 4).max(Duration::from_secs(1));
    TcpKeepalive::new()
        .with_time(idle)
        .with_interval(interval)
        .with_retries(4)
}

/// TCP_NODELAY (a forwarder must not add Nagle delay) and keepalive.
pub(crate) fn tune(socket: SockRef<'_>, keepalive: Option<&TcpKeepalive>) -> io::Result<()> {
    socket.set_nodelay(true)?;
    if let Some(params) = keepalive {
        socket.set_tcp_keepalive(params)?;
    }
    Ok(())
}

/// Sets a kept listener's options to a route's new ones (a reload may have
/// changed its keepalive), switching keepalive off if the route has none.
pub(crate) fn retune_listener(
    socket: SockRef<'_>,
    keepalive: Option<&TcpKeepalive>,
) -> io::Result<()> {
    if keepalive.is_none() {
        socket.set_keepalive(false)?;
    }
    tune(socket, keepalive)
}

/// A fresh, tuned, unconnected socket for `target`. The reactor holds one
/// in reserve before it accepts, so that an accepted client never finds the
/// descriptor table full when its own upstream socket is needed.
pub(crate) fn upstream_socket(
    target: SocketAddr,
    keepalive: Option<&TcpKeepalive>,
) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    tune(SockRef::from(&socket), keepalive)?;
    Ok(socket)
}

/// Starts a non-blocking connect; it completes when the stream turns writable.
pub(crate) fn start_connect(socket: Socket, target: SocketAddr) -> io::Result<TcpStream> {
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Whether a non-blocking connect is done, once its socket turned writable
/// or reported an error. `getpeername` succeeding proves it is established;
/// otherwise `SO_ERROR` says why it failed, and no error at all means the
/// wakeup was spurious and the connect is still under way.
pub(crate) fn connect_outcome(stream: &TcpStream) -> io::Result<bool> {
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => match stream.take_error()? {
            Some(error) => Err(error),
            None => Ok(false),
        },
        Err(e) => Err(e),
    }
}

/// Accept errors about one connection only: go on with the next.
pub(crate) fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionReset
    ) || matches!(e.raw_os_error(), Some(libc::EPROTO | libc::EPERM))
}

/// Makes the coming close send RST and discard anything unsent: how an
/// abort is passed on, so the peer sees a reset and not a clean end.
pub(crate) fn abort_on_close(socket: SockRef<'_>) {
    if let Err(e) = socket.set_linger(Some(Duration::ZERO)) {
        log::debug!("cannot set SO_LINGER 0 before an abort: {e}");
    }
}
