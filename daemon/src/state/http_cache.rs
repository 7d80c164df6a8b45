//! The HTTP validator store of the forge clients: per credential and URL, the last
//! `ETag`, `Last-Modified`, `Link` next page and body. It lives in the state
//! database so a restart revalidates instead of refetching.

use forgewatch_adapters::http::{CachedResponse, ValidatorStore};
use rusqlite::{OptionalExtension, params};

use super::State;

impl ValidatorStore for State {
    fn load(&self, key: &str) -> Option<CachedResponse> {
        self.cached(key, true)
    }

    fn load_validators(&self, key: &str) -> Option<CachedResponse> {
        self.cached(key, false)
    }

    fn save(&self, key: &str, response: &CachedResponse) {
        if self.read_only {
            return;
        }
        let conn = self.conn();
        let result = conn
            .prepare_cached(
                "INSERT INTO http_cache (key, etag, last_modified, next_url, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified,
                   next_url = excluded.next_url, body = excluded.body",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    key,
                    response.etag,
                    response.last_modified,
                    response.next_url,
                    response.body
                ])
            });
        drop(conn);
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the HTTP cache");
        }
        crate::crash::point("http-cache-write");
    }
}

impl State {
    /// One URL's row; the body (the bulk of it) only `with_body`. Both statements
    /// run for every request and are prepared once.
    fn cached(&self, key: &str, with_body: bool) -> Option<CachedResponse> {
        let sql = if with_body {
            "SELECT etag, last_modified, next_url, body FROM http_cache WHERE key = ?1"
        } else {
            "SELECT etag, last_modified, next_url, NULL FROM http_cache WHERE key = ?1"
        };
        let conn = self.conn();
        let result = conn.prepare_cached(sql).and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                Ok(CachedResponse {
                    etag: row.get(0)?,
                    last_modified: row.get(1)?,
                    next_url: row.get(2)?,
                    body: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                })
            })
            .optional()
        });
        result.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the HTTP cache; asking the forge afresh");
            None
        })
    }
}
