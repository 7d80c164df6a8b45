//! The wall clock the engine reads: payload times, staleness, update schedules,
//! delivery backoff, job and cycle times. It is handed in (`service::run`,
//! `engine::cycle::once`), so a test can run the daemon at a time of its choosing
//! and move it; waiting (the slice timer, timeouts) uses tokio's clock, which a
//! test can pause.

use std::time::SystemTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;

    /// Now, in unix milliseconds.
    fn unix_ms(&self) -> i64 {
        unix_ms(self.now())
    }

    /// Now, in unix seconds.
    fn unix_seconds(&self) -> i64 {
        self.unix_ms().div_euclid(1000)
    }
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// `t` in unix milliseconds (0 before the epoch).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Until `at` on tokio's clock, or forever without one (a timer a `select!` may
/// not have).
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
