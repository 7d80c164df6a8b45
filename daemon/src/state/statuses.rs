//! The status outbox (SPEC §14): the commit statuses forgewatch keeps up to date,
//! one row per commit and context. A delivery the CI accepted sets its rows to
//! `pending` (in the transaction that records the delivery), a result to its state
//! (in the transaction that records the result), so no status is lost to a crash.
//! The newest state wins: a state not yet posted when a newer one comes is never
//! posted; a row is due while the state it holds is not the one last posted. A
//! repository that refuses statuses for want of permission is remembered (one
//! event) until a status is accepted there again.

use forgewatch_adapters::results::BuildState;
use rusqlite::{Transaction, params};
use serde::Serialize;

use super::events::{insert_event, rfc3339};
use super::{State, StateError};
use crate::plan::statuses::StatusTarget;

/// A status to post.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueStatus {
    pub target: StatusTarget,
    pub build_key: String,
    pub state: BuildState,
    pub target_url: Option<String>,
    pub description: String,
    /// Which state of the row this is; recording an attempt names it, so an
    /// attempt at a state a newer one replaced meanwhile changes nothing of the new.
    pub version: i64,
    pub attempts: u32,
}

/// How posting a [`DueStatus`] ended (times in unix milliseconds).
#[derive(Clone, Debug)]
pub enum StatusAttempt {
    Posted {
        status: DueStatus,
        at_ms: i64,
    },
    /// A failure worth retrying (5xx, timeout, rate limit): again at `next_at`.
    Failed {
        status: DueStatus,
        next_at: i64,
        error: String,
        at_ms: i64,
    },
    /// Not sent: the forge's write budget is spent until `next_at` (no attempt).
    Deferred {
        status: DueStatus,
        next_at: i64,
    },
    /// The repository refused it for want of permission; tried again at `next_at`.
    Refused {
        status: DueStatus,
        code: u16,
        message: String,
        next_at: i64,
        at_ms: i64,
    },
}

/// A repository that refused commit statuses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusRefusal {
    /// `HOST/PATH`.
    pub repository: String,
    pub status: u16,
    pub message: String,
    /// RFC 3339.
    pub since: String,
}

/// The status outbox at a glance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusSummary {
    /// Statuses waiting to be posted.
    pub due: i64,
    /// Of those, the ones whose last attempt failed.
    pub failing: i64,
    /// When the next of them is due (RFC 3339).
    pub next_due: Option<String>,
    pub refused: Vec<StatusRefusal>,
}

/// Sets `state` on `targets` for delivery `delivery_id` of `build_key`, in the
/// caller's transaction: each row whose state, link or description changes is due
/// now; the others only learn the delivery they belong to.
#[allow(clippy::too_many_arguments)]
pub(super) fn set_statuses(
    tx: &Transaction<'_>,
    targets: &[StatusTarget],
    delivery_id: &str,
    build_key: &str,
    state: BuildState,
    target_url: Option<&str>,
    description: &str,
    at_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO statuses (host, path, sha, context, delivery_id, build_key, state,
           target_url, description, version, next_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10)
         ON CONFLICT (host, path, sha, context) DO UPDATE SET
           delivery_id = excluded.delivery_id, build_key = excluded.build_key,
           version = version + 1, state = excluded.state,
           target_url = excluded.target_url, description = excluded.description,
           attempts = 0, next_at = excluded.next_at, last_error = NULL,
           updated_at = excluded.updated_at
         WHERE state IS NOT excluded.state OR target_url IS NOT excluded.target_url
           OR description IS NOT excluded.description",
    )?;
    let mut adopt = tx.prepare_cached(
        "UPDATE statuses SET delivery_id = ?5, build_key = ?6
         WHERE host = ?1 AND path = ?2 AND sha = ?3 AND context = ?4",
    )?;
    for t in targets {
        stmt.execute(params![
            t.host,
            t.path,
            t.sha,
            t.context,
            delivery_id,
            build_key,
            state.as_str(),
            target_url,
            description,
            at_ms
        ])?;
        adopt.execute(params![
            t.host,
            t.path,
            t.sha,
            t.context,
            delivery_id,
            build_key
        ])?;
    }
    Ok(())
}

/// Sets `state` on every status of delivery `delivery_id` (in the caller's
/// transaction); how many became due.
pub(super) fn update_statuses_of(
    tx: &Transaction<'_>,
    delivery_id: &str,
    state: BuildState,
    target_url: Option<&str>,
    description: &str,
    at_ms: i64,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(
        "UPDATE statuses SET version = version + 1, state = ?2, target_url = ?3,
           description = ?4, attempts = 0, next_at = ?5, last_error = NULL, updated_at = ?5
         WHERE delivery_id = ?1 AND (state IS NOT ?2 OR target_url IS NOT ?3
           OR description IS NOT ?4)",
    )?
    .execute(params![
        delivery_id,
        state.as_str(),
        target_url,
        description,
        at_ms
    ])
}

/// Deletes the statuses posted before `cutoff_ms` (in the caller's transaction).
pub(super) fn prune_statuses(tx: &Transaction<'_>, cutoff_ms: i64) -> rusqlite::Result<usize> {
    tx.prepare_cached("DELETE FROM statuses WHERE sent_version = version AND updated_at < ?1")?
        .execute([cutoff_ms])
}

fn key_params(t: &StatusTarget) -> [&str; 4] {
    [&t.host, &t.path, &t.sha, &t.context]
}

impl State {
    /// The statuses on `host` due at `now_ms`, the longest waiting first.
    pub fn due_statuses(
        &self,
        host: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueStatus>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT path, sha, context, build_key, state, target_url, description, version,
                   attempts FROM statuses
                 WHERE host = ?1 AND sent_version < version AND next_at <= ?2
                 ORDER BY next_at, rowid LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![host, now_ms, limit], |r| {
                let state: String = r.get(4)?;
                Ok(DueStatus {
                    target: StatusTarget {
                        host: host.to_owned(),
                        path: r.get(0)?,
                        sha: r.get(1)?,
                        context: r.get(2)?,
                    },
                    build_key: r.get(3)?,
                    state: BuildState::parse(&state).unwrap_or(BuildState::Error),
                    target_url: r.get(5)?,
                    description: r.get(6)?,
                    version: r.get(7)?,
                    attempts: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// When the next status on `host` is due (unix ms), if any is waiting.
    pub fn next_status_due(&self, host: &str) -> Result<Option<i64>, StateError> {
        self.conn()
            .prepare_cached(
                "SELECT min(next_at) FROM statuses WHERE host = ?1 AND sent_version < version",
            )
            .and_then(|mut s| s.query_row([host], |r| r.get(0)))
            .map_err(|e| self.err(e))
    }

    /// Records how an attempt ended; `true` when it changed whether the repository
    /// refuses statuses (the caller logs it once).
    pub fn record_status_attempt(&self, attempt: &StatusAttempt) -> Result<bool, StateError> {
        if self.read_only() {
            return Ok(false);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let changed = (|| -> rusqlite::Result<bool> {
            match attempt {
                StatusAttempt::Posted { status, .. } => {
                    let t = &status.target;
                    tx.prepare_cached(
                        "UPDATE statuses SET sent_version = ?5, last_error = NULL
                         WHERE host = ?1 AND path = ?2 AND sha = ?3 AND context = ?4",
                    )?
                    .execute(params![t.host, t.path, t.sha, t.context, status.version])?;
                    let restored = tx
                        .prepare_cached("DELETE FROM status_refusals WHERE host = ?1 AND path = ?2")?
                        .execute([&t.host, &t.path])?;
                    Ok(restored > 0)
                }
                StatusAttempt::Failed {
                    status,
                    next_at,
                    error,
                    ..
                } => {
                    reschedule(&tx, status, status.attempts + 1, *next_at, Some(error))?;
                    Ok(false)
                }
                StatusAttempt::Deferred { status, next_at } => {
                    reschedule(&tx, status, status.attempts, *next_at, None)?;
                    Ok(false)
                }
                StatusAttempt::Refused {
                    status,
                    code,
                    message,
                    next_at,
                    at_ms,
                } => {
                    let error = format!("{code} {message}");
                    reschedule(&tx, status, status.attempts + 1, *next_at, Some(&error))?;
                    let t = &status.target;
                    let new = !tx
                        .prepare_cached(
                            "SELECT EXISTS (SELECT 1 FROM status_refusals
                             WHERE host = ?1 AND path = ?2)",
                        )?
                        .query_row([&t.host, &t.path], |r| r.get::<_, bool>(0))?;
                    tx.prepare_cached(
                        "INSERT INTO status_refusals (host, path, status, message, at)
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (host, path) DO UPDATE SET
                           status = excluded.status, message = excluded.message,
                           at = excluded.at",
                    )?
                    .execute(params![t.host, t.path, code, message, at_ms])?;
                    if new {
                        let text = format!(
                            "{}/{} refused the commit status {} ({code} {message}): the token needs permission to write statuses",
                            t.host, t.path, t.context
                        );
                        let workspace = status.build_key.split('/').next();
                        insert_event(&tx, *at_ms, "status_refused", workspace, None, &text)?;
                    }
                    Ok(new)
                }
            }
        })()
        .map_err(|e| self.err(e))?;
        crate::crash::point("record-status");
        tx.commit().map_err(|e| self.err(e))?;
        Ok(changed)
    }

    /// The repositories of `host` refusing statuses: path, refused last at (unix ms).
    pub fn status_refusals(&self, host: &str) -> Result<Vec<(String, i64)>, StateError> {
        self.conn()
            .prepare_cached("SELECT path, at FROM status_refusals WHERE host = ?1")
            .and_then(|mut s| {
                s.query_map([host], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// Every status of `host` due before `until` waits until then (the write
    /// budget is spent).
    pub fn defer_statuses(&self, host: &str, until: i64) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        self.conn()
            .prepare_cached(
                "UPDATE statuses SET next_at = ?2
                 WHERE host = ?1 AND sent_version < version AND next_at < ?2",
            )
            .and_then(|mut s| s.execute(params![host, until]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// How many statuses wait, and the repositories refusing them.
    pub fn status_summary(&self) -> Result<StatusSummary, StateError> {
        let conn = self.conn();
        let (due, failing, next_due) = conn
            .prepare_cached(
                "SELECT count(*), count(last_error), min(next_at) FROM statuses
                 WHERE sent_version < version",
            )
            .and_then(|mut s| {
                s.query_row([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?))
                })
            })
            .map_err(|e| self.err(e))?;
        let refused = conn
            .prepare_cached(
                "SELECT host, path, status, message, at FROM status_refusals ORDER BY host, path",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(StatusRefusal {
                        repository: format!(
                            "{}/{}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?
                        ),
                        status: r.get(2)?,
                        message: r.get(3)?,
                        since: rfc3339(r.get(4)?),
                    })
                })?
                .collect()
            })
            .map_err(|e| self.err(e))?;
        Ok(StatusSummary {
            due,
            failing,
            next_due: next_due.map(rfc3339),
            refused,
        })
    }
}

/// Schedules `status` again at `next_at`, unless a newer state replaced it.
fn reschedule(
    tx: &Transaction<'_>,
    status: &DueStatus,
    attempts: u32,
    next_at: i64,
    error: Option<&str>,
) -> rusqlite::Result<usize> {
    let [host, path, sha, context] = key_params(&status.target);
    tx.prepare_cached(
        "UPDATE statuses SET attempts = ?6, next_at = ?7, last_error = coalesce(?8, last_error)
         WHERE host = ?1 AND path = ?2 AND sha = ?3 AND context = ?4 AND version = ?5",
    )?
    .execute(params![
        host,
        path,
        sha,
        context,
        status.version,
        attempts,
        next_at,
        error
    ])
}

#[cfg(test)]
mod tests {
    use forgewatch_adapters::results::{BuildResult, ReportedResult, ResultRef};

    use super::*;
    use crate::plan::ids::BuildKey;
    use crate::state::outbox::Enqueued;
    use crate::state::tests::{inputs, pending};

    fn target(sha: &str) -> StatusTarget {
        StatusTarget {
            host: "github.com".into(),
            path: "acme/app".into(),
            sha: sha.into(),
            context: "forgewatch/w".into(),
        }
    }

    fn deliver(state: &State, id: &str, head: &str, sha: &str, at_ms: i64) {
        let item = pending(&BuildKey::from_stored("w/pr/1".into()), &inputs(head), id);
        state.enqueue(&[Enqueued::from(&item)], &[], at_ms).unwrap();
        state
            .complete_delivery(&item, at_ms, "delivered", &[target(sha)])
            .unwrap();
    }

    fn result(id: &str, state: BuildState) -> ReportedResult {
        ReportedResult {
            reference: ResultRef {
                delivery_id: Some(id.into()),
                ..ResultRef::default()
            },
            result: BuildResult {
                state,
                url: Some(format!("https://ci/{id}")),
                summary: None,
                started_at: None,
                finished_at: None,
            },
        }
    }

    fn due(state: &State, now: i64) -> Vec<(String, BuildState, i64)> {
        let due = state.due_statuses("github.com", now, 100).unwrap();
        due.into_iter()
            .map(|d| (d.target.sha, d.state, d.version))
            .collect()
    }

    #[test]
    fn the_newest_state_is_due_once_and_a_superseded_result_sets_none() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        deliver(&state, "d1", "h1", "s1", 1_000);
        let first = state.due_statuses("github.com", 1_000, 100).unwrap();
        assert_eq!(due(&state, 1_000), [("s1".into(), BuildState::Pending, 1)]);
        assert_eq!(first[0].description, "the CI accepted the build");
        // A result before the pending status was posted: only the result is due.
        let outcome = state
            .record_result("api", &result("d1", BuildState::Failure), 2_000)
            .unwrap();
        assert_eq!(outcome.statuses, 1);
        assert_eq!(due(&state, 2_000), [("s1".into(), BuildState::Failure, 2)]);
        // Posting the pending one (an attempt from before) leaves the failure due.
        let posted = |status: DueStatus| StatusAttempt::Posted {
            status,
            at_ms: 2_500,
        };
        assert!(
            !state
                .record_status_attempt(&posted(first[0].clone()))
                .unwrap()
        );
        let now_due = state.due_statuses("github.com", 3_000, 100).unwrap();
        assert_eq!(now_due[0].target_url.as_deref(), Some("https://ci/d1"));
        state
            .record_status_attempt(&posted(now_due[0].clone()))
            .unwrap();
        assert_eq!(due(&state, 3_000), []);
        assert_eq!(state.next_status_due("github.com").unwrap(), None);
        // The same result again sets nothing.
        let again = state
            .record_result("api", &result("d1", BuildState::Failure), 4_000)
            .unwrap();
        assert_eq!((again.repeated, again.statuses), (true, 0));
        // A new delivery for the same commit: the row is its own now; a result of
        // the old delivery changes nothing.
        deliver(&state, "d2", "h2", "s1", 5_000);
        assert_eq!(due(&state, 5_000), [("s1".into(), BuildState::Pending, 3)]);
        let old = state
            .record_result("api", &result("d1", BuildState::Success), 6_000)
            .unwrap();
        assert_eq!((old.flag, old.statuses), (Some("superseded"), 0));
        assert_eq!(due(&state, 6_000), [("s1".into(), BuildState::Pending, 3)]);
    }

    #[test]
    fn failures_wait_and_a_refusing_repository_is_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        deliver(&state, "d1", "h1", "s1", 1_000);
        deliver(&state, "d2", "h2", "s2", 1_000);
        let due_now = state.due_statuses("github.com", 1_000, 100).unwrap();
        assert_eq!(due_now.len(), 2);
        let failed = StatusAttempt::Failed {
            status: due_now[0].clone(),
            next_at: 9_000,
            error: "502".into(),
            at_ms: 1_000,
        };
        state.record_status_attempt(&failed).unwrap();
        assert_eq!(due(&state, 1_000), [("s2".into(), BuildState::Pending, 1)]);
        assert_eq!(state.next_status_due("github.com").unwrap(), Some(1_000));
        let refused = |status: &DueStatus| StatusAttempt::Refused {
            status: status.clone(),
            code: 403,
            message: "Resource not accessible by integration".into(),
            next_at: 5_000,
            at_ms: 1_000,
        };
        assert!(state.record_status_attempt(&refused(&due_now[1])).unwrap());
        assert!(!state.record_status_attempt(&refused(&due_now[1])).unwrap());
        let summary = state.status_summary().unwrap();
        assert_eq!((summary.due, summary.failing), (2, 2));
        assert_eq!(summary.refused.len(), 1);
        assert_eq!(summary.refused[0].repository, "github.com/acme/app");
        let events = state
            .events(&crate::state::events::EventQuery::default())
            .unwrap();
        let refusals = events.iter().filter(|e| e.kind == "status_refused").count();
        assert_eq!(refusals, 1);
        assert_eq!(due(&state, 5_000), [("s2".into(), BuildState::Pending, 1)]);
        // Accepted again: the repository is no longer refusing.
        let again = state.due_statuses("github.com", 9_000, 100).unwrap();
        assert_eq!(again.len(), 2);
        let posted = StatusAttempt::Posted {
            status: again[0].clone(),
            at_ms: 9_000,
        };
        assert!(state.record_status_attempt(&posted).unwrap());
        assert_eq!(state.status_summary().unwrap().refused, []);
    }
}
