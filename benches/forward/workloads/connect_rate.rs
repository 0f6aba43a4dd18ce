//! Connect rate: short connections, a fixed number in flight, each one
//! connect, one exchange and the target's close.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};

use super::window::{poll_once, Window};
use super::{message, Sample, Settings, Start, PATIENCE};
use crate::measure::Meter;
use crate::peers::Tuning;
use crate::targets::{EventServer, Reply, MESSAGE};

/// Connections in flight at once in the connect-rate workload.
pub const CONNECT_CONCURRENCY: usize = 16;

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

pub(super) fn run(settings: &Settings, start: Start<'_>) -> Result<Sample, String> {
    let server = EventServer::start(Reply::OneShot).map_err(|e| format!("target: {e}"))?;
    let mut forwarder = start(server.addr(), Tuning::default())?;
    let rate = connections_per_second(forwarder.addr, settings, &forwarder.meter())?;
    forwarder.ensure_alive()?;
    let mut sample = vec![("connect_per_s", rate)];
    if forwarder.kind.has_inspection() {
        // The same, with every client's first bytes inspected to choose
        // its route (a shared address with a `match` table).
        drop(forwarder);
        let tuning = Tuning {
            inspect: true,
            ..Tuning::default()
        };
        let mut inspecting = start(server.addr(), tuning)?;
        let rate = connections_per_second(inspecting.addr, settings, &inspecting.meter())?;
        inspecting.ensure_alive()?;
        sample.push(("connect_inspect_per_s", rate));
    }
    Ok(sample)
}

/// Completed connections per second through `addr` in the window; the
/// target must answer each request once and close (`Reply::OneShot`, or a
/// first message with a nonzero sequence number under `Reply::ByFirstMessage`).
pub(super) fn connections_per_second(
    addr: SocketAddr,
    settings: &Settings,
    meter: &Meter,
) -> Result<f64, String> {
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
    let mut window = Window::new(settings, meter);
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
    let (done, _, elapsed) = window.result.ok_or("the window never ended")?;
    if done == 0 {
        return Err("no connection completed in the window".into());
    }
    Ok(done as f64 / elapsed.as_secs_f64())
}
