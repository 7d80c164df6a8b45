//! When the HTTP cache and the build history are pruned: at the first cycle, then
//! at most once an hour (`run`; each `once` prunes at its cycle), deleting the cache
//! rows unused for `http_cache_retention` (closed PRs, removed targets, rotated
//! credentials) and the history older than `history.keep`. The prunes themselves
//! are the state store's, writes nobody waits for.

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

    /// Prunes the cache rows unused since `now - retention` and the history older
    /// than `now - history_keep`, when a prune is due.
    pub fn prune_if_due(
        &self,
        state: &Store,
        now: SystemTime,
        retention: Duration,
        history_keep: Duration,
    ) {
        if !self.due(now) {
            return;
        }
        if let Some(cutoff) = now.checked_sub(retention) {
            state.prune_http_cache(unix_ms(cutoff).div_euclid(1000));
        }
        if let Some(cutoff) = now.checked_sub(history_keep) {
            state.prune_history(unix_ms(cutoff));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    use forgewatch_adapters::http::{CachedResponse, ValidatorStore};

    use super::*;

    const DAY: u64 = 86_400;

    #[tokio::test]
    async fn the_row_of_a_closed_pr_is_gone_after_the_retention_the_list_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let t0 = 1_900_000_000;
        let clock = Arc::new(AtomicI64::new(t0));
        let cache = store.http_cache({
            let clock = clock.clone();
            Arc::new(move || clock.load(Ordering::Relaxed))
        });
        let row = CachedResponse {
            etag: Some("W/\"1\"".to_owned()),
            body: b"{}".to_vec(),
            ..CachedResponse::default()
        };
        let list = "t|https://h/pulls?state=open";
        let (closed, looked_at) = ("t|https://h/pulls/7", "t|https://h/pulls/8");
        for key in [list, closed, looked_at] {
            cache.save(key, &row).await;
        }
        // PRs 7 and 8 are closed: for 8 days only the list is revalidated, every hour,
        // and the cache is pruned when due.
        let pruning = CachePruning::default();
        let retention = Duration::from_secs(7 * DAY);
        for hour in 1..=8 * 24 {
            let now = t0 + hour * 3600;
            clock.store(now, Ordering::Relaxed);
            assert!(cache.load_validators(list).await.is_some(), "hour {hour}");
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now.unsigned_abs());
            pruning.prune_if_due(&store, at, retention, retention);
            store.flush().await;
            if hour == 7 * 24 {
                // Unused for exactly the retention: not yet.
                assert!(cache.load_validators(looked_at).await.is_some());
            }
        }
        assert_eq!(cache.load(closed).await, None);
        assert_eq!(cache.load(list).await, Some(row));
    }

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
