//! Waiting on a condition that has no event to wait on (a file the daemon writes, an
//! endpoint turning ready, a budget refilled by time passing): one polling loop with a
//! deadline, so no test writes its own.

use std::future::Future;
use std::time::Duration;

/// Calls `probe` every 20 ms until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(Duration::from_millis(20), timeout, probe).await
}

/// [`eventually`] with another period (the benchmark probes its daemon rarely, so
/// as not to measure its own probes).
pub async fn eventually_every<T, F, Fut>(
    period: Duration,
    timeout: Duration,
    mut probe: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(period).await;
    }
}
