//! Per-host state kept by the engine: current values by source, counter baselines for rates,
//! and bounded history rings.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::model::{Kind, Metric, Reading, Source};

/// Most series one source of one host may keep history for (a hostile host reporting
/// thousands of mounts cannot make the history grow without bound).
const MAX_COLUMNS: usize = 512;

/// The history of one source of one host: a ring of rows, one row per sample and one column
/// per series, in one contiguous buffer. Recording a sample writes one row (a few cache
/// lines) instead of touching one allocation per series; values are f32, which charts need.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<(Metric, Arc<str>)>,
    /// The column of each history reading of the previous sample: collectors report series
    /// in the same order every time, so this guess almost always saves the search.
    order: Vec<u32>,
    scratch: Vec<u32>,
    /// `cap` rows of `stride` values; NaN where a series had no value in that sample.
    data: Vec<f32>,
    stride: usize,
    head: usize,
    rows: usize,
}

impl Table {
    fn column_of(&mut self, k: usize, r: &Reading) -> Option<u32> {
        let same =
            |c: &(Metric, Arc<str>)| c.0 == r.metric && (Arc::ptr_eq(&c.1, &r.instance) || c.1 == r.instance);
        if let Some(&c) = self.order.get(k)
            && self.columns.get(c as usize).is_some_and(same)
        {
            return Some(c);
        }
        if let Some(c) = self.columns.iter().position(same) {
            return Some(c as u32);
        }
        if self.columns.len() >= MAX_COLUMNS {
            return None;
        }
        self.columns.push((r.metric, r.instance.clone()));
        Some(self.columns.len() as u32 - 1)
    }

    /// Lays the ring out for the current number of columns (rare: a new series appeared),
    /// keeping the rows recorded so far. All `cap` rows are allocated at once: growing a row
    /// at a time left up to twice the needed capacity and freed holes behind, and RSS at
    /// 1,000 hosts grew by ~27 MB over the 15 minutes the rings take to fill.
    fn relayout(&mut self, cap: usize) {
        let stride = self.columns.len();
        let mut data = vec![f32::NAN; cap * stride];
        if self.stride > 0 {
            for (row, old) in self.data.chunks_exact(self.stride).enumerate() {
                data[row * stride..row * stride + self.stride].copy_from_slice(old);
            }
        }
        self.data = data;
        self.stride = stride;
    }

    fn record(&mut self, cap: usize, readings: &[Reading]) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let kept = readings.iter().filter(|r| r.metric.info().history);
        for (k, r) in kept.clone().enumerate() {
            scratch.push(self.column_of(k, r).unwrap_or(u32::MAX));
        }
        if self.columns.len() != self.stride {
            self.relayout(cap);
        }
        if self.stride > 0 {
            let row = &mut self.data[self.head * self.stride..(self.head + 1) * self.stride];
            row.fill(f32::NAN);
            for (&c, r) in scratch.iter().zip(kept) {
                if let Some(cell) = row.get_mut(c as usize) {
                    *cell = r.value as f32;
                }
            }
            self.head = (self.head + 1) % cap;
            self.rows = (self.rows + 1).min(cap);
        }
        self.scratch = std::mem::replace(&mut self.order, scratch);
    }

    /// The newest `n` values of one series, oldest first (samples without it are skipped).
    fn series(&self, cap: usize, metric: Metric, instance: &str, n: usize) -> Option<Vec<f32>> {
        let c = self
            .columns
            .iter()
            .position(|c| c.0 == metric && &*c.1 == instance)?;
        let first = (self.head + cap - self.rows) % cap;
        let skip = self.rows.saturating_sub(n);
        Some(
            (skip..self.rows)
                .map(|i| self.data[(first + i) % cap * self.stride + c])
                .filter(|v| !v.is_nan())
                .collect(),
        )
    }
}

/// Key of a series within one host.
pub type SeriesKey = (Metric, Arc<str>);

/// The history of one host's series, by source. Shared (read-locked) with front ends.
#[derive(Debug, Default)]
pub struct HostHistory {
    cap: usize,
    tables: [Table; 3],
}

impl HostHistory {
    /// Keeps the last `cap` samples of each source.
    pub fn new(cap: usize) -> Self {
        HostHistory {
            cap: cap.max(1),
            tables: Default::default(),
        }
    }

    fn slot(source: Source) -> usize {
        match source {
            Source::System => 0,
            Source::Ping => 1,
            Source::External => 2,
        }
    }

    /// Records one sample of one source (the series the catalogue marks for history).
    pub fn record(&mut self, source: Source, readings: &[Reading]) {
        let cap = self.cap;
        self.tables[Self::slot(source)].record(cap, readings);
    }

    /// The newest `n` values of one series, oldest first.
    pub fn series(&self, metric: Metric, instance: &str, n: usize) -> Vec<f32> {
        self.tables
            .iter()
            .find_map(|t| t.series(self.cap, metric, instance, n))
            .unwrap_or_default()
    }

    pub fn series_count(&self) -> usize {
        self.tables.iter().map(|t| t.columns.len()).sum()
    }
}

pub type SharedHistory = Arc<RwLock<HostHistory>>;

/// Turns counters into per-second rates, surviving resets and wraps.
#[derive(Debug, Default)]
pub struct RateTracker {
    last: FxHashMap<SeriesKey, (f64, SystemTime)>,
}

const WRAP_32: f64 = 4_294_967_296.0;
const WRAP_64: f64 = 18_446_744_073_709_551_616.0;

impl RateTracker {
    /// For each counter reading that has a rate metric, appends the rate to `out` (when a
    /// previous value exists and the counter did not reset).
    pub fn derive(&mut self, readings: &[Reading], at: SystemTime, out: &mut Vec<Reading>) {
        for r in readings {
            let info = r.metric.info();
            let (Kind::Counter, Some(rate_metric)) = (info.kind, info.rate) else {
                continue;
            };
            let key = (r.metric, r.instance.clone());
            if let Some((prev, prev_at)) = self.last.insert(key, (r.value, at)) {
                let dt = at.duration_since(prev_at).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                if dt <= 0.0 {
                    continue;
                }
                if let Some(delta) = counter_delta(prev, r.value) {
                    out.push(Reading::new(rate_metric, r.instance.clone(), delta / dt));
                }
            }
        }
    }
    pub fn forget(&mut self) {
        self.last.clear();
    }
}

/// The increase of a counter from `prev` to `now`: a wrap of a 32- or 64-bit counter is
/// followed around; anything else that goes down is a reset (no delta this time).
pub fn counter_delta(prev: f64, now: f64) -> Option<f64> {
    if now >= prev {
        return Some(now - prev);
    }
    // A 32-bit counter near its top that comes back small wrapped.
    if prev < WRAP_32 && prev > WRAP_32 * 0.75 && now < WRAP_32 * 0.25 {
        return Some(now + WRAP_32 - prev);
    }
    if prev > WRAP_64 * 0.75 && now < WRAP_64 * 0.25 {
        return Some(now + (WRAP_64 - prev));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn history_keeps_the_newest_samples_per_series() {
        let mut h = HostHistory::new(3);
        for v in 1..=5 {
            let mut readings = vec![Reading::host(Metric::CpuUsage, f64::from(v))];
            // a series that appears late, and one that skips a sample
            if v >= 3 {
                readings.push(Reading::new(Metric::NetRxBps, "new0", f64::from(v * 10)));
            }
            if v != 4 {
                readings.push(Reading::host(Metric::Load1, f64::from(v) / 10.0));
            }
            readings.push(Reading::host(Metric::MemTotal, 1e9)); // no history for totals
            readings.push(Reading::new(Metric::DiskUsedPct, "/", 50.0)); // nor uncharted series
            h.record(Source::System, &readings);
        }
        h.record(Source::Ping, &[Reading::host(Metric::PingRtt, 0.5)]);
        assert_eq!(h.series(Metric::CpuUsage, "", 10), [3.0, 4.0, 5.0]);
        assert_eq!(h.series(Metric::CpuUsage, "", 2), [4.0, 5.0]);
        assert_eq!(h.series(Metric::NetRxBps, "new0", 10), [30.0, 40.0, 50.0]);
        assert_eq!(h.series(Metric::Load1, "", 10), [0.3, 0.5]);
        assert_eq!(h.series(Metric::PingRtt, "", 10), [0.5]);
        assert!(h.series(Metric::MemTotal, "", 10).is_empty());
        assert!(h.series(Metric::DiskUsedPct, "/", 10).is_empty());
        assert_eq!(h.series_count(), 4);
    }

    #[test]
    fn rates_across_reset_and_wrap() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut rt = RateTracker::default();
        let mut out = Vec::new();
        let at = |s| t0 + Duration::from_secs(s);
        let r = |v| vec![Reading::new(Metric::NetRxBytes, "eth0", v)];
        rt.derive(&r(1000.0), at(0), &mut out);
        assert!(out.is_empty(), "no rate from one value");
        rt.derive(&r(3000.0), at(2), &mut out);
        assert_eq!(
            out.pop().map(|r| (r.metric, r.value)),
            Some((Metric::NetRxBps, 1000.0))
        );
        // reset: the counter restarts from zero, no bogus rate
        rt.derive(&r(10.0), at(4), &mut out);
        assert!(out.is_empty());
        rt.derive(&r(210.0), at(6), &mut out);
        assert_eq!(out.pop().map(|r| r.value), Some(100.0));
        // 32-bit wrap
        rt.derive(&r(WRAP_32 - 100.0), at(8), &mut out);
        out.clear();
        rt.derive(&r(100.0), at(10), &mut out);
        assert_eq!(out.pop().map(|r| r.value), Some(100.0));
        // 64-bit wrap
        assert_eq!(counter_delta(WRAP_64 - 4096.0, 4096.0), Some(8192.0));
    }
}
