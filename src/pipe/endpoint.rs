//! One socket of a pipe: what the OS said is ready, kept apart from what is
//! registered with poll.

use std::io;

use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use socket2::SockRef;

use crate::net;

/// One socket of the pair.
pub(super) struct Endpoint {
    pub(super) stream: TcpStream,
    /// The OS said readable and no read has said `WouldBlock` since.
    pub(super) readable: bool,
    /// The OS said writable and no write has said `WouldBlock` since.
    pub(super) writable: bool,
    /// The OS reported the peer's FIN. A short read then does not mean the
    /// socket is drained: the EOF is still to be read, and no new edge will
    /// announce it.
    pub(super) read_closed: bool,
    /// The OS reported an error; `SO_ERROR` tells which.
    pub(super) error: bool,
    /// What is registered with poll now; `None` means not registered.
    pub(super) registered: Option<Interest>,
    /// A connect is done only once `getpeername` says so: the socket took
    /// over the token of another mid-turn (a re-target), whose events may
    /// still come. Sits in padding.
    pub(super) verify_connect: bool,
    /// The rate limit of the direction that reads this socket has spent
    /// its bucket: it is not read until the pipe's timer says the bucket
    /// has refilled (see `limit`). Here rather than in the direction, in
    /// padding.
    pub(super) limited: bool,
}

impl Endpoint {
    /// `writable` starts as given: an established socket has an empty send
    /// buffer, so its first write need not wait for an event that would only
    /// come after registering WRITABLE. A connecting socket is not writable
    /// until the OS says the connect is done.
    pub(super) fn new(stream: TcpStream, writable: bool) -> Endpoint {
        Endpoint {
            stream,
            readable: false,
            writable,
            read_closed: false,
            error: false,
            registered: None,
            verify_connect: false,
            limited: false,
        }
    }

    pub(super) fn note(&mut self, event: &Event) {
        self.readable |= event.is_readable() || event.is_read_closed();
        self.writable |= event.is_writable() || event.is_write_closed();
        self.read_closed |= event.is_read_closed();
        if event.is_error() {
            // The syscalls (or SO_ERROR) will say what went wrong.
            self.error = true;
            self.readable = true;
            self.writable = true;
        }
    }

    pub(super) fn has_writable_interest(&self) -> bool {
        self.registered
            .is_some_and(|interest| interest.is_writable())
    }

    pub(super) fn set_interest(
        &mut self,
        registry: &Registry,
        token: Token,
        want: Option<Interest>,
    ) -> io::Result<()> {
        if self.registered == want {
            return Ok(());
        }
        match (self.registered, want) {
            (None, Some(interest)) => registry.register(&mut self.stream, token, interest)?,
            (Some(_), Some(interest)) => registry.reregister(&mut self.stream, token, interest)?,
            (Some(_), None) => registry.deregister(&mut self.stream)?,
            (None, None) => {}
        }
        self.registered = want;
        Ok(())
    }

    pub(super) fn abort(&self) {
        net::abort_on_close(SockRef::from(&self.stream));
    }
}
