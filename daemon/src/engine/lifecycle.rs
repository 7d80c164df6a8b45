//! What the loop tells the service manager about its life (ready, reloading,
//! stopping, a status line, the watchdog). systemd's notify protocol implements it
//! in `cli`; a test may implement it to watch an in-process daemon. The watchdog
//! is fed during long work only while that work makes progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What the loop tells the service manager (systemd, wired in `cli`).
pub trait Lifecycle: Send + Sync {
    /// Start-up or a reload is complete.
    fn ready(&self);
    /// A one-line summary, after each cycle.
    fn status(&self, line: &str);
    /// The loop is alive.
    fn watchdog(&self);
    /// A reload begins; `ready` follows.
    fn reloading(&self);
    /// Shutdown has begun.
    fn stopping(&self);
    /// How often `watchdog` should be called; `None` when nobody listens.
    fn watchdog_interval(&self) -> Option<Duration>;
}

/// The next watchdog tick, or never without a watchdog.
pub(crate) async fn watchdog_tick(
    watchdog: &mut Option<tokio::time::Interval>,
) -> Option<tokio::time::Instant> {
    match watchdog.as_mut() {
        Some(w) => Some(w.tick().await),
        None => std::future::pending().await,
    }
}

/// Drives `work`, feeding the watchdog while `progress` moves.
pub(crate) async fn with_watchdog<T>(
    work: impl std::future::Future<Output = T>,
    progress: &AtomicU64,
    lifecycle: &dyn Lifecycle,
) -> T {
    tokio::pin!(work);
    let mut ticks = lifecycle.watchdog_interval().map(tokio::time::interval);
    let mut seen = progress.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            result = &mut work => return result,
            Some(_) = watchdog_tick(&mut ticks) => {
                let now = progress.load(Ordering::Relaxed);
                if now != seen {
                    seen = now;
                    lifecycle.watchdog();
                }
            }
        }
    }
}
