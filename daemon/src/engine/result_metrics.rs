//! The `/metrics` counters of results (SPEC §14): results received by CI target
//! and state (`unknown` for a result naming no delivery), and the time from a
//! delivery to its final result as a histogram.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// The upper bounds of the latency histogram, in seconds (then `+Inf`).
pub const LATENCY_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
];

/// What the counters hold at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultCounts {
    /// By (CI target, state).
    pub by_target: BTreeMap<(String, &'static str), u64>,
    /// Per bucket of [`LATENCY_BUCKETS`], then `+Inf`: cumulative counts.
    pub latency_buckets: Vec<u64>,
    pub latency_sum: f64,
    pub latency_count: u64,
}

#[derive(Debug, Default)]
pub struct ResultMetrics(Mutex<ResultCounts>);

impl ResultMetrics {
    /// A result in `state` for CI target `ci` (`None`: no known delivery); with
    /// `latency` (seconds from the delivery, final results only).
    pub fn count(&self, ci: Option<&str>, state: &'static str, latency: Option<f64>) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ci.unwrap_or("unknown").to_owned(), state);
        *counts.by_target.entry(key).or_default() += 1;
        if let Some(seconds) = latency {
            if counts.latency_buckets.is_empty() {
                counts.latency_buckets = vec![0; LATENCY_BUCKETS.len() + 1];
            }
            for (bucket, bound) in LATENCY_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    counts.latency_buckets[bucket] += 1;
                }
            }
            counts.latency_buckets[LATENCY_BUCKETS.len()] += 1;
            counts.latency_sum += seconds;
            counts.latency_count += 1;
        }
    }

    pub fn counts(&self) -> ResultCounts {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative() {
        let metrics = ResultMetrics::default();
        metrics.count(Some("bb"), "success", Some(45.0));
        metrics.count(Some("bb"), "running", None);
        metrics.count(None, "failure", Some(100_000.0));
        let counts = metrics.counts();
        assert_eq!(counts.by_target[&("bb".to_owned(), "success")], 1);
        assert_eq!(counts.by_target[&("unknown".to_owned(), "failure")], 1);
        assert_eq!(counts.latency_buckets, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2]);
        assert_eq!(counts.latency_count, 2);
    }
}
