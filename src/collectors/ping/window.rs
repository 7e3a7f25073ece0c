//! The ping window: the outcome of the last N probes of one target, and the catalogue
//! metrics derived from it (`ping.rtt_ms`, `ping.jitter_ms`, `ping.loss_pct`).
//!
//! Pure bookkeeping, no I/O, so every rule is unit-tested.

use std::collections::VecDeque;
use std::time::Duration;

use crate::model::{Metric, Reading};

/// The last `capacity` probes of one target, oldest first: `Some(rtt in ms)` for a reply,
/// `None` for a probe that got none.
#[derive(Debug, Clone)]
pub struct PingWindow {
    capacity: usize,
    probes: VecDeque<Option<f64>>,
    consecutive_losses: u32,
}

impl PingWindow {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        PingWindow {
            capacity,
            probes: VecDeque::with_capacity(capacity),
            consecutive_losses: 0,
        }
    }

    /// Records one probe: `Some(rtt)` when a reply came, `None` when it was lost.
    pub fn record(&mut self, rtt: Option<Duration>) {
        if self.probes.len() == self.capacity {
            self.probes.pop_front();
        }
        let ms = rtt.map(|d| d.as_secs_f64() * 1000.0);
        self.probes.push_back(ms);
        if ms.is_some() {
            self.consecutive_losses = 0;
        } else {
            self.consecutive_losses = self.consecutive_losses.saturating_add(1);
        }
    }

    /// Probes in the window so far (at most the capacity).
    pub fn len(&self) -> usize {
        self.probes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Losses since the last reply (not limited to the window).
    pub fn consecutive_losses(&self) -> u32 {
        self.consecutive_losses
    }

    fn replies(&self) -> impl Iterator<Item = f64> + '_ {
        self.probes.iter().filter_map(|p| *p)
    }

    /// Mean round trip over the replies in the window; `None` when no reply is in it.
    pub fn rtt_ms(&self) -> Option<f64> {
        let (n, sum) = self.replies().fold((0usize, 0.0), |(n, s), r| (n + 1, s + r));
        (n > 0).then(|| sum / n as f64)
    }

    /// The most recent reply's round trip in the window, if any.
    pub fn latest_ms(&self) -> Option<f64> {
        self.probes.iter().rev().find_map(|p| *p)
    }

    /// Mean absolute difference between successive replies in the window (losses are
    /// skipped); `None` with fewer than two replies.
    pub fn jitter_ms(&self) -> Option<f64> {
        let mut prev: Option<f64> = None;
        let (mut n, mut sum) = (0usize, 0.0);
        for r in self.replies() {
            if let Some(p) = prev {
                n += 1;
                sum += (r - p).abs();
            }
            prev = Some(r);
        }
        (n > 0).then(|| sum / n as f64)
    }

    /// Percentage of the window's probes that got no reply; `None` before the first probe.
    pub fn loss_pct(&self) -> Option<f64> {
        if self.probes.is_empty() {
            return None;
        }
        let lost = self.probes.iter().filter(|p| p.is_none()).count();
        Some(lost as f64 / self.probes.len() as f64 * 100.0)
    }

    /// The catalogue readings for the window. A series with no value (no reply in the
    /// window, fewer than two replies for jitter) is left out rather than reported as 0, so
    /// a host that stopped answering shows no stale round trip.
    pub fn readings(&self) -> Vec<Reading> {
        let mut out = Vec::with_capacity(3);
        if let Some(v) = self.rtt_ms() {
            out.push(Reading::host(Metric::PingRtt, v));
        }
        if let Some(v) = self.jitter_ms() {
            out.push(Reading::host(Metric::PingJitter, v));
        }
        if let Some(v) = self.loss_pct() {
            out.push(Reading::host(Metric::PingLoss, v));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    fn value(readings: &[Reading], m: Metric) -> Option<f64> {
        readings.iter().find(|r| r.metric == m).map(|r| r.value)
    }

    #[test]
    fn empty_window_has_no_readings() {
        let w = PingWindow::new(20);
        assert!(w.readings().is_empty());
        assert_eq!(w.loss_pct(), None);
    }

    #[test]
    fn mean_jitter_and_loss() {
        let mut w = PingWindow::new(20);
        for p in [ms(10), None, ms(20), ms(14), None] {
            w.record(p);
        }
        assert_eq!(w.rtt_ms(), Some(44.0 / 3.0));
        // |20-10| and |14-20|: losses are skipped.
        assert_eq!(w.jitter_ms(), Some(8.0));
        assert_eq!(w.loss_pct(), Some(40.0));
        assert_eq!(w.latest_ms(), Some(14.0));
        assert_eq!(w.consecutive_losses(), 1);
        let r = w.readings();
        assert_eq!(value(&r, Metric::PingLoss), Some(40.0));
        assert_eq!(value(&r, Metric::PingJitter), Some(8.0));
    }

    #[test]
    fn window_keeps_only_the_last_n() {
        let mut w = PingWindow::new(3);
        for p in [None, None, ms(1), ms(2), ms(3)] {
            w.record(p);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.loss_pct(), Some(0.0));
        assert_eq!(w.rtt_ms(), Some(2.0));
    }

    #[test]
    fn all_lost_reports_only_loss() {
        let mut w = PingWindow::new(5);
        for _ in 0..7 {
            w.record(None);
        }
        assert_eq!(w.consecutive_losses(), 7);
        let r = w.readings();
        assert_eq!(r.len(), 1);
        assert_eq!(value(&r, Metric::PingLoss), Some(100.0));
    }

    #[test]
    fn one_reply_has_no_jitter_and_zero_rtt_is_kept() {
        let mut w = PingWindow::new(5);
        w.record(Some(Duration::ZERO));
        assert_eq!(w.rtt_ms(), Some(0.0));
        assert_eq!(w.jitter_ms(), None);
        assert_eq!(w.consecutive_losses(), 0);
    }
}
