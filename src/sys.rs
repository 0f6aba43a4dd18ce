//! The syscalls std and mio do not wrap: `splice(2)`, `pipe2(2)`, a
//! pipe's size (`F_SETPIPE_SZ`, `F_GETPIPE_SZ`), the raw monotonic clock
//! (`clock_gettime`), the descriptor limit (`getrlimit`/`setrlimit` of
//! `RLIMIT_NOFILE`), taking over inherited descriptors, and passing
//! descriptors to another process (`sendmsg`/`recvmsg` with `SCM_RIGHTS`,
//! and keeping one open across a child's `exec`). The only module with
//! `unsafe` code: each call is a thin wrapper that hands the kernel
//! descriptors borrowed for the call and null pointers, and turns `-1`
//! into `io::Error::last_os_error()`.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::{mem, ptr};

/// A new pipe, both ends non-blocking and close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1 as libc::c_int; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires; it
    // writes both only on success.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success both are new descriptors that nothing else owns.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(ends)
}

/// Asks for a pipe of `size` bytes; returns the size the kernel gave
/// (rounded up to a power of two pages).
pub(crate) fn set_pipe_size(pipe: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size =
        libc::c_int::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours; the
    // descriptor is borrowed, so open for the whole call.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// The pipe's capacity in bytes.
pub(crate) fn pipe_size(pipe: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument and touches no memory of ours.
    let rc = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel, without
/// blocking; one of the two must be a pipe. `Ok(0)` from a socket is its
/// FIN.
pub(crate) fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: null offsets mean "the descriptors' own positions" (required
    // for pipes and sockets), so the kernel writes no memory of ours; both
    // descriptors are borrowed, so open for the whole call.
    let rc = unsafe {
        libc::splice(
            from.as_raw_fd(),
            ptr::null_mut(),
            to.as_raw_fd(),
            ptr::null_mut(),
            len,
            flags,
        )
    };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// `CLOCK_MONOTONIC` now, in microseconds: what systemd's
/// `MONOTONIC_USEC=` wants (std's `Instant` reads the same clock but does
/// not show its value).
pub(crate) fn monotonic_micros() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a writable timespec, the only memory clock_gettime
    // writes; CLOCK_MONOTONIC always exists on Linux, so it cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1000
}

/// The descriptor limit: (soft, hard), `RLIM_INFINITY` for none.
pub(crate) fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a writable rlimit, which getrlimit fills on success.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets the soft descriptor limit, keeping the hard one.
pub(crate) fn set_nofile_soft(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the rlimit it is given.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub(crate) const LISTEN_FDS_START: i32 = 3;

/// Owns descriptor `fd`, which this process inherited (from systemd's
/// `LISTEN_FDS`). Fails if it is not open.
pub(crate) fn take_inherited(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD reads only the descriptor's flags; an fd that is not
    // open fails with EBADF, so no descriptor is owned that does not exist.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open, and systemd's protocol gives it to
    // this process alone (LISTEN_PID was checked and the variables unset,
    // so it is taken once): nothing else in the process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// At most this many descriptors travel in one message (`SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// Room for a control message of [`MAX_FDS_PER_MESSAGE`] descriptors, in
/// `u64`s so that it is aligned as `cmsghdr` wants.
// SAFETY: CMSG_SPACE is arithmetic on its argument; it touches no memory.
const CONTROL_WORDS: usize =
    (unsafe { libc::CMSG_SPACE(mem::size_of::<[libc::c_int; MAX_FDS_PER_MESSAGE]>() as u32) }
        as usize)
        .div_ceil(8);

/// Sends `bytes` as one message on a Unix socket, with copies of `fds`
/// (`SCM_RIGHTS`; at most [`MAX_FDS_PER_MESSAGE`]). Blocks as the socket
/// does; never raises SIGPIPE. The descriptors are the caller's, open for
/// the call (a closed one fails with `EBADF`; the kernel reads no memory
/// through them).
pub(crate) fn send_with_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[RawFd],
) -> io::Result<usize> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one (null pointers, zero
    // lengths); the fields set below point at memory that outlives the call.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = mem::size_of_val(fds) as u32;
        msg.msg_control = control.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is arithmetic on its argument.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as _;
        // SAFETY: msg_control points at `control`, aligned for cmsghdr and
        // at least CMSG_SPACE(data_len) bytes long (CONTROL_WORDS is sized
        // for the most descriptors allowed, checked above), so the first
        // header and its data lie inside it; the data is written unaligned.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
            for (i, fd) in fds.iter().enumerate() {
                ptr::write_unaligned(data.add(i), *fd);
            }
        }
    }
    // SAFETY: msg and everything it points at (iov, bytes, control) live
    // for the whole call, and sendmsg only reads them; the socket is
    // borrowed, so open.
    let rc = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Receives one message from a Unix socket into `buf`, and the descriptors
/// that came with it into `fds` (close-on-exec, `MSG_CMSG_CLOEXEC`).
/// Returns its length (0: the peer closed). A message longer than `buf`, or
/// descriptors the kernel had to drop (`MSG_CTRUNC`), is an error: the
/// message cannot be trusted whole.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as in send_with_fds: a zeroed msghdr is valid and empty.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;
    // SAFETY: recvmsg writes at most iov_len bytes into `buf` and at most
    // msg_controllen into `control`, both alive and exclusively ours for
    // the call; the socket is borrowed, so open.
    let rc = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    // Own whatever arrived first, so that an error below closes it.
    // SAFETY: the kernel filled `control` with well-formed headers inside
    // msg_controllen; CMSG_FIRSTHDR/CMSG_NXTHDR stay inside it and return
    // null after the last. Each SCM_RIGHTS header's data holds
    // (cmsg_len - CMSG_LEN(0)) / 4 new descriptors, read unaligned, that
    // nothing else in this process owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<libc::c_int>();
                let len = ((*cmsg).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                for i in 0..len / mem::size_of::<libc::c_int>() {
                    fds.push(OwnedFd::from_raw_fd(ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors were dropped (MSG_CTRUNC)"));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(io::Error::other("a message was longer than expected"));
    }
    Ok(rc as usize)
}

/// Makes `command`'s child keep descriptor `fd` open across its `exec`
/// (everything tcpipe opens is close-on-exec). Only the child's copy is
/// changed: another child started meanwhile (a hook's command) does not
/// get it.
pub(crate) fn keep_open_in_child(command: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it calls fcntl alone,
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A new descriptor for the open file `fd` names, close-on-exec: what
/// `SCM_RIGHTS` gives the receiver of `fd`, for tests that hand
/// connections from one loop to another in one process.
#[cfg(test)]
pub(crate) fn duplicate(fd: std::os::fd::RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC touches no memory of ours; a descriptor that
    // is not open fails with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just made by the kernel for this call alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    /// Two connected loopback sockets, for the tests here and in
    /// `kernel_pipe`.
    pub(crate) fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (b, _) = listener.accept().unwrap();
        (a, b)
    }

    #[test]
    fn a_pipe_is_non_blocking_and_close_on_exec() {
        let (read, write) = pipe().unwrap();
        for fd in [&read, &write] {
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|v| i32::from_str_radix(v.trim(), 8).ok())
                .unwrap();
            assert!(flags & libc::O_NONBLOCK != 0, "not non-blocking: {flags:o}");
            assert!(flags & libc::O_CLOEXEC != 0, "not close-on-exec: {flags:o}");
        }
        let mut empty = std::fs::File::from(read);
        let e = empty.read(&mut [0u8; 8]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn the_pipe_size_is_set_and_read_back_rounded_to_pages() {
        let (read, _write) = pipe().unwrap();
        let given = set_pipe_size(read.as_fd(), 100_000).unwrap();
        assert!(given >= 100_000 && given.is_power_of_two(), "{given}");
        assert_eq!(pipe_size(read.as_fd()).unwrap(), given);
        let e = set_pipe_size(read.as_fd(), usize::MAX).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn bytes_go_socket_to_pipe_to_socket_and_fin_reads_as_zero() {
        let (mut a, b) = socket_pair();
        let (mut c, d) = socket_pair();
        let (read, write) = pipe().unwrap();
        a.write_all(b"spliced").unwrap();
        let mut moved = 0;
        while moved < 7 {
            match splice(b.as_fd(), write.as_fd(), 64 * 1024) {
                Ok(n) => moved += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(moved, 7);
        assert_eq!(splice(read.as_fd(), c.as_fd(), 7).unwrap(), 7);
        let mut got = [0u8; 7];
        let mut d = d;
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"spliced");

        // An empty pipe would block; so would a socket with nothing to read.
        let e = splice(read.as_fd(), c.as_fd(), 7).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        b.set_nonblocking(true).unwrap();
        let e = splice(b.as_fd(), write.as_fd(), 7).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);

        drop(a);
        assert!(
            std::iter::repeat_with(|| splice(b.as_fd(), write.as_fd(), 7))
                .take(1000)
                .any(|r| matches!(r, Ok(0)))
        );
        c.flush().unwrap();
    }

    #[test]
    fn two_descriptors_neither_a_pipe_are_refused() {
        let (a, _b) = socket_pair();
        let (c, _d) = socket_pair();
        let e = splice(a.as_fd(), c.as_fd(), 1).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn descriptors_pass_with_their_message_and_arrive_close_on_exec() {
        use socket2::{Domain, Socket, Type};
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).unwrap();
        let (mut left, right) = socket_pair();
        let sent =
            send_with_fds(a.as_fd(), b"hello", &[right.as_raw_fd(), right.as_raw_fd()]).unwrap();
        assert_eq!(sent, 5);
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        let info =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fds[0].as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|v| i32::from_str_radix(v.trim(), 8).ok())
            .unwrap();
        assert!(flags & libc::O_CLOEXEC != 0, "not close-on-exec: {flags:o}");
        // The copy is the same connection.
        let mut copy = std::net::TcpStream::from(fds.pop().unwrap());
        copy.write_all(b"via copy").unwrap();
        let mut got = [0u8; 8];
        left.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"via copy");

        // A message longer than the buffer is refused, not cut silently.
        send_with_fds(a.as_fd(), &[7u8; 32], &[]).unwrap();
        let e = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap_err();
        assert!(e.to_string().contains("longer"), "{e}");
        let too_many = vec![right.as_raw_fd(); MAX_FDS_PER_MESSAGE + 1];
        assert!(send_with_fds(a.as_fd(), b"x", &too_many).is_err());
        drop(a);
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
    }
}
