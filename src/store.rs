//! Per-host state kept by the engine: current values by source, counter baselines for rates,
//! and bounded history rings.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustc_hash::FxHashMap;

use crate::model::{Kind, Metric, Reading};

/// A fixed-capacity ring of the most recent values (f32: history is for charts).
#[derive(Debug, Clone)]
pub struct Ring {
    buf: Vec<f32>,
    head: usize,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Ring {
            buf: Vec::new(),
            head: 0,
            cap: cap.max(1),
        }
    }
    pub fn push(&mut self, v: f64) {
        let v = v as f32;
        if self.buf.len() < self.cap {
            self.buf.push(v);
        } else {
            self.buf[self.head] = v;
            self.head = (self.head + 1) % self.cap;
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.cap
    }
    /// Values from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = f32> + '_ {
        let (a, b) = self.buf.split_at(self.head);
        b.iter().chain(a.iter()).copied()
    }
    /// The newest `n` values, oldest first.
    pub fn last_n(&self, n: usize) -> Vec<f32> {
        let skip = self.len().saturating_sub(n);
        self.iter().skip(skip).collect()
    }
}

/// Key of a series within one host.
pub type SeriesKey = (Metric, Arc<str>);

/// The history of one host's series. Shared (read-locked) with front ends for charts.
/// One map per metric, keyed by instance, so a lookup borrows the instance string.
#[derive(Debug, Default)]
pub struct HostHistory {
    cap: usize,
    by_metric: Vec<FxHashMap<Arc<str>, Ring>>,
}

impl HostHistory {
    pub fn new(cap: usize) -> Self {
        HostHistory {
            cap,
            by_metric: Vec::new(),
        }
    }
    pub fn record(&mut self, r: &Reading) {
        if !r.metric.info().history {
            return;
        }
        if self.by_metric.is_empty() {
            self.by_metric = vec![FxHashMap::default(); crate::model::CATALOGUE.len()];
        }
        let map = &mut self.by_metric[r.metric as usize];
        match map.get_mut(&*r.instance) {
            Some(ring) => ring.push(r.value),
            None => {
                let mut ring = Ring::new(self.cap);
                ring.push(r.value);
                map.insert(r.instance.clone(), ring);
            }
        }
    }
    pub fn get(&self, metric: Metric, instance: &str) -> Option<&Ring> {
        self.by_metric.get(metric as usize)?.get(instance)
    }
    pub fn series_count(&self) -> usize {
        self.by_metric.iter().map(FxHashMap::len).sum()
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
    fn ring_keeps_the_newest() {
        let mut r = Ring::new(3);
        for v in 1..=5 {
            r.push(f64::from(v));
        }
        assert_eq!(r.iter().collect::<Vec<_>>(), [3.0, 4.0, 5.0]);
        assert_eq!(r.last_n(2), [4.0, 5.0]);
        assert_eq!(r.len(), 3);
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
