//! The load generators and what each workload reports. Every figure is
//! computed from what was counted: bytes the target received, replies the
//! client checked, connections that completed, CPU and PSS the kernel
//! reported; anything short or broken is an error, never a number.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use crate::measure::{fd_limits, Meter};
use crate::peers::Running;
use crate::targets::{EventServer, Reply, ThreadServer, MESSAGE};

/// Durations and sizes of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Measured time of each timed cell.
    pub duration: Duration,
    /// Load before the measured window (rr, connect rate, ping-pong).
    pub warmup: Duration,
    pub idle_pipes: usize,
}

/// Parallel streams in the multi-stream bulk workload.
pub const BULK_STREAMS: usize = 4;
/// Bytes per write and read in bulk.
const CHUNK: usize = 256 * 1024;
pub const RR_CONNECTIONS: usize = 50;
pub const RR_DEPTH: usize = 16;
/// Connections in flight at once in the connect-rate workload.
pub const CONNECT_CONCURRENCY: usize = 16;
/// Longest wait for a reply or a delivery that is due.
const PATIENCE: Duration = Duration::from_secs(10);
/// Pause between opening the idle pipes and reading memory, so that every
/// forwarder has finished its last exchange.
const IDLE_SETTLE: Duration = Duration::from_millis(200);
/// Threads opening the idle pipes.
const IDLE_OPENERS: usize = 4;

/// Metric key and value, as measured in one cell.
pub type Sample = Vec<(&'static str, f64)>;
/// Starts the contender in front of a target and returns it running.
pub type Start<'a> = &'a mut dyn FnMut(SocketAddr) -> Result<Running, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    Bulk1,
    Bulk4,
    PingPong,
    RrConcurrent,
    ConnectRate,
    IdleMemory,
}

impl Workload {
    pub const ALL: [Workload; 6] = [
        Workload::Bulk1,
        Workload::Bulk4,
        Workload::PingPong,
        Workload::RrConcurrent,
        Workload::ConnectRate,
        Workload::IdleMemory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Bulk1 => "bulk-1",
            Workload::Bulk4 => "bulk-4",
            Workload::PingPong => "ping-pong",
            Workload::RrConcurrent => "rr-concurrent",
            Workload::ConnectRate => "connect-rate",
            Workload::IdleMemory => "idle-memory",
        }
    }

    /// Whether `word` from `--only` names this workload ("bulk" names both).
    pub fn selected_by(self, word: &str) -> bool {
        let aliases: &[&str] = match self {
            Workload::Bulk1 => &["bulk", "bulk1"],
            Workload::Bulk4 => &["bulk", "bulk4"],
            Workload::PingPong => &["pingpong", "ping"],
            Workload::RrConcurrent => &["rr"],
            Workload::ConnectRate => &["connect"],
            Workload::IdleMemory => &["idle", "memory"],
        };
        word == self.name() || aliases.contains(&word)
    }

    /// Without a forwarder there is nothing to measure.
    pub fn needs_forwarder(self) -> bool {
        self == Workload::IdleMemory
    }

    pub fn run(self, settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
        match self {
            Workload::Bulk1 => bulk(1, settings, start),
            Workload::Bulk4 => bulk(BULK_STREAMS, settings, start),
            Workload::PingPong => ping_pong(settings, start),
            Workload::RrConcurrent => rr_concurrent(settings, start),
            Workload::ConnectRate => connect_rate(settings, start),
            Workload::IdleMemory => idle_memory(settings, start),
        }
    }
}

/// One row of the report.
pub struct Metric {
    pub key: &'static str,
    pub workload: Workload,
    pub label: &'static str,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// Part of issue 5's goal: beat the best peer on rates, use no more
    /// CPU or memory than it.
    pub goal: bool,
}

const fn metric(
    key: &'static str,
    workload: Workload,
    label: &'static str,
    unit: &'static str,
    higher_is_better: bool,
    goal: bool,
) -> Metric {
    Metric {
        key,
        workload,
        label,
        unit,
        higher_is_better,
        goal,
    }
}

pub const METRICS: [Metric; 11] = [
    metric(
        "bulk1_gbps",
        Workload::Bulk1,
        "bulk, 1 stream",
        "GB/s",
        true,
        true,
    ),
    metric(
        "bulk1_cpu_s_per_gb",
        Workload::Bulk1,
        "bulk, 1 stream: CPU",
        "CPU-s/GB",
        false,
        true,
    ),
    metric(
        "bulk4_gbps",
        Workload::Bulk4,
        "bulk, 4 streams",
        "GB/s",
        true,
        true,
    ),
    metric(
        "bulk4_cpu_s_per_gb",
        Workload::Bulk4,
        "bulk, 4 streams: CPU",
        "CPU-s/GB",
        false,
        true,
    ),
    metric(
        "pingpong_p50_us",
        Workload::PingPong,
        "ping-pong p50",
        "µs",
        false,
        false,
    ),
    metric(
        "pingpong_p99_us",
        Workload::PingPong,
        "ping-pong p99",
        "µs",
        false,
        false,
    ),
    metric(
        "pingpong_p999_us",
        Workload::PingPong,
        "ping-pong p99.9",
        "µs",
        false,
        false,
    ),
    metric(
        "rr_req_per_s",
        Workload::RrConcurrent,
        "rr-concurrent",
        "req/s",
        true,
        true,
    ),
    metric(
        "rr_cpu_s_per_mreq",
        Workload::RrConcurrent,
        "rr-concurrent: CPU",
        "CPU-s/M req",
        false,
        true,
    ),
    metric(
        "connect_per_s",
        Workload::ConnectRate,
        "connect rate",
        "conn/s",
        true,
        true,
    ),
    metric(
        "idle_kib_per_pipe",
        Workload::IdleMemory,
        "idle memory",
        "KiB/pipe",
        false,
        true,
    ),
];

/// Tells the streams of all cells apart at the target.
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

/// A small request: sequence number, connection number, then a pattern that
/// moves with both, so that a reply for the wrong request never matches.
fn message(conn: u64, seq: u64) -> [u8; MESSAGE] {
    let mut m = [0u8; MESSAGE];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m[8..16].copy_from_slice(&conn.to_le_bytes());
    for (i, byte) in m[16..].iter_mut().enumerate() {
        *byte = (seq as u8)
            .wrapping_mul(31)
            .wrapping_add(conn as u8)
            .wrapping_add(i as u8);
    }
    m
}

fn cpu_now(meter: &Meter) -> Result<Option<f64>, String> {
    meter.cpu_seconds().transpose()
}

fn cpu_used(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, PATIENCE).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .and_then(|_| stream.set_read_timeout(Some(PATIENCE)))
        .and_then(|_| stream.set_write_timeout(Some(PATIENCE)))
        .map_err(|e| format!("socket options: {e}"))?;
    Ok(stream)
}

// ----- bulk -------------------------------------------------------------------

/// What the target counted on one bulk connection, at its end of stream.
struct Delivery {
    /// The id the client sent first; `None` for a connection that sent
    /// fewer than 8 bytes (the readiness probe).
    id: Option<u64>,
    bytes: u64,
    at: Instant,
    error: Option<String>,
}

fn count_to_end(mut stream: TcpStream, deliveries: &Sender<Delivery>) {
    let mut buf = vec![0u8; CHUNK];
    let mut head = Vec::with_capacity(8);
    let mut bytes = 0u64;
    let mut error = None;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if head.len() < 8 {
                    let take = n.min(8 - head.len());
                    head.extend_from_slice(&buf[..take]);
                }
                bytes += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let at = Instant::now();
    let id = <[u8; 8]>::try_from(head.as_slice())
        .ok()
        .map(u64::from_be_bytes);
    let _ = deliveries.send(Delivery {
        id,
        bytes,
        at,
        error,
    });
}

/// Streams client → target for the duration, then ends each stream; the
/// figure is bytes the target counted over the time until it read the last
/// end of stream.
fn bulk(streams: usize, settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let (tx, rx) = mpsc::channel();
    let server = ThreadServer::start(move |stream| count_to_end(stream, &tx))
        .map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr())?;
    let addr = forwarder.addr;
    let meter = forwarder.meter();
    let barrier = Arc::new(Barrier::new(streams + 1));
    let ids: Vec<u64> = (0..streams)
        .map(|_| NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed))
        .collect();
    let duration = settings.duration;
    let writers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(TcpStream, u64), String> {
                let connected = connect(addr).and_then(|mut s| {
                    s.write_all(&id.to_be_bytes())
                        .map_err(|e| format!("write: {e}"))?;
                    Ok(s)
                });
                barrier.wait();
                let mut stream = connected?;
                let chunk = vec![0x5au8; CHUNK];
                let mut sent = 8u64;
                let end = Instant::now() + duration;
                while Instant::now() < end {
                    stream
                        .write_all(&chunk)
                        .map_err(|e| format!("write after {sent} bytes: {e}"))?;
                    sent += CHUNK as u64;
                }
                stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| format!("shutdown: {e}"))?;
                Ok((stream, sent))
            })
        })
        .collect();
    let cpu_before = cpu_now(&meter)?;
    barrier.wait();
    let started = Instant::now();
    let mut sent_by_id = HashMap::new();
    let mut open_streams = Vec::new(); // kept open until the target has counted
    for (writer, id) in writers.into_iter().zip(&ids) {
        let (stream, sent) = writer
            .join()
            .map_err(|_| "a writer thread panicked".to_string())?
            .map_err(|e| format!("stream {id}: {e}"))?;
        sent_by_id.insert(*id, sent);
        open_streams.push(stream);
    }
    let mut last_at = started;
    let mut counted = 0;
    let deadline = Instant::now() + PATIENCE;
    while counted < streams {
        let wait = deadline.saturating_duration_since(Instant::now());
        let delivery = match rx.recv_timeout(wait) {
            Ok(d) => d,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "only {counted} of {streams} streams ended at the target within {PATIENCE:?} of the last write"
                ))
            }
            Err(RecvTimeoutError::Disconnected) => return Err("target server stopped".into()),
        };
        let Some(sent) = delivery.id.and_then(|id| sent_by_id.get(&id)) else {
            continue; // the readiness probe
        };
        if let Some(e) = delivery.error {
            return Err(format!(
                "target read failed after {} bytes: {e}",
                delivery.bytes
            ));
        }
        if delivery.bytes != *sent {
            return Err(format!(
                "short transfer: sent {sent} bytes, target received {}",
                delivery.bytes
            ));
        }
        last_at = last_at.max(delivery.at);
        counted += 1;
    }
    let cpu_after = cpu_now(&meter)?;
    forwarder.ensure_alive()?;
    drop(open_streams);
    let bytes: u64 = sent_by_id.values().sum();
    let seconds = last_at.duration_since(started).as_secs_f64();
    let gigabytes = bytes as f64 / 1e9;
    let (rate_key, cpu_key) = if streams == 1 {
        ("bulk1_gbps", "bulk1_cpu_s_per_gb")
    } else {
        ("bulk4_gbps", "bulk4_cpu_s_per_gb")
    };
    let mut sample = vec![(rate_key, gigabytes / seconds)];
    if let Some(cpu) = cpu_used(cpu_before, cpu_after) {
        sample.push((cpu_key, cpu / gigabytes));
    }
    Ok(sample)
}

// ----- ping-pong ---------------------------------------------------------------

fn echo_messages(mut stream: TcpStream) {
    let mut buf = [0u8; MESSAGE];
    while stream.read_exact(&mut buf).is_ok() {
        if stream.write_all(&buf).is_err() {
            break;
        }
    }
}

/// Fewest round trips from which a p99.9 means something.
const MIN_ROUND_TRIPS: usize = 2000;

fn ping_pong(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = ThreadServer::start(echo_messages).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr())?;
    let mut stream = connect(forwarder.addr)?;
    let mut reply = [0u8; MESSAGE];
    let mut seq = 0u64;
    let mut round_trip = |stream: &mut TcpStream| -> Result<Duration, String> {
        let request = message(0, seq);
        let sent_at = Instant::now();
        stream
            .write_all(&request)
            .map_err(|e| format!("write: {e}"))?;
        stream
            .read_exact(&mut reply)
            .map_err(|e| format!("read of reply {seq}: {e}"))?;
        let took = sent_at.elapsed();
        if reply != request {
            return Err(format!("reply {seq} does not echo its request"));
        }
        seq += 1;
        Ok(took)
    };
    let warm_until = Instant::now() + settings.warmup;
    while Instant::now() < warm_until {
        round_trip(&mut stream)?;
    }
    let mut nanos = Vec::with_capacity(1 << 20);
    let end = Instant::now() + settings.duration;
    while Instant::now() < end {
        nanos.push(round_trip(&mut stream)?.as_nanos() as u64);
    }
    forwarder.ensure_alive()?;
    if nanos.len() < MIN_ROUND_TRIPS {
        return Err(format!(
            "only {} round trips in {:?}: too few for a p99.9",
            nanos.len(),
            settings.duration
        ));
    }
    nanos.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((p * nanos.len() as f64).ceil() as usize).clamp(1, nanos.len());
        nanos[rank - 1] as f64 / 1000.0
    };
    Ok(vec![
        ("pingpong_p50_us", percentile(0.50)),
        ("pingpong_p99_us", percentile(0.99)),
        ("pingpong_p999_us", percentile(0.999)),
    ])
}

// ----- windows of the event-loop generators ------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// Warm-up, then the measured window, then the drain of what is in flight;
/// counts completions and forwarder CPU in the window only.
struct Window<'a> {
    phase: Phase,
    meter: &'a Meter,
    measure_from: Instant,
    measure_until: Instant,
    drain_until: Instant,
    started_at: Instant,
    count_at_start: u64,
    cpu_at_start: Option<f64>,
    /// Completions and CPU seconds within the window, and its length.
    result: Option<(u64, Option<f64>, Duration)>,
}

impl<'a> Window<'a> {
    fn new(settings: &Settings, meter: &'a Meter) -> Window<'a> {
        let now = Instant::now();
        let measure_from = now + settings.warmup;
        let measure_until = measure_from + settings.duration;
        Window {
            phase: Phase::Warmup,
            meter,
            measure_from,
            measure_until,
            drain_until: measure_until + PATIENCE,
            started_at: now,
            count_at_start: 0,
            cpu_at_start: None,
            result: None,
        }
    }

    /// Moves to the next phase if its time has come; `completed` is the
    /// running count of completions.
    fn tick(&mut self, completed: u64) -> Result<(), String> {
        let now = Instant::now();
        if self.phase == Phase::Warmup && now >= self.measure_from {
            self.phase = Phase::Measure;
            self.cpu_at_start = cpu_now(self.meter)?;
            self.started_at = Instant::now();
            self.count_at_start = completed;
        }
        if self.phase == Phase::Measure && now >= self.measure_until {
            let elapsed = self.started_at.elapsed();
            let cpu = cpu_used(self.cpu_at_start, cpu_now(self.meter)?);
            self.result = Some((completed - self.count_at_start, cpu, elapsed));
            self.phase = Phase::Drain;
        }
        Ok(())
    }

    fn may_start_more(&self) -> bool {
        self.phase != Phase::Drain
    }

    fn poll_timeout(&self) -> Duration {
        let next = match self.phase {
            Phase::Warmup => self.measure_from,
            Phase::Measure => self.measure_until,
            Phase::Drain => self.drain_until,
        };
        next.saturating_duration_since(Instant::now())
    }

    fn drain_expired(&self) -> bool {
        self.phase == Phase::Drain && Instant::now() >= self.drain_until
    }
}

fn poll_once(poll: &mut Poll, events: &mut Events, timeout: Duration) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(format!("poll: {e}")),
    }
}

// ----- rr-concurrent -----------------------------------------------------------

/// One connection that sends `RR_DEPTH` requests in one write and waits for
/// all their replies before the next batch.
struct RrConn {
    id: u64,
    stream: MioStream,
    batch: Vec<u8>,
    written: usize,
    inbox: Vec<u8>,
    next_seq: u64,
    expected_seq: u64,
    outstanding: usize,
}

impl RrConn {
    fn start_batch(&mut self) {
        self.batch.clear();
        for _ in 0..RR_DEPTH {
            self.batch
                .extend_from_slice(&message(self.id, self.next_seq));
            self.next_seq += 1;
        }
        self.written = 0;
        self.outstanding = RR_DEPTH;
    }

    /// Writes what it can, checks every whole reply, and starts the next
    /// batch once the last one is answered (if allowed). Adds to `replies`.
    fn pump(&mut self, buf: &mut [u8], may_start: bool, replies: &mut u64) -> Result<(), String> {
        loop {
            while self.written < self.batch.len() {
                match self.stream.write(&self.batch[self.written..]) {
                    Ok(0) => return Err("write returned 0".into()),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("connection {}: write: {e}", self.id)),
                }
            }
            loop {
                match self.stream.read(buf) {
                    Ok(0) => return Err(format!("connection {}: closed by the far end", self.id)),
                    Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("connection {}: read: {e}", self.id)),
                }
            }
            let whole = self.inbox.len() / MESSAGE * MESSAGE;
            for reply in self.inbox[..whole].chunks_exact(MESSAGE) {
                if self.outstanding == 0 {
                    return Err(format!("connection {}: a reply nobody asked for", self.id));
                }
                if reply != message(self.id, self.expected_seq) {
                    return Err(format!(
                        "connection {}: reply {} does not echo its request",
                        self.id, self.expected_seq
                    ));
                }
                self.expected_seq += 1;
                self.outstanding -= 1;
                *replies += 1;
            }
            self.inbox.drain(..whole);
            if self.outstanding == 0 && may_start {
                self.start_batch();
                continue;
            }
            return Ok(());
        }
    }
}

fn rr_concurrent(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = EventServer::start(Reply::Echo).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr())?;
    let meter = forwarder.meter();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut conns = Vec::with_capacity(RR_CONNECTIONS);
    for id in 0..RR_CONNECTIONS {
        let stream = connect(forwarder.addr).map_err(|e| format!("connection {id}: {e}"))?;
        stream
            .set_nonblocking(true)
            .map_err(|e| format!("nonblocking: {e}"))?;
        let mut stream = MioStream::from_std(stream);
        poll.registry()
            .register(
                &mut stream,
                Token(id),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        conns.push(RrConn {
            id: id as u64,
            stream,
            batch: Vec::with_capacity(RR_DEPTH * MESSAGE),
            written: 0,
            inbox: Vec::with_capacity(RR_DEPTH * MESSAGE),
            next_seq: 0,
            expected_seq: 0,
            outstanding: 0,
        });
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Events::with_capacity(256);
    let mut replies = 0u64;
    let mut window = Window::new(settings, &meter);
    for conn in &mut conns {
        conn.start_batch();
        conn.pump(&mut buf, true, &mut replies)?;
    }
    loop {
        window.tick(replies)?;
        if !window.may_start_more() && conns.iter().all(|c| c.outstanding == 0) {
            break;
        }
        if window.drain_expired() {
            let missing: usize = conns.iter().map(|c| c.outstanding).sum();
            return Err(format!(
                "{missing} requests unanswered {PATIENCE:?} after the window ended"
            ));
        }
        poll_once(&mut poll, &mut events, window.poll_timeout())?;
        let may_start = window.may_start_more();
        for event in events.iter() {
            conns[event.token().0].pump(&mut buf, may_start, &mut replies)?;
        }
    }
    forwarder.ensure_alive()?;
    let (answered, cpu, elapsed) = window.result.ok_or("the window never ended")?;
    if answered == 0 {
        return Err("no request answered in the window".into());
    }
    let mut sample = vec![("rr_req_per_s", answered as f64 / elapsed.as_secs_f64())];
    if let Some(cpu) = cpu {
        sample.push(("rr_cpu_s_per_mreq", cpu / (answered as f64 / 1e6)));
    }
    Ok(sample)
}

// ----- connect rate ------------------------------------------------------------

/// One short connection: connect, send a request, read the reply and the
/// target's close, then close.
struct Attempt {
    stream: MioStream,
    request: [u8; MESSAGE],
    connected: bool,
    sent: bool,
    received: Vec<u8>,
}

enum Progress {
    Pending,
    Completed,
    Failed(String),
}

impl Attempt {
    fn open(addr: SocketAddr, poll: &Poll, slot: usize, seq: u64) -> Result<Attempt, String> {
        let mut stream = MioStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
        poll.registry()
            .register(
                &mut stream,
                Token(slot),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        Ok(Attempt {
            stream,
            request: message(slot as u64, seq),
            connected: false,
            sent: false,
            received: Vec::with_capacity(MESSAGE),
        })
    }

    fn advance(&mut self, buf: &mut [u8]) -> Progress {
        if !self.connected {
            if let Ok(Some(e)) | Err(e) = self.stream.take_error() {
                return Progress::Failed(format!("connect: {e}"));
            }
            match self.stream.peer_addr() {
                Ok(_) => self.connected = true,
                Err(e) if e.kind() == ErrorKind::NotConnected => return Progress::Pending,
                Err(e) => return Progress::Failed(format!("connect: {e}")),
            }
            let _ = self.stream.set_nodelay(true);
        }
        if !self.sent {
            match self.stream.write(&self.request) {
                Ok(n) if n == MESSAGE => self.sent = true,
                Ok(n) => return Progress::Failed(format!("short write of {n} bytes")),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) => return Progress::Failed(format!("write: {e}")),
            }
        }
        loop {
            match self.stream.read(buf) {
                Ok(0) if self.received[..] == self.request[..] => return Progress::Completed,
                Ok(0) => {
                    return Progress::Failed(format!(
                        "closed after {} of {MESSAGE} reply bytes",
                        self.received.len()
                    ))
                }
                Ok(n) => {
                    self.received.extend_from_slice(&buf[..n]);
                    if self.received.len() > MESSAGE {
                        return Progress::Failed("more reply than was asked for".into());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Progress::Failed(format!("read: {e}")),
            }
        }
    }
}

fn connect_rate(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = EventServer::start(Reply::OneShot).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr())?;
    let addr = forwarder.addr;
    let meter = forwarder.meter();
    let mut poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
    let mut slots: Vec<Option<Attempt>> = Vec::with_capacity(CONNECT_CONCURRENCY);
    let mut seq = 0u64;
    let mut completed = 0u64;
    let mut failures = 0u64;
    let mut first_failure = None;
    let mut note_failure = |why: String| {
        failures += 1;
        first_failure.get_or_insert(why);
    };
    for slot in 0..CONNECT_CONCURRENCY {
        seq += 1;
        slots.push(Some(Attempt::open(addr, &poll, slot, seq)?));
    }
    let mut buf = [0u8; 1024];
    let mut events = Events::with_capacity(256);
    let mut window = Window::new(settings, &meter);
    loop {
        window.tick(completed)?;
        if !window.may_start_more() && slots.iter().all(Option::is_none) {
            break;
        }
        if window.drain_expired() {
            let stuck = slots.iter().filter(|s| s.is_some()).count();
            note_failure(format!(
                "{stuck} connections unanswered {PATIENCE:?} after the window"
            ));
            break;
        }
        poll_once(&mut poll, &mut events, window.poll_timeout())?;
        for event in events.iter() {
            let slot = event.token().0;
            let Some(attempt) = slots[slot].as_mut() else {
                continue;
            };
            match attempt.advance(&mut buf) {
                Progress::Pending => continue,
                Progress::Completed => completed += 1,
                Progress::Failed(why) => note_failure(why),
            }
            slots[slot] = None; // closes it: the target closed first
            if window.may_start_more() {
                seq += 1;
                match Attempt::open(addr, &poll, slot, seq) {
                    Ok(attempt) => slots[slot] = Some(attempt),
                    Err(why) => note_failure(why),
                }
            }
        }
        if window.may_start_more() && slots.iter().all(Option::is_none) {
            break; // every slot failed to reopen
        }
    }
    if failures > 0 {
        return Err(format!(
            "{failures} of {} connections failed (first: {})",
            completed + failures,
            first_failure.unwrap_or_default()
        ));
    }
    forwarder.ensure_alive()?;
    let (done, _, elapsed) = window.result.ok_or("the window never ended")?;
    if done == 0 {
        return Err("no connection completed in the window".into());
    }
    Ok(vec![("connect_per_s", done as f64 / elapsed.as_secs_f64())])
}

// ----- idle memory -------------------------------------------------------------

/// Opens the idle pipes, each proven end to end by one small exchange, and
/// charges the forwarder's PSS growth to them.
fn idle_memory(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let pipes = settings.idle_pipes;
    // Client and target ends both live in this process.
    let needed = 2 * pipes as u64 + 1000;
    let soft = fd_limits().map_or(0, |(soft, _)| soft);
    if soft < needed {
        return Err(format!(
            "descriptor limit {soft} is below the {needed} needed: run under `ulimit -n 65536`"
        ));
    }
    let server = EventServer::start(Reply::Echo).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr())?;
    let meter = forwarder.meter();
    let pss = || -> Result<u64, String> {
        meter
            .pss_kib()
            .ok_or_else(|| "no forwarder process to measure".to_string())?
    };
    let before = pss()?;
    let addr = forwarder.addr;
    // A few openers at once: socat forks per connection, one at a time is slow.
    let openers: Vec<_> = (0..IDLE_OPENERS)
        .map(|opener| {
            thread::spawn(move || -> Result<Vec<TcpStream>, String> {
                let mut streams = Vec::new();
                let mut reply = [0u8; MESSAGE];
                for i in (opener..pipes).step_by(IDLE_OPENERS) {
                    let fail = |e: String| format!("pipe {} of {pipes}: {e}", i + 1);
                    let mut stream = connect(addr).map_err(fail)?;
                    let request = message(i as u64, 0);
                    stream
                        .write_all(&request)
                        .map_err(|e| fail(format!("write: {e}")))?;
                    stream
                        .read_exact(&mut reply)
                        .map_err(|e| fail(format!("read: {e}")))?;
                    if reply != request {
                        return Err(fail("the reply does not echo the request".into()));
                    }
                    streams.push(stream);
                }
                Ok(streams)
            })
        })
        .collect();
    let mut streams = Vec::with_capacity(pipes);
    for opener in openers {
        streams.extend(
            opener
                .join()
                .map_err(|_| "an opener thread panicked".to_string())??,
        );
    }
    thread::sleep(IDLE_SETTLE);
    forwarder.ensure_alive()?;
    let after = pss()?;
    drop(streams);
    Ok(vec![(
        "idle_kib_per_pipe",
        (after as f64 - before as f64) / pipes as f64,
    )])
}
