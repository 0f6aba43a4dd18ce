//! A pipe as a record another process can rebuild it from (a live
//! upgrade), and a pipe rebuilt from one: its stage, both directions with
//! the bytes they hold (a ring's copied into the record, a kernel pipe's
//! left in the kernel and its two ends handed over), its flow-control and
//! FIN states, its limits, counters and clocks (as durations: an `Instant`
//! means nothing in another process).
//!
//! Nothing here is on the forwarding path: the pipe keeps no field for
//! it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::Registry;

use super::connect::{Stage, Upstream};
use super::direction::{Buffer, Direction, Flow, Mode};
use super::endpoint::Endpoint;
use super::limit::{Limits, RouteShare};
use super::{Closing, Pipe, Rates, Settings, Side, SPLICED_BUFFER_FACTOR};
use crate::arena::{RouteId, TargetId};
use crate::config::{self, Splice};
use crate::dial::Dial;
use crate::handover::{
    BufferRecord, DirectionRecord, EndpointRecord, HandoverError, Parcel, PipeRecord,
    SettingsRecord, StageRecord, TargetName,
};
use crate::kernel_pipe::KernelPipePool;
use crate::metrics::Metrics;
use crate::ring::RingPool;

/// What the reactor knows of a pipe by name, for its record.
pub(crate) struct Names {
    pub(crate) route: Option<String>,
    pub(crate) target: Option<TargetName>,
    /// The targets its connect failed on, while connecting.
    pub(crate) tried: Vec<TargetName>,
    pub(crate) server_name: Option<String>,
}

/// What the receiving reactor made of a record's names.
pub(crate) struct Placed {
    pub(crate) settings: Arc<Settings>,
    pub(crate) target: Option<TargetId>,
    pub(crate) tried: Vec<TargetId>,
}

/// The pools and counters an adopted pipe's buffers come from.
pub(crate) struct Lenders<'a> {
    pub(crate) rings: &'a mut RingPool,
    pub(crate) kernel_pipes: &'a mut KernelPipePool,
    pub(crate) metrics: &'a Metrics,
}

impl Pipe {
    /// The targets its connect failed on so far, while it connects.
    pub(crate) fn tried(&self) -> &[TargetId] {
        match &self.stage {
            Stage::Connecting { dial, .. } => dial.tried(),
            Stage::Open { .. } => &[],
        }
    }

    /// The pipe as a parcel: its record and its descriptors (the pipe's
    /// own, still open and registered). Changes nothing.
    pub(crate) fn export(
        &self,
        names: Names,
        now: Instant,
        kernel_pipes: &KernelPipePool,
    ) -> Parcel<RawFd> {
        let mut fds = vec![
            self.client.stream.as_raw_fd(),
            self.target.endpoint.stream.as_raw_fd(),
        ];
        let directions = [&self.toward_target, &self.toward_client]
            .map(|direction| direction.record(kernel_pipes, &mut fds));
        let stage = match &self.stage {
            Stage::Connecting { since, dial } => StageRecord::Connecting {
                elapsed: now.saturating_duration_since(*since),
                attempts: dial.attempts,
                max_attempts: dial.max_attempts,
                tried: names.tried,
                chosen: dial.chosen_addr(),
            },
            Stage::Open {
                connect_time,
                limits,
            } => StageRecord::Open {
                connect_time: *connect_time,
                limits: limits.as_ref().map(|limits| limits.record(now)),
            },
        };
        let record = PipeRecord {
            id: self.id,
            peer: self.peer,
            route: names.route,
            target: names.target,
            server_name: names.server_name,
            settings: settings_record(&self.settings),
            client: endpoint_record(&self.client, 0),
            upstream: endpoint_record(&self.target.endpoint, 1),
            stage,
            directions,
            first_fin: self.first_fin.map(|side| side as u8),
            keepalive_pending: self.keepalive_pending,
            age: now.saturating_duration_since(self.opened_at),
            idle_for: now.saturating_duration_since(self.last_activity),
        };
        Parcel {
            record: crate::handover::Record::Pipe(Box::new(record)).encode(),
            fds,
        }
    }

    /// A pipe rebuilt from `record`, owning `fds` (named by position in
    /// the record, checked already), not registered with poll yet. Its
    /// sockets are taken as ready both ways (nothing says they are not,
    /// and no edge will come for what arrived before registration), so
    /// its first drive tries to read and write them, and asks the
    /// upstream whether a connect under way has finished.
    pub(crate) fn adopt(
        record: PipeRecord,
        fds: Vec<OwnedFd>,
        placed: Placed,
        now: Instant,
        lenders: Lenders<'_>,
    ) -> Result<Pipe, HandoverError> {
        check(&record)?;
        let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
        let mut take = |i: u32| {
            fds.get_mut(i as usize)
                .and_then(Option::take)
                .ok_or_else(|| HandoverError::Descriptors(format!("descriptor {i} is missing")))
        };
        let settings = placed.settings;
        let open = matches!(record.stage, StageRecord::Open { .. });
        let client =
            endpoint(take(record.client.fd)?, &record.client, true).map_err(HandoverError::Io)?;
        let mut upstream = endpoint(take(record.upstream.fd)?, &record.upstream, open)
            .map_err(HandoverError::Io)?;
        if !open {
            // Whether the connect finished meanwhile is the socket's to say.
            upstream.writable = true;
            upstream.verify_connect = true;
        }
        let stage = match record.stage {
            StageRecord::Connecting {
                elapsed,
                attempts,
                max_attempts,
                chosen,
                ..
            } => {
                let mut dial = match chosen {
                    Some(addr) => Dial::chosen(addr),
                    None => Dial::new(max_attempts as usize),
                };
                dial.attempts = attempts;
                dial.max_attempts = max_attempts;
                for &failed in &placed.tried {
                    dial.failed(failed);
                }
                Stage::Connecting {
                    since: earlier(now, elapsed),
                    dial,
                }
            }
            StageRecord::Open {
                connect_time,
                limits,
            } => Stage::Open {
                connect_time,
                limits: limits.and_then(|ways| Limits::restore(&settings.rates, &ways, now)),
            },
        };
        let [toward_target, toward_client] = record.directions;
        let mut kernel_ends = |d: &DirectionRecord| match d.buffer {
            BufferRecord::Kernel { read, write, .. } => Ok(Some((take(read)?, take(write)?))),
            _ => Ok::<_, HandoverError>(None),
        };
        let ends = [kernel_ends(&toward_target)?, kernel_ends(&toward_client)?];
        let [ends_toward_target, ends_toward_client] = ends;
        let Lenders {
            rings,
            kernel_pipes,
            metrics,
        } = lenders;
        let sizes = (settings.buffer_size, settings.spliced_high_water());
        let mut restore = |d: DirectionRecord, ends| {
            Direction::restore(d, ends, sizes, (&mut *rings, &mut *kernel_pipes, metrics))
        };
        let toward_target = restore(toward_target, ends_toward_target)?;
        let toward_client = restore(toward_client, ends_toward_client)?;
        Ok(Pipe {
            id: record.id,
            settings,
            peer: record.peer,
            client,
            target: Upstream {
                id: placed.target,
                endpoint: upstream,
            },
            stage,
            toward_target,
            toward_client,
            opened_at: earlier(now, record.age),
            last_activity: earlier(now, record.idle_for),
            timer_due: None,
            queued: false,
            closing: false,
            first_fin: record.first_fin.map(|side| match side {
                0 => Side::Client,
                _ => Side::Target,
            }),
            keepalive_pending: record.keepalive_pending,
        })
    }

    /// After a failed handover: nothing is known to be ready any more than
    /// before it, but the turn that follows tries every socket once, as
    /// at accept time; a connect under way is asked of the socket.
    pub(crate) fn assume_ready(&mut self) {
        for endpoint in [&mut self.client, &mut self.target.endpoint] {
            endpoint.readable = true;
            endpoint.writable = true;
        }
        self.toward_target.read_waits = false;
        self.toward_client.read_waits = false;
        if !self.is_open() {
            self.target.endpoint.verify_connect = true;
        }
    }

    /// Leaves poll, for a pipe another process took over: its copies of
    /// the sockets are closed without a shutdown, a linger or a reset.
    pub(crate) fn hand_over(
        mut self,
        registry: &Registry,
        pool: &mut RingPool,
        kernel_pipes: &mut KernelPipePool,
        metrics: &Metrics,
    ) {
        // A closed copy leaves its registration behind while the other
        // process holds the socket open: take it out first.
        for endpoint in [&mut self.client, &mut self.target.endpoint] {
            if endpoint.registered.is_some() {
                let _ = registry.deregister(&mut endpoint.stream);
                endpoint.registered = None;
            }
        }
        // A clean close drops the streams and sends nothing itself.
        self.close(Closing::Clean, pool, kernel_pipes, metrics);
    }
}

impl Direction {
    fn record(&self, kernel_pipes: &KernelPipePool, fds: &mut Vec<RawFd>) -> DirectionRecord {
        let buffer = match &self.buffer {
            Buffer::Ring(ring) if !ring.is_empty() => BufferRecord::Ring(ring.contents()),
            Buffer::Kernel(Some(lent)) if !lent.is_empty() => {
                let (read, write) = kernel_pipes.raw_fds(lent);
                let at = fds.len() as u32;
                fds.extend([read, write]);
                BufferRecord::Kernel {
                    read: at,
                    write: at + 1,
                    len: lent.len() as u32,
                }
            }
            _ => BufferRecord::Empty,
        };
        let (mode, full_reads) = match self.mode {
            Mode::Copy => (0, 0),
            Mode::Watching { full_reads } => (1, full_reads),
            Mode::Splice => (2, 0),
        };
        DirectionRecord {
            flow: match self.flow {
                Flow::Open => 0,
                Flow::Flushing => 1,
                Flow::Done => 2,
            },
            paused: self.paused,
            held: self.held,
            read_waits: self.read_waits,
            preamble: self.preamble,
            preamble_len: self.preamble_len,
            mode,
            full_reads,
            forwarded: self.forwarded,
            buffer,
        }
    }

    fn restore(
        record: DirectionRecord,
        kernel_ends: Option<(OwnedFd, OwnedFd)>,
        (buffer_size, spliced_high_water): (usize, usize),
        (rings, kernel_pipes, metrics): (&mut RingPool, &mut KernelPipePool, &Metrics),
    ) -> Result<Direction, HandoverError> {
        let buffer = match (record.buffer, kernel_ends) {
            (BufferRecord::Ring(bytes), _) => {
                let mut ring = rings.take(buffer_size.max(bytes.len()));
                // Reading from a slice cannot fail; the length was checked.
                let n = ring.read_from(&bytes[..]).unwrap_or(0);
                metrics.rings_in_use.add(1);
                metrics.buffered_bytes.add(n as u64);
                Buffer::Ring(ring)
            }
            (BufferRecord::Kernel { len, .. }, Some(ends)) => {
                let lent = kernel_pipes
                    .adopt(ends, len as usize, spliced_high_water)
                    .map_err(HandoverError::Io)?;
                metrics.kernel_pipes_in_use.add(1);
                metrics.buffered_bytes.add(u64::from(len));
                Buffer::Kernel(Some(lent))
            }
            _ => Buffer::IDLE,
        };
        Ok(Direction {
            buffer,
            flow: match record.flow {
                0 => Flow::Open,
                1 => Flow::Flushing,
                _ => Flow::Done,
            },
            paused: record.paused,
            held: record.held,
            // Whatever it waited for, the first drive tries again.
            read_waits: false,
            preamble: record.preamble,
            preamble_len: record.preamble_len,
            mode: match record.mode {
                0 => Mode::Copy,
                1 => Mode::Watching {
                    full_reads: record.full_reads,
                },
                _ => Mode::Splice,
            },
            forwarded: record.forwarded,
        })
    }
}

/// A pipe's settings, without its route.
pub(crate) fn settings_record(settings: &Settings) -> SettingsRecord {
    SettingsRecord {
        buffer_size: settings.buffer_size as u64,
        low_water: settings.low_water as u64,
        connect_timeout: settings.connect_timeout,
        idle_timeout: settings.idle_timeout,
        half_close_timeout: settings.half_close_timeout,
        keepalive: settings.keepalive,
        splice: match settings.splice {
            Splice::Auto => 0,
            Splice::Always => 1,
            Splice::Never => 2,
        },
        pipe_rates: settings.rates.pipe,
        route_rates: settings.rates.route,
        burst: settings.rates.burst,
    }
}

/// The settings a record gives, for route `route` whose pipes share
/// `share` of its rate.
pub(crate) fn settings_from(
    record: &SettingsRecord,
    route: Option<RouteId>,
    share: RouteShare,
) -> Result<Settings, HandoverError> {
    let buffer_size = usize::try_from(record.buffer_size).unwrap_or(usize::MAX);
    if let Some(why) = config::buffer_size_problem(buffer_size) {
        return Err(HandoverError::Invalid(format!("buffer size: {why}")));
    }
    if record.low_water >= record.buffer_size {
        return Err(HandoverError::Invalid(
            "low water is not below the buffer size".into(),
        ));
    }
    Ok(Settings {
        route,
        buffer_size,
        low_water: record.low_water as usize,
        connect_timeout: record.connect_timeout,
        idle_timeout: record.idle_timeout,
        half_close_timeout: record.half_close_timeout,
        keepalive: record.keepalive,
        splice: match record.splice {
            0 => Splice::Auto,
            1 => Splice::Always,
            _ => Splice::Never,
        },
        rates: Rates {
            pipe: record.pipe_rates,
            route: record.route_rates,
            burst: record.burst,
            share,
        },
    })
}

/// What no pipe can hold: more bytes in flight than a spliced direction's
/// high-water mark (a direction that gave up splicing keeps its kernel
/// pipe's bytes in a ring as large), a PROXY header longer than what holds
/// it.
pub(crate) fn check(record: &PipeRecord) -> Result<(), HandoverError> {
    let size = record
        .settings
        .buffer_size
        .saturating_mul(SPLICED_BUFFER_FACTOR as u64);
    settings_from(&record.settings, None, RouteShare::default())?;
    for (way, d) in record.directions.iter().enumerate() {
        let held = match &d.buffer {
            BufferRecord::Empty => 0,
            BufferRecord::Ring(bytes) => bytes.len() as u64,
            BufferRecord::Kernel { len, .. } => u64::from(*len),
        };
        if held > size {
            return Err(HandoverError::Invalid(format!(
                "pipe {}: direction {way} holds {held} bytes, more than it ever may ({size})",
                record.id
            )));
        }
        if d.preamble > d.preamble_len || u64::from(d.preamble) > held {
            return Err(HandoverError::Invalid(format!(
                "pipe {}: a PROXY header longer than the bytes that hold it",
                record.id
            )));
        }
    }
    Ok(())
}

fn endpoint_record(endpoint: &Endpoint, fd: u32) -> EndpointRecord {
    EndpointRecord {
        fd,
        read_closed: endpoint.read_closed,
        error: endpoint.error,
        limited: endpoint.limited,
    }
}

/// A socket handed over, with what the OS had said of it; taken as
/// readable (and `writable` as given) until a syscall says otherwise.
fn endpoint(fd: OwnedFd, record: &EndpointRecord, writable: bool) -> io::Result<Endpoint> {
    let stream = std::net::TcpStream::from(fd);
    // The same open file as the sender's, so non-blocking already; one
    // call makes sure of it.
    stream.set_nonblocking(true)?;
    let mut endpoint = Endpoint::new(mio::net::TcpStream::from_std(stream), writable);
    endpoint.readable = true;
    endpoint.read_closed = record.read_closed;
    endpoint.error = record.error;
    endpoint.limited = record.limited;
    Ok(endpoint)
}

/// `ago` before `now`, or `now` if the clock does not reach back that far.
fn earlier(now: Instant, ago: Duration) -> Instant {
    now.checked_sub(ago).unwrap_or(now)
}
