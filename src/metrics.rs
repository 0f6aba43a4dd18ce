//! Counters and gauges of one reactor, readable from any thread.
//!
//! Only the reactor thread writes them, so an update is a plain load and
//! store of a relaxed atomic (no locked read-modify-write on the hot path).
//! Other threads (tests, and later a Prometheus endpoint) read a value that
//! is at most one update old. With N reactors, each gets its own `Metrics`
//! and a reader sums them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A value that one thread writes and any thread reads.
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

#[derive(Default, Debug)]
/// The counters and gauges of one forwarder.
pub struct Metrics {
    /// Pipes accepted and not yet freed.
    pub live_pipes: Gauge,
    /// Client connections accepted since start.
    pub accepted_total: Gauge,
    /// Failed connects of pipes to targets (refused, unreachable, timed
    /// out); each failover attempt counts.
    pub connect_failures_total: Gauge,
    /// Pipes ended by an abort (reset, error or timeout) rather than two FINs.
    pub aborted_total: Gauge,
    /// Pipes closed by the idle or half-close timeout.
    pub timed_out_total: Gauge,
    /// Bytes written to targets.
    pub bytes_toward_target_total: Gauge,
    /// Bytes written to clients.
    pub bytes_toward_client_total: Gauge,
    /// Bytes sitting in rings right now, both directions, all pipes.
    pub buffered_bytes: Gauge,
    /// The most bytes one direction of one pipe has ever held at once.
    pub peak_direction_buffered_bytes: Gauge,
    /// Rings lent to a direction that has bytes in flight. Idle pipes hold none.
    pub rings_in_use: Gauge,
    /// Clients of `accept-proxy` routes whose PROXY header is still awaited
    /// (not yet pipes, not in `live_pipes`, but counted against the
    /// connection limits).
    pub awaiting_proxy_header: Gauge,
    /// Clients of `accept-proxy` routes reset because their PROXY header was
    /// malformed, of an unsupported kind, or missing (the client ended or
    /// failed before completing it).
    pub proxy_header_rejected_total: Gauge,
    /// Clients of `accept-proxy` routes reset because their PROXY header was
    /// not complete within `proxy-timeout`.
    pub proxy_header_timeouts_total: Gauge,
    /// Clients reset because the route's `allow`/`deny` rules do not admit
    /// their (real) address.
    pub denied_total: Gauge,
    /// Clients reset because their (real) address had
    /// `max-connections-per-source` pipes on the route already.
    pub refused_per_source_total: Gauge,
}

impl Metrics {
    pub(crate) fn note_direction_fill(&self, fill: usize) {
        if fill as u64 > self.peak_direction_buffered_bytes.get() {
            self.peak_direction_buffered_bytes
                .0
                .store(fill as u64, Relaxed);
        }
    }
}
