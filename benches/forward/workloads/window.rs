//! The timing shared by the event-loop generators (rr-concurrent, connect
//! rate), which keep load running across the window's edges.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::{cpu_now, cpu_used, Settings, PATIENCE};
use crate::measure::Meter;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// Warm-up, then the measured window, then the drain of what is in flight;
/// counts completions and forwarder CPU in the window only.
pub(super) struct Window<'a> {
    phase: Phase,
    meter: &'a Meter,
    measure_from: Instant,
    measure_until: Instant,
    drain_until: Instant,
    started_at: Instant,
    count_at_start: u64,
    cpu_at_start: Option<f64>,
    /// Completions and CPU seconds within the window, and its length.
    pub(super) result: Option<(u64, Option<f64>, Duration)>,
}

impl<'a> Window<'a> {
    pub(super) fn new(settings: &Settings, meter: &'a Meter) -> Window<'a> {
        let now = Instant::now();
        let measure_from = now + settings.warmup;
        let measure_until = measure_from + settings.duration;
        Window {
            phase: Phase::Warmup,
            meter,
            measure_from,
            measure_until,
            drain_until: measure_until + PATIENCE,
            started_at: now,
            count_at_start: 0,
            cpu_at_start: None,
            result: None,
        }
    }

    /// Moves to the next phase if its time has come; `completed` is the
    /// running count of completions.
    pub(super) fn tick(&mut self, completed: u64) -> Result<(), String> {
        let now = Instant::now();
        if self.phase == Phase::Warmup && now >= self.measure_from {
            self.phase = Phase::Measure;
            self.cpu_at_start = cpu_now(self.meter)?;
            self.started_at = Instant::now();
            self.count_at_start = completed;
        }
        if self.phase == Phase::Measure && now >= self.measure_until {
            let elapsed = self.started_at.elapsed();
            let cpu = cpu_used(self.cpu_at_start, cpu_now(self.meter)?);
            self.result = Some((completed - self.count_at_start, cpu, elapsed));
            self.phase = Phase::Drain;
        }
        Ok(())
    }

    pub(super) fn may_start_more(&self) -> bool {
        self.phase != Phase::Drain
    }

    pub(super) fn poll_timeout(&self) -> Duration {
        let next = match self.phase {
            Phase::Warmup => self.measure_from,
            Phase::Measure => self.measure_until,
            Phase::Drain => self.drain_until,
        };
        next.saturating_duration_since(Instant::now())
    }

    pub(super) fn drain_expired(&self) -> bool {
        self.phase == Phase::Drain && Instant::now() >= self.drain_until
    }
}

pub(super) fn poll_once(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Duration,
) -> Result<(), String> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(format!("poll: {e}")),
    }
}
