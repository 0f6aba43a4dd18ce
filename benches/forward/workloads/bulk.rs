//! Bulk: streams from client to target for the duration; the clock stops
//! when the target has read every byte, so what the forwarder still buffers
//! never counts as delivered.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use super::{connect, cpu_now, cpu_used, Sample, Settings, Start, PATIENCE};
use crate::peers::Tuning;
use crate::targets::ThreadServer;

/// Parallel streams in the multi-stream bulk workload.
pub(super) const BULK_STREAMS: usize = 4;
/// Bytes per write and read in bulk.
const CHUNK: usize = 256 * 1024;

/// Tells the streams of all cells apart at the target.
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

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
pub(super) fn run(streams: usize, settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let (tx, rx) = mpsc::channel();
    let server = ThreadServer::start(move |stream| count_to_end(stream, &tx))
        .map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr(), Tuning::default())?;
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
