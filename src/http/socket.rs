//! What the server listens on: a TCP address or a Unix socket file, and
//! the connections either gives, as one type each so that the server's
//! loop does not care which.
//!
//! A socket file is created mode 0600 before it listens (so nobody else
//! can connect in between, whatever the umask), replaces a stale file a
//! dead process left (nobody accepts on it), refuses one a live process
//! serves or a file that is not a socket, and is removed when the server
//! stops, if it is still ours.

use std::fmt;
use std::fs;
use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{debug, info, warn};
use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => addr.fmt(f),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Backlog of a socket file's listener: a few operators' tools.
const UNIX_BACKLOG: i32 = 64;

/// `Source` for an enum of a TCP and a Unix socket: each call goes to the
/// socket it holds.
macro_rules! source_by_variant {
    ($enum:ident) => {
        impl Source for $enum {
            fn register(
                &mut self,
                registry: &Registry,
                token: Token,
                interest: Interest,
            ) -> io::Result<()> {
                match self {
                    $enum::Tcp(s) => s.register(registry, token, interest),
                    $enum::Unix(s) => s.register(registry, token, interest),
                }
            }

            fn reregister(
                &mut self,
                registry: &Registry,
                token: Token,
                interest: Interest,
            ) -> io::Result<()> {
                match self {
                    $enum::Tcp(s) => s.reregister(registry, token, interest),
                    $enum::Unix(s) => s.reregister(registry, token, interest),
                }
            }

            fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
                match self {
                    $enum::Tcp(s) => s.deregister(registry),
                    $enum::Unix(s) => s.deregister(registry),
                }
            }
        }
    };
}

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `endpoint`, or takes the TCP socket a live upgrade handed
    /// over for `owner` there; returns it as bound (port 0 resolved), and
    /// the socket file made for it, which the caller removes.
    pub(super) fn bind(
        owner: &str,
        endpoint: &Endpoint,
    ) -> io::Result<(Listener, Endpoint, Option<SocketFile>)> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let listener = match crate::inherited::take(owner, *addr, *addr) {
                    Some(given) => given?,
                    None => TcpListener::bind(*addr)?,
                };
                let bound = listener.local_addr()?;
                Ok((Listener::Tcp(listener), Endpoint::Tcp(bound), None))
            }
            Endpoint::Unix(path) => {
                let (listener, file) = bind_unix(path)?;
                Ok((Listener::Unix(listener), endpoint.clone(), Some(file)))
            }
        }
    }

    /// A copy of a TCP listener, for a live upgrade to hand over.
    pub(super) fn tcp_copy(&self) -> io::Result<Option<Socket>> {
        match self {
            Listener::Tcp(listener) => SockRef::from(listener).try_clone().map(Some),
            Listener::Unix(_) => Ok(None),
        }
    }

    pub(super) fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept()?;
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            Listener::Unix(listener) => {
                let (stream, _) = listener.accept()?;
                Ok((Stream::Unix(stream), "local client".to_string()))
            }
        }
    }
}

source_by_variant!(Listener);

/// One client's connection.
pub(super) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(super) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    /// Makes the close a reset where that frees the kernel's buffers (TCP).
    pub(super) fn reset_on_close(&self) {
        if let Stream::Tcp(stream) = self {
            if let Err(e) = SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO)) {
                debug!("cannot set SO_LINGER: {e}");
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

source_by_variant!(Stream);

/// A socket file this process created: removed on drop if the file at its
/// path is still the one it made (a newer process may have replaced it).
pub(crate) struct SocketFile {
    path: PathBuf,
    identity: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.path) {
            Ok(meta) if (meta.dev(), meta.ino()) == self.identity => {
                if let Err(e) = fs::remove_file(&self.path) {
                    warn!("cannot remove {}: {e}", self.path.display());
                }
            }
            _ => debug!("{} is no longer ours; left alone", self.path.display()),
        }
    }
}

/// A Unix listener at `path`, created mode 0600 before it listens.
fn bind_unix(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // Bound but not listening: a connect is refused until the mode is set.
    let made = fs::symlink_metadata(path).and_then(|meta| {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
        socket.listen(UNIX_BACKLOG)?;
        socket.set_nonblocking(true)?;
        Ok((meta.dev(), meta.ino()))
    });
    let identity = match made {
        Ok(identity) => identity,
        Err(e) => {
            let _ = fs::remove_file(path);
            return Err(e);
        }
    };
    let listener = UnixListener::from_std(socket.into());
    let file = SocketFile {
        path: path.to_path_buf(),
        identity,
    };
    Ok((listener, file))
}

/// Removes a socket file nobody accepts on; refuses a live one, or a
/// path that is not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            ErrorKind::AlreadyExists,
            "the path exists and is not a socket; not replacing it",
        ));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        // The process this one took over from in a live upgrade serves it
        // until it exits; its listener stays its own (it removes the file
        // only if the file is still the one it made).
        Ok(_) if crate::inherited::took_over() => {
            fs::remove_file(path)?;
            info!(
                "{}: took the socket file over from the upgraded process",
                path.display()
            );
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            ErrorKind::AddrInUse,
            "another process serves this socket",
        )),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            fs::remove_file(path)?;
            info!("{}: replaced a stale socket file", path.display());
            Ok(())
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot tell whether another process serves it: {e}"),
        )),
    }
}
