//! Idle memory: what the forwarder holds per open pipe that carries nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::ops::Range;
use std::thread;
use std::time::Duration;

use super::{connect, message, Sample, Settings, Start};
use crate::measure::fd_limits;
use crate::peers::Tuning;
use crate::targets::{EventServer, Reply, MESSAGE};

/// Pause between opening the idle pipes and reading memory, so that every
/// forwarder has finished its last exchange.
pub const IDLE_SETTLE: Duration = Duration::from_millis(200);
/// Threads opening the idle pipes.
const IDLE_OPENERS: usize = 4;

/// Opens the idle pipes, each proven end to end by one small exchange, and
/// charges the forwarder's PSS growth to them.
pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
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
    let mut forwarder = start(server.addr(), Tuning::default())?;
    let meter = forwarder.meter();
    let pss = || -> Result<u64, String> {
        meter
            .pss_kib()
            .ok_or_else(|| "no forwarder process to measure".to_string())?
    };
    let before = pss()?;
    let streams = open_idle_pipes(forwarder.addr, 0..pipes)?;
    thread::sleep(IDLE_SETTLE);
    forwarder.ensure_alive()?;
    let after = pss()?;
    drop(streams);
    Ok(vec![(
        "idle_kib_per_pipe",
        (after as f64 - before as f64) / pipes as f64,
    )])
}

/// Opens pipes `range` (numbered for their messages) through `addr`, each
/// proven end to end by one exchange whose sequence number is 0, and
/// returns them open.
pub(super) fn open_idle_pipes(
    addr: SocketAddr,
    range: Range<usize>,
) -> Result<Vec<TcpStream>, String> {
    let total = range.end;
    // A few openers at once: socat forks per connection, one at a time is slow.
    let openers: Vec<_> = (0..IDLE_OPENERS)
        .map(|opener| {
            let range = range.clone();
            thread::spawn(move || -> Result<Vec<TcpStream>, String> {
                let mut streams = Vec::new();
                let mut reply = [0u8; MESSAGE];
                for i in range.skip(opener).step_by(IDLE_OPENERS) {
                    let fail = |e: String| format!("pipe {} of {total}: {e}", i + 1);
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
    let mut streams = Vec::with_capacity(range.len());
    for opener in openers {
        streams.extend(
            opener
                .join()
                .map_err(|_| "an opener thread panicked".to_string())??,
        );
    }
    Ok(streams)
}
