//! A pipe's traffic limits: a token bucket per limited direction, that
//! bounds how much the direction reads per turn and pauses its reads
//! (never its writes, its FIN or its reset) until the pipe's timer says
//! the bucket has refilled.
//!
//! A direction's rate is its own limit (`upload-rate`, `download-rate`),
//! or its even share of the route's (`route-upload-rate`, ...: this
//! worker's part of it divided by the route's live pipes in this worker,
//! counted in [`RouteShare`]), whichever is lower, looked up on every
//! drive: a new pipe gets its share at once and the others' shrink, and
//! no pipe can starve since each has a bucket of its own. A pipe without
//! a limit has no [`Limits`] at all, so the unlimited path costs one
//! `Option` test per drive.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connect::Stage;
use super::direction::{Context, Direction, Flow, PumpError};
use super::endpoint::Endpoint;
use super::{Pipe, Side};
use crate::handover::WayLimitRecord;
use crate::rate::TokenBucket;

/// What a route's config says its pipes may read a second, per way
/// (client → target, target → client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rates {
    /// Each pipe's own limit.
    pub(crate) pipe: [Option<u64>; 2],
    /// The route's limit, this worker's part of it.
    pub(crate) route: [Option<u64>; 2],
    /// Bytes a limited direction may read at once.
    pub(crate) burst: u64,
    /// The route's live pipes that share `route`.
    pub(crate) share: RouteShare,
}

impl Rates {
    pub(crate) fn any(&self) -> bool {
        self.pipe.iter().chain(&self.route).any(Option::is_some)
    }
}

/// How many live pipes of one route in one worker share its rate: each
/// adds itself while it has limits. A reload that keeps the route hands
/// the same count to its new settings, so that pipes opened before and
/// after it share alike.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteShare(Arc<AtomicUsize>);

/// Which count a route's pipes share is no setting: settings that differ
/// only in it are the same.
impl PartialEq for RouteShare {
    fn eq(&self, _: &RouteShare) -> bool {
        true
    }
}

impl Eq for RouteShare {}

/// How often at most a limited direction wakes to read again: it waits
/// for this much of its rate (or its whole burst, if smaller), so reads
/// stay large and timers few, and the rate is followed within this much.
const WAKE_EVERY: Duration = Duration::from_millis(10);

pub(crate) struct Limits {
    ways: [Option<WayLimit>; 2],
    share: Option<RouteShare>,
}

struct WayLimit {
    bucket: TokenBucket,
    own: Option<u64>,
    route: Option<u64>,
    /// The rate the bucket fills at now.
    rate: u64,
    /// While paused: when reading may start again.
    wake: Option<Instant>,
    /// While paused: since when.
    since: Option<Instant>,
    /// Time spent paused in episodes that have ended.
    limited: Duration,
}

impl Limits {
    /// The limits of a pipe that opens, if it has any; one that shares
    /// its route's rate joins the route's count.
    pub(crate) fn of(rates: &Rates, now: Instant) -> Option<Box<Limits>> {
        if !rates.any() {
            return None;
        }
        let shared = rates.route.iter().any(Option::is_some);
        let share = shared.then(|| {
            rates.share.0.fetch_add(1, Relaxed);
            rates.share.clone()
        });
        let sharers = share.as_ref().map_or(1, |s| s.0.load(Relaxed));
        let way = |i: usize| {
            let (own, route) = (rates.pipe[i], rates.route[i]);
            let rate = effective(own, route, sharers)?;
            Some(WayLimit {
                bucket: TokenBucket::per_second(rate, rates.burst, now),
                own,
                route,
                rate,
                wake: None,
                since: None,
                limited: Duration::ZERO,
            })
        };
        Some(Box::new(Limits {
            ways: [way(0), way(1)],
            share,
        }))
    }

    /// Bytes way `i` may read now; `usize::MAX` if it has no limit.
    fn allowance(&mut self, i: usize, now: Instant) -> usize {
        let sharers = self.share.as_ref().map_or(1, |s| s.0.load(Relaxed));
        let Some(way) = &mut self.ways[i] else {
            return usize::MAX;
        };
        if let Some(rate) = effective(way.own, way.route, sharers) {
            if rate != way.rate {
                way.rate = rate;
                way.bucket.set_amount(rate, now);
            }
        }
        usize::try_from(way.bucket.available(now)).unwrap_or(usize::MAX)
    }

    /// Way `i` read `n` bytes of its allowance; `spent`: all of it, so it
    /// pauses until the bucket holds enough for a worthwhile read.
    fn took(&mut self, i: usize, n: usize, spent: bool, now: Instant) -> bool {
        let Some(way) = &mut self.ways[i] else {
            return false;
        };
        way.bucket.take(n as u64);
        if !spent {
            return false;
        }
        let quantum = (way.rate / (1000 / WAKE_EVERY.as_millis() as u64)).max(1);
        way.wake = Some(
            way.bucket
                .ready_at(quantum)
                .max(now + Duration::from_millis(1)),
        );
        way.since.get_or_insert(now);
        true
    }

    /// Each way's bucket, as a record another process rebuilds it from.
    pub(crate) fn record(&self, now: Instant) -> [Option<WayLimitRecord>; 2] {
        [0, 1].map(|i| {
            let way = self.ways[i].as_ref()?;
            Some(WayLimitRecord {
                tokens: way.bucket.clone().available(now),
                rate: way.rate,
                wake_in: way.wake.map(|w| w.saturating_duration_since(now)),
                paused_for: way.since.map(|s| now.saturating_duration_since(s)),
                limited: way.limited,
            })
        })
    }

    /// The limits of an adopted pipe: made as a new pipe's (joining its
    /// route's count), then each way's bucket as the record says.
    pub(crate) fn restore(
        rates: &Rates,
        ways: &[Option<WayLimitRecord>; 2],
        now: Instant,
    ) -> Option<Box<Limits>> {
        let mut limits = Limits::of(rates, now)?;
        for (way, record) in limits.ways.iter_mut().zip(ways) {
            let (Some(way), Some(record)) = (way, record) else {
                continue;
            };
            if record.rate > 0 {
                way.rate = record.rate;
            }
            way.bucket = TokenBucket::per_second(way.rate, rates.burst, now);
            way.bucket
                .take(rates.burst.max(1).saturating_sub(record.tokens));
            way.wake = record.wake_in.map(|left| now + left);
            way.since = record
                .paused_for
                .map(|since| now.checked_sub(since).unwrap_or(now));
            way.limited = record.limited;
        }
        Some(limits)
    }

    /// The earliest instant a paused way may read again.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.ways.iter().flatten().filter_map(|w| w.wake).min()
    }

    /// Time spent paused by the limit, per way, up to `now`.
    pub(crate) fn limited_for(&self, now: Instant) -> [Duration; 2] {
        let of = |way: &Option<WayLimit>| {
            way.as_ref().map_or(Duration::ZERO, |w| {
                w.limited
                    + w.since
                        .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
            })
        };
        [of(&self.ways[0]), of(&self.ways[1])]
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        if let Some(share) = &self.share {
            share.0.fetch_sub(1, Relaxed);
        }
    }
}

/// A way's rate: its own limit or its share of the route's, the lower.
fn effective(own: Option<u64>, route: Option<u64>, sharers: usize) -> Option<u64> {
    let share = route.map(|r| (r / sharers.max(1) as u64).max(1));
    match (own, share) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Pipe {
    /// `pump_both` for a pipe with limits (an open one): each limited
    /// direction within its allowance. Apart, so that the unlimited path
    /// stays as it was.
    #[inline(never)]
    pub(super) fn pump_both_limited(
        &mut self,
        ctx: &mut Context<'_>,
    ) -> Result<bool, (Side, io::Error)> {
        let Stage::Open {
            limits: Some(limits),
            ..
        } = &mut self.stage
        else {
            return Ok(false);
        };
        let settings = &*self.settings;
        let target = &mut self.target.endpoint;
        let done = self.toward_client.flow == Flow::Done;
        let moved_toward_target = pump_limited(
            limits,
            0,
            &mut self.toward_target,
            &mut self.client,
            |d, source, ctx| d.pump(source, target, true, done, settings, ctx),
            ctx,
        )
        .map_err(|e| e.blame(Side::Client, Side::Target))?;
        let target = &mut self.target.endpoint;
        let client = &mut self.client;
        let done = self.toward_target.flow == Flow::Done;
        let moved_toward_client = pump_limited(
            limits,
            1,
            &mut self.toward_client,
            target,
            |d, source, ctx| d.pump(source, client, true, done, settings, ctx),
            ctx,
        )
        .map_err(|e| e.blame(Side::Target, Side::Client))?;
        Ok(moved_toward_target || moved_toward_client)
    }

    /// Either way is paused by its rate limit: the pipe is not idle, it
    /// is waiting for its bucket, so no idle or half-close timeout runs.
    pub(super) fn is_limited(&self) -> bool {
        self.client.limited | self.target.endpoint.limited
    }

    /// The time the pipe spent limited per way, if it has a limit, for
    /// the access log and metrics.
    pub(crate) fn rate_limited_for(&self, now: Instant) -> Option<[Duration; 2]> {
        self.stage.limits().map(|l| l.limited_for(now))
    }

    pub(super) fn limit_wake(&self) -> Option<Instant> {
        self.stage.limits().and_then(Limits::next_wake)
    }

    /// The limit's timer came due: every way whose bucket has refilled
    /// reads again. Returns whether any does.
    pub(super) fn release_limits(&mut self, now: Instant) -> bool {
        let Some(limits) = self.stage.limits_mut() else {
            return false;
        };
        let mut released = false;
        for (way, source) in limits
            .ways
            .iter_mut()
            .zip([&mut self.client, &mut self.target.endpoint])
        {
            let Some(way) = way else { continue };
            if way.wake.is_some_and(|wake| now >= wake) {
                way.wake = None;
                if let Some(since) = way.since.take() {
                    way.limited += now.saturating_duration_since(since);
                }
                source.limited = false;
                released = true;
            }
        }
        if released {
            // Waiting for the bucket is not idleness.
            self.last_activity = now;
        }
        released
    }
}

/// Pumps `direction` within the allowance of way `i` of `limits`: what a
/// limited pipe does instead of a plain pump.
fn pump_limited(
    limits: &mut Limits,
    i: usize,
    direction: &mut Direction,
    source: &mut Endpoint,
    pump: impl FnOnce(&mut Direction, &mut Endpoint, &mut Context<'_>) -> Result<bool, PumpError>,
    ctx: &mut Context<'_>,
) -> Result<bool, PumpError> {
    let allowance = limits.allowance(i, ctx.now);
    if allowance == usize::MAX {
        return pump(direction, source, ctx);
    }
    let mut moved = false;
    if source.limited && direction.flow == Flow::Open && source.read_closed {
        // A FIN with nothing before it passes at once, bucket or not.
        moved = fin_is_next(source).map_err(PumpError::Read)?;
        if moved {
            direction.flow = Flow::Flushing;
        }
    }
    ctx.rate_cap = allowance;
    let pumped = pump(direction, source, ctx);
    let left = std::mem::replace(&mut ctx.rate_cap, usize::MAX);
    let read = allowance - left;
    if limits.took(i, read, left == 0 && direction.flow == Flow::Open, ctx.now) {
        source.limited = true;
    }
    Ok(pumped? | moved)
}

/// Whether the next thing to read from `source` is its FIN: a one-byte
/// peek, made only by a paused direction told of a FIN.
fn fin_is_next(source: &Endpoint) -> io::Result<bool> {
    match source.stream.peek(&mut [0u8; 1]) {
        Ok(n) => Ok(n == 0),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}
