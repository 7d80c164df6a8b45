//! What the loop tells the service manager about its life (ready, reloading,
//! stopping, a status line, the watchdog). systemd's notify protocol implements it
//! in `cli`; a test may implement it to watch an in-process daemon.

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
