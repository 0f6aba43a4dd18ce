//! splice(2): a spliced direction keeps every rule a copied one has (no
//! byte lost at high-water, half-close, reset), `auto` splices bulk and
//! copies small exchanges, `never` splices nothing, and a kernel pipe that
//! still held bytes when its pipe was aborted is closed, not kept.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tcpipe::{Config, Forwarder, Handle, Splice};

/// The client's writes count as stalled once none has gone through for this long.
const QUIET: Duration = Duration::from_millis(300);
const BUFFER: usize = 64 * 1024;
/// A spliced direction's high-water mark: four times the ring's (README,
/// splice(2)).
const SPLICED_HIGH_WATER: usize = 4 * BUFFER;
const BULK: usize = 64 * 1024 * 1024;

/// A forwarder run through the library, for its metrics.
struct Running {
    addr: SocketAddr,
    handle: Handle,
    thread: JoinHandle<std::io::Result<()>>,
}

impl Running {
    fn start(target: SocketAddr, splice: Splice) -> Running {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), target);
        config.routes[0].buffer_size = BUFFER;
        config.routes[0].low_water = BUFFER / 2;
        config.routes[0].splice = splice;
        let forwarder = Forwarder::bind(config).expect("bind the forwarder");
        let addr = forwarder.local_addr().expect("a listener");
        let handle = forwarder.handle();
        let thread = thread::spawn(move || forwarder.run());
        Running {
            addr,
            handle,
            thread,
        }
    }

    fn stop(self) {
        self.handle.shutdown();
        self.thread
            .join()
            .expect("forwarder thread")
            .expect("the event loop ends cleanly");
    }
}

/// Writes `len` reproducible bytes, then half-closes; counts what went.
struct Pusher {
    written: Arc<AtomicU64>,
    thread: JoinHandle<Fnv>,
}

impl Pusher {
    fn start(mut stream: TcpStream, len: usize) -> Pusher {
        let written = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&written);
        let thread = thread::spawn(move || {
            let mut rng = Rng::new(len as u64);
            let mut hash = Fnv::default();
            let mut chunk = vec![0u8; 256 * 1024];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                rng.fill(&mut chunk[..n]);
                hash.update(&chunk[..n]);
                stream.write_all(&chunk[..n]).expect("client write");
                counter.fetch_add(n as u64, Ordering::Relaxed);
                left -= n;
            }
            stream.shutdown(Shutdown::Write).expect("client FIN");
            hash
        });
        Pusher { written, thread }
    }

    /// Waits until the client's writes stop going through: every buffer on
    /// the way is full.
    fn wait_for_stall(&self) {
        wait_for_stall(&self.written);
    }

    fn finish(self) -> Fnv {
        self.thread.join().expect("pusher thread")
    }
}

/// Waits until writes counted in `written` stop going through: every
/// buffer on the way is full.
fn wait_for_stall(written: &AtomicU64) {
    let mut last = (written.load(Ordering::Relaxed), Instant::now());
    let stalled = wait_until(DEADLINE, || {
        let now = written.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() >= QUIET
    });
    assert!(stalled, "the writes never stalled");
}

/// Writes to `stream` until `stop` is set or a write fails, waiting
/// whenever every buffer on the way is full; returns the stream, so that
/// its only owner can reset it.
fn push_until_stopped(
    mut stream: TcpStream,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<TcpStream> {
    stream
        .set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    thread::spawn(move || {
        let chunk = vec![0x5a; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            match stream.write(&chunk) {
                Ok(n) => {
                    written.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // The other side is gone: the test looks at how.
                Err(_) => break,
            }
        }
        stream
    })
}

/// A target that accepts one connection and reads it to EOF, returning
/// how many bytes came and their hash.
fn sink() -> (SocketAddr, JoinHandle<(usize, Fnv)>) {
    let (listener, addr) = listener();
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        receive_rest(&mut stream, 0, Fnv::default())
    });
    (addr, reader)
}

/// Samples the buffered-bytes gauge until told to stop; returns the most seen.
fn sample_buffered(handle: &Handle, done: &Arc<AtomicBool>) -> JoinHandle<u64> {
    let (handle, done) = (handle.clone(), Arc::clone(done));
    thread::spawn(move || {
        let mut most = 0;
        while !done.load(Ordering::Relaxed) {
            most = most.max(handle.metrics().buffered_bytes.get());
            thread::sleep(Duration::from_millis(1));
        }
        most
    })
}

#[test]
fn a_spliced_direction_at_high_water_loses_no_byte_and_resumes_each_time() {
    const PHASE: usize = 16 * 1024 * 1024;
    let (listener, target_addr) = listener();
    let (go, gone) = mpsc::channel::<()>();
    // A slow reader: it reads nothing until told, then a phase's worth,
    // then waits again.
    let reader = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let (mut len, mut hash) = (0, Fnv::default());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // Once the test has dropped its sender, read on to EOF.
            let _ = gone.recv();
            let until = len + PHASE;
            while len < until {
                let n = stream.read(&mut buf).expect("target read");
                if n == 0 {
                    return (len, hash);
                }
                hash.update(&buf[..n]);
                len += n;
            }
        }
    });
    let running = Running::start(target_addr, Splice::Always);
    let metrics = running.handle.metrics();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = sample_buffered(&running.handle, &done);

    let pusher = Pusher::start(connect(running.addr), BULK);
    let mut stalls = 0;
    loop {
        pusher.wait_for_stall();
        if pusher.written.load(Ordering::Relaxed) == BULK as u64 {
            break;
        }
        stalls += 1;
        let buffered = metrics.buffered_bytes.get();
        assert!(
            buffered > 0 && buffered <= SPLICED_HIGH_WATER as u64,
            "stalled, the pipe holds {buffered} bytes; expected 1..={SPLICED_HIGH_WATER}"
        );
        assert_eq!(metrics.kernel_pipes_in_use.get(), 1, "in a kernel pipe");
        assert_eq!(metrics.rings_in_use.get(), 0, "not in a ring");
        go.send(()).expect("reader alive");
    }
    // The rest is read to EOF.
    drop(go);
    let received = reader.join().expect("reader thread");
    let sent = pusher.finish();
    done.store(true, Ordering::Relaxed);
    let most = sampler.join().expect("sampler thread");

    assert_eq!(
        received,
        (BULK, sent),
        "the target did not get every byte intact"
    );
    assert!(stalls >= 2, "the pipe hit high-water only {stalls} times");
    assert!(
        most <= SPLICED_HIGH_WATER as u64,
        "{most} bytes buffered; the limit is {SPLICED_HIGH_WATER}"
    );
    let peak = metrics.peak_direction_buffered_bytes.get();
    assert!(
        peak > BUFFER as u64 && peak <= SPLICED_HIGH_WATER as u64,
        "one direction held at most {peak} bytes; a spliced one goes to {SPLICED_HIGH_WATER}"
    );
    assert!(
        wait_until(DEADLINE, || metrics.live_pipes.get() == 0),
        "the pipe was not freed"
    );
    assert_eq!(metrics.spliced_bytes_total.get(), BULK as u64);
    assert_eq!(metrics.bytes_toward_target_total.get(), BULK as u64);
    assert_eq!(metrics.kernel_pipes_in_use.get(), 0);
    assert_eq!(metrics.buffered_bytes.get(), 0);
    running.stop();
}

#[test]
fn auto_splices_a_bulk_transfer() {
    let (target, reader) = sink();
    let running = Running::start(target, Splice::Auto);
    let sent = Pusher::start(connect(running.addr), BULK).finish();
    assert_eq!(reader.join().expect("reader"), (BULK, sent));

    let metrics = running.handle.metrics();
    assert!(wait_until(DEADLINE, || metrics.live_pipes.get() == 0));
    let spliced = metrics.spliced_bytes_total.get();
    assert!(
        spliced >= BULK as u64 / 2,
        "auto spliced only {spliced} of {BULK} bulk bytes"
    );
    assert_eq!(metrics.bytes_toward_target_total.get(), BULK as u64);
    assert_eq!(metrics.kernel_pipes_in_use.get(), 0);
    running.stop();
}

#[test]
fn auto_copies_a_small_ping_pong() {
    const ROUNDS: usize = 300;
    const MESSAGE: usize = 200;
    let running = Running::start(echo_server(), Splice::Auto);
    let mut client = connect(running.addr);
    let mut rng = Rng::new(7);
    let mut reply = vec![0u8; MESSAGE];
    for _ in 0..ROUNDS {
        let message = rng.bytes(MESSAGE);
        client.write_all(&message).expect("write");
        client.read_exact(&mut reply).expect("echo");
        assert_eq!(reply, message);
    }
    let metrics = running.handle.metrics();
    // Counted once the turn that wrote the last echo ends.
    let total = (ROUNDS * MESSAGE) as u64;
    assert!(
        wait_until(DEADLINE, || metrics.bytes_toward_client_total.get()
            == total),
        "{} of {total} bytes counted toward the client",
        metrics.bytes_toward_client_total.get()
    );
    assert_eq!(
        metrics.spliced_bytes_total.get(),
        0,
        "a ping-pong was spliced"
    );
    assert_eq!(metrics.kernel_pipes_in_use.get(), 0);
    drop(client);
    running.stop();
}

#[test]
fn never_splices_nothing() {
    let (target, reader) = sink();
    let running = Running::start(target, Splice::Never);
    let sent = Pusher::start(connect(running.addr), BULK).finish();
    assert_eq!(reader.join().expect("reader"), (BULK, sent));
    let metrics = running.handle.metrics();
    assert!(wait_until(DEADLINE, || metrics.live_pipes.get() == 0));
    assert_eq!(metrics.spliced_bytes_total.get(), 0);
    assert_eq!(metrics.kernel_pipes_in_use.get(), 0);
    assert_eq!(metrics.bytes_toward_target_total.get(), BULK as u64);
    running.stop();
}

/// A target that accepts one connection and reads nothing, holding it
/// until the test ends.
fn stalled_target() -> (SocketAddr, mpsc::Receiver<TcpStream>) {
    let (listener, addr) = listener();
    let (accepted, receiver) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let _ = accepted.send(stream);
    });
    (addr, receiver)
}

/// Stalls a pipe through the binary with `--splice MODE`, aborts it from
/// the target, and returns how many descriptors the forwarder closed with
/// it: what the stalled pipe held.
/// How many descriptors the abort freed, once `expected` have been (the
/// two sockets close one after the other) or the deadline passed.
fn descriptors_freed_by_aborting_a_stalled_pipe(mode: &str, expected: usize) -> usize {
    let (target, accepted) = stalled_target();
    let tcpipe = Tcpipe::start(target, &["--splice", mode]);
    let client = tcpipe.connect();
    let target = accepted
        .recv_timeout(DEADLINE)
        .expect("the target's accept");
    let (written, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let pusher = push_until_stopped(client, Arc::clone(&written), Arc::clone(&stop));
    wait_for_stall(&written);
    let during = tcpipe.fd_count();

    // The target resets with bytes still in the forwarder: the pipe is
    // aborted, and whatever held its bytes goes with it, all in one free.
    reset(target);
    let freed = wait_until(DEADLINE, || {
        during.saturating_sub(tcpipe.fd_count()) >= expected
    });
    assert!(
        freed || tcpipe.fd_count() < during,
        "--splice {mode}: the aborted pipe's descriptors stayed open"
    );
    let freed = during.saturating_sub(tcpipe.fd_count());
    stop.store(true, Ordering::Relaxed);
    let _ = pusher.join();
    freed
}

#[test]
fn a_pipe_aborted_with_bytes_in_its_kernel_pipe_closes_that_pipe() {
    // Two sockets and the kernel pipe's two ends: none is kept for reuse.
    assert_eq!(descriptors_freed_by_aborting_a_stalled_pipe("always", 4), 4);
}

#[test]
fn with_splice_never_a_pipe_holds_only_its_two_sockets() {
    assert_eq!(descriptors_freed_by_aborting_a_stalled_pipe("never", 2), 2);
}

#[test]
fn half_close_while_spliced_passes_each_fin_after_the_last_byte() {
    const LEN: usize = 8 * 1024 * 1024;
    let (listener, addr) = listener();
    let target = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let got = receive_rest(&mut stream, 0, Fnv::default());
        // The client's FIN came; the way back is still open.
        let mut rng = Rng::new(99);
        let reply = rng.bytes(LEN);
        stream
            .write_all(&reply)
            .expect("reply after the client's FIN");
        stream.shutdown(Shutdown::Write).expect("target FIN");
        (got, Fnv::of(&reply))
    });
    let tcpipe = Tcpipe::start(addr, &["--splice", "always"]);
    let client = tcpipe.connect();
    let mut reader = client.try_clone().expect("clone");
    let sent = Pusher::start(client, LEN).finish();
    let echoed = receive_rest(&mut reader, 0, Fnv::default());
    let (got, reply) = target.join().expect("target thread");
    assert_eq!(got, (LEN, sent), "the target's bytes before the FIN");
    assert_eq!(echoed, (LEN, reply), "the client's bytes before the FIN");
}

/// A pipe through the binary with `--splice always`: the client, and the
/// target's end.
fn spliced_pipe() -> (Tcpipe, TcpStream, TcpStream) {
    let (listener, addr) = listener();
    let tcpipe = Tcpipe::start(addr, &["--splice", "always"]);
    let client = tcpipe.connect();
    let (target, _) = listener.accept().expect("accept");
    target.set_read_timeout(Some(DEADLINE)).unwrap();
    (tcpipe, client, target)
}

fn assert_reset(stream: &mut TcpStream, who: &str) {
    match read_until_closed(stream) {
        (_, Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        (n, end) => panic!("{who} saw {end:?} after {n} bytes, not a reset"),
    }
}

#[test]
fn a_target_reset_while_spliced_reaches_the_client_as_a_reset() {
    let (_tcpipe, mut client, target) = spliced_pipe();
    let (written, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let streaming = push_until_stopped(target, written, Arc::clone(&stop));
    let mut first = vec![0u8; 1024 * 1024];
    client.read_exact(&mut first).expect("the first MiB");
    stop.store(true, Ordering::Relaxed);
    reset(streaming.join().expect("target thread"));
    assert_reset(&mut client, "the client");
}

#[test]
fn a_client_reset_while_spliced_reaches_the_target_as_a_reset() {
    let (_tcpipe, client, mut target) = spliced_pipe();
    let (written, stop) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let streaming = push_until_stopped(client, written, Arc::clone(&stop));
    let mut first = vec![0u8; 1024 * 1024];
    target.read_exact(&mut first).expect("the first MiB");
    stop.store(true, Ordering::Relaxed);
    reset(streaming.join().expect("client thread"));
    assert_reset(&mut target, "the target");
}

#[test]
fn a_bad_splice_mode_is_refused_naming_the_flag_or_key() {
    let output = run_tcpipe(&[
        "-l",
        "127.0.0.1:0",
        "-t",
        "127.0.0.1:1",
        "--splice",
        "sometimes",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--splice") && stderr.contains("sometimes"),
        "{stderr}"
    );

    let file = config::ConfigFile::new(
        "[[route]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\ntargets = \"127.0.0.1:1\"\nsplice = \"sometimes\"\n",
    );
    let output = run_tcpipe(&["--check", "--config", file.path_str()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("splice") && stderr.contains("sometimes"),
        "{stderr}"
    );
}
