//! rr-concurrent: many connections, each with a batch of pipelined
//! requests in flight, driven from one epoll loop.

use std::io::{ErrorKind, Read, Write};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::window::{poll_once, Window};
use super::{connect, message, Sample, Settings, Start, PATIENCE};
use crate::peers::Tuning;
use crate::targets::{EventServer, Reply, MESSAGE};

pub const RR_CONNECTIONS: usize = 50;
pub const RR_DEPTH: usize = 16;

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

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = EventServer::start(Reply::Echo).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr(), Tuning::default())?;
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
