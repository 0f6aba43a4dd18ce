//! The handover socket: a `SOCK_SEQPACKET` Unix socket pair, one end kept
//! by the old process, the other inherited by the new one. Frames go out
//! as messages with their descriptors (`SCM_RIGHTS`), and come back
//! assembled; every wait has a deadline.

use std::fmt;
use std::io;
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::frame::{self, Assembler, Frame, FrameError, Kind};
use crate::sys;

/// Why a frame did not come (or go).
#[derive(Debug)]
pub(crate) enum ChannelError {
    /// The other end closed the socket (its process ended, most likely).
    Closed,
    TimedOut,
    Frame(FrameError),
    Io(io::Error),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Closed => f.write_str("closed the handover socket"),
            ChannelError::TimedOut => f.write_str("did not answer in time"),
            ChannelError::Frame(e) => write!(f, "sent {e}"),
            ChannelError::Io(e) => write!(f, "handover socket: {e}"),
        }
    }
}

pub(crate) struct Channel {
    socket: Socket,
    assembler: Assembler<OwnedFd>,
    buf: Vec<u8>,
}

impl Channel {
    /// A connected pair: this process's end, and the end for the child
    /// (both close-on-exec; the child's is kept open in the child alone).
    pub(crate) fn pair() -> io::Result<(Channel, OwnedFd)> {
        let (ours, theirs) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
        Ok((Channel::new(ours), theirs.into()))
    }

    /// The end this process inherited.
    pub(crate) fn inherited(fd: OwnedFd) -> io::Result<Channel> {
        let socket = Socket::from(fd);
        // No child of this process (a hook's command, the next upgrade's
        // binary) may inherit it.
        socket.set_cloexec(true)?;
        socket.set_nonblocking(false)?;
        match socket.r#type() {
            Ok(kind) if kind == Type::SEQPACKET => Ok(Channel::new(socket)),
            _ => Err(io::Error::other("not a SOCK_SEQPACKET socket")),
        }
    }

    fn new(socket: Socket) -> Channel {
        Channel {
            socket,
            assembler: Assembler::default(),
            buf: vec![0; frame::HEADER + frame::CHUNK],
        }
    }

    /// Sends one frame: its descriptors (at most `SCM_MAX_FD`) go with its
    /// first message.
    pub(crate) fn send(
        &self,
        kind: Kind,
        payload: &[u8],
        fds: &[RawFd],
        deadline: Instant,
    ) -> Result<(), ChannelError> {
        let mut with = fds;
        for message in frame::messages(kind, payload, fds.len()) {
            self.socket
                .set_write_timeout(Some(left(deadline)?))
                .map_err(ChannelError::Io)?;
            match sys::send_with_fds(self.socket.as_fd(), &message, with) {
                Ok(_) => with = &[],
                Err(e) if is_timeout(&e) => return Err(ChannelError::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    return Err(ChannelError::Closed)
                }
                Err(e) => return Err(ChannelError::Io(e)),
            }
        }
        Ok(())
    }

    /// The next whole frame, by `deadline`.
    pub(crate) fn recv(&mut self, deadline: Instant) -> Result<Frame<OwnedFd>, ChannelError> {
        loop {
            self.socket
                .set_read_timeout(Some(left(deadline)?))
                .map_err(ChannelError::Io)?;
            let mut fds = Vec::new();
            let n = match sys::recv_with_fds(self.socket.as_fd(), &mut self.buf, &mut fds) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_timeout(&e) => return Err(ChannelError::TimedOut),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Err(ChannelError::Closed)
                }
                Err(e) => return Err(ChannelError::Io(e)),
            };
            let message = &self.buf[..n];
            if let Some(frame) = self
                .assembler
                .push(message, fds)
                .map_err(ChannelError::Frame)?
            {
                return Ok(frame);
            }
        }
    }
}

/// Time left until `deadline`; a socket timeout of zero would mean none.
fn left(deadline: Instant) -> Result<Duration, ChannelError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(ChannelError::TimedOut);
    }
    Ok(left.max(Duration::from_millis(1)))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_longer_than_a_message_cross_with_their_descriptors() {
        let (mut ours, theirs) = Channel::pair().unwrap();
        let theirs = Channel::inherited(theirs).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (pipe_read, _pipe_write) = sys::pipe().unwrap();
        let sender = std::thread::spawn(move || {
            theirs
                .send(Kind::Parcels, &payload, &[pipe_read.as_raw_fd()], deadline)
                .unwrap();
            theirs.send(Kind::End, &[], &[], deadline).unwrap();
            payload
        });
        let frame = ours.recv(deadline).unwrap();
        let payload = sender.join().unwrap();
        assert_eq!(frame.kind, Kind::Parcels);
        assert_eq!(frame.payload, payload);
        assert_eq!(frame.fds.len(), 1);
        assert_eq!(ours.recv(deadline).unwrap().kind, Kind::End);
        // The sender's end is gone with its thread.
        assert!(matches!(ours.recv(deadline), Err(ChannelError::Closed)));
        let soon = Instant::now() + Duration::from_millis(20);
        let (mut quiet, _other) = Channel::pair().unwrap();
        assert!(matches!(quiet.recv(soon), Err(ChannelError::TimedOut)));
    }
}
