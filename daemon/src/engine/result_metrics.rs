//! The `/metrics` counters of results (SPEC §14): results received by CI target
//! and state (`unknown` for a result naming no delivery), and the time from a
//! delivery to its final result as a histogram.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::metrics::histogram::Histogram;

/// The upper bounds of the latency histogram, in seconds (then `+Inf`).
pub const LATENCY_BUCKETS: [f64; 10] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
];

#[derive(Debug)]
pub struct ResultMetrics {
    /// By (CI target, state).
    by_target: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency: Histogram,
}

impl Default for ResultMetrics {
    fn default() -> ResultMetrics {
        ResultMetrics {
            by_target: Mutex::default(),
            latency: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

impl ResultMetrics {
    /// A result in `state` for CI target `ci` (`None`: no known delivery); with
    /// `latency` (seconds from the delivery, final results only).
    pub fn count(&self, ci: Option<&str>, state: &'static str, latency: Option<f64>) {
        let mut counts = self.by_target.lock().unwrap_or_else(|p| p.into_inner());
        let key = (ci.unwrap_or("unknown").to_owned(), state);
        *counts.entry(key).or_default() += 1;
        if let Some(seconds) = latency {
            self.latency.observe(seconds);
        }
    }

    /// Results by (CI target, state).
    pub fn counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.by_target
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The latency histogram (a handle on the same counts).
    pub fn latency(&self) -> Histogram {
        self.latency.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_count_by_target_and_final_ones_are_timed() {
        let metrics = ResultMetrics::default();
        metrics.count(Some("bb"), "success", Some(45.0));
        metrics.count(Some("bb"), "running", None);
        metrics.count(None, "failure", Some(100_000.0));
        let counts = metrics.counts();
        assert_eq!(counts[&("bb".to_owned(), "success")], 1);
        assert_eq!(counts[&("bb".to_owned(), "running")], 1);
        assert_eq!(counts[&("unknown".to_owned(), "failure")], 1);
        let latency = metrics.latency();
        assert_eq!((latency.count(), latency.sum()), (2, 100_045.0));
    }
}
