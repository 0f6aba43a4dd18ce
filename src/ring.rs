//! The fixed-capacity ring buffer that carries one direction of a pipe, and
//! the pool that lends rings to directions that have bytes in flight.
//!
//! A ring never grows: its capacity is the high-water mark. Bytes are read
//! from a socket straight into the free space and written straight from the
//! filled space, with vectored I/O when a region wraps, so a wrap costs no
//! extra syscall.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

pub(crate) struct Ring {
    storage: Box<[u8]>,
    /// Index of the oldest unsent byte. `u32`, like `len`, since a ring
    /// holds at most 1 GiB and every direction of every pipe has one.
    head: u32,
    /// Bytes waiting to be sent.
    len: u32,
}

impl Ring {
    pub(crate) fn with_capacity(capacity: usize) -> Ring {
        assert!(capacity > 0, "a ring needs room for at least one byte");
        assert!(
            u32::try_from(capacity).is_ok(),
            "a ring holds at most 4 GiB"
        );
        Ring {
            storage: vec![0; capacity].into_boxed_slice(),
            head: 0,
            len: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.storage.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    fn head(&self) -> usize {
        self.head as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len() == self.capacity()
    }

    pub(crate) fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Fills free space from `source` with one syscall. Returns what `read`
    /// returned; `Ok(0)` with free space means end of stream.
    pub(crate) fn read_from(&mut self, mut source: impl Read) -> io::Result<usize> {
        let (first, second) = self.free_regions();
        let n = if second.is_empty() {
            source.read(first)?
        } else {
            source.read_vectored(&mut [IoSliceMut::new(first), IoSliceMut::new(second)])?
        };
        self.commit(n);
        Ok(n)
    }

    /// As [`read_from`](Ring::read_from), into at most `max` bytes of the
    /// free space (a rate limit's allowance); `max` must not be 0.
    pub(crate) fn read_at_most(&mut self, mut source: impl Read, max: usize) -> io::Result<usize> {
        let (first, second) = self.free_regions();
        let first_len = first.len().min(max);
        let first = &mut first[..first_len];
        let second_len = second.len().min(max - first_len);
        let second = &mut second[..second_len];
        let n = if second.is_empty() {
            source.read(first)?
        } else {
            source.read_vectored(&mut [IoSliceMut::new(first), IoSliceMut::new(second)])?
        };
        self.commit(n);
        Ok(n)
    }

    /// Sends filled bytes to `sink` with one syscall and consumes what it took.
    pub(crate) fn write_to(&mut self, mut sink: impl Write) -> io::Result<usize> {
        let (first, second) = self.filled_regions();
        let n = if second.is_empty() {
            sink.write(first)?
        } else {
            sink.write_vectored(&[IoSlice::new(first), IoSlice::new(second)])?
        };
        self.consume(n);
        Ok(n)
    }

    /// A copy of the bytes waiting, oldest first (for a live upgrade).
    pub(crate) fn contents(&self) -> Vec<u8> {
        let (first, second) = self.filled_regions();
        [first, second].concat()
    }

    /// Discards every byte still waiting (the pipe was aborted).
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    fn free_regions(&mut self) -> (&mut [u8], &mut [u8]) {
        let (capacity, head) = (self.capacity(), self.head());
        let tail = (head + self.len()) % capacity;
        if self.len() == capacity {
            return (&mut [], &mut []);
        }
        if tail >= head {
            // Free space is [tail, end) then [0, head).
            let (before_tail, from_tail) = self.storage.split_at_mut(tail);
            (from_tail, &mut before_tail[..head])
        } else {
            (&mut self.storage[tail..head], &mut [])
        }
    }

    fn filled_regions(&self) -> (&[u8], &[u8]) {
        let head = self.head();
        let end = head + self.len();
        if end <= self.capacity() {
            (&self.storage[head..end], &[])
        } else {
            (
                &self.storage[head..],
                &self.storage[..end - self.capacity()],
            )
        }
    }

    // Casts below are lossless: every count is bounded by the capacity,
    // which fits in a u32.

    fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.free());
        self.len += n as u32;
    }

    fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.len -= n as u32;
        // An empty ring starts over at 0, so the next read gets one
        // contiguous region and the common case never wraps.
        self.head = if self.len == 0 {
            0
        } else {
            ((self.head() + n) % self.capacity()) as u32
        };
    }
}

/// Rings that no direction is using, kept for reuse so that a busy pipe does
/// not allocate on every burst, while an idle pipe holds no ring at all.
/// Routes may use different sizes; a ring is only reused at its own size.
pub(crate) struct RingPool {
    spare: Vec<Ring>,
    max_spare: usize,
}

impl RingPool {
    pub(crate) fn new(max_spare: usize) -> RingPool {
        RingPool {
            spare: Vec::new(),
            max_spare,
        }
    }

    pub(crate) fn take(&mut self, capacity: usize) -> Ring {
        // With one size in use, the last spare always fits.
        match self.spare.pop() {
            Some(ring) if ring.capacity() == capacity => ring,
            Some(other) => {
                self.spare.push(other);
                match self.spare.iter().rposition(|r| r.capacity() == capacity) {
                    Some(position) => self.spare.swap_remove(position),
                    None => Ring::with_capacity(capacity),
                }
            }
            None => Ring::with_capacity(capacity),
        }
    }

    pub(crate) fn give_back(&mut self, ring: Ring) {
        debug_assert!(ring.is_empty());
        if self.spare.len() < self.max_spare {
            self.spare.push(ring);
        }
    }

    /// Frees the spare rings of sizes no route uses any more.
    pub(crate) fn keep_sizes(&mut self, sizes: &[usize]) {
        self.spare.retain(|ring| sizes.contains(&ring.capacity()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A reader that hands out a fixed script of bytes at most `chunk` at a time.
    struct Source<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Source<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.chunk).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }

        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            let mut total = 0;
            for buf in bufs {
                let room = buf.len().min(self.chunk - total);
                let n = self.read(&mut buf[..room])?;
                total += n;
                if total == self.chunk || n < buf.len() {
                    break;
                }
            }
            Ok(total)
        }
    }

    /// A writer that accepts at most `limit` bytes per call.
    struct Sink {
        taken: Vec<u8>,
        limit: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.limit);
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let mut total = 0;
            for buf in bufs {
                let n = self.write(&buf[..buf.len().min(self.limit - total)])?;
                total += n;
                if total == self.limit || n < buf.len() {
                    break;
                }
            }
            Ok(total)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Every ring state (capacity, head, fill) followed by every read size and
    /// every write size, checked against a VecDeque model. Small capacities
    /// cover every wrap-around edge: empty, full, head at the end, a region of
    /// one byte, a write that ends exactly at the wrap.
    #[test]
    fn every_read_and_write_across_every_wrap_matches_a_model() {
        let mut next_byte = 0u8;
        for capacity in 1..=9 {
            for head in 0..capacity {
                for fill in 0..=capacity {
                    for read_size in 0..=capacity + 1 {
                        for write_size in 1..=capacity + 1 {
                            let mut ring = Ring::with_capacity(capacity);
                            let mut model = VecDeque::new();
                            let mut bytes = |n: usize| -> Vec<u8> {
                                (0..n)
                                    .map(|_| {
                                        next_byte = next_byte.wrapping_add(1);
                                        next_byte
                                    })
                                    .collect()
                            };
                            // An empty ring may start anywhere once it has wrapped.
                            ring.head = head as u32;
                            let fill_bytes = bytes(fill);
                            ring.read_from(Source {
                                data: &fill_bytes,
                                chunk: usize::MAX,
                            })
                            .unwrap();
                            model.extend(fill_bytes.iter().copied());
                            assert_eq!(ring.len(), fill);

                            let incoming = bytes(capacity + 1);
                            let n = ring
                                .read_from(Source {
                                    data: &incoming,
                                    chunk: read_size,
                                })
                                .unwrap();
                            assert_eq!(n, read_size.min(capacity - fill));
                            model.extend(incoming[..n].iter().copied());
                            assert_eq!(ring.len(), model.len());
                            assert_eq!(ring.is_full(), model.len() == capacity);

                            let mut sink = Sink {
                                taken: Vec::new(),
                                limit: write_size,
                            };
                            let n = ring.write_to(&mut sink).unwrap();
                            assert_eq!(n, write_size.min(model.len()));
                            let expected: Vec<u8> = model.drain(..n).collect();
                            assert_eq!(sink.taken, expected);

                            let mut rest = Sink {
                                taken: Vec::new(),
                                limit: usize::MAX,
                            };
                            ring.write_to(&mut rest).unwrap();
                            assert_eq!(rest.taken, model.drain(..).collect::<Vec<_>>());
                            assert!(ring.is_empty());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_long_stream_through_a_small_ring_arrives_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut ring = Ring::with_capacity(37);
        let mut source = Source {
            data: &data,
            chunk: 11,
        };
        let mut sink = Sink {
            taken: Vec::new(),
            limit: 5,
        };
        loop {
            let read = if ring.is_full() {
                0
            } else {
                ring.read_from(&mut source).unwrap()
            };
            let written = if ring.is_empty() {
                0
            } else {
                ring.write_to(&mut sink).unwrap()
            };
            if read == 0 && written == 0 && ring.is_empty() {
                break;
            }
        }
        assert_eq!(sink.taken, data);
    }

    #[test]
    fn the_pool_reuses_rings_and_keeps_at_most_max_spare() {
        let mut pool = RingPool::new(2);
        let rings: Vec<Ring> = (0..4).map(|_| pool.take(16)).collect();
        assert!(rings.iter().all(|r| r.capacity() == 16 && r.is_empty()));
        for ring in rings {
            pool.give_back(ring);
        }
        assert_eq!(pool.spare.len(), 2);
    }

    #[test]
    fn the_pool_reuses_a_ring_only_at_its_own_size_and_drops_sizes_no_longer_used() {
        let mut pool = RingPool::new(4);
        pool.give_back(Ring::with_capacity(16));
        pool.give_back(Ring::with_capacity(32));
        assert_eq!(pool.take(16).capacity(), 16);
        assert_eq!(pool.spare.len(), 1, "the 32-byte ring stays");
        assert_eq!(pool.take(8).capacity(), 8);
        pool.give_back(Ring::with_capacity(16));
        pool.keep_sizes(&[16]);
        assert!(pool.spare.iter().all(|r| r.capacity() == 16));
        assert_eq!(pool.spare.len(), 1);
    }
}
