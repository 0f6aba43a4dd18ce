//! The wire: every frame read from one tap is written to the other a fixed
//! delay later, in order, like a link with that one-way latency. Frames
//! pass through whole, virtio-net header included, so checksum offload and
//! GSO survive the crossing. One thread reads both taps (epoll, through
//! mio); another writes each frame when it is due, with a sleep, because
//! an epoll timeout counts whole milliseconds and a sleep microseconds.

use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

/// Largest read a tap may need: a 64 KiB GSO frame and its header.
const MAX_FRAME: usize = 64 * 1024 + 256;
const WAKER: Token = Token(2);

/// A frame on its way to tap `to`.
struct Frame {
    to: usize,
    due: Instant,
    bytes: Vec<u8>,
}

/// The two threads that carry frames between the taps; dropping it stops
/// them.
pub struct Wire {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    lost: Arc<AtomicU64>,
}

impl Wire {
    /// Carries frames between `taps` (opened non-blocking), each `delay`
    /// after it was read.
    pub fn start(taps: [File; 2], delay: Duration) -> io::Result<Wire> {
        let poll = Poll::new()?;
        for (side, tap) in taps.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&tap.as_raw_fd()),
                Token(side),
                Interest::READABLE,
            )?;
        }
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let taps = Arc::new(taps);
        let stop = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicU64::new(0));
        let (frames, due_frames) = mpsc::channel();
        let reader = {
            let (taps, stop, lost) = (Arc::clone(&taps), Arc::clone(&stop), Arc::clone(&lost));
            thread::Builder::new()
                .name("wire-read".into())
                .spawn(move || read_frames(poll, &taps, delay, &frames, &stop, &lost))?
        };
        let writer = {
            let lost = Arc::clone(&lost);
            thread::Builder::new()
                .name("wire-write".into())
                .spawn(move || write_frames(&due_frames, &taps, &lost))?
        };
        Ok(Wire {
            stop,
            waker,
            reader: Some(reader),
            writer: Some(writer),
            lost,
        })
    }

    /// Frames the wire could not read or pass on: each one means a TCP
    /// retransmission in the figures.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        // The reader drops the sender as it ends, which ends the writer.
        for thread in [self.reader.take(), self.writer.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

fn read_frames(
    mut poll: Poll,
    taps: &[File; 2],
    delay: Duration,
    frames: &Sender<Frame>,
    stop: &AtomicBool,
    lost: &AtomicU64,
) {
    let mut events = Events::with_capacity(8);
    let mut buf = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("wire: poll failed: {e}");
            return;
        }
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let from = event.token().0;
            // Edge-triggered: read until the tap is dry.
            loop {
                match (&taps[from]).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let frame = Frame {
                            to: 1 - from,
                            due: Instant::now() + delay,
                            bytes: buf[..n].to_vec(),
                        };
                        if frames.send(frame).is_err() {
                            return; // the writer is gone
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }
}

fn write_frames(due_frames: &Receiver<Frame>, taps: &[File; 2], lost: &AtomicU64) {
    // Frames are due in the order they were read: one queue keeps both
    // directions in order.
    for frame in due_frames {
        let wait = frame.due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        match (&taps[frame.to]).write(&frame.bytes) {
            Ok(n) if n == frame.bytes.len() => {}
            _ => {
                lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
