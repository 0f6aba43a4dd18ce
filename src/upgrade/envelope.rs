//! What the frames of a handover say, encoded with [`crate::wire`]: the
//! hello and its versions, listening sockets, connections in batches that
//! respect `SCM_MAX_FD`, and the counts that close the handover. The
//! connections' records themselves are `crate::handover`'s; here they are
//! opaque bytes, each with the number of descriptors it names.

use std::net::SocketAddr;
use std::ops::Range;

use crate::handover::Parcel;
use crate::sys::MAX_FDS_PER_MESSAGE;
use crate::wire::{Reader, WireError, Writer};

/// Bytes of records per parcels frame, beyond which a new frame starts:
/// frames stay a few dozen messages long.
const BATCH_BYTES: usize = 4 << 20;

/// The old process's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    /// This envelope's version ([`super::VERSION`]).
    pub(crate) envelope: u16,
    /// The connection records' version (`handover::VERSION`).
    pub(crate) records: u16,
    pub(crate) pid: u32,
    pub(crate) workers: u16,
}

impl Hello {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(self.envelope)
            .u16(self.records)
            .u32(self.pid)
            .u16(self.workers);
        w.finish()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Hello, WireError> {
        let mut r = Reader::new(bytes);
        // The envelope's version comes first, so that any later version can
        // still be told apart and refused by name.
        let hello = Hello {
            envelope: r.u16()?,
            records: r.u16()?,
            pid: r.u32()?,
            workers: r.u16()?,
        };
        r.end()?;
        Ok(hello)
    }
}

/// A listening socket handed over: whose it is (a route's name, or
/// `http NAME` for an HTTP endpoint), where it was configured and where it
/// is bound, and which worker of the old process listened on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    pub(crate) worker: u16,
    pub(crate) owner: String,
    pub(crate) configured: SocketAddr,
    pub(crate) local: SocketAddr,
}

/// Listeners, each with one descriptor, in order.
pub(crate) fn encode_listeners(listeners: &[Listener]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(listeners.len() as u32);
    for listener in listeners {
        w.u16(listener.worker)
            .str(&listener.owner)
            .str(&listener.configured.to_string())
            .str(&listener.local.to_string());
    }
    w.finish()
}

pub(crate) fn decode_listeners(bytes: &[u8]) -> Result<Vec<Listener>, WireError> {
    let mut r = Reader::new(bytes);
    let count = r.u32()? as usize;
    let address = |text: &str| {
        text.parse::<SocketAddr>()
            .map_err(|_| WireError::Invalid("socket address"))
    };
    let mut listeners = Vec::with_capacity(count.min(MAX_FDS_PER_MESSAGE));
    for _ in 0..count {
        listeners.push(Listener {
            worker: r.u16()?,
            owner: r.str()?.to_string(),
            configured: address(r.str()?)?,
            local: address(r.str()?)?,
        });
    }
    r.end()?;
    Ok(listeners)
}

/// Splits `0..count` items with `fds(i)` descriptors and `bytes(i)` bytes
/// each into runs that fit one frame: at most [`MAX_FDS_PER_MESSAGE`]
/// descriptors (they travel with the frame's first message) and about
/// [`BATCH_BYTES`]. An item is never split.
pub(crate) fn batches(
    count: usize,
    fds: impl Fn(usize) -> usize,
    bytes: impl Fn(usize) -> usize,
) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut in_fds, mut in_bytes) = (0, 0, 0);
    for i in 0..count {
        let (f, b) = (fds(i), bytes(i));
        if i > start && (in_fds + f > MAX_FDS_PER_MESSAGE || in_bytes + b > BATCH_BYTES) {
            runs.push(start..i);
            (start, in_fds, in_bytes) = (i, 0, 0);
        }
        in_fds += f;
        in_bytes += b;
    }
    if start < count {
        runs.push(start..count);
    }
    runs
}

/// A batch of one worker's parcels: the worker, then each record with the
/// number of descriptors it owns (they follow one another in the frame's
/// descriptors).
pub(crate) fn encode_parcels<Fd>(worker: u16, parcels: &[Parcel<Fd>]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(worker).u32(parcels.len() as u32);
    for parcel in parcels {
        w.u16(parcel.fds.len() as u16).bytes(&parcel.record);
    }
    w.finish()
}

/// The parcels of a batch, each given its descriptors from `fds` in order;
/// every descriptor must be claimed.
pub(crate) fn decode_parcels<Fd>(
    bytes: &[u8],
    fds: Vec<Fd>,
) -> Result<(u16, Vec<Parcel<Fd>>), WireError> {
    let mut r = Reader::new(bytes);
    let worker = r.u16()?;
    let count = r.u32()? as usize;
    let mut fds = fds.into_iter();
    let mut parcels = Vec::with_capacity(count.min(MAX_FDS_PER_MESSAGE));
    for _ in 0..count {
        let owned = r.u16()? as usize;
        let record = r.bytes()?.to_vec();
        let mine: Vec<Fd> = fds.by_ref().take(owned).collect();
        if mine.len() != owned {
            return Err(WireError::Invalid("descriptor count of a parcel"));
        }
        parcels.push(Parcel { record, fds: mine });
    }
    r.end()?;
    if fds.next().is_some() {
        return Err(WireError::Invalid("descriptor count of a batch"));
    }
    Ok((worker, parcels))
}

/// A worker's upstream state, named by worker.
pub(crate) fn encode_upstream(worker: u16, state: &[u8]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(worker).bytes(state);
    w.finish()
}

pub(crate) fn decode_upstream(bytes: &[u8]) -> Result<(u16, Vec<u8>), WireError> {
    let mut r = Reader::new(bytes);
    let worker = r.u16()?;
    let state = r.bytes()?.to_vec();
    r.end()?;
    Ok((worker, state))
}

/// The counts of a handover, sent last and checked by the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) listeners: u32,
    pub(crate) parcels: u32,
}

impl Counts {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.listeners).u32(self.parcels);
        w.finish()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Counts, WireError> {
        let mut r = Reader::new(bytes);
        let counts = Counts {
            listeners: r.u32()?,
            parcels: r.u32()?,
        };
        r.end()?;
        Ok(counts)
    }
}

/// One number (a pid, a count), for the short frames.
pub(crate) fn encode_u32(value: u32) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

pub(crate) fn decode_u32(bytes: &[u8]) -> Result<u32, WireError> {
    let mut r = Reader::new(bytes);
    let value = r.u32()?;
    r.end()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batches_cover_every_item_once_within_the_descriptor_limit(
            fds in proptest::collection::vec(0usize..9, 0..400),
        ) {
            let runs = batches(fds.len(), |i| fds[i], |_| 100);
            let mut next = 0;
            for run in &runs {
                prop_assert_eq!(run.start, next);
                prop_assert!(run.end > run.start);
                prop_assert!(fds[run.clone()].iter().sum::<usize>() <= MAX_FDS_PER_MESSAGE);
                next = run.end;
            }
            prop_assert_eq!(next, fds.len());
        }

        #[test]
        fn parcels_come_back_with_their_own_descriptors(
            records in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..40), 0usize..5), 0..30),
            worker in any::<u16>(),
        ) {
            let mut next = 0u32;
            let parcels: Vec<Parcel<u32>> = records.iter().map(|(record, n)| {
                let fds = (next..next + *n as u32).collect();
                next += *n as u32;
                Parcel { record: record.clone(), fds }
            }).collect();
            let bytes = encode_parcels(worker, &parcels);
            let all: Vec<u32> = parcels.iter().flat_map(|p| p.fds.clone()).collect();
            let (got_worker, got) = decode_parcels(&bytes, all.clone()).unwrap();
            prop_assert_eq!(got_worker, worker);
            prop_assert_eq!(got.len(), parcels.len());
            for (a, b) in got.iter().zip(&parcels) {
                prop_assert_eq!(&a.record, &b.record);
                prop_assert_eq!(&a.fds, &b.fds);
            }
            // One descriptor too many or too few is an error.
            let mut more = all.clone();
            more.push(99);
            prop_assert!(decode_parcels(&bytes, more).is_err());
            if !all.is_empty() {
                prop_assert!(decode_parcels(&bytes, all[1..].to_vec()).is_err());
            }
            for cut in 0..bytes.len() {
                prop_assert!(decode_parcels(&bytes[..cut], all.clone()).is_err());
            }
        }
    }

    #[test]
    fn hello_and_listeners_round_trip() {
        let hello = Hello {
            envelope: 1,
            records: 7,
            pid: 4242,
            workers: 3,
        };
        assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
        assert!(Hello::decode(&hello.encode()[..5]).is_err());
        let listeners = vec![
            Listener {
                worker: 0,
                owner: "web".into(),
                configured: "127.0.0.1:0".parse().unwrap(),
                local: "127.0.0.1:4000".parse().unwrap(),
            },
            Listener {
                worker: 1,
                owner: "http metrics".into(),
                configured: "[::1]:9100".parse().unwrap(),
                local: "[::1]:9100".parse().unwrap(),
            },
        ];
        assert_eq!(
            decode_listeners(&encode_listeners(&listeners)).unwrap(),
            listeners
        );
        let counts = Counts {
            listeners: 2,
            parcels: 10_000,
        };
        assert_eq!(Counts::decode(&counts.encode()).unwrap(), counts);
    }
}
