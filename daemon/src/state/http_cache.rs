//! The HTTP validator store of the forge clients: per credential and URL, the last
//! `ETag`, `Last-Modified`, `Link` next page and body. It lives in the state
//! database so a restart revalidates instead of refetching. The clients reach it as
//! a [`forgewatch_adapters::http::ValidatorStore`], which [`super::Store`] implements.

use forgewatch_adapters::http::CachedResponse;
use rusqlite::{OptionalExtension, params};

use super::State;

impl State {
    /// One URL's row; the body (the bulk of it) only `with_body`. Both statements
    /// run for every request and are prepared once. A failure is logged and answered
    /// as nothing stored (the forge is asked afresh).
    pub fn cached(&self, key: &str, with_body: bool) -> Option<CachedResponse> {
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

    /// Stores one URL's answer; a failure is logged (the request already succeeded).
    pub fn save_cached(&self, key: &str, response: &CachedResponse) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_are_read_with_or_without_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.cached("k", true), None);
        let cached = CachedResponse {
            etag: Some("\"e\"".into()),
            last_modified: Some("Mon, 01 Jan 2024 00:00:00 GMT".into()),
            next_url: Some("n".into()),
            body: b"[]".to_vec(),
        };
        state.save_cached("k", &cached);
        assert_eq!(state.cached("k", true), Some(cached.clone()));
        let validators = CachedResponse {
            body: Vec::new(),
            ..cached
        };
        assert_eq!(state.cached("k", false), Some(validators));
    }
}
