//! A worker's live per-connection state as values another process can
//! take over (a live upgrade): every pipe in whatever stage, clients
//! awaiting a PROXY header or being inspected, idle pooled upstream
//! connections, and the upstream state that should survive (target health
//! and cooldowns).
//!
//! Each connection is a [`Parcel`]: a record, encoded with `crate::wire`,
//! and the descriptors it owns, which the record names by position. The
//! records know nothing of the reactor's ids: routes and targets go by
//! name, deadlines by the time left or the time since (never an
//! `Instant`, which means nothing in another process), so the receiving
//! process maps them onto its own config.
//!
//! | module     | the idea                                                 |
//! |------------|----------------------------------------------------------|
//! | `mod`      | parcels, bundles, the version, errors, the record kinds  |
//! | `pipe`     | a pipe's record: stage, directions, settings, limits     |
//! | `waiting`  | clients that are no pipe yet, pooled connections, upstream health |
//! | `codec`    | addresses, names and durations on the wire               |
//!
//! The reactor side (export, adopt, release, resume) is in
//! `reactor::handover` and `pipe::parcel`.

mod codec;
mod pipe;
mod waiting;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;

use crate::wire::{Reader, WireError, Writer};

pub(crate) use codec::TargetName;
pub(crate) use pipe::{
    BufferRecord, DirectionRecord, EndpointRecord, PipeRecord, SettingsRecord, StageRecord,
    WayLimitRecord,
};
pub(crate) use waiting::{
    AwaitingRecord, HealthRecord, HealthState, InspectingRecord, PooledRecord, UpstreamRecord,
};

/// The record format's version: bump it on any change to what a record
/// holds or how it is laid out. The transport puts it in its hello; a
/// process refuses a version it does not know, and the old one carries on.
pub(crate) const VERSION: u16 = 1;

/// One connection's worth of state: its record and the descriptors it owns,
/// which the record names by position (0..fds.len()).
#[derive(Debug)]
pub(crate) struct Parcel<Fd> {
    pub(crate) record: Vec<u8>,
    pub(crate) fds: Vec<Fd>,
}

/// Everything one worker hands over, apart from listeners.
#[derive(Debug)]
pub(crate) struct Bundle<Fd> {
    /// Pipes in every stage, clients awaiting a PROXY header or being
    /// inspected, idle pooled upstream connections.
    pub(crate) parcels: Vec<Parcel<Fd>>,
    /// Target health and cooldowns (by route name / target name), and
    /// anything else that should survive (one record, no descriptors).
    pub(crate) upstream: Vec<u8>,
}

impl<Fd> Default for Bundle<Fd> {
    fn default() -> Bundle<Fd> {
        Bundle {
            parcels: Vec::new(),
            upstream: Vec::new(),
        }
    }
}

impl<Fd> Parcel<Fd> {
    /// The pipe id the parcel's connection has (a pipe, or a client that
    /// will be one), read from the record's head without decoding the rest;
    /// `None` for a pooled connection or a record too short to say.
    pub(crate) fn pipe_id(&self) -> Option<u64> {
        let mut reader = Reader::new(&self.record);
        match Kind::of(reader.u8().ok()?)? {
            Kind::Pipe | Kind::Awaiting | Kind::Inspecting => reader.u64().ok(),
            Kind::Pooled => None,
        }
    }
}

/// Sorts the parcels of every old worker's bundle into `workers` bundles,
/// one per new worker: each connection goes to the worker that owns its
/// pipe id (`share::owner_of`), so a new worker's own ids never collide
/// with one it adopted and commands by id reach the right worker whatever
/// the two processes' worker counts. Pooled connections go where they were
/// (modulo the count); new worker `i` gets old worker `i`'s upstream
/// record (modulo the old count).
pub(crate) fn regroup<Fd>(bundles: Vec<Bundle<Fd>>, workers: usize) -> Vec<Bundle<Fd>> {
    let workers = workers.max(1);
    let mut out: Vec<Bundle<Fd>> = (0..workers).map(|_| Bundle::default()).collect();
    let upstreams: Vec<Vec<u8>> = bundles.iter().map(|b| b.upstream.clone()).collect();
    for (old, bundle) in bundles.into_iter().enumerate() {
        for parcel in bundle.parcels {
            let to = match parcel.pipe_id() {
                Some(id) => crate::share::owner_of(id, workers),
                None => old % workers,
            };
            out[to].parcels.push(parcel);
        }
    }
    if !upstreams.is_empty() {
        for (i, bundle) in out.iter_mut().enumerate() {
            bundle.upstream = upstreams[i % upstreams.len()].clone();
        }
    }
    out
}

/// Why a bundle could not be adopted. Any of these refuses the whole
/// bundle: the transport then refuses the handover, and the old process
/// resumes.
#[derive(Debug)]
pub(crate) enum HandoverError {
    /// A record cannot be read: cut short, corrupt, or of another format.
    Record(WireError),
    /// A record names a descriptor its parcel does not hold, names one
    /// twice, or leaves one unnamed.
    Descriptors(String),
    /// A record reads, but holds values that cannot be (a ring fuller than
    /// its buffer, say).
    Invalid(String),
    /// Registering a connection with poll failed.
    Io(io::Error),
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandoverError::Record(e) => write!(f, "unreadable handover record: {e}"),
            HandoverError::Descriptors(why) => write!(f, "handover descriptors: {why}"),
            HandoverError::Invalid(why) => write!(f, "invalid handover record: {why}"),
            HandoverError::Io(e) => write!(f, "cannot take over a connection: {e}"),
        }
    }
}

impl std::error::Error for HandoverError {}

impl From<WireError> for HandoverError {
    fn from(e: WireError) -> HandoverError {
        HandoverError::Record(e)
    }
}

/// What a parcel holds; the record's first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipe = 1,
    Awaiting = 2,
    Inspecting = 3,
    Pooled = 4,
}

impl Kind {
    fn of(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Pipe,
            2 => Kind::Awaiting,
            3 => Kind::Inspecting,
            4 => Kind::Pooled,
            _ => return None,
        })
    }
}

/// One parcel's record, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    Pipe(Box<PipeRecord>),
    Awaiting(AwaitingRecord),
    Inspecting(InspectingRecord),
    Pooled(PooledRecord),
}

impl Record {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Record::Pipe(r) => {
                w.u8(Kind::Pipe as u8);
                r.write(&mut w);
            }
            Record::Awaiting(r) => {
                w.u8(Kind::Awaiting as u8);
                r.write(&mut w);
            }
            Record::Inspecting(r) => {
                w.u8(Kind::Inspecting as u8);
                r.write(&mut w);
            }
            Record::Pooled(r) => {
                w.u8(Kind::Pooled as u8);
                r.write(&mut w);
            }
        }
        w.finish()
    }

    /// Reads a whole record: trailing bytes are an error too.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Record, HandoverError> {
        let mut r = Reader::new(bytes);
        let kind = Kind::of(r.u8()?).ok_or(WireError::Invalid("record kind"))?;
        let record = match kind {
            Kind::Pipe => Record::Pipe(Box::new(PipeRecord::read(&mut r)?)),
            Kind::Awaiting => Record::Awaiting(AwaitingRecord::read(&mut r)?),
            Kind::Inspecting => Record::Inspecting(InspectingRecord::read(&mut r)?),
            Kind::Pooled => Record::Pooled(PooledRecord::read(&mut r)?),
        };
        r.end()?;
        Ok(record)
    }

    /// The descriptor positions the record names, in any order.
    pub(crate) fn fds_named(&self) -> Vec<u32> {
        match self {
            Record::Pipe(r) => r.fds_named(),
            Record::Awaiting(r) => vec![r.fd],
            Record::Inspecting(r) => vec![r.fd],
            Record::Pooled(r) => vec![r.fd],
        }
    }

    /// Decodes `parcel`'s record and checks that it names each of the
    /// parcel's descriptors exactly once.
    pub(crate) fn of_parcel<Fd>(parcel: &Parcel<Fd>) -> Result<Record, HandoverError> {
        let record = Record::decode(&parcel.record)?;
        let mut named = record.fds_named();
        named.sort_unstable();
        let expected: Vec<u32> = (0..parcel.fds.len() as u32).collect();
        if named != expected {
            return Err(HandoverError::Descriptors(format!(
                "the record names descriptors {named:?} of {} sent",
                parcel.fds.len()
            )));
        }
        Ok(record)
    }
}
