//! The build history (SPEC §14): every delivery the CI accepted, with the payload it
//! was sent and why, and every result a CI reported, kept `history.keep` (the last
//! delivery of each build however old). A result names its delivery (delivery id,
//! or build key and fingerprint); one for a delivery not (yet) recorded is kept and
//! flagged `unknown` — and adopted if that delivery is recorded later (a CI may
//! report a build's start before our record of its acceptance is committed) —, one
//! for a delivery a newer one of its build replaced is flagged `superseded`. The
//! same result twice is one row. Results never touch fingerprints.

use forgewatch_adapters::results::{BuildState, ReportedResult};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::events::{insert_event, rfc3339};
use super::statuses::{prune_statuses, set_statuses, update_statuses_of};
use super::{State, StateError};
use crate::plan::statuses::{StatusTarget, description};

/// At most this many deliveries in one answer.
pub const BUILDS_LIMIT: i64 = 1000;

/// Which deliveries to list, newest first.
#[derive(Clone, Debug, Default)]
pub struct BuildsQuery {
    pub workspace: Option<String>,
    /// The state of the delivery's last result.
    pub state: Option<BuildState>,
    /// A package the delivery built (`package_names`).
    pub package: Option<String>,
    /// Text in the build key, reason, summary, fingerprint or delivery id (any case).
    pub text: Option<String>,
    /// Unix milliseconds: only deliveries at or after it.
    pub since: Option<i64>,
    pub build_key: Option<String>,
    /// Only each build's last delivery (its last outcome).
    pub latest: bool,
    pub limit: Option<i64>,
}

/// A delivery with its last result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryRow {
    pub build_key: String,
    pub workspace: String,
    pub delivery_id: String,
    pub fingerprint: String,
    pub ci: String,
    /// Why it was sent: the inputs that changed.
    pub reason: String,
    /// RFC 3339.
    pub delivered_at: String,
    pub kind: Option<String>,
    pub revision: Option<String>,
    /// The PR's page, or the repository's for mainline.
    pub revlink: Option<String>,
    pub package_names: Vec<String>,
    /// The state of the last result; `None` until the CI reports one.
    pub state: Option<BuildState>,
    pub url: Option<String>,
    pub summary: Option<String>,
    /// RFC 3339.
    pub result_at: Option<String>,
    /// Every result, oldest first (only in a build's history).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<ResultRow>>,
}

/// One result as it was received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultRow {
    pub state: BuildState,
    pub url: Option<String>,
    pub summary: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub received_at: String,
    /// Where it came from (`buildbot`, `gitlab`, `api`, `command`).
    pub source: String,
    /// `unknown`, `superseded` or none.
    pub flag: Option<String>,
}

/// What recording a result did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultOutcome {
    /// The same result was recorded before: nothing changed.
    pub repeated: bool,
    /// `unknown` (no such delivery) or `superseded` (a newer delivery of its build).
    pub flag: Option<&'static str>,
    /// The delivery it answers: build key, CI target, delivered at (unix ms).
    pub delivery: Option<(String, String, i64)>,
    /// Whether the delivery's last state changed.
    pub changed: bool,
    /// How many commit statuses became due.
    pub statuses: usize,
}

const ROW_COLUMNS: &str =
    "build_key, workspace, delivery_id, fingerprint, ci, reason, delivered_at,
    json_extract(payload, '$.trigger.properties.kind'),
    json_extract(payload, '$.trigger.fields.revision'),
    json_extract(payload, '$.trigger.fields.revlink'),
    json_extract(payload, '$.trigger.properties.package_names'),
    state, url, summary, result_at";

fn row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    let packages: Option<String> = row.get(10)?;
    let state: Option<String> = row.get(11)?;
    Ok(DeliveryRow {
        build_key: row.get(0)?,
        workspace: row.get(1)?,
        delivery_id: row.get(2)?,
        fingerprint: row.get(3)?,
        ci: row.get(4)?,
        reason: row.get(5)?,
        delivered_at: rfc3339(row.get(6)?),
        kind: row.get(7)?,
        revision: row.get(8)?,
        revlink: row.get(9)?,
        package_names: packages
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
        state: state.as_deref().and_then(BuildState::parse),
        url: row.get(12)?,
        summary: row.get(13)?,
        result_at: row.get::<_, Option<i64>>(14)?.map(rfc3339),
        results: None,
    })
}

/// Records the delivery of `build_key` with id `delivery_id` (still in the outbox, in
/// the caller's transaction) in the history, adopts the results that named it
/// before it was recorded, and sets its commit `statuses` to `pending` (or to the
/// state of an adopted result).
pub(super) fn insert_delivery(
    tx: &Transaction<'_>,
    build_key: &str,
    delivery_id: &str,
    statuses: &[StatusTarget],
    at_ms: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO deliveries (delivery_id, build_key, workspace, fingerprint, ci, reason,
           payload, delivered_at)
         SELECT delivery_id, build_key, ?3, fingerprint, ci, reason, payload, ?4 FROM outbox
         WHERE build_key = ?1 AND delivery_id = ?2
         ON CONFLICT (delivery_id) DO NOTHING",
    )?
    .execute(params![
        build_key,
        delivery_id,
        build_key.split('/').next().unwrap_or(build_key),
        at_ms
    ])?;
    let adopted = tx
        .prepare_cached(
            "UPDATE results SET delivery_id = ?1, flag = NULL
             WHERE delivery_id IS NULL AND ref_delivery_id = ?1",
        )?
        .execute([delivery_id])?;
    if adopted > 0 {
        let last = tx
            .prepare_cached(
                "SELECT state, url, summary, received_at FROM results
                 WHERE delivery_id = ?1 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([delivery_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
        tx.execute(
            "UPDATE deliveries SET state = ?2, url = ?3, summary = ?4, result_at = ?5
             WHERE delivery_id = ?1",
            params![delivery_id, last.0, last.1, last.2, last.3],
        )?;
    }
    if !statuses.is_empty() {
        let (state, url, summary) = tx
            .prepare_cached("SELECT state, url, summary FROM deliveries WHERE delivery_id = ?1")?
            .query_row([delivery_id], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
        let state = state
            .as_deref()
            .and_then(BuildState::parse)
            .unwrap_or(BuildState::Pending);
        set_statuses(
            tx,
            statuses,
            delivery_id,
            build_key,
            state,
            url.as_deref(),
            &description(state, summary.as_deref()),
            at_ms,
        )?;
    }
    Ok(())
}

/// The identity of a result: the same one reported twice is one row.
fn digest(reported: &ReportedResult) -> String {
    let value = serde_json::json!([reported.reference, reported.result]);
    hex::encode(Sha256::digest(value.to_string().as_bytes()))
}

/// The delivery a result names: id, build key, CI target, delivered at, its
/// state and url.
type Named = (String, String, String, i64, Option<String>, Option<String>);

fn named_delivery(conn: &Connection, reported: &ReportedResult) -> rusqlite::Result<Option<Named>> {
    let get = |r: &rusqlite::Row<'_>| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    };
    let reference = &reported.reference;
    if let Some(id) = &reference.delivery_id {
        return conn
            .prepare_cached(
                "SELECT delivery_id, build_key, ci, delivered_at, state, url FROM deliveries
                 WHERE delivery_id = ?1",
            )?
            .query_row([id], get)
            .optional();
    }
    let (Some(key), Some(fingerprint)) = (&reference.build_key, &reference.fingerprint) else {
        return Ok(None);
    };
    conn.prepare_cached(
        "SELECT delivery_id, build_key, ci, delivered_at, state, url FROM deliveries
         WHERE build_key = ?1 AND fingerprint = ?2 ORDER BY delivered_at DESC LIMIT 1",
    )?
    .query_row([key, fingerprint], get)
    .optional()
}

impl State {
    /// Records a result received at `at_ms` from `source`, with its event, in one
    /// transaction.
    pub fn record_result(
        &self,
        source: &str,
        reported: &ReportedResult,
        at_ms: i64,
    ) -> Result<ResultOutcome, StateError> {
        let mut outcome = ResultOutcome {
            repeated: true,
            flag: None,
            delivery: None,
            changed: false,
            statuses: 0,
        };
        if self.read_only() {
            return Ok(outcome);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let recorded = (|| -> rusqlite::Result<ResultOutcome> {
            let named = named_delivery(&tx, reported)?;
            let superseded = match &named {
                None => false,
                Some((_, key, _, at, _, _)) => tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM deliveries
                         WHERE build_key = ?1 AND delivered_at > ?2)",
                    )?
                    .query_row(params![key, at], |r| r.get::<_, bool>(0))?,
            };
            outcome.flag = match (&named, superseded) {
                (None, _) => Some("unknown"),
                (Some(_), true) => Some("superseded"),
                (Some(_), false) => None,
            };
            let result = &reported.result;
            let reference = &reported.reference;
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO results (digest, delivery_id, ref_delivery_id, ref_build_key,
                       ref_fingerprint, source, state, url, summary, started_at, finished_at,
                       received_at, flag)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                     ON CONFLICT (digest) DO NOTHING",
                )?
                .execute(params![
                    digest(reported),
                    named.as_ref().map(|n| &n.0),
                    reference.delivery_id,
                    reference.build_key,
                    reference.fingerprint,
                    source,
                    result.state.as_str(),
                    result.url,
                    result.summary,
                    result.started_at,
                    result.finished_at,
                    at_ms,
                    outcome.flag
                ])?;
            if inserted == 0 {
                return Ok(outcome);
            }
            outcome.repeated = false;
            let Some((id, key, ci, delivered_at, state, url)) = named else {
                let message = format!(
                    "{} result for an unknown delivery (delivery {}, build {}, fingerprint {})",
                    result.state,
                    reference.delivery_id.as_deref().unwrap_or("-"),
                    reference.build_key.as_deref().unwrap_or("-"),
                    reference.fingerprint.as_deref().unwrap_or("-"),
                );
                insert_event(&tx, at_ms, "result_unknown", None, None, &message)?;
                return Ok(outcome);
            };
            // A start reported after the end of the same build changes nothing.
            let stale = !result.state.is_final()
                && url == result.url
                && state
                    .as_deref()
                    .and_then(BuildState::parse)
                    .is_some_and(BuildState::is_final);
            outcome.changed = !stale && state.as_deref() != Some(result.state.as_str());
            if !stale {
                tx.prepare_cached(
                    "UPDATE deliveries SET state = ?2, url = ?3, summary = ?4, result_at = ?5
                     WHERE delivery_id = ?1",
                )?
                .execute(params![
                    id,
                    result.state.as_str(),
                    result.url,
                    result.summary,
                    at_ms
                ])?;
                let description = description(result.state, result.summary.as_deref());
                outcome.statuses = update_statuses_of(
                    &tx,
                    &id,
                    result.state,
                    result.url.as_deref(),
                    &description,
                    at_ms,
                )?;
            }
            let workspace = key.split('/').next().unwrap_or(&key).to_owned();
            let message = format!(
                "{}{}{} (delivery {id}{})",
                result.state,
                result
                    .summary
                    .as_deref()
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default(),
                result
                    .url
                    .as_deref()
                    .map(|u| format!(" {u}"))
                    .unwrap_or_default(),
                if superseded {
                    ", superseded by a newer delivery"
                } else {
                    ""
                },
            );
            insert_event(&tx, at_ms, "result", Some(&workspace), Some(&key), &message)?;
            outcome.delivery = Some((key, ci, delivered_at));
            Ok(outcome)
        })()
        .map_err(|e| self.err(e))?;
        crate::crash::point("record-result");
        tx.commit().map_err(|e| self.err(e))?;
        Ok(recorded)
    }

    /// The deliveries `query` asks for, newest first, each with its last result.
    pub fn builds(&self, query: &BuildsQuery) -> Result<Vec<DeliveryRow>, StateError> {
        let conn = self.conn();
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM deliveries
             WHERE (?1 IS NULL OR workspace = ?1) AND (?2 IS NULL OR state = ?2)
               AND delivered_at >= ?3
               AND (?4 IS NULL OR EXISTS (SELECT 1 FROM
                    json_each(payload, '$.trigger.properties.package_names') WHERE value = ?4))
               AND (?5 IS NULL OR instr(lower(build_key || ' ' || reason || ' ' ||
                    ifnull(summary, '') || ' ' || fingerprint || ' ' || delivery_id), lower(?5)) > 0)
               AND (?6 IS NULL OR build_key = ?6)
               AND (NOT ?8 OR NOT EXISTS (SELECT 1 FROM deliveries AS n
                    WHERE n.build_key = deliveries.build_key
                      AND (n.delivered_at, n.rowid) > (deliveries.delivered_at, deliveries.rowid)))
             ORDER BY delivered_at DESC, rowid DESC LIMIT ?7"
        );
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        stmt.query_map(
            params![
                query.workspace,
                query.state.map(BuildState::as_str),
                query.since.unwrap_or(i64::MIN),
                query.package,
                query.text,
                query.build_key,
                query.limit.unwrap_or(100).clamp(0, BUILDS_LIMIT),
                query.latest
            ],
            row,
        )
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// Every result of delivery `delivery_id`, oldest first.
    pub fn results_of(&self, delivery_id: &str) -> Result<Vec<ResultRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT state, url, summary, started_at, finished_at, received_at, source, flag
                 FROM results WHERE delivery_id = ?1 ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let seconds = |s: Option<i64>| s.map(|s| rfc3339(s.saturating_mul(1000)));
        stmt.query_map([delivery_id], |r| {
            let state: String = r.get(0)?;
            Ok(ResultRow {
                state: BuildState::parse(&state).unwrap_or(BuildState::Error),
                url: r.get(1)?,
                summary: r.get(2)?,
                started_at: seconds(r.get(3)?),
                finished_at: seconds(r.get(4)?),
                received_at: rfc3339(r.get(5)?),
                source: r.get(6)?,
                flag: r.get(7)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The overrides (`name`, `remote_branch`) of the last delivery of `key`;
    /// `None` without a delivery.
    pub fn last_overrides(&self, key: &str) -> Result<Option<Vec<(String, String)>>, StateError> {
        let conn = self.conn();
        let found: Option<Option<String>> = conn
            .prepare_cached(
                "SELECT json_extract(payload, '$.trigger.properties.overrides') FROM deliveries
                 WHERE build_key = ?1 ORDER BY delivered_at DESC, rowid DESC LIMIT 1",
            )
            .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        Ok(found.map(|overrides| {
            let list: Vec<serde_json::Map<String, serde_json::Value>> = overrides
                .and_then(|o| serde_json::from_str(&o).ok())
                .unwrap_or_default();
            list.into_iter()
                .flat_map(|entry| entry.into_iter())
                .filter_map(|(name, value)| {
                    let branch = value.get("remote_branch")?.as_str()?.to_owned();
                    Some((name, branch))
                })
                .collect()
        }))
    }

    /// Deletes the deliveries made before `cutoff_ms` but the last of each build,
    /// and the results received before it that belong to no kept delivery; how many
    /// rows went.
    pub fn prune_history(&self, cutoff_ms: i64) -> Result<usize, StateError> {
        if self.read_only() {
            return Ok(0);
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let deliveries = tx
            .execute(
                "DELETE FROM deliveries WHERE delivered_at < ?1 AND delivered_at <
                   (SELECT max(d.delivered_at) FROM deliveries AS d
                    WHERE d.build_key = deliveries.build_key)",
                [cutoff_ms],
            )
            .map_err(|e| self.err(e))?;
        let results = tx
            .execute(
                "DELETE FROM results WHERE received_at < ?1 AND (delivery_id IS NULL OR
                   delivery_id NOT IN (SELECT delivery_id FROM deliveries))",
                [cutoff_ms],
            )
            .map_err(|e| self.err(e))?;
        let statuses = prune_statuses(&tx, cutoff_ms).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(deliveries + results + statuses)
    }
}

#[cfg(test)]
mod tests;
