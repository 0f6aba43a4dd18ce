//! Cost as work grows: one forwarder holds N idle pipes, N = 0, 1,000,
//! 5,000 and as many as the descriptor limits allow, and at each N the bench
//! measures what one more pipe sees (ping-pong p50 and p99), the connect
//! rate, the memory per idle pipe and the CPU the forwarder burns while
//! nothing moves. tcpipe runs with idle and half-close timeouts set, so
//! that every pipe holds timers, as the peers' do.

use std::thread;
use std::time::{Duration, Instant};

use super::connect_rate::connections_per_second;
use super::idle_memory::{open_idle_pipes, IDLE_SETTLE};
use super::ping_pong::round_trips;
use super::{cpu_now, cpu_used, metric, percentile_us, Metric, Sample, Settings, Start, Workload};
use crate::measure::fd_limits;
use crate::peers::Tuning;
use crate::targets::{EventServer, Reply};

/// Pipes a level holds; `None` is the most the limits allow.
pub const LEVELS: [Option<usize>; 4] = [Some(0), Some(1000), Some(5000), None];
/// Metrics per level, in `METRICS`, in this order: p50, p99, connect rate,
/// idle CPU, memory.
pub const PER_LEVEL: usize = 5;
/// Descriptors kept free in the forwarder beyond the idle pipes: the
/// connect load, the ping-pong pipe, the readiness probe.
pub const RESERVE_PIPES: usize = 64;
/// Wait before the idle window: tcpipe sets each upstream keepalive once
/// its pipe is a second old (four setsockopt calls, deferred so that
/// short connections never pay them), so a window opened sooner would
/// count that one-off setup as idle cost.
pub const DEFERRED_SETUP: Duration = Duration::from_millis(1200);

macro_rules! level {
    ($key:literal, $label:literal, $mem_key:literal, $mem_label:literal, $mem_unit:literal) => {
        [
            metric(
                concat!("scale", $key, "_pingpong_p50_us"),
                Workload::Scaling,
                concat!($label, ": ping-pong p50 of one more pipe"),
                "µs",
                false,
                false,
            ),
            metric(
                concat!("scale", $key, "_pingpong_p99_us"),
                Workload::Scaling,
                concat!($label, ": ping-pong p99 of one more pipe"),
                "µs",
                false,
                false,
            ),
            metric(
                concat!("scale", $key, "_connect_per_s"),
                Workload::Scaling,
                concat!($label, ": connect rate"),
                "conn/s",
                true,
                false,
            ),
            metric(
                concat!("scale", $key, "_idle_cpu_ms_per_s"),
                Workload::Scaling,
                concat!($label, ": CPU while idle"),
                "CPU-ms/s",
                false,
                false,
            ),
            metric(
                $mem_key,
                Workload::Scaling,
                $mem_label,
                $mem_unit,
                false,
                false,
            ),
        ]
    };
}

pub const METRICS: [[Metric; PER_LEVEL]; 4] = [
    level!(
        "0",
        "0 idle pipes",
        "scale0_pss_kib",
        "0 idle pipes: memory",
        "KiB"
    ),
    level!(
        "1k",
        "1,000 idle pipes",
        "scale1k_kib_per_pipe",
        "1,000 idle pipes: memory per pipe",
        "KiB/pipe"
    ),
    level!(
        "5k",
        "5,000 idle pipes",
        "scale5k_kib_per_pipe",
        "5,000 idle pipes: memory per pipe",
        "KiB/pipe"
    ),
    level!(
        "max",
        "most idle pipes",
        "scalemax_kib_per_pipe",
        "most idle pipes: memory per pipe",
        "KiB/pipe"
    ),
];

/// The pipes at the last level, as a row of its own.
pub const MOST_PIPES: Metric = metric(
    "scalemax_pipes",
    Workload::Scaling,
    "most idle pipes: how many",
    "pipes",
    true,
    false,
);

/// The pipes of each level that fits under `most`, with its metrics.
pub fn levels(most: usize) -> Vec<(usize, &'static [Metric; PER_LEVEL])> {
    LEVELS
        .iter()
        .zip(&METRICS)
        .filter_map(|(pipes, metrics)| match pipes {
            Some(n) if *n < most => Some((*n, metrics)),
            Some(_) => None,
            None => Some((most, metrics)),
        })
        .collect()
}

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let most = settings.scale_pipes;
    // Client and target ends of every pipe live in this process.
    let needed = 2 * most as u64 + 1000;
    let soft = fd_limits().map_or(0, |(soft, _)| soft);
    if soft < needed {
        return Err(format!(
            "descriptor limit {soft} is below the {needed} needed for {most} pipes"
        ));
    }
    let server = EventServer::start(Reply::ByFirstMessage).map_err(|e| format!("target: {e}"))?;
    let tuning = Tuning {
        timeouts: true,
        ..Tuning::default()
    };
    let mut forwarder = start(server.addr(), tuning)?;
    let meter = forwarder.meter();
    let addr = forwarder.addr;
    let pss = || -> Result<f64, String> {
        let kib = meter
            .pss_kib()
            .ok_or_else(|| "no forwarder process to measure".to_string())??;
        Ok(kib as f64)
    };
    let mut sample = vec![(MOST_PIPES.key, most as f64)];
    let mut pipes = Vec::with_capacity(most);
    let mut pss_empty = None;
    for (n, metrics) in levels(most) {
        let key = |i: usize| metrics[i].key;
        let (p50, p99, connect, idle_cpu, memory) = (key(0), key(1), key(2), key(3), key(4));
        let opened = open_idle_pipes(addr, pipes.len()..n)
            .map_err(|e| format!("opening {n} idle pipes: {e}"))?;
        pipes.extend(opened);
        thread::sleep(IDLE_SETTLE);
        forwarder.ensure_alive()?;
        let now = pss()?;
        match pss_empty {
            None => {
                pss_empty = Some(now);
                sample.push((memory, now));
            }
            Some(empty) => sample.push((memory, (now - empty) / n as f64)),
        }
        // Nothing moves: any CPU now is per-pipe or per-timer work.
        thread::sleep(DEFERRED_SETUP);
        let before = cpu_now(&meter)?;
        let idle_from = Instant::now();
        thread::sleep(settings.duration);
        let after = cpu_now(&meter)?;
        if let Some(cpu) = cpu_used(before, after) {
            let seconds = idle_from.elapsed().as_secs_f64();
            sample.push((idle_cpu, cpu * 1000.0 / seconds));
        }
        let nanos = round_trips(addr, settings).map_err(|e| format!("at {n} pipes: {e}"))?;
        sample.push((p50, percentile_us(&nanos, 0.50)));
        sample.push((p99, percentile_us(&nanos, 0.99)));
        let rate = connections_per_second(addr, settings, &meter)
            .map_err(|e| format!("connect rate at {n} pipes: {e}"))?;
        sample.push((connect, rate));
        forwarder.ensure_alive()?;
    }
    drop(pipes);
    Ok(sample)
}
