//! A pipe's record: everything a pipe is, as plain values another process
//! can rebuild it from. Descriptors are named by position in the parcel:
//! the client's socket, the upstream socket, and each kernel pipe's two
//! ends (never drained into the record: the bytes stay in the kernel).

use std::net::SocketAddr;
use std::time::Duration;

use super::codec::{
    read_addr, read_count, read_opt_duration, read_opt_string, read_opt_u64, write_addr,
    write_count, write_opt_duration, write_opt_str, write_opt_u64, TargetName,
};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PipeRecord {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    /// The route by name; `None` for an attached pipe (or one whose route
    /// the sender no longer had).
    pub(crate) route: Option<String>,
    /// The target by name; `None` for an attached or re-targeted one.
    pub(crate) target: Option<TargetName>,
    /// The ClientHello's server name that chose its route, for the access log.
    pub(crate) server_name: Option<String>,
    pub(crate) settings: SettingsRecord,
    pub(crate) client: EndpointRecord,
    pub(crate) upstream: EndpointRecord,
    pub(crate) stage: StageRecord,
    /// Client → target, then target → client.
    pub(crate) directions: [DirectionRecord; 2],
    /// 0: the client sent the first FIN, 1: the target did.
    pub(crate) first_fin: Option<u8>,
    /// The upstream socket's keepalive is still to be set.
    pub(crate) keepalive_pending: bool,
    /// Time since it was accepted (its age).
    pub(crate) age: Duration,
    /// Time since it last moved a byte: its idle and half-close deadlines
    /// are this much nearer than its timeouts.
    pub(crate) idle_for: Duration,
}

/// A pipe's [`Settings`](crate::pipe::Settings), without its route id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsRecord {
    pub(crate) buffer_size: u64,
    pub(crate) low_water: u64,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) half_close_timeout: Option<Duration>,
    pub(crate) keepalive: Option<Duration>,
    /// 0 auto, 1 always, 2 never.
    pub(crate) splice: u8,
    /// Bytes a second per way: the pipe's own limits, then its route's
    /// (this worker's part).
    pub(crate) pipe_rates: [Option<u64>; 2],
    pub(crate) route_rates: [Option<u64>; 2],
    pub(crate) burst: u64,
}

/// One socket of the pipe: which descriptor, and what the OS said of it
/// that a new registration would not repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndpointRecord {
    pub(crate) fd: u32,
    /// The peer's FIN was reported (and may not be read yet).
    pub(crate) read_closed: bool,
    /// An error was reported; `SO_ERROR` says which.
    pub(crate) error: bool,
    /// Its reading direction waits for its rate limit's bucket.
    pub(crate) limited: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StageRecord {
    /// A connect is under way: for `elapsed` (the connect deadline is the
    /// connect timeout less that), attempt `attempts` of `max_attempts`,
    /// after the targets in `tried` failed; `chosen`: the address the
    /// embedder pointed it at (its only attempt).
    Connecting {
        elapsed: Duration,
        attempts: u32,
        max_attempts: u32,
        tried: Vec<TargetName>,
        chosen: Option<SocketAddr>,
    },
    /// Both sides established.
    Open {
        connect_time: Option<Duration>,
        /// Its rate limits per way, if it has any.
        limits: Option<[Option<WayLimitRecord>; 2]>,
    },
}

/// One way's token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WayLimitRecord {
    /// Whole tokens (bytes) in the bucket.
    pub(crate) tokens: u64,
    /// The rate it fills at now.
    pub(crate) rate: u64,
    /// While paused: time left until reading may start again.
    pub(crate) wake_in: Option<Duration>,
    /// While paused: time since the pause began.
    pub(crate) paused_for: Option<Duration>,
    /// Time spent paused in episodes that have ended.
    pub(crate) limited: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirectionRecord {
    /// 0 open, 1 flushing (the source's FIN was read), 2 done (the
    /// destination was sent FIN).
    pub(crate) flow: u8,
    /// At high water, not yet drained to low water.
    pub(crate) paused: bool,
    /// Paused by the embedder.
    pub(crate) held: bool,
    pub(crate) read_waits: bool,
    /// PROXY header bytes at the front of the ring, and what they were.
    pub(crate) preamble: u8,
    pub(crate) preamble_len: u8,
    /// 0 copy, 1 watching (with `full_reads`), 2 splice.
    pub(crate) mode: u8,
    pub(crate) full_reads: u8,
    /// Bytes of the source delivered so far.
    pub(crate) forwarded: u64,
    pub(crate) buffer: BufferRecord,
}

/// The bytes a direction holds in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BufferRecord {
    Empty,
    /// A ring's contents, oldest first.
    Ring(Vec<u8>),
    /// A kernel pipe's two ends and how many bytes it holds.
    Kernel {
        read: u32,
        write: u32,
        len: u32,
    },
}

impl PipeRecord {
    pub(crate) fn fds_named(&self) -> Vec<u32> {
        let mut fds = vec![self.client.fd, self.upstream.fd];
        for direction in &self.directions {
            if let BufferRecord::Kernel { read, write, .. } = direction.buffer {
                fds.extend([read, write]);
            }
        }
        fds
    }

    pub(crate) fn write(&self, w: &mut Writer) {
        w.u64(self.id);
        write_addr(w, self.peer);
        write_opt_str(w, self.route.as_deref());
        w.option(self.target.as_ref(), |w, t| t.write(w));
        write_opt_str(w, self.server_name.as_deref());
        self.settings.write(w);
        self.client.write(w);
        self.upstream.write(w);
        self.stage.write(w);
        for direction in &self.directions {
            direction.write(w);
        }
        w.option(self.first_fin, |w, side| {
            w.u8(side);
        });
        w.bool(self.keepalive_pending)
            .duration(self.age)
            .duration(self.idle_for);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<PipeRecord, WireError> {
        Ok(PipeRecord {
            id: r.u64()?,
            peer: read_addr(r)?,
            route: read_opt_string(r)?,
            target: r.option(TargetName::read)?,
            server_name: read_opt_string(r)?,
            settings: SettingsRecord::read(r)?,
            client: EndpointRecord::read(r)?,
            upstream: EndpointRecord::read(r)?,
            stage: StageRecord::read(r)?,
            directions: [DirectionRecord::read(r)?, DirectionRecord::read(r)?],
            first_fin: r.option(|r| match r.u8()? {
                side @ (0 | 1) => Ok(side),
                _ => Err(WireError::Invalid("side")),
            })?,
            keepalive_pending: r.bool()?,
            age: r.duration()?,
            idle_for: r.duration()?,
        })
    }
}

impl SettingsRecord {
    fn write(&self, w: &mut Writer) {
        w.u64(self.buffer_size).u64(self.low_water);
        for timeout in [
            self.connect_timeout,
            self.idle_timeout,
            self.half_close_timeout,
            self.keepalive,
        ] {
            write_opt_duration(w, timeout);
        }
        w.u8(self.splice);
        for rate in self.pipe_rates.iter().chain(&self.route_rates) {
            write_opt_u64(w, *rate);
        }
        w.u64(self.burst);
    }

    fn read(r: &mut Reader<'_>) -> Result<SettingsRecord, WireError> {
        Ok(SettingsRecord {
            buffer_size: r.u64()?,
            low_water: r.u64()?,
            connect_timeout: read_opt_duration(r)?,
            idle_timeout: read_opt_duration(r)?,
            half_close_timeout: read_opt_duration(r)?,
            keepalive: read_opt_duration(r)?,
            splice: match r.u8()? {
                splice @ 0..=2 => splice,
                _ => return Err(WireError::Invalid("splice mode")),
            },
            pipe_rates: [read_opt_u64(r)?, read_opt_u64(r)?],
            route_rates: [read_opt_u64(r)?, read_opt_u64(r)?],
            burst: r.u64()?,
        })
    }
}

impl EndpointRecord {
    fn write(&self, w: &mut Writer) {
        w.u32(self.fd)
            .bool(self.read_closed)
            .bool(self.error)
            .bool(self.limited);
    }

    fn read(r: &mut Reader<'_>) -> Result<EndpointRecord, WireError> {
        Ok(EndpointRecord {
            fd: r.u32()?,
            read_closed: r.bool()?,
            error: r.bool()?,
            limited: r.bool()?,
        })
    }
}

impl StageRecord {
    fn write(&self, w: &mut Writer) {
        match self {
            StageRecord::Connecting {
                elapsed,
                attempts,
                max_attempts,
                tried,
                chosen,
            } => {
                w.u8(0).duration(*elapsed).u32(*attempts).u32(*max_attempts);
                write_count(w, tried.len());
                for target in tried {
                    target.write(w);
                }
                w.option(*chosen, write_addr);
            }
            StageRecord::Open {
                connect_time,
                limits,
            } => {
                w.u8(1);
                write_opt_duration(w, *connect_time);
                w.option(limits.as_ref(), |w, ways| {
                    for way in ways {
                        w.option(way.as_ref(), |w, way| way.write(w));
                    }
                });
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<StageRecord, WireError> {
        match r.u8()? {
            0 => {
                let elapsed = r.duration()?;
                let attempts = r.u32()?;
                let max_attempts = r.u32()?;
                // A target name is at least two lengths and an index.
                let count = read_count(r, 12)?;
                let tried = (0..count)
                    .map(|_| TargetName::read(r))
                    .collect::<Result<_, _>>()?;
                let chosen = r.option(read_addr)?;
                Ok(StageRecord::Connecting {
                    elapsed,
                    attempts,
                    max_attempts,
                    tried,
                    chosen,
                })
            }
            1 => {
                let connect_time = read_opt_duration(r)?;
                let limits = r.option(|r| {
                    Ok([
                        r.option(WayLimitRecord::read)?,
                        r.option(WayLimitRecord::read)?,
                    ])
                })?;
                Ok(StageRecord::Open {
                    connect_time,
                    limits,
                })
            }
            _ => Err(WireError::Invalid("pipe stage")),
        }
    }
}

impl WayLimitRecord {
    fn write(&self, w: &mut Writer) {
        w.u64(self.tokens).u64(self.rate);
        write_opt_duration(w, self.wake_in);
        write_opt_duration(w, self.paused_for);
        w.duration(self.limited);
    }

    fn read(r: &mut Reader<'_>) -> Result<WayLimitRecord, WireError> {
        Ok(WayLimitRecord {
            tokens: r.u64()?,
            rate: r.u64()?,
            wake_in: read_opt_duration(r)?,
            paused_for: read_opt_duration(r)?,
            limited: r.duration()?,
        })
    }
}

impl DirectionRecord {
    fn write(&self, w: &mut Writer) {
        w.u8(self.flow)
            .bool(self.paused)
            .bool(self.held)
            .bool(self.read_waits)
            .u8(self.preamble)
            .u8(self.preamble_len)
            .u8(self.mode)
            .u8(self.full_reads)
            .u64(self.forwarded);
        match &self.buffer {
            BufferRecord::Empty => {
                w.u8(0);
            }
            BufferRecord::Ring(bytes) => {
                w.u8(1).bytes(bytes);
            }
            BufferRecord::Kernel { read, write, len } => {
                w.u8(2).u32(*read).u32(*write).u32(*len);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<DirectionRecord, WireError> {
        let flow = match r.u8()? {
            flow @ 0..=2 => flow,
            _ => return Err(WireError::Invalid("direction flow")),
        };
        let (paused, held, read_waits) = (r.bool()?, r.bool()?, r.bool()?);
        let (preamble, preamble_len) = (r.u8()?, r.u8()?);
        let mode = match r.u8()? {
            mode @ 0..=2 => mode,
            _ => return Err(WireError::Invalid("direction mode")),
        };
        let full_reads = r.u8()?;
        let forwarded = r.u64()?;
        let buffer = match r.u8()? {
            0 => BufferRecord::Empty,
            1 => BufferRecord::Ring(r.bytes()?.to_vec()),
            2 => BufferRecord::Kernel {
                read: r.u32()?,
                write: r.u32()?,
                len: r.u32()?,
            },
            _ => return Err(WireError::Invalid("direction buffer")),
        };
        Ok(DirectionRecord {
            flow,
            paused,
            held,
            read_waits,
            preamble,
            preamble_len,
            mode,
            full_reads,
            forwarded,
            buffer,
        })
    }
}
