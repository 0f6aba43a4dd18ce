//! What a forwarder counts, and how other threads read it.
//!
//! Two kinds of numbers:
//! - [`Metrics`]: process-wide counters and gauges in relaxed atomics, that
//!   any thread reads at any time through [`Handle::metrics`](crate::Handle::metrics).
//!   Only the reactor thread writes them, so an update is a plain load and
//!   store (no locked read-modify-write on the hot path).
//! - [`RouteStats`] and [`TargetStats`]: plain integers and histograms that
//!   live in the reactor's own route and target entries. Nothing else
//!   touches them; a scrape asks the loop for a [`Snapshot`] between two
//!   turns, so they cost no atomics, no locks and nothing on the per-byte
//!   path (bytes per route and target are summed from the live pipes at
//!   snapshot time, plus what closed pipes left behind).
//!
//! | module       | the idea                                                  |
//! |--------------|-----------------------------------------------------------|
//! | `mod`        | the counters, and the snapshot a scrape gets              |
//! | `histogram`  | duration histograms with fixed buckets                    |
//! | `prometheus` | a snapshot in the Prometheus text format                  |
//! | `exporter`   | the `/metrics` HTTP endpoint, on a thread of its own      |

mod exporter;
mod histogram;
mod prometheus;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use crate::hooks::CloseReason;
pub(crate) use exporter::Exporter;
pub(crate) use histogram::Histogram;
use histogram::{LATENCY_BOUNDS, LIFETIME_BOUNDS};
pub(crate) use prometheus::render;

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
    /// Bytes sitting in rings and kernel pipes right now, both directions,
    /// all pipes.
    pub buffered_bytes: Gauge,
    /// The most bytes one direction of one pipe has ever held at once.
    pub peak_direction_buffered_bytes: Gauge,
    /// Rings lent to a direction that has bytes in flight. Idle pipes hold none.
    pub rings_in_use: Gauge,
    /// Bytes delivered through kernel pipes with `splice(2)`, never copied
    /// through user space; part of the `bytes_toward_*` counts.
    pub spliced_bytes_total: Gauge,
    /// Kernel pipes (two descriptors each) lent to a spliced direction that
    /// has bytes in flight. Idle pipes hold none; spares in the pool are not
    /// counted.
    pub kernel_pipes_in_use: Gauge,
    /// Times accepting had to back off for lack of descriptors or memory
    /// (one per episode, however many accepts failed in it).
    pub accept_backoffs_total: Gauge,
    /// Times every listener paused at the process-wide `max-connections`.
    pub connection_limit_reached_total: Gauge,
    /// Reloads applied.
    pub reloads_ok_total: Gauge,
    /// Reloads refused (the running config stayed).
    pub reloads_failed_total: Gauge,
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

/// Every way a pipe can end, as metrics and the access log name it.
pub(crate) const CLOSE_REASONS: usize = 9;

/// The index of `reason` in a per-reason counter array, and its label.
pub(crate) fn close_reason_slot(reason: CloseReason) -> usize {
    use crate::hooks::TimeoutKind;
    match reason {
        CloseReason::Clean => 0,
        CloseReason::ClientReset => 1,
        CloseReason::TargetReset => 2,
        CloseReason::ConnectFailed => 3,
        CloseReason::Timeout(TimeoutKind::Idle) => 4,
        CloseReason::Timeout(TimeoutKind::HalfClose) => 5,
        CloseReason::Shutdown => 6,
        CloseReason::Aborted => 7,
        CloseReason::Error => 8,
    }
}

/// The labels of [`close_reason_slot`]'s slots, in order.
pub(crate) const CLOSE_REASON_LABELS: [&str; CLOSE_REASONS] = [
    "clean",
    "client_reset",
    "target_reset",
    "connect_failed",
    "idle_timeout",
    "half_close_timeout",
    "shutdown",
    "aborted",
    "error",
];

/// What one route counted, kept by the reactor in the route's entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteStats {
    pub(crate) accepted: u64,
    /// Pipes freed, per [`close_reason_slot`].
    pub(crate) closed: [u64; CLOSE_REASONS],
    /// From accept to free.
    pub(crate) duration: Histogram,
    /// Times its listeners paused at its own `max-connections`.
    pub(crate) limit_reached: u64,
}

impl Default for RouteStats {
    fn default() -> RouteStats {
        RouteStats {
            accepted: 0,
            closed: [0; CLOSE_REASONS],
            duration: Histogram::new(LIFETIME_BOUNDS),
            limit_reached: 0,
        }
    }
}

impl RouteStats {
    /// Adds another entry's counts (a removed route and a new one of the
    /// same name are one series to a scraper).
    fn absorb(&mut self, other: &RouteStats) {
        self.accepted += other.accepted;
        add_all(&mut self.closed, &other.closed);
        self.duration.absorb(&other.duration);
        self.limit_reached += other.limit_reached;
    }
}

/// What one target counted, kept in the target's entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TargetStats {
    /// Connects made for clients (pooled and probe connects are not).
    pub(crate) connect_attempts: u64,
    /// Of those, refused or failed before the connect timeout.
    pub(crate) connect_failures: u64,
    /// Of those, not accepted within the connect timeout.
    pub(crate) connect_timeouts: u64,
    /// Of the connects that succeeded.
    pub(crate) connect_time: Histogram,
    /// From accept to the first byte the target sent.
    pub(crate) first_byte: Histogram,
    /// Bytes delivered (toward the target, toward the client) by pipes
    /// already freed; live pipes add theirs at snapshot time.
    pub(crate) closed_bytes: [u64; 2],
}

impl Default for TargetStats {
    fn default() -> TargetStats {
        TargetStats {
            connect_attempts: 0,
            connect_failures: 0,
            connect_timeouts: 0,
            connect_time: Histogram::new(LATENCY_BOUNDS),
            first_byte: Histogram::new(LATENCY_BOUNDS),
            closed_bytes: [0; 2],
        }
    }
}

impl TargetStats {
    fn absorb(&mut self, other: &TargetStats) {
        self.connect_attempts += other.connect_attempts;
        self.connect_failures += other.connect_failures;
        self.connect_timeouts += other.connect_timeouts;
        self.connect_time.absorb(&other.connect_time);
        self.first_byte.absorb(&other.first_byte);
        add_all(&mut self.closed_bytes, &other.closed_bytes);
    }
}

fn add_all<const N: usize>(into: &mut [u64; N], from: &[u64; N]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Everything a scrape shows, copied from the loop between two turns.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) started: SystemTime,
    pub(crate) buffered_bytes: u64,
    pub(crate) rings_in_use: u64,
    pub(crate) accept_backoffs: u64,
    pub(crate) connection_limit_reached: u64,
    pub(crate) reloads_ok: u64,
    pub(crate) reloads_failed: u64,
    /// One per route name, in the order first seen.
    pub(crate) routes: Vec<RouteSnapshot>,
}

#[derive(Debug, Clone)]
pub(crate) struct RouteSnapshot {
    pub(crate) name: String,
    pub(crate) active: u64,
    pub(crate) stats: RouteStats,
    pub(crate) targets: Vec<TargetSnapshot>,
}

#[derive(Debug, Clone)]
pub(crate) struct TargetSnapshot {
    pub(crate) name: String,
    pub(crate) up: bool,
    pub(crate) active: u64,
    /// Connected idle pooled connections ready now.
    pub(crate) pool_idle: u64,
    pub(crate) stats: TargetStats,
    /// Delivered so far by closed and live pipes: (toward the target,
    /// toward the client).
    pub(crate) bytes: [u64; 2],
}

impl Snapshot {
    pub(crate) fn new(metrics: &Metrics, started: SystemTime) -> Snapshot {
        Snapshot {
            started,
            buffered_bytes: metrics.buffered_bytes.get(),
            rings_in_use: metrics.rings_in_use.get(),
            accept_backoffs: metrics.accept_backoffs_total.get(),
            connection_limit_reached: metrics.connection_limit_reached_total.get(),
            reloads_ok: metrics.reloads_ok_total.get(),
            reloads_failed: metrics.reloads_failed_total.get(),
            routes: Vec::new(),
        }
    }

    /// The entry for route `name`, made if new.
    pub(crate) fn route(&mut self, name: &str) -> &mut RouteSnapshot {
        let at = match self.routes.iter().position(|r| r.name == name) {
            Some(at) => at,
            None => {
                self.routes.push(RouteSnapshot {
                    name: name.to_string(),
                    active: 0,
                    stats: RouteStats::default(),
                    targets: Vec::new(),
                });
                self.routes.len() - 1
            }
        };
        &mut self.routes[at]
    }
}

impl RouteSnapshot {
    /// Adds a route entry's own counts.
    pub(crate) fn add(&mut self, active: usize, stats: &RouteStats) {
        self.active += active as u64;
        self.stats.absorb(stats);
    }

    /// The entry for target `name`, made if new (down until told up).
    pub(crate) fn target(&mut self, name: &str) -> &mut TargetSnapshot {
        let at = match self.targets.iter().position(|t| t.name == name) {
            Some(at) => at,
            None => {
                self.targets.push(TargetSnapshot {
                    name: name.to_string(),
                    up: false,
                    active: 0,
                    pool_idle: 0,
                    stats: TargetStats::default(),
                    bytes: [0; 2],
                });
                self.targets.len() - 1
            }
        };
        &mut self.targets[at]
    }
}

impl TargetSnapshot {
    pub(crate) fn add(&mut self, up: bool, active: usize, pool_idle: usize, stats: &TargetStats) {
        self.up |= up;
        self.active += active as u64;
        self.pool_idle += pool_idle as u64;
        self.stats.absorb(stats);
        add_all(&mut self.bytes, &stats.closed_bytes);
    }
}

/// Seconds since the epoch, as Prometheus writes timestamps.
pub(crate) fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}
