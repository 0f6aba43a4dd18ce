//! A worker's live state as values (STUB until the `handover` branch is
//! merged): the transport of a live upgrade compiles and hands over
//! listeners against this, with bundles that hold no connection.

use std::os::fd::OwnedFd;
use std::os::fd::RawFd;

use crate::reactor::Reactor;

/// The record format's version.
pub(crate) const VERSION: u16 = 0;

/// One connection's worth of state: its record and the descriptors it
/// owns, which the record names by position.
pub(crate) struct Parcel<Fd> {
    pub(crate) record: Vec<u8>,
    pub(crate) fds: Vec<Fd>,
}

/// Everything one worker hands over, apart from listeners.
pub(crate) struct Bundle<Fd> {
    pub(crate) parcels: Vec<Parcel<Fd>>,
    pub(crate) upstream: Vec<u8>,
}

/// Why a bundle could not be adopted.
#[derive(Debug)]
pub(crate) struct HandoverError(pub(crate) String);

impl std::fmt::Display for HandoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Reactor {
    pub(crate) fn export(&mut self) -> Bundle<RawFd> {
        Bundle {
            parcels: Vec::new(),
            upstream: Vec::new(),
        }
    }

    pub(crate) fn release_exported(&mut self) {}

    pub(crate) fn resume_after_failed_handover(&mut self) {}

    pub(crate) fn adopt(&mut self, bundle: Bundle<OwnedFd>) -> Result<usize, HandoverError> {
        Ok(bundle.parcels.len())
    }
}
