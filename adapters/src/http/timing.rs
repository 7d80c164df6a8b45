//! How long a forge takes to answer: each request's time from being sent to its
//! answer read (or its failure), without the wait for a place under the
//! concurrency cap or the governor. Accumulated per client into fixed buckets as
//! plain data, so the daemon exports a histogram without this crate knowing any
//! metrics library; counts of two clients add up like [`RequestStats`](crate::forge::RequestStats).

use std::time::Duration;

/// The upper bounds of the buckets, in seconds (then everything above).
pub const REQUEST_SECONDS_BUCKETS: [f64; 10] =
    [0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Requests by duration since the client was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestDurations {
    /// Requests per bucket of [`REQUEST_SECONDS_BUCKETS`] (each counted in the first
    /// whose bound it does not exceed, not cumulative), the last one above them all.
    pub buckets: [u64; REQUEST_SECONDS_BUCKETS.len() + 1],
    /// The durations summed, in microseconds.
    pub sum_micros: u64,
    pub count: u64,
}

impl RequestDurations {
    pub fn observe(&mut self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = REQUEST_SECONDS_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(REQUEST_SECONDS_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum_micros = self
            .sum_micros
            .saturating_add(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        self.count += 1;
    }

    pub fn sum_seconds(&self) -> f64 {
        Duration::from_micros(self.sum_micros).as_secs_f64()
    }
}

impl std::ops::Add for RequestDurations {
    type Output = RequestDurations;
    fn add(mut self, other: RequestDurations) -> RequestDurations {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.count += other.count;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duration_lands_in_the_first_bucket_it_fits_and_sums_add() {
        let mut d = RequestDurations::default();
        d.observe(Duration::from_millis(50));
        d.observe(Duration::from_millis(51));
        d.observe(Duration::from_secs(60));
        assert_eq!(d.buckets, [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!((d.count, d.sum_micros), (3, 60_101_000));
        let both = d + d;
        assert_eq!(both.buckets[10], 2);
        assert_eq!((both.count, both.sum_seconds()), (6, 120.202));
    }
}
