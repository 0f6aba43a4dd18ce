//! Ping-pong: one connection, one small message echoed at a time, so that
//! each round trip shows the latency the forwarder adds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{connect, exchange, percentile_us, Sample, Settings, Start};
use crate::peers::Tuning;
use crate::targets::{ThreadServer, MESSAGE};

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

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = ThreadServer::start(echo_messages).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr(), Tuning::default())?;
    let nanos = round_trips(forwarder.addr, settings)?;
    forwarder.ensure_alive()?;
    Ok(vec![
        ("pingpong_p50_us", percentile_us(&nanos, 0.50)),
        ("pingpong_p99_us", percentile_us(&nanos, 0.99)),
        ("pingpong_p999_us", percentile_us(&nanos, 0.999)),
    ])
}

/// Round-trip times, sorted, in ns, of one new connection to `addr` after
/// the warm-up; its first request has sequence number 0.
pub(super) fn round_trips(addr: SocketAddr, settings: &Settings) -> Result<Vec<u64>, String> {
    let mut stream = connect(addr)?;
    let mut seq = 0u64;
    let mut round_trip = |stream: &mut TcpStream| -> Result<Duration, String> {
        let sent_at = Instant::now();
        exchange(stream, seq)?;
        seq += 1;
        Ok(sent_at.elapsed())
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
    if nanos.len() < MIN_ROUND_TRIPS {
        return Err(format!(
            "only {} round trips in {:?}: too few for a p99.9",
            nanos.len(),
            settings.duration
        ));
    }
    nanos.sort_unstable();
    Ok(nanos)
}
