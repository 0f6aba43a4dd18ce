//! Time to first byte: new clients one after another, each timed from the
//! start of its connect to the last byte of its first reply (a request and
//! a reply of `MESSAGE` bytes), against a target one real round trip away
//! (`far`), where a connect costs what it costs on a network. tcpipe runs
//! twice, without a pool and with `--pool TTFB_POOL`, clients alternating
//! between the two so that drift on a shared machine hits both alike; the
//! other contenders have no pool and run once.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{connect, exchange, percentile_us, Sample, Settings, Start};
use crate::far::FarTarget;
use crate::peers::{Running, Tuning};

/// Idle upstream connections tcpipe keeps ready in the pooled run: more
/// than one client at a time ever takes, so the figure shows a pool that
/// has not run dry. The pool rows of `METRICS` name this number.
pub const TTFB_POOL: usize = 16;
/// Fewest clients per series from which a p99 means something.
const MIN_CLIENTS: usize = 100;

/// One forwarder (or the direct path) and the times its clients took.
struct Series {
    name: String,
    addr: SocketAddr,
    nanos: Vec<u64>,
}

impl Series {
    fn new(name: String, forwarder: &Running) -> Series {
        Series {
            name,
            addr: forwarder.addr,
            nanos: Vec::new(),
        }
    }

    /// p50 and p99 in µs.
    fn percentiles(&mut self, duration: Duration) -> Result<(f64, f64), String> {
        if self.nanos.len() < MIN_CLIENTS {
            return Err(format!(
                "only {} clients through {} in {duration:?}: too few for a p99",
                self.nanos.len(),
                self.name
            ));
        }
        self.nanos.sort_unstable();
        Ok((
            percentile_us(&self.nanos, 0.50),
            percentile_us(&self.nanos, 0.99),
        ))
    }
}

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let mut target = FarTarget::start()?;
    let mut plain = start(target.addr, Tuning::default())?;
    let mut pooled = if plain.kind.has_pool() {
        Some(start(
            target.addr,
            Tuning {
                pool: TTFB_POOL,
                ..Tuning::default()
            },
        )?)
    } else {
        None
    };
    let mut series = vec![Series::new(plain.kind.name().into(), &plain)];
    if let Some(forwarder) = &pooled {
        series.push(Series::new(
            format!("{} --pool {TTFB_POOL}", forwarder.kind.name()),
            forwarder,
        ));
    }
    let mut seq = 0u64;
    // The warm-up also gives the pool time to fill.
    let mut measuring = false;
    let mut end = Instant::now() + settings.warmup;
    loop {
        if Instant::now() >= end {
            if measuring {
                break;
            }
            measuring = true;
            end = Instant::now() + settings.duration;
        }
        for s in &mut series {
            let took = first_reply(s.addr, seq).map_err(|e| format!("{}: {e}", s.name))?;
            if measuring {
                s.nanos.push(took.as_nanos() as u64);
            }
            seq += 1;
        }
    }
    plain.ensure_alive()?;
    if let Some(forwarder) = pooled.as_mut() {
        forwarder.ensure_alive()?;
    }
    target.check()?;
    let (p50, p99) = series[0].percentiles(settings.duration)?;
    let mut sample = vec![("ttfb_p50_us", p50), ("ttfb_p99_us", p99)];
    if let Some(s) = series.get_mut(1) {
        let (pool_p50, pool_p99) = s.percentiles(settings.duration)?;
        sample.extend([
            ("ttfb_pool_p50_us", pool_p50),
            ("ttfb_pool_p99_us", pool_p99),
            ("ttfb_pool_ratio", pool_p50 / p50),
        ]);
    }
    Ok(sample)
}

/// One new client: connect, send a request, read the reply; the time to
/// its last byte. Then, untimed, the target's close, so that TIME_WAIT
/// stays at the target and the next client finds the path quiet.
fn first_reply(addr: SocketAddr, seq: u64) -> Result<Duration, String> {
    let began = Instant::now();
    let mut stream = connect(addr)?;
    exchange(&mut stream, seq)?;
    let took = began.elapsed();
    let mut more = [0u8; 1];
    match stream.read(&mut more) {
        Ok(0) => Ok(took),
        Ok(_) => Err(format!("more reply to request {seq} than was asked for")),
        Err(e) => Err(format!("waiting for the target's close: {e}")),
    }
}
