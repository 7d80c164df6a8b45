//! When the HTTP cache is pruned: at the first cycle, then at most once an hour
//! (`run`; each `once` prunes at its cycle), deleting the rows unused for
//! `http_cache_retention` (closed PRs, removed targets, rotated credentials). The
//! prune itself is the state store's, a write nobody waits for.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::engine::clock::unix_ms;
use crate::state::Store;

/// The least time between two prunes.
const EVERY: Duration = Duration::from_secs(3600);

/// When the last prune was asked for (kept across reloads).
#[derive(Default)]
pub struct CachePruning {
    last: Mutex<Option<SystemTime>>,
}

impl CachePruning {
    /// Whether a prune is due at `now`; if so, it counts as done.
    fn due(&self, now: SystemTime) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| now.duration_since(at).is_ok_and(|d| d >= EVERY));
        if due {
            *last = Some(now);
        }
        due
    }

    /// Prunes the rows unused since `now - retention` when a prune is due.
    pub fn prune_if_due(&self, state: &Store, now: SystemTime, retention: Duration) {
        if let Some(cutoff) = now.checked_sub(retention)
            && self.due(now)
        {
            state.prune_http_cache(unix_ms(cutoff).div_euclid(1000));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_at_first_then_once_an_hour() {
        let pruning = CachePruning::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        assert!(pruning.due(t0));
        assert!(!pruning.due(t0 + Duration::from_secs(3599)));
        assert!(pruning.due(t0 + EVERY));
        // A clock moved back waits for the hour to pass again.
        assert!(!pruning.due(t0));
    }
}
