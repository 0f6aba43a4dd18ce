//! The load generators and what each workload reports. Every figure is
//! computed from what was counted: bytes the target received, replies the
//! client checked, connections that completed, CPU and PSS the kernel
//! reported; anything short or broken is an error, never a number.

mod bulk;
mod connect_rate;
mod idle_memory;
mod iperf;
mod ping_pong;
pub mod redis;
mod rr_concurrent;
pub mod scaling;
mod ttfb;
mod upgrade;
mod window;
mod wrk;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::measure::Meter;
use crate::peers::{Running, Tuning};
use crate::targets::MESSAGE;

pub use connect_rate::CONNECT_CONCURRENCY;
pub use idle_memory::IDLE_SETTLE;
pub use redis::{REDIS_CLIENTS, REDIS_PIPELINE};
pub use rr_concurrent::{RR_CONNECTIONS, RR_DEPTH};
pub use ttfb::TTFB_POOL;
pub use wrk::WRK_CONNECTIONS;

/// Durations and sizes of one run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Measured time of each timed cell.
    pub duration: Duration,
    /// Load before the measured window (rr, connect rate, ping-pong).
    pub warmup: Duration,
    pub idle_pipes: usize,
    /// Idle pipes at the scaling workload's last level.
    pub scale_pipes: usize,
}

/// Longest wait for a reply or a delivery that is due.
const PATIENCE: Duration = Duration::from_secs(10);

/// Metric key and value, as measured in one cell.
pub type Sample = Vec<(&'static str, f64)>;
/// Starts the contender in front of a target, tuned as asked, and returns
/// it running.
pub type Start<'a> = &'a mut dyn FnMut(SocketAddr, Tuning) -> Result<Running, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    Bulk1,
    Bulk4,
    PingPong,
    RrConcurrent,
    ConnectRate,
    IdleMemory,
    Ttfb,
    Iperf1,
    Iperf4,
    Redis,
    Wrk,
    Scaling,
    Upgrade,
}

impl Workload {
    pub const ALL: [Workload; 13] = [
        Workload::Bulk1,
        Workload::Bulk4,
        Workload::PingPong,
        Workload::RrConcurrent,
        Workload::ConnectRate,
        Workload::IdleMemory,
        Workload::Ttfb,
        Workload::Iperf1,
        Workload::Iperf4,
        Workload::Redis,
        Workload::Wrk,
        Workload::Scaling,
        Workload::Upgrade,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Bulk1 => "bulk-1",
            Workload::Bulk4 => "bulk-4",
            Workload::PingPong => "ping-pong",
            Workload::RrConcurrent => "rr-concurrent",
            Workload::ConnectRate => "connect-rate",
            Workload::IdleMemory => "idle-memory",
            Workload::Ttfb => "ttfb",
            Workload::Iperf1 => "iperf-1",
            Workload::Iperf4 => "iperf-4",
            Workload::Redis => "redis",
            Workload::Wrk => "wrk",
            Workload::Scaling => "scaling",
            Workload::Upgrade => "upgrade",
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
            Workload::Ttfb => &["time-to-first-byte", "pool"],
            Workload::Iperf1 => &["iperf", "iperf1", "tools"],
            Workload::Iperf4 => &["iperf", "iperf4", "tools"],
            Workload::Redis => &["redis-benchmark", "tools"],
            Workload::Wrk => &["tools"],
            Workload::Scaling => &["scale"],
            Workload::Upgrade => &["live-upgrade"],
        };
        word == self.name() || aliases.contains(&word)
    }

    /// Without a forwarder there is nothing to measure.
    pub fn needs_forwarder(self) -> bool {
        matches!(
            self,
            Workload::IdleMemory | Workload::Scaling | Workload::Upgrade
        )
    }

    /// A feature of tcpipe's alone: run for tcpipe only.
    pub fn tcpipe_only(self) -> bool {
        self == Workload::Upgrade
    }

    /// Third-party programs it drives; without them it is skipped.
    pub fn tools(self) -> &'static [&'static str] {
        match self {
            Workload::Iperf1 | Workload::Iperf4 => &["iperf3"],
            Workload::Redis => &["redis-server", "redis-benchmark"],
            Workload::Wrk => &["wrk", "nginx"],
            _ => &[],
        }
    }

    pub fn run(self, settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
        match self {
            Workload::Bulk1 => bulk::run(1, settings, start),
            Workload::Bulk4 => bulk::run(bulk::BULK_STREAMS, settings, start),
            Workload::PingPong => ping_pong::run(settings, start),
            Workload::RrConcurrent => rr_concurrent::run(settings, start),
            Workload::ConnectRate => connect_rate::run(settings, start),
            Workload::IdleMemory => idle_memory::run(settings, start),
            Workload::Ttfb => ttfb::run(settings, start),
            Workload::Iperf1 => iperf::run(1, settings, start),
            Workload::Iperf4 => iperf::run(4, settings, start),
            Workload::Redis => redis::run(settings, start),
            Workload::Wrk => wrk::run(settings, start),
            Workload::Scaling => scaling::run(settings, start),
            Workload::Upgrade => upgrade::run(settings, start),
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

pub const METRICS: [Metric; 17] = [
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
        "connect_inspect_per_s",
        Workload::ConnectRate,
        "connect rate, routed by first bytes",
        "conn/s",
        true,
        false,
    ),
    metric(
        "idle_kib_per_pipe",
        Workload::IdleMemory,
        "idle memory",
        "KiB/pipe",
        false,
        true,
    ),
    // The pool rows have a figure for tcpipe only; "16" is `TTFB_POOL`.
    metric(
        "ttfb_p50_us",
        Workload::Ttfb,
        "time to first byte p50",
        "µs",
        false,
        false,
    ),
    metric(
        "ttfb_pool_p50_us",
        Workload::Ttfb,
        "time to first byte p50, --pool 16",
        "µs",
        false,
        false,
    ),
    metric(
        "ttfb_pool_ratio",
        Workload::Ttfb,
        "time to first byte p50, --pool 16 ÷ --pool 0",
        "×",
        false,
        false,
    ),
    metric(
        "ttfb_p99_us",
        Workload::Ttfb,
        "time to first byte p99",
        "µs",
        false,
        false,
    ),
    metric(
        "ttfb_pool_p99_us",
        Workload::Ttfb,
        "time to first byte p99, --pool 16",
        "µs",
        false,
        false,
    ),
];

/// Every row of the report: the in-process loads' rows, then those of the
/// third-party clients and of the scaling workload.
pub fn metrics() -> impl Iterator<Item = &'static Metric> {
    METRICS
        .iter()
        .chain(&iperf::METRICS)
        .chain(&redis::METRICS)
        .chain(&wrk::METRICS)
        .chain(scaling::METRICS.iter().flatten())
        .chain([&scaling::MOST_PIPES])
        .chain(upgrade::METRICS.iter().flatten())
        .chain([&upgrade::MOST_PIPES])
}

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

/// Sends request `seq` on `stream` and reads its echo, checking it.
fn exchange(stream: &mut TcpStream, seq: u64) -> Result<(), String> {
    let request = message(0, seq);
    let mut reply = [0u8; MESSAGE];
    stream
        .write_all(&request)
        .map_err(|e| format!("write: {e}"))?;
    stream
        .read_exact(&mut reply)
        .map_err(|e| format!("read of reply {seq}: {e}"))?;
    if reply != request {
        return Err(format!("reply {seq} does not echo its request"));
    }
    Ok(())
}

/// The `p` quantile (nearest rank) of `sorted` nanoseconds, in µs.
fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
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
