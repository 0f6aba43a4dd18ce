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

    fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
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
    /// 1 in a process that took over from another in a live upgrade.
    pub upgrades_ok_total: Gauge,
    /// Live upgrades this process tried that failed (it carried on).
    pub upgrades_failed_total: Gauge,
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
    /// Clients reset because their (real) address opened more than
    /// `max-connection-rate-per-source` connections to the route.
    pub refused_connection_rate_total: Gauge,
    /// Clients of a shared address without a default route reset because
    /// their first bytes chose no route.
    pub no_route_total: Gauge,
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

impl Metrics {
    /// Makes every counter and gauge the sum of `parts`' (each worker's),
    /// and the peak the largest of theirs. Each worker writes only its own
    /// `Metrics`, so their updates stay plain stores; a sum is taken when
    /// someone reads.
    pub(crate) fn set_to_sum(&self, parts: &[std::sync::Arc<Metrics>]) {
        let sum = |field: fn(&Metrics) -> &Gauge| parts.iter().map(|m| field(m).get()).sum();
        let fields: [fn(&Metrics) -> &Gauge; 20] = [
            |m| &m.live_pipes,
            |m| &m.accepted_total,
            |m| &m.connect_failures_total,
            |m| &m.aborted_total,
            |m| &m.timed_out_total,
            |m| &m.bytes_toward_target_total,
            |m| &m.bytes_toward_client_total,
            |m| &m.buffered_bytes,
            |m| &m.rings_in_use,
            |m| &m.accept_backoffs_total,
            |m| &m.connection_limit_reached_total,
            |m| &m.awaiting_proxy_header,
            |m| &m.spliced_bytes_total,
            |m| &m.kernel_pipes_in_use,
            |m| &m.proxy_header_rejected_total,
            |m| &m.proxy_header_timeouts_total,
            |m| &m.denied_total,
            |m| &m.refused_per_source_total,
            |m| &m.refused_connection_rate_total,
            |m| &m.no_route_total,
        ];
        for field in fields {
            field(self).set(sum(field));
        }
        // Every worker applies each reload, so each counts it once.
        let most = |field: fn(&Metrics) -> &Gauge| parts.iter().map(|m| field(m).get()).max();
        self.reloads_ok_total
            .set(most(|m| &m.reloads_ok_total).unwrap_or(0));
        self.reloads_failed_total
            .set(most(|m| &m.reloads_failed_total).unwrap_or(0));
        self.upgrades_ok_total
            .set(most(|m| &m.upgrades_ok_total).unwrap_or(0));
        self.upgrades_failed_total
            .set(most(|m| &m.upgrades_failed_total).unwrap_or(0));
        let peak = parts.iter().map(|m| m.peak_direction_buffered_bytes.get());
        self.peak_direction_buffered_bytes
            .set(peak.max().unwrap_or(0));
    }
}

/// Every way a pipe can end, as metrics and the access log name it.
pub(crate) const CLOSE_REASONS: usize = 15;

/// The index of `reason` in a per-reason counter array, and its label
/// (the reactor narrows refusals further: `per_source_limit`,
/// `proxy_timeout`).
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
        CloseReason::Denied => 9,
        CloseReason::BadProxyHeader => 10,
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
    "denied",
    "bad_proxy_header",
    // Refusals the hooks' `CloseReason` folds into `denied` and
    // `bad_proxy_header`; metrics and the access log keep them apart, with
    // the names `tcpipe_connections_refused_total` gives them.
    "per_source_limit",
    "proxy_timeout",
    "connection_rate",
    "no_route",
];

/// Why a client was turned away before any target was dialed, as
/// `tcpipe_connections_refused_total` names it.
pub(crate) const REFUSAL_LABELS: [&str; 6] = [
    "denied",
    "per_source_limit",
    "bad_proxy_header",
    "proxy_timeout",
    "connection_rate",
    "no_route",
];

/// Why a client's first bytes on a shared address chose no route: the
/// ClientHello parser's kinds of malformed hello, and a timeout, as
/// `tcpipe_inspect_failures_total` labels them.
pub(crate) const INSPECT_FAILURE_LABELS: [&str; 7] = [
    "bad_record",
    "bad_handshake",
    "bad_extension",
    "bad_server_name",
    "too_large",
    "truncated",
    "timeout",
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
    /// Clients turned away, per [`REFUSAL_LABELS`].
    pub(crate) refused: [u64; 6],
    /// Nanoseconds its pipes spent with reading paused by a rate limit,
    /// (upload, download): freed pipes' here, live ones' added at snapshot
    /// time.
    pub(crate) rate_limited_ns: [u64; 2],
    /// Clients of a shared address it took, per `By::ALL` (what matched).
    pub(crate) matched: [u64; 5],
    /// Clients of a shared address it counted while they were inspected
    /// whose first bytes chose nothing, per [`INSPECT_FAILURE_LABELS`].
    pub(crate) inspect_failures: [u64; 7],
}

impl Default for RouteStats {
    fn default() -> RouteStats {
        RouteStats {
            accepted: 0,
            closed: [0; CLOSE_REASONS],
            duration: Histogram::new(LIFETIME_BOUNDS),
            limit_reached: 0,
            refused: [0; 6],
            rate_limited_ns: [0; 2],
            matched: [0; 5],
            inspect_failures: [0; 7],
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
        add_all(&mut self.refused, &other.refused);
        add_all(&mut self.rate_limited_ns, &other.rate_limited_ns);
        add_all(&mut self.matched, &other.matched);
        add_all(&mut self.inspect_failures, &other.inspect_failures);
    }

    /// Adds what a pipe spent limited, per way.
    pub(crate) fn add_rate_limited(&mut self, limited: [std::time::Duration; 2]) {
        for (total, way) in self.rate_limited_ns.iter_mut().zip(limited) {
            *total += u64::try_from(way.as_nanos()).unwrap_or(u64::MAX);
        }
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
    /// Pipes sent here (a failover counts once per target it tried).
    pub(crate) pipes: u64,
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
            pipes: 0,
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
        self.pipes += other.pipes;
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
    pub(crate) upgrades_ok: u64,
    pub(crate) upgrades_failed: u64,
    pub(crate) awaiting_proxy_header: u64,
    pub(crate) spliced_bytes: u64,
    pub(crate) kernel_pipes_in_use: u64,
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
    /// Its weight now (the operator's or the config's).
    pub(crate) weight: u32,
    pub(crate) backup: bool,
    /// The operator's state.
    pub(crate) state: crate::operator::TargetState,
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
            upgrades_ok: metrics.upgrades_ok_total.get(),
            upgrades_failed: metrics.upgrades_failed_total.get(),
            awaiting_proxy_header: metrics.awaiting_proxy_header.get(),
            spliced_bytes: metrics.spliced_bytes_total.get(),
            kernel_pipes_in_use: metrics.kernel_pipes_in_use.get(),
            routes: Vec::new(),
        }
    }

    /// Adds another worker's snapshot: counts add up, entries are matched
    /// by route and target name. A target is up only if every worker has it
    /// up: each judges passive health from its own clients, and one that
    /// has stopped sending clients there is worth an operator's look.
    pub(crate) fn merge(&mut self, other: Snapshot) {
        self.buffered_bytes += other.buffered_bytes;
        self.rings_in_use += other.rings_in_use;
        self.accept_backoffs += other.accept_backoffs;
        self.connection_limit_reached += other.connection_limit_reached;
        // Every worker applies each reload: it is one reload all the same.
        self.reloads_ok = self.reloads_ok.max(other.reloads_ok);
        self.reloads_failed = self.reloads_failed.max(other.reloads_failed);
        // The leader alone counts upgrades; the others hold 0.
        self.upgrades_ok += other.upgrades_ok;
        self.upgrades_failed += other.upgrades_failed;
        self.awaiting_proxy_header += other.awaiting_proxy_header;
        self.spliced_bytes += other.spliced_bytes;
        self.kernel_pipes_in_use += other.kernel_pipes_in_use;
        for route in other.routes {
            let into = self.route(&route.name);
            into.active += route.active;
            into.stats.absorb(&route.stats);
            for target in route.targets {
                let known = into.targets.iter().any(|t| t.name == target.name);
                let entry = into.target(&target.name);
                entry.up = target.up && (entry.up || !known);
                if !known {
                    // Every worker applies the operator's word and the
                    // config alike: the first one's stands for all.
                    (entry.weight, entry.backup, entry.state) =
                        (target.weight, target.backup, target.state);
                }
                entry.active += target.active;
                entry.pool_idle += target.pool_idle;
                entry.stats.absorb(&target.stats);
                add_all(&mut entry.bytes, &target.bytes);
            }
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
                    weight: 1,
                    backup: false,
                    state: crate::operator::TargetState::Ready,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn workers_snapshots_merge_by_route_and_target_name() {
        let metrics = Metrics::default();
        let mut first = Snapshot::new(&metrics, SystemTime::UNIX_EPOCH);
        let mut second = first.clone();
        first.buffered_bytes = 10;
        second.buffered_bytes = 5;
        let mut stats = RouteStats {
            accepted: 3,
            ..RouteStats::default()
        };
        first.route("web").add(2, &stats);
        stats.accepted = 4;
        second.route("web").add(1, &stats);
        second.route("db").add(1, &RouteStats::default());
        let target = first.route("web").target("a");
        target.add(false, 1, 2, &TargetStats::default());
        target.bytes = [100, 200];
        let target = second.route("web").target("a");
        target.add(true, 3, 1, &TargetStats::default());
        target.bytes = [1, 2];

        first.merge(second);
        assert_eq!(first.buffered_bytes, 15);
        let names: Vec<&str> = first.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        let web = &first.routes[0];
        assert_eq!((web.active, web.stats.accepted), (3, 7));
        assert_eq!(web.targets.len(), 1);
        let a = &web.targets[0];
        assert!(!a.up, "down in one worker is down");
        assert_eq!((a.active, a.pool_idle, a.bytes), (4, 3, [101, 202]));
    }

    #[test]
    fn a_sum_of_workers_metrics_adds_counters_and_keeps_the_largest_peak() {
        let parts: Vec<Arc<Metrics>> = (1..=3)
            .map(|n| {
                let m = Metrics::default();
                m.live_pipes.add(n);
                m.accepted_total.add(10 * n);
                m.note_direction_fill(n as usize * 100);
                Arc::new(m)
            })
            .collect();
        let total = Metrics::default();
        total.set_to_sum(&parts);
        assert_eq!(total.live_pipes.get(), 6);
        assert_eq!(total.accepted_total.get(), 60);
        assert_eq!(total.peak_direction_buffered_bytes.get(), 300);
        parts[0].live_pipes.sub(1);
        total.set_to_sum(&parts);
        assert_eq!(total.live_pipes.get(), 5, "a new sum replaces the old");
    }
}
