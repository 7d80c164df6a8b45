//! The event history served by `GET /api/v1/events` and streamed by
//! `GET /api/v1/events/stream`: triggers, deliveries, update jobs, reloads and
//! errors, oldest first, at least the last [`EVENTS_KEPT`] kept. Ids only grow
//! (`AUTOINCREMENT`), so a reader resumes after the last id it saw.

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{State, StateError};

pub const EVENTS_KEPT: i64 = 10_000;

/// How many events are recorded between two prunings of the oldest.
const PRUNE_EVERY: i64 = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    pub id: i64,
    /// RFC 3339.
    pub time: String,
    pub kind: String,
    pub workspace: Option<String>,
    pub build_key: Option<String>,
    pub message: String,
}

/// Which events to return.
#[derive(Clone, Debug, Default)]
pub struct EventQuery {
    /// Unix milliseconds; only newer events.
    pub since: Option<i64>,
    pub workspace: Option<String>,
    pub limit: Option<i64>,
    /// Only events with a greater id (a stream resuming after the last it sent).
    pub after: Option<i64>,
}

pub(super) fn rfc3339(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Adds an event to the history, in the caller's transaction if it holds one. The
/// oldest are pruned once every [`PRUNE_EVERY`] events, not after each: a busy
/// outbox records one per delivery.
pub(super) fn insert_event(
    conn: &Connection,
    at_ms: i64,
    kind: &str,
    workspace: Option<&str>,
    build_key: Option<&str>,
    message: &str,
) -> rusqlite::Result<()> {
    let id = conn
        .prepare_cached(
            "INSERT INTO events (time, kind, workspace, build_key, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .insert(params![at_ms, kind, workspace, build_key, message])?;
    if id % PRUNE_EVERY == 0 {
        conn.prepare_cached("DELETE FROM events WHERE id <= ?1")?
            .execute([id - EVENTS_KEPT])?;
    }
    Ok(())
}

impl State {
    pub fn record_event(
        &self,
        at_ms: i64,
        kind: &str,
        workspace: Option<&str>,
        build_key: Option<&str>,
        message: &str,
    ) {
        if self.read_only() {
            return;
        }
        let result = insert_event(&self.conn(), at_ms, kind, workspace, build_key, message);
        if let Err(e) = result {
            tracing::warn!("cannot record an event: {e}");
        }
    }

    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, time, kind, workspace, build_key, message FROM events
                 WHERE time > ?1 AND (?2 IS NULL OR workspace = ?2) AND id > ?4
                 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(
            params![
                query.since.unwrap_or(i64::MIN),
                query.workspace,
                query.limit.unwrap_or(EVENTS_KEPT).clamp(0, EVENTS_KEPT),
                query.after.unwrap_or(i64::MIN),
            ],
            |row| {
                Ok(Event {
                    id: row.get(0)?,
                    time: rfc3339(row.get(1)?),
                    kind: row.get(2)?,
                    workspace: row.get(3)?,
                    build_key: row.get(4)?,
                    message: row.get(5)?,
                })
            },
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The id of the newest event, 0 without any.
    pub fn newest_event_id(&self) -> Result<i64, StateError> {
        self.conn()
            .prepare_cached("SELECT coalesce(max(id), 0) FROM events")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_filtered_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        state.record_event(
            1_000,
            "delivered",
            Some("a"),
            Some("a/mainline"),
            "first delivery",
        );
        state.record_event(
            2_000,
            "update_failed",
            Some("b"),
            None,
            "exited with status 1",
        );
        let all = state.events(&EventQuery::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, "delivered");
        assert_eq!(all[0].time, "1970-01-01T00:00:01.000Z");
        let b = state
            .events(&EventQuery {
                workspace: Some("b".into()),
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(b.len(), 1);
        let none = state
            .events(&EventQuery {
                since: Some(i64::MAX - 1),
                ..EventQuery::default()
            })
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn the_oldest_events_go_once_every_prune_every_events() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let count = |state: &State| {
            state
                .conn()
                .query_row("SELECT count(*), min(id) FROM events", [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .unwrap()
        };
        for at in 1..EVENTS_KEPT + PRUNE_EVERY {
            state.record_event(at, "delivered", Some("a"), None, "m");
        }
        assert_eq!(count(&state), (EVENTS_KEPT + PRUNE_EVERY - 1, 1));
        state.record_event(0, "delivered", Some("a"), None, "m");
        assert_eq!(count(&state), (EVENTS_KEPT, PRUNE_EVERY + 1));
        state.record_event(0, "delivered", Some("a"), None, "m");
        assert_eq!(count(&state), (EVENTS_KEPT + 1, PRUNE_EVERY + 1));
    }
}
