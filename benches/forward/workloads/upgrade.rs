//! A live upgrade under load (tcpipe only): one forwarder holds N idle
//! pipes (N = 100, 1,000, 10,000, or at the last level as many as this
//! process's descriptor limit allows: both ends of every pipe are here,
//! reported as `upgrade_most_pipes`) and one ping-pong pipe exchanging
//! without pause; SIGUSR2 starts the same binary, which takes everything
//! over. Reported: the handover (SIGUSR2 until the old process has exited,
//! which it does once the new one confirmed and said `READY=1`) and the
//! pause (the longest gap between two replies of the ping-pong pipe across
//! it). Every idle pipe must still answer afterwards and the ping-pong pipe
//! must never fail: a pipe lost is an error, never a number.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::idle_memory::open_idle_pipes;
use super::{connect, exchange, metric, Metric, Sample, Settings, Start, Workload, PATIENCE};
use crate::measure::fd_limits;
use crate::peers::Tuning;
use crate::targets::{EventServer, Reply};

/// Idle pipes at each level.
pub const LEVELS: [usize; 3] = [100, 1000, 10_000];

macro_rules! level {
    ($n:literal, $label:literal) => {
        [
            metric(
                concat!("upgrade", $n, "_handover_ms"),
                Workload::Upgrade,
                concat!("live upgrade, ", $label, " idle pipes: SIGUSR2 to old exit"),
                "ms",
                false,
                false,
            ),
            metric(
                concat!("upgrade", $n, "_pause_ms"),
                Workload::Upgrade,
                concat!(
                    "live upgrade, ",
                    $label,
                    " idle pipes: longest ping-pong gap"
                ),
                "ms",
                false,
                false,
            ),
        ]
    };
}

pub const METRICS: [[Metric; 2]; 3] = [
    level!("100", "100"),
    level!("1000", "1,000"),
    level!("10000", "10,000 (or most)"),
];

/// How many idle pipes the last level held.
pub const MOST_PIPES: Metric = metric(
    "upgrade_most_pipes",
    Workload::Upgrade,
    "live upgrade: idle pipes at the last level",
    "pipes",
    true,
    false,
);

pub(super) fn run(_settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    // Both ends of each pipe are in this process (the forwarders hold two
    // per pipe each, within the same limit, which they inherit).
    let soft = fd_limits().map_or(0, |(soft, _)| soft);
    let fits = (soft.saturating_sub(1000) / 2) as usize;
    if fits < LEVELS[1] {
        return Err(format!(
            "descriptor limit {soft} leaves room for {fits} pipes: run under `ulimit -n 65536`"
        ));
    }
    let most = LEVELS[2].min(fits);
    let mut sample = vec![(MOST_PIPES.key, most as f64)];
    for (level, keys) in LEVELS.iter().zip(&METRICS) {
        let (handover, pause) = one_level((*level).min(most), start)?;
        sample.push((keys[0].key, handover.as_secs_f64() * 1000.0));
        sample.push((keys[1].key, pause.as_secs_f64() * 1000.0));
    }
    Ok(sample)
}

fn one_level(pipes: usize, start: Start<'_>) -> Result<(Duration, Duration), String> {
    let server = EventServer::start(Reply::Echo).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr(), Tuning::default())?;
    let addr = forwarder.addr;
    let old = forwarder
        .meter()
        .root
        .ok_or("tcpipe runs as a process of its own")?;
    let mut idle = open_idle_pipes(addr, 0..pipes)?;
    let pinging = PingPong::start(addr)?;
    thread::sleep(Duration::from_millis(200));

    let asked = Instant::now();
    let killed = Command::new("kill")
        .args(["-s", "USR2", &old.to_string()])
        .status();
    if !killed.is_ok_and(|s| s.success()) {
        return Err(format!("cannot send SIGUSR2 to {old}"));
    }
    let deadline = asked + Duration::from_secs(30);
    while forwarder.ensure_alive().is_ok() {
        if Instant::now() > deadline {
            return Err("the old process did not exit within 30 s of SIGUSR2".into());
        }
        thread::sleep(Duration::from_micros(200));
    }
    let handover = asked.elapsed();
    let successor = Successor::find(addr)?;
    thread::sleep(Duration::from_millis(300));
    let pause = pinging.finish()?;
    for (i, stream) in idle.iter_mut().enumerate() {
        exchange(stream, 1).map_err(|e| format!("idle pipe {i} after the upgrade: {e}"))?;
    }
    drop(successor);
    Ok((handover, pause))
}

/// One pipe exchanging small messages back to back; the longest gap
/// between two replies.
struct PingPong {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Result<Duration, String>>,
}

impl PingPong {
    fn start(addr: SocketAddr) -> Result<PingPong, String> {
        let mut stream = connect(addr)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut last = Instant::now();
            let mut seq = 0;
            while !stopped.load(Ordering::Relaxed) {
                seq += 1;
                exchange(&mut stream, seq).map_err(|e| format!("ping-pong pipe: {e}"))?;
                let now = Instant::now();
                longest = longest.max(now - last);
                last = now;
            }
            Ok(longest)
        });
        Ok(PingPong { stop, thread })
    }

    fn finish(self) -> Result<Duration, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| "the ping-pong thread panicked".to_string())?
    }
}

/// The process that took over: not the bench's child, so found by its
/// listening address in its command line, and killed when dropped.
struct Successor(u32);

impl Successor {
    fn find(addr: SocketAddr) -> Result<Successor, String> {
        let wanted = addr.to_string();
        let until = Instant::now() + PATIENCE;
        while Instant::now() < until {
            let found = std::fs::read_dir("/proc")
                .map_err(|e| format!("/proc: {e}"))?
                .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .find(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                        args.first().is_some_and(|a| a.ends_with(b"tcpipe"))
                            && args.contains(&wanted.as_bytes())
                    })
                });
            if let Some(pid) = found {
                return Ok(Successor(pid));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Err(format!("no process took over {addr}"))
    }
}

impl Drop for Successor {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", &self.0.to_string()])
            .status();
    }
}
