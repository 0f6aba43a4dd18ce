//! Backpressure: when the target stops reading, the forwarder stops reading
//! the client once its ring is full. It buffers no more than --buffer-size
//! for the pipe (four times that in a kernel pipe once the direction is
//! spliced), its memory stays flat, it burns no CPU while it waits, and
//! once the target reads again every byte arrives intact.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tcpipe::{Config, Forwarder, Splice};

/// What the client pushes at a target that is not reading.
const PUSH: usize = 256 * 1024 * 1024;
/// The client's writes count as stalled once none has gone through for this long.
const QUIET: Duration = Duration::from_millis(500);
/// How long the stalled forwarder is watched for CPU use.
const WATCH: Duration = Duration::from_secs(1);
/// CPU the forwarder may use while it watches a stalled pipe: a few timer
/// ticks, nothing like a busy loop.
const IDLE_CPU: Duration = Duration::from_millis(100);
/// RSS the forwarder may gain over its idle size while the pipe is stalled.
const RSS_GROWTH_KIB: u64 = 16 * 1024;

/// A target that accepts one connection and reads nothing until released;
/// then it reads to EOF and returns how many bytes came and their hash.
struct StalledTarget {
    addr: SocketAddr,
    release: mpsc::Sender<()>,
    reader: JoinHandle<(usize, Fnv)>,
}

impl StalledTarget {
    fn start() -> StalledTarget {
        let (listener, addr) = listener();
        let (release, released) = mpsc::channel();
        let reader = thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("accept");
            released.recv().expect("release");
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut hash = Fnv::default();
            let mut buf = vec![0u8; 256 * 1024];
            let mut len = 0;
            loop {
                let n = stream.read(&mut buf).expect("target read");
                if n == 0 {
                    return (len, hash);
                }
                hash.update(&buf[..n]);
                len += n;
            }
        });
        StalledTarget {
            addr,
            release,
            reader,
        }
    }

    /// Lets the target read, and returns what it received by EOF.
    fn release_and_receive(self) -> (usize, Fnv) {
        self.release.send(()).expect("the target is waiting");
        self.reader.join().expect("target thread")
    }
}

/// A client thread that writes `len` bytes and then half-closes. `progress`
/// counts the bytes the kernel has taken so far.
struct Pusher {
    progress: Arc<AtomicU64>,
    writer: JoinHandle<Fnv>,
}

impl Pusher {
    fn start(mut stream: TcpStream, len: usize) -> Pusher {
        let progress = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&progress);
        let writer = thread::spawn(move || {
            let mut data = Rng::new(7);
            let mut hash = Fnv::default();
            let mut buf = vec![0u8; 256 * 1024];
            let mut sent = 0;
            while sent < len {
                let n = buf.len().min(len - sent);
                data.fill(&mut buf[..n]);
                hash.update(&buf[..n]);
                let mut chunk = &buf[..n];
                while !chunk.is_empty() {
                    let written = stream.write(chunk).expect("client write");
                    assert!(written > 0, "the client's write returned 0");
                    chunk = &chunk[written..];
                    counter.fetch_add(written as u64, Ordering::Relaxed);
                }
                sent += n;
            }
            stream.shutdown(Shutdown::Write).expect("half-close");
            hash
        });
        Pusher { progress, writer }
    }

    fn written(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Waits until no write has gone through for `QUIET`: every buffer on the
    /// way to the target is full. Returns the bytes written by then.
    fn wait_for_stall(&self) -> u64 {
        let mut last = self.written();
        let mut last_change = Instant::now();
        let stalled = wait_until(DEADLINE, || {
            let now = self.written();
            if now != last {
                last = now;
                last_change = Instant::now();
            }
            now > 0 && last_change.elapsed() >= QUIET
        });
        assert!(
            stalled,
            "the client's writes never stalled ({} bytes written)",
            self.written()
        );
        assert!(
            last < PUSH as u64,
            "the whole {PUSH} bytes went out to a target that reads nothing"
        );
        last
    }

    fn finish(self) -> Fnv {
        self.writer.join().expect("client thread")
    }
}

/// Lets the target read, and checks that every byte pushed arrives intact.
fn assert_everything_arrives(target: StalledTarget, pusher: Pusher) {
    let received = target.release_and_receive();
    let sent = pusher.finish();
    assert_eq!(
        received,
        (PUSH, sent),
        "the target did not receive the client's {PUSH} bytes intact"
    );
}

#[test]
fn a_stalled_pipe_costs_the_forwarder_no_memory_growth_and_no_cpu() {
    let target = StalledTarget::start();
    let tcpipe = Tcpipe::start(target.addr, &[]);
    let idle_rss = tcpipe.rss_kib();

    let pusher = Pusher::start(tcpipe.connect(), PUSH);
    let stalled_at = pusher.wait_for_stall();

    let cpu_before = tcpipe.cpu_time();
    let window = Instant::now();
    let mut peak_rss = tcpipe.rss_kib();
    while window.elapsed() < WATCH {
        peak_rss = peak_rss.max(tcpipe.rss_kib());
        thread::sleep(Duration::from_millis(50));
    }
    let cpu_used = tcpipe.cpu_time() - cpu_before;

    assert_eq!(
        pusher.written(),
        stalled_at,
        "the client's writes went on while the target read nothing"
    );
    assert!(
        cpu_used < IDLE_CPU,
        "the forwarder used {cpu_used:?} of CPU in {WATCH:?} while the pipe was stalled"
    );
    assert!(
        peak_rss < idle_rss + RSS_GROWTH_KIB,
        "the forwarder's RSS grew from {idle_rss} KiB to {peak_rss} KiB while stalled"
    );
    assert_everything_arrives(target, pusher);
}

#[test]
fn a_stalled_pipe_buffers_at_most_the_buffer_size_and_returns_its_ring_when_done() {
    const BUFFER: u64 = 64 * 1024;
    let target = StalledTarget::start();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target.addr);
    config.routes[0].buffer_size = BUFFER as usize;
    config.routes[0].low_water = BUFFER as usize / 2;
    if let Some(splice) = splice_from_test_args() {
        config.routes[0].splice = splice;
    }
    // A direction that splices (`auto` once it streams, as this one does)
    // has a high-water mark four times its ring's, in kernel memory.
    let limit = match config.routes[0].splice {
        Splice::Never => BUFFER,
        Splice::Auto | Splice::Always => 4 * BUFFER,
    };
    let forwarder = Forwarder::bind(config).expect("bind the forwarder");
    let addr = forwarder.local_addr().expect("a listener");
    let handle = forwarder.handle();
    let running = thread::spawn(move || forwarder.run());
    let metrics = handle.metrics();

    let pusher = Pusher::start(connect(addr), PUSH);
    pusher.wait_for_stall();

    // The ring is full and reading is paused: the gauge sits at high-water.
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < QUIET {
        let buffered = metrics.buffered_bytes.get();
        assert!(
            buffered > 0 && buffered <= limit,
            "the stalled pipe buffers {buffered} bytes; expected 1..={limit}"
        );
        // In a ring, or in a kernel pipe once the direction is spliced.
        let buffers = metrics.rings_in_use.get() + metrics.kernel_pipes_in_use.get();
        assert_eq!(buffers, 1, "one direction holds bytes");
        samples += 1;
        thread::sleep(Duration::from_millis(1));
    }
    assert!(samples > 10, "the gauge was sampled only {samples} times");

    // Watch the gauge through the release and the whole transfer too.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (done, handle) = (Arc::clone(&done), handle.clone());
        thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                most = most.max(handle.metrics().buffered_bytes.get());
                thread::sleep(Duration::from_millis(1));
            }
            most
        })
    };
    assert_everything_arrives(target, pusher);
    done.store(true, Ordering::Relaxed);
    let most_sampled = sampler.join().expect("sampler thread");

    assert!(
        most_sampled <= limit,
        "{most_sampled} bytes were buffered during the transfer; the limit is {limit}"
    );
    let peak = metrics.peak_direction_buffered_bytes.get();
    assert!(
        peak <= limit,
        "one direction once held {peak} bytes; the limit is {limit}"
    );
    assert!(
        wait_until(DEADLINE, || metrics.live_pipes.get() == 0),
        "the pipe was not freed after both sides ended"
    );
    assert_eq!(metrics.rings_in_use.get(), 0, "a ring is still lent out");
    assert_eq!(
        metrics.kernel_pipes_in_use.get(),
        0,
        "a kernel pipe is still lent out"
    );
    assert_eq!(
        metrics.buffered_bytes.get(),
        0,
        "bytes are still counted as buffered"
    );

    handle.shutdown();
    running
        .join()
        .expect("forwarder thread")
        .expect("the event loop ends cleanly");
}

#[test]
fn a_one_page_buffer_with_a_100_byte_low_water_mark_still_moves_every_byte_both_ways() {
    const LEN: usize = 8 * 1024 * 1024;
    let tcpipe = Tcpipe::start(
        echo_server(),
        &["--buffer-size", "4k", "--low-water", "100"],
    );
    let client = tcpipe.connect();
    let mut reader = client.try_clone().expect("clone the client socket");
    let pusher = Pusher::start(client, LEN);
    let echoed = {
        let mut hash = Fnv::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut len = 0;
        loop {
            let n = reader.read(&mut buf).expect("read the echo");
            if n == 0 {
                break (len, hash);
            }
            hash.update(&buf[..n]);
            len += n;
        }
    };
    let sent = pusher.finish();
    assert_eq!(echoed, (LEN, sent), "the echo through 4 KiB rings differs");
}
