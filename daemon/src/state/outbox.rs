//! The persisted outbox (SPEC §8): one pending delivery per build key, with its
//! delivery id, payload and retry schedule. A build whose fingerprint changed is
//! enqueued before anything is sent; an accepted delivery is recorded and removed
//! from the outbox in one transaction; a newer fingerprint replaces a pending older
//! one. After a crash the outbox is where the restarted daemon resumes.

use forgewatch_adapters::ci::BuildTrigger;
use forgewatch_adapters::results::BuildResult;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::events::insert_event;
use super::history::insert_delivery;
use super::{State, StateError};
use crate::plan::fingerprint::BuildInputs;
use crate::plan::ids::{BuildKey, Fingerprint};
use crate::plan::statuses::StatusTarget;

/// A delivery waiting to be accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub key: BuildKey,
    pub inputs: BuildInputs,
    pub delivery_id: String,
    /// Name of the CI target.
    pub ci: String,
    /// What changed, for people.
    pub reason: String,
    pub trigger: BuildTrigger,
    pub attempts: u32,
    /// Unix milliseconds.
    pub next_attempt: i64,
    pub last_error: Option<String>,
    /// Unix milliseconds: when this fingerprint was enqueued (the start of the cycle
    /// that saw the change, to the second, or the manual trigger); ignored by
    /// [`State::enqueue`], which stamps its `now`.
    pub enqueued_at: i64,
}

impl Pending {
    pub fn fingerprint(&self) -> Fingerprint {
        self.inputs.fingerprint()
    }
}

/// How an attempt at a pending delivery ended, to be recorded (SPEC §8): `message`
/// is the history's line, times are Unix milliseconds.
#[derive(Debug)]
pub enum Attempt {
    /// The CI accepted `item` at `at_ms`.
    Accepted {
        item: Pending,
        at_ms: i64,
        message: String,
        /// The commit statuses it sets (`pending`).
        statuses: Vec<StatusTarget>,
        /// The build's result, when the CI target said it in its answer.
        result: Option<BuildResult>,
    },
    /// The attempt at `item` failed at `at_ms` with `error`; the next one is due at
    /// `next_attempt`.
    Failed {
        item: Pending,
        attempts: u32,
        next_attempt: i64,
        error: String,
        at_ms: i64,
        message: String,
    },
}

/// A pending delivery without its inputs and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingSummary {
    pub key: BuildKey,
    /// Name of the CI target.
    pub ci: String,
    pub delivery_id: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// A pending delivery as the outbox stores it: inputs and payload already
/// serialised, so a cycle that enqueues thousands of builds holds text, not
/// thousands of JSON trees.
#[derive(Clone, Debug)]
pub struct Enqueued {
    pub key: BuildKey,
    pub fingerprint: Fingerprint,
    /// [`BuildInputs::canonical`].
    pub inputs: String,
    pub delivery_id: String,
    pub ci: String,
    pub reason: String,
    /// The [`StoredTrigger`] JSON.
    pub payload: String,
}

impl From<&Pending> for Enqueued {
    fn from(item: &Pending) -> Enqueued {
        let payload = serde_json::to_string(&StoredTriggerRef {
            version: 1,
            trigger: &item.trigger,
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        let inputs = item.inputs.canonical();
        Enqueued {
            key: item.key.clone(),
            fingerprint: Fingerprint::of_bytes(inputs.as_bytes()),
            inputs,
            delivery_id: item.delivery_id.clone(),
            ci: item.ci.clone(),
            reason: item.reason.clone(),
            payload,
        }
    }
}

/// [`StoredTrigger`] as written, without copying the trigger.
#[derive(Serialize)]
struct StoredTriggerRef<'a> {
    version: u32,
    trigger: &'a BuildTrigger,
}

/// The stored payload (version 1).
#[derive(Deserialize)]
struct StoredTrigger {
    version: u32,
    trigger: BuildTrigger,
}

impl State {
    /// Enqueues `items` and drops the pending deliveries of `obsolete` keys (their
    /// build is back to what the CI last accepted), in one transaction. An item
    /// whose fingerprint is already pending keeps its retry schedule.
    pub fn enqueue(
        &self,
        items: &[Enqueued],
        obsolete: &[BuildKey],
        now: i64,
    ) -> Result<(), StateError> {
        if self.read_only() || (items.is_empty() && obsolete.is_empty()) {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO outbox (build_key, fingerprint, inputs, delivery_id, ci, reason, payload,
                   attempts, next_attempt, last_error, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, NULL, ?8)
                 ON CONFLICT (build_key) DO UPDATE SET fingerprint = excluded.fingerprint,
                   inputs = excluded.inputs, delivery_id = excluded.delivery_id, ci = excluded.ci,
                   reason = excluded.reason, payload = excluded.payload, attempts = 0,
                   next_attempt = excluded.next_attempt, last_error = NULL,
                   created_at = excluded.created_at
                 WHERE outbox.fingerprint <> excluded.fingerprint",
            )
            .map_err(|e| self.err(e))?;
        for item in items {
            insert
                .execute(params![
                    item.key.as_str(),
                    item.fingerprint.as_str(),
                    item.inputs,
                    item.delivery_id,
                    item.ci,
                    item.reason,
                    item.payload,
                    now
                ])
                .map_err(|e| self.err(e))?;
        }
        drop(insert);
        for key in obsolete {
            tx.execute("DELETE FROM outbox WHERE build_key = ?1", [key.as_str()])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// A manual trigger: replaces whatever is pending for the key, even with the
    /// same fingerprint (it carries its own delivery id).
    pub fn enqueue_manual(&self, item: &Pending, now: i64) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        self.conn()
            .execute(
                "DELETE FROM outbox WHERE build_key = ?1",
                [item.key.as_str()],
            )
            .map_err(|e| self.err(e))?;
        self.enqueue(&[Enqueued::from(item)], &[], now)
    }

    /// Every pending delivery without its inputs and payload, by build key: what
    /// the sender needs to plan and the status shows.
    pub fn pending_summaries(&self) -> Result<Vec<PendingSummary>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT build_key, ci, delivery_id, attempts, next_attempt, last_error
                 FROM outbox ORDER BY build_key",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |row| {
            Ok(PendingSummary {
                key: BuildKey::from_stored(row.get(0)?),
                ci: row.get(1)?,
                delivery_id: row.get(2)?,
                attempts: row.get(3)?,
                next_attempt: row.get(4)?,
                last_error: row.get(5)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(|e| self.err(e))
    }

    /// The pending delivery of `key`, if any (read just before it is sent, so the
    /// outbox is never all in memory at once). One written by another version is
    /// left alone, with a warning.
    pub fn pending_item(&self, key: &BuildKey) -> Result<Option<Pending>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT inputs, delivery_id, ci, reason, payload, attempts, next_attempt,
                   last_error, created_at FROM outbox WHERE build_key = ?1",
            )
            .map_err(|e| self.err(e))?;
        let row = stmt
            .query_row([key.as_str()], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, u32>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<String>>(7)?,
                    row.get::<_, i64>(8)?,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((
            inputs,
            delivery_id,
            ci,
            reason,
            payload,
            attempts,
            next_attempt,
            last_error,
            enqueued_at,
        )) = row
        else {
            return Ok(None);
        };
        let inputs = BuildInputs::from_stored(&inputs);
        let trigger = serde_json::from_str::<StoredTrigger>(&payload)
            .ok()
            .filter(|t| t.version == 1);
        let (Some(inputs), Some(stored)) = (inputs, trigger) else {
            tracing::warn!(build_key = %key, "leaving a pending delivery written by another version");
            return Ok(None);
        };
        Ok(Some(Pending {
            key: key.clone(),
            inputs,
            delivery_id,
            ci,
            reason,
            trigger: stored.trigger,
            attempts,
            next_attempt,
            last_error,
            enqueued_at,
        }))
    }

    /// The CI accepted `item` at `at_ms`: record its fingerprint as delivered, remove
    /// it from the outbox (unless a newer one replaced it meanwhile), add the
    /// "delivered" event with `message` to the history and set its commit
    /// `statuses` to `pending`, in one transaction.
    pub fn complete_delivery(
        &self,
        item: &Pending,
        at_ms: i64,
        message: &str,
        statuses: &[StatusTarget],
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.prepare_cached(
            "INSERT INTO builds (build_key, fingerprint, inputs, delivery_id, delivered_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (build_key) DO UPDATE SET fingerprint = excluded.fingerprint,
               inputs = excluded.inputs, delivery_id = excluded.delivery_id,
               delivered_at = excluded.delivered_at",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                item.key.as_str(),
                item.fingerprint().as_str(),
                item.inputs.canonical(),
                item.delivery_id,
                at_ms / 1000
            ])
        })
        .and_then(|_| insert_delivery(&tx, item.key.as_str(), &item.delivery_id, statuses, at_ms))
        .and_then(|_| {
            tx.prepare_cached("DELETE FROM outbox WHERE build_key = ?1 AND delivery_id = ?2")
        })
        .and_then(|mut stmt| stmt.execute(params![item.key.as_str(), item.delivery_id]))
        .and_then(|_| {
            insert_event(
                &tx,
                at_ms,
                "delivered",
                Some(item.key.workspace()),
                Some(item.key.as_str()),
                message,
            )
        })
        .map_err(|e| self.err(e))?;
        crate::crash::point("record-delivery");
        tx.commit().map_err(|e| self.err(e))
    }

    /// A delivery attempt failed at `at_ms`: schedule the next one and add the
    /// "delivery_failed" event with `message` to the history, in one transaction.
    pub fn delivery_failed(
        &self,
        item: &Pending,
        attempts: u32,
        next_attempt: i64,
        error: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.prepare_cached(
            "UPDATE outbox SET attempts = ?3, next_attempt = ?4, last_error = ?5
                 WHERE build_key = ?1 AND delivery_id = ?2",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                item.key.as_str(),
                item.delivery_id,
                attempts,
                next_attempt,
                error
            ])
        })
        .and_then(|_| {
            let key = &item.key;
            insert_event(
                &tx,
                at_ms,
                "delivery_failed",
                Some(key.workspace()),
                Some(key.as_str()),
                message,
            )
        })
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}
