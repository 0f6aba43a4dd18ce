//! The kernel pipe that carries a spliced direction of a pipe, and the pool
//! that lends them to directions with bytes in flight.
//!
//! `splice(2)` moves bytes socket → pipe → socket without copying them
//! through user space; one side of each call must be a pipe. A kernel pipe
//! costs two descriptors and up to its size in kernel memory, so like a
//! ring it is lent only while bytes are in it, and a spare is kept for
//! reuse only if it is empty: a pipe that still holds bytes (its pipe was
//! aborted) is closed, so no stale byte can ever reach another connection.

use std::fs::File;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use slab::Slab;

use crate::ring::Ring;

/// Idle kernel pipes kept for reuse; beyond this they are closed. Fewer than
/// rings: each costs two descriptors, counted against the same limit as
/// the clients'.
pub(crate) const SPARE_KERNEL_PIPES: usize = 16;
use crate::sys;

/// The size the kernel gives a pipe it was not told otherwise: 16 pages.
const DEFAULT_PIPE_SIZE: usize = 16 * PAGE;
/// The smallest pipe: one page.
const PAGE: usize = 4096;
/// How many times the bytes it may hold a pipe is sized to. A pipe has one
/// slot per page of its size, and a splice from a socket takes a slot per
/// piece of a segment, often far less than a page (an MSS of 1448 bytes on
/// Ethernet): a pipe of exactly the high-water mark runs out of slots at
/// about a third of it. Four times as many slots let the bytes, not the
/// slots, reach the high-water mark first; the kernel allocates no memory
/// for slots that hold nothing.
const SLOTS_PER_BYTE: usize = 4;

struct KernelPipe {
    /// A `File` so that the bytes can be read back with `read(2)` if the
    /// destination turns out not to take splices.
    read: File,
    write: OwnedFd,
    /// What the kernel gave, which may be less than asked.
    capacity: usize,
    /// What the pool was asked for when it made this pipe: what reuse
    /// matches on.
    asked: usize,
}

impl KernelPipe {
    fn open(size: usize) -> io::Result<KernelPipe> {
        let (read, write) = sys::pipe()?;
        // Refused beyond the user's pipe allowance (EPERM) or below what
        // the pipe holds (EBUSY): a pipe of the size it has still works.
        let capacity = match sys::set_pipe_size(read.as_fd(), size) {
            Ok(given) => given,
            Err(_) => sys::pipe_size(read.as_fd())?,
        };
        Ok(KernelPipe {
            read: File::from(read),
            write,
            capacity,
            asked: size,
        })
    }
}

/// A kernel pipe lent to a direction: which one, and how many bytes it
/// holds. Eight bytes, so that a direction is no bigger than it was with a
/// ring alone; the descriptors stay with the pool.
#[derive(Debug)]
pub(crate) struct Lent {
    key: NonZeroU32,
    len: u32,
}

impl Lent {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The kernel pipes: those lent to directions, and empty spares kept so
/// that a streaming burst costs no `pipe2` and no `fcntl`.
pub(crate) struct KernelPipePool {
    lent: Slab<KernelPipe>,
    spare: Vec<KernelPipe>,
    max_spare: usize,
    /// `/proc/sys/fs/pipe-max-size`, read when the first pipe is made.
    max_size: Option<usize>,
}

impl KernelPipePool {
    pub(crate) fn new(max_spare: usize) -> KernelPipePool {
        KernelPipePool {
            lent: Slab::new(),
            spare: Vec::new(),
            max_spare,
            max_size: None,
        }
    }

    /// A pipe for a direction whose high-water mark is `high_water`:
    /// [`SLOTS_PER_BYTE`] times that, rounded up to a power of two pages,
    /// within the system's limit (`fs.pipe-max-size`). Only `high_water`
    /// bytes ever go in.
    pub(crate) fn take(&mut self, high_water: usize) -> io::Result<Lent> {
        let size = self.size_for(high_water);
        let pipe = match self.spare.iter().rposition(|p| p.asked == size) {
            Some(position) => self.spare.swap_remove(position),
            None => KernelPipe::open(size)?,
        };
        self.lend(pipe, 0)
    }

    fn size_for(&mut self, high_water: usize) -> usize {
        let max = *self.max_size.get_or_insert_with(pipe_max_size);
        high_water
            .saturating_mul(SLOTS_PER_BYTE)
            .max(PAGE)
            .next_power_of_two()
            .min(max.max(PAGE))
    }

    /// Lends a kernel pipe another process filled (a live upgrade): its two
    /// ends, holding `len` bytes, for a direction whose high-water mark is
    /// `high_water`.
    pub(crate) fn adopt(
        &mut self,
        (read, write): (OwnedFd, OwnedFd),
        len: usize,
        high_water: usize,
    ) -> io::Result<Lent> {
        let capacity = sys::pipe_size(read.as_fd())?;
        let len = u32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        let pipe = KernelPipe {
            read: File::from(read),
            write,
            capacity,
            asked: self.size_for(high_water),
        };
        self.lend(pipe, len)
    }

    /// The two ends of a lent pipe (read, write), still the pool's.
    pub(crate) fn raw_fds(&self, lent: &Lent) -> (RawFd, RawFd) {
        let pipe = self.pipe(lent);
        (pipe.read.as_raw_fd(), pipe.write.as_raw_fd())
    }

    fn lend(&mut self, pipe: KernelPipe, len: u32) -> io::Result<Lent> {
        let entry = self.lent.vacant_entry();
        let key = u32::try_from(entry.key() + 1)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        entry.insert(pipe);
        Ok(Lent { key, len })
    }

    fn pipe(&self, lent: &Lent) -> &KernelPipe {
        &self.lent[lent.key.get() as usize - 1]
    }

    /// What the kernel made the pipe: it may be less than asked.
    pub(crate) fn capacity(&self, lent: &Lent) -> usize {
        self.pipe(lent).capacity
    }

    /// What may still go in while the direction holds at most `limit`
    /// bytes: never more than the pipe's real size, and never an
    /// unbounded length (realm#157: `usize::MAX` gives EINVAL).
    pub(crate) fn room(&self, lent: &Lent, limit: usize) -> usize {
        self.pipe(lent)
            .capacity
            .min(limit)
            .saturating_sub(lent.len())
    }

    /// Splices up to `max` bytes from `source` in. `Ok(0)` is the source's FIN.
    pub(crate) fn fill(
        &self,
        lent: &mut Lent,
        source: BorrowedFd<'_>,
        max: usize,
    ) -> io::Result<usize> {
        let n = sys::splice(source, self.pipe(lent).write.as_fd(), max)?;
        debug_assert!(n <= max);
        // Lossless: bounded by the capacity, at most pipe-max-size.
        lent.len += n as u32;
        Ok(n)
    }

    /// Splices what it holds out to `destination`; returns how much went.
    pub(crate) fn drain(&self, lent: &mut Lent, destination: BorrowedFd<'_>) -> io::Result<usize> {
        let n = sys::splice(self.pipe(lent).read.as_fd(), destination, lent.len())?;
        debug_assert!(n <= lent.len());
        lent.len -= n.min(lent.len()) as u32;
        Ok(n)
    }

    /// Moves what it holds into `ring` with plain reads, for a destination
    /// that cannot take splices. The ring has room: a direction never
    /// holds more than its ring's capacity.
    pub(crate) fn move_into(&self, lent: &mut Lent, ring: &mut Ring) -> io::Result<()> {
        let mut read = &self.pipe(lent).read;
        while !lent.is_empty() {
            match ring.read_from(&mut read) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => lent.len -= n.min(lent.len()) as u32,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Takes a pipe back: kept if it is empty and there is room among the
    /// spares, closed otherwise, so no stale byte reaches another pipe. A
    /// pipe the kernel made smaller than asked (the user's pipe allowance
    /// was spent) is closed too: the next one may get its full size.
    pub(crate) fn give_back(&mut self, lent: Lent) {
        let Some(pipe) = self.lent.try_remove(lent.key.get() as usize - 1) else {
            return debug_assert!(false, "a kernel pipe given back twice");
        };
        let full_size = pipe.capacity >= pipe.asked;
        if lent.is_empty() && full_size && self.spare.len() < self.max_spare {
            self.spare.push(pipe);
        }
    }

    #[cfg(test)]
    fn spares(&self) -> usize {
        self.spare.len()
    }
}

/// The largest pipe an unprivileged process may ask for; the kernel's
/// default pipe size if the file cannot be read.
fn pipe_max_size() -> usize {
    std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(DEFAULT_PIPE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use crate::sys::tests::socket_pair;

    fn fill(pool: &KernelPipePool, lent: &mut Lent, source: &TcpStream, want: usize) {
        while lent.len() < want {
            match pool.fill(lent, source.as_fd(), want - lent.len()) {
                Ok(n) => assert!(n > 0, "early FIN"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn room_is_bounded_by_the_real_size_and_the_limit_never_unbounded() {
        let mut pool = KernelPipePool::new(4);
        let lent = pool.take(64 * 1024).unwrap();
        let capacity = pool.pipe(&lent).capacity;
        assert_eq!(capacity, 256 * 1024, "four times the slots");
        assert_eq!(pool.room(&lent, 64 * 1024), 64 * 1024);
        assert_eq!(pool.room(&lent, usize::MAX), capacity);
        // A 1k ring's direction gets a page-sized pipe, used to 1k only.
        let small = pool.take(1000).unwrap();
        assert_eq!(pool.pipe(&small).capacity, PAGE);
        assert_eq!(pool.room(&small, 1000), 1000);
    }

    #[test]
    fn sizes_stay_within_pipe_max_size() {
        let mut pool = KernelPipePool::new(4);
        let max = pipe_max_size();
        let lent = pool.take(1 << 30).unwrap();
        let capacity = pool.pipe(&lent).capacity;
        assert!(capacity <= max, "{capacity} > {max}");
    }

    #[test]
    fn an_empty_pipe_is_reused_and_one_holding_bytes_is_destroyed() {
        let (mut a, b) = socket_pair();
        let mut pool = KernelPipePool::new(4);
        let lent = pool.take(64 * 1024).unwrap();
        pool.give_back(lent);
        assert_eq!(pool.spares(), 1);
        let mut lent = pool.take(64 * 1024).unwrap();
        assert_eq!(pool.spares(), 0, "the spare was not reused");

        a.write_all(b"left over").unwrap();
        fill(&pool, &mut lent, &b, 9);
        pool.give_back(lent);
        assert_eq!(pool.spares(), 0, "a pipe holding bytes was kept");
        assert!(pool.lent.is_empty());
    }

    #[test]
    fn a_pipe_smaller_than_asked_is_not_kept() {
        let mut pool = KernelPipePool::new(4);
        let lent = pool.take(64 * 1024).unwrap();
        assert_eq!(pool.capacity(&lent), 256 * 1024);
        // As the kernel does past the user's pipe allowance.
        pool.lent[lent.key.get() as usize - 1].capacity = 2 * PAGE;
        assert_eq!(pool.capacity(&lent), 2 * PAGE);
        pool.give_back(lent);
        assert_eq!(pool.spares(), 0, "a refused pipe was kept for reuse");
    }

    #[test]
    fn spares_are_bounded() {
        let mut pool = KernelPipePool::new(2);
        let lent: Vec<_> = (0..3).map(|_| pool.take(PAGE).unwrap()).collect();
        for one in lent {
            pool.give_back(one);
        }
        assert_eq!(pool.spares(), 2);
    }

    #[test]
    fn bytes_go_through_in_order_and_can_be_moved_into_a_ring() {
        let (mut a, b) = socket_pair();
        let (mut c, mut d) = socket_pair();
        let mut pool = KernelPipePool::new(1);
        let mut lent = pool.take(PAGE).unwrap();
        a.write_all(b"first ").unwrap();
        fill(&pool, &mut lent, &b, 6);
        assert_eq!(pool.drain(&mut lent, c.as_fd()).unwrap(), 6);
        a.write_all(b"second").unwrap();
        fill(&pool, &mut lent, &b, 6);
        let mut ring = Ring::with_capacity(PAGE);
        pool.move_into(&mut lent, &mut ring).unwrap();
        assert!(lent.is_empty());
        ring.write_to(&mut c).unwrap();
        let mut got = [0u8; 12];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"first second");
        pool.give_back(lent);
    }
}
