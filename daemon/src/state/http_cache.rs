//! The HTTP validator store of the forge clients: per credential and URL, the last
//! `ETag`, `Last-Modified`, `Link` next page and body, and when the row was last
//! used. It lives in the state database so a restart revalidates instead of
//! refetching. The clients reach it as a
//! [`forgewatch_adapters::http::ValidatorStore`] ([`super::store::HttpCache`]).
//!
//! Rows nobody asks for any more (closed PRs, removed targets, rotated credentials)
//! are pruned once unused for the configured retention. A read marks its row used
//! only when the mark is older than [`USE_MARK_STEP`], so a poll is not one write per
//! request; the prune allows for that step, so a row in use is never deleted.

use forgewatch_adapters::http::CachedResponse;
use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

/// How stale a row's `last_used` may get before a read marks it again (seconds).
pub const USE_MARK_STEP: i64 = 600;

impl State {
    /// One URL's row, marked used at `now`; the body (the bulk of it) only
    /// `with_body`. The statements run for every request and are prepared once. A
    /// failure is logged and answered as nothing stored (the forge is asked afresh).
    pub fn cached(&self, key: &str, with_body: bool, now: i64) -> Option<CachedResponse> {
        let sql = if with_body {
            "SELECT etag, last_modified, next_url, body, last_used FROM http_cache WHERE key = ?1"
        } else {
            "SELECT etag, last_modified, next_url, NULL, last_used FROM http_cache WHERE key = ?1"
        };
        let conn = self.conn();
        let result = conn.prepare_cached(sql).and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                let cached = CachedResponse {
                    etag: row.get(0)?,
                    last_modified: row.get(1)?,
                    next_url: row.get(2)?,
                    body: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                };
                Ok((cached, row.get::<_, i64>(4)?))
            })
            .optional()
        });
        let (cached, last_used) = match result {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the HTTP cache; asking the forge afresh");
                return None;
            }
        };
        if !self.read_only && last_used < now - USE_MARK_STEP {
            let marked = conn
                .prepare_cached("UPDATE http_cache SET last_used = ?2 WHERE key = ?1")
                .and_then(|mut stmt| stmt.execute(params![key, now]));
            if let Err(e) = marked {
                tracing::warn!(error = %e, "cannot mark an HTTP cache row used");
            }
        }
        Some(cached)
    }

    /// Stores one URL's answer, used at `now`; a failure is logged (the request
    /// already succeeded).
    pub fn save_cached(&self, key: &str, response: &CachedResponse, now: i64) {
        if self.read_only {
            return;
        }
        let conn = self.conn();
        let result = conn
            .prepare_cached(
                "INSERT INTO http_cache (key, etag, last_modified, next_url, body, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
                   next_url = excluded.next_url, body = excluded.body, last_used = excluded.last_used",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    key,
                    response.etag,
                    response.last_modified,
                    response.next_url,
                    response.body,
                    now
                ])
            });
        drop(conn);
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the HTTP cache");
        }
        crate::crash::point("http-cache-write");
    }

    /// Deletes the rows unused since before `cutoff` (unix seconds), allowing for
    /// [`USE_MARK_STEP`]: a row read since `cutoff` stays. How many were deleted.
    pub fn prune_http_cache(&self, cutoff: i64) -> Result<usize, StateError> {
        if self.read_only {
            return Ok(0);
        }
        self.conn()
            .execute(
                "DELETE FROM http_cache WHERE last_used < ?1",
                [cutoff.saturating_sub(USE_MARK_STEP)],
            )
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn response(etag: &str) -> CachedResponse {
        CachedResponse {
            etag: Some(etag.into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            next_url: Some("n".into()),
            body: b"[]".to_vec(),
        }
    }

    #[test]
    fn validators_are_read_with_or_without_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.cached("k", true, 0), None);
        let cached = response("\"e\"");
        state.save_cached("k", &cached, 0);
        assert_eq!(state.cached("k", true, 0), Some(cached.clone()));
        let validators = CachedResponse {
            body: Vec::new(),
            ..cached
        };
        assert_eq!(state.cached("k", false, 0), Some(validators));
    }

    #[test]
    fn rows_of_closed_prs_are_pruned_after_the_retention_rows_in_use_stay() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let t0 = 1_900_000_000;
        let list = "tok|https://api.github.com/repos/a/b/pulls?state=open";
        let closed = "tok|https://api.github.com/repos/a/b/pulls/7";
        let rotated = "old-tok|https://api.github.com/repos/a/b/pulls?state=open";
        for key in [list, closed, rotated] {
            state.save_cached(key, &response("\"1\""), t0);
        }
        // PR 7 closes: only the list is asked for from then on, every 10 minutes for
        // a week (revalidated without its body, or rewritten when it changed).
        let mut now = t0;
        while now < t0 + 7 * DAY {
            now += 600;
            assert!(state.cached(list, false, now).is_some());
            if (now - t0) % (3 * 3600) == 0 {
                state.save_cached(list, &response("\"2\""), now);
            }
        }
        let retention = 7 * DAY;
        assert_eq!(
            state.prune_http_cache(now - retention).unwrap(),
            0,
            "not yet"
        );
        now += USE_MARK_STEP + 1;
        assert!(state.cached(list, true, now).is_some());
        assert_eq!(state.prune_http_cache(now - retention).unwrap(), 2);
        assert_eq!(state.cached(closed, false, now), None);
        assert_eq!(state.cached(rotated, false, now), None);
        assert_eq!(
            state.cached(list, false, now).and_then(|c| c.etag),
            Some("\"2\"".to_owned())
        );
        // Read at `read`: kept by any prune of what was unused since then, whatever
        // its mark's step; gone once unused for longer than the retention and the step.
        let read = now;
        assert_eq!(state.prune_http_cache(read).unwrap(), 0);
        assert_eq!(state.prune_http_cache(read + USE_MARK_STEP + 1).unwrap(), 1);
    }

    #[test]
    fn a_version_7_database_gains_last_used_its_rows_used_at_the_migration() {
        let dir = tempfile::tempdir().unwrap();
        let conn =
            rusqlite::Connection::open(dir.path().join(super::super::DATABASE_FILE)).unwrap();
        conn.execute_batch(&format!(
            "BEGIN; {} PRAGMA user_version = 7; COMMIT;",
            super::super::schema::MIGRATIONS[..7].join(" ")
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO http_cache (key, etag, body) VALUES ('k', '\"e\"', x'5b5d')",
            [],
        )
        .unwrap();
        drop(conn);
        let state = State::open(dir.path()).unwrap();
        // Marked at the migration (2026 or later), not at the epoch.
        assert_eq!(state.prune_http_cache(1_700_000_000).unwrap(), 0);
        assert_eq!(
            state.cached("k", true, 0).map(|c| (c.etag, c.body)),
            Some((Some("\"e\"".to_owned()), b"[]".to_vec()))
        );
        assert_eq!(state.prune_http_cache(i64::MAX).unwrap(), 1);
    }
}
