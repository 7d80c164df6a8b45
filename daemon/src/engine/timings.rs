//! The histograms of `/metrics` the engine observes as things happen: how long
//! each cycle took, and how long each delivery waited from being enqueued (the
//! start of the cycle that saw its change, to the second, or a manual trigger) to
//! its CI target's 2xx, retries included. They live in [`Metrics`](crate::engine::status::Metrics),
//! which outlives reloads, so they are continuous across them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds of the cycle histogram, in seconds.
pub const CYCLE_BUCKETS: [f64; 11] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Upper bounds of the delivery latency histogram, in seconds (the enqueue time
/// is kept to the second, so finer bounds would mean nothing).
pub const DELIVERY_BUCKETS: [f64; 11] = [
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0,
];

#[derive(Debug)]
pub struct Timings {
    cycles: Histogram,
    /// By CI target.
    deliveries: Mutex<BTreeMap<String, Histogram>>,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            cycles: Histogram::new(CYCLE_BUCKETS),
            deliveries: Mutex::default(),
        }
    }
}

impl Timings {
    /// A cycle ended after `took`.
    pub fn cycle(&self, took: Duration) {
        self.cycles.observe(took.as_secs_f64());
    }

    /// CI target `ci` accepted a delivery enqueued at `enqueued_ms`, at `now_ms`
    /// (Unix milliseconds).
    pub fn delivered(&self, ci: &str, enqueued_ms: i64, now_ms: i64) {
        let seconds = Duration::from_millis(u64::try_from(now_ms - enqueued_ms).unwrap_or(0));
        let mut deliveries = self
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        deliveries
            .entry(ci.to_owned())
            .or_insert_with(|| Histogram::new(DELIVERY_BUCKETS))
            .observe(seconds.as_secs_f64());
    }

    /// The cycle histogram (a handle on the same counts).
    pub fn cycles(&self) -> Histogram {
        self.cycles.clone()
    }

    /// The delivery histograms by CI target (handles on the same counts).
    pub fn deliveries(&self) -> Vec<(String, Histogram)> {
        self.deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(ci, h)| (ci.clone(), h.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_timed_per_target_and_a_clock_going_back_counts_zero() {
        let t = Timings::default();
        t.delivered("bb", 1_000, 4_500);
        t.delivered("bb", 9_000, 8_000);
        t.delivered("hook", 0, 60_000);
        let d = t.deliveries();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].0.as_str(), d[0].1.count(), d[0].1.sum()),
            ("bb", 2, 3.5)
        );
        assert_eq!(
            (d[1].0.as_str(), d[1].1.count(), d[1].1.sum()),
            ("hook", 1, 60.0)
        );
        t.cycle(Duration::from_millis(250));
        assert_eq!((t.cycles().count(), t.cycles().sum()), (1, 0.25));
    }
}
