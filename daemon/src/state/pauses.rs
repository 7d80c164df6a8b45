//! The rate-limit pauses of the forges, keyed by API origin: until when, why, and the
//! backoff step. The adapters' governor saves every change here through its
//! `PauseStore` (implemented by [`super::Store`]), and a forge client built later (a
//! restart, a reload, the next `once`) starts from it, so a pause a forge asked for
//! is respected by whatever process asks next.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use forgewatch_adapters::governor::PauseRecord;
use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

/// Unix milliseconds of `t`, saturating at 0 and `i64::MAX`.
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn row_to_pause(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<PauseRecord> {
    Ok(PauseRecord {
        until: from_unix_ms(row.get(first)?),
        reason: row.get(first + 1)?,
        backoff_step: row.get(first + 2)?,
    })
}

impl State {
    /// Every saved pause, by API origin.
    pub fn pauses(&self) -> Result<BTreeMap<String, PauseRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT origin, until_ms, reason, backoff_step FROM forge_pauses")
            .map_err(|e| self.err(e))?;
        stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row_to_pause(row, 1)?))
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }

    /// The pause saved for `key`; a failure is logged and answered as none.
    pub fn load_pause(&self, key: &str) -> Option<PauseRecord> {
        let conn = self.conn();
        let result = conn
            .prepare_cached(
                "SELECT until_ms, reason, backoff_step FROM forge_pauses WHERE origin = ?1",
            )
            .and_then(|mut stmt| stmt.query_row([key], |row| row_to_pause(row, 0)).optional());
        result.unwrap_or_else(|e| {
            tracing::warn!(forge = %key, error = %e, "cannot read the forge's rate-limit pause");
            None
        })
    }

    /// Saves (`None`: drops) the pause of `key`; a failure is logged.
    pub fn save_pause(&self, key: &str, record: Option<&PauseRecord>) {
        if self.read_only() {
            return;
        }
        let conn = self.conn();
        let result = match record {
            Some(r) => conn.execute(
                "INSERT INTO forge_pauses (origin, until_ms, reason, backoff_step) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (origin) DO UPDATE SET until_ms = excluded.until_ms,
                   reason = excluded.reason, backoff_step = excluded.backoff_step",
                params![key, unix_ms(r.until), r.reason, r.backoff_step],
            ),
            None => conn.execute("DELETE FROM forge_pauses WHERE origin = ?1", [key]),
        };
        if let Err(e) = result {
            tracing::warn!(forge = %key, error = %e, "cannot save the forge's rate-limit pause");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "https://api.github.com";

    fn record(step: u32) -> PauseRecord {
        PauseRecord {
            // Whole milliseconds: what the table keeps.
            until: UNIX_EPOCH + Duration::from_millis(1_900_000_000_123),
            reason: "Retry-After: 60s".to_owned(),
            backoff_step: step,
        }
    }

    #[test]
    fn a_pause_survives_reopening_until_it_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = State::open(dir.path()).unwrap();
            assert_eq!(state.load_pause(ORIGIN), None);
            state.save_pause(ORIGIN, Some(&record(1)));
            state.save_pause(ORIGIN, Some(&record(2)));
        }
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.load_pause(ORIGIN), Some(record(2)));
        assert_eq!(state.load_pause("https://gitlab.example.org"), None);
        assert_eq!(
            state.pauses().unwrap(),
            BTreeMap::from([(ORIGIN.to_owned(), record(2))])
        );
        // Dry runs read it and write nothing.
        let ro = State::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.load_pause(ORIGIN), Some(record(2)));
        ro.save_pause(ORIGIN, None);
        assert_eq!(state.load_pause(ORIGIN), Some(record(2)));
        state.save_pause(ORIGIN, None);
        assert_eq!(state.load_pause(ORIGIN), None);
    }

    #[test]
    fn a_version_6_database_gains_the_forge_pauses_table() {
        let dir = tempfile::tempdir().unwrap();
        let state = crate::state::tests::migrated_from(6, dir.path());
        assert_eq!(state.load_pause(ORIGIN), None);
        state.save_pause(ORIGIN, Some(&record(3)));
        assert_eq!(state.load_pause(ORIGIN), Some(record(3)));
    }
}
