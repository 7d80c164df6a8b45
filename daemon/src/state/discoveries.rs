//! The last discovery of each open config PR (SPEC §13), per workspace: for which
//! head and test ref it ran and what it found (the discovered manifest's entries),
//! or why it failed. Persisted so that a restart (or the next `once`) neither runs
//! a discovery again for a head it has seen nor forgets which repositories were
//! watched for a config PR that has closed since. [`super::Store`] reads them all
//! when it opens and keeps them in memory (planning reads them every slice).

use std::collections::BTreeMap;

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::workspaces::StoredPackage;
use super::{State, StateError};

/// The version of [`DiscoveryRecord`]'s JSON; another version is ignored (the
/// discovery runs again).
const RECORD_VERSION: u32 = 1;

/// One config PR's last discovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryRecord {
    /// The config PR, `host/path#number`.
    pub config_pr: String,
    /// The PR head it ran for.
    pub head_sha: String,
    /// The ref the overrides file pointed at (`refs/pull/N/merge`, ...).
    pub test_ref: String,
    /// The entries of the discovered manifest; `Err` with the reason when the
    /// command failed, timed out or wrote no readable manifest.
    pub outcome: Result<Vec<StoredPackage>, String>,
    /// The job that ran it.
    pub job_id: i64,
}

#[derive(Serialize, Deserialize)]
struct Versioned {
    version: u32,
    record: DiscoveryRecord,
}

impl State {
    /// The recorded discoveries of `workspace`, by config PR.
    pub fn discoveries_of(&self, workspace: &str) -> Result<Vec<DiscoveryRecord>, StateError> {
        let mut all = self.discoveries_where(Some(workspace))?;
        Ok(all.remove(workspace).unwrap_or_default())
    }

    /// Every workspace's recorded discoveries, by config PR.
    pub fn discoveries(&self) -> Result<BTreeMap<String, Vec<DiscoveryRecord>>, StateError> {
        self.discoveries_where(None)
    }

    fn discoveries_where(
        &self,
        workspace: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<DiscoveryRecord>>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT workspace, record FROM discoveries WHERE ?1 IS NULL OR workspace = ?1
                 ORDER BY workspace, config_pr",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([workspace], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut records: BTreeMap<String, Vec<DiscoveryRecord>> = BTreeMap::new();
        for row in rows {
            let (workspace, text) = row.map_err(|e| self.err(e))?;
            if let Ok(v) = serde_json::from_str::<Versioned>(&text)
                && v.version == RECORD_VERSION
            {
                records.entry(workspace).or_default().push(v.record);
            }
        }
        Ok(records)
    }

    pub fn save_discovery(
        &self,
        workspace: &str,
        record: &DiscoveryRecord,
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let text = serde_json::to_string(&Versioned {
            version: RECORD_VERSION,
            record: record.clone(),
        })
        .unwrap_or_else(|e| unreachable!("{e}"));
        self.conn()
            .execute(
                "INSERT INTO discoveries (workspace, config_pr, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace, config_pr) DO UPDATE SET record = excluded.record",
                params![workspace, record.config_pr, text],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forgets the discovery of a config PR that is no longer open.
    pub fn forget_discovery(&self, workspace: &str, config_pr: &str) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        self.conn()
            .execute(
                "DELETE FROM discoveries WHERE workspace = ?1 AND config_pr = ?2",
                params![workspace, config_pr],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopening_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let found = DiscoveryRecord {
            config_pr: "github.com/acme/pkgset#3".into(),
            head_sha: "h".into(),
            test_ref: "refs/pull/3/head".into(),
            outcome: Ok(vec![StoredPackage {
                name: "new/pkg".into(),
                url: "https://github.com/acme/r".into(),
                branch: None,
                package_set: None,
            }]),
            job_id: 4,
        };
        let failed = DiscoveryRecord {
            config_pr: "github.com/acme/pkgset#5".into(),
            outcome: Err("timed out after 2s".into()),
            ..found.clone()
        };
        {
            let state = State::open(dir.path()).unwrap();
            state.save_discovery("ws", &found).unwrap();
            state.save_discovery("ws", &failed).unwrap();
            state.save_discovery("other", &failed).unwrap();
        }
        let state = State::open(dir.path()).unwrap();
        assert_eq!(
            state.discoveries_of("ws").unwrap(),
            vec![found.clone(), failed.clone()]
        );
        state.forget_discovery("ws", &found.config_pr).unwrap();
        assert_eq!(state.discoveries_of("ws").unwrap(), vec![failed.clone()]);
        assert_eq!(state.discoveries_of("other").unwrap(), vec![failed.clone()]);
        state.save_discovery("ws", &found).unwrap();
        assert_eq!(
            state.discoveries().unwrap(),
            BTreeMap::from([
                ("other".to_owned(), vec![failed.clone()]),
                ("ws".to_owned(), vec![found, failed]),
            ])
        );
    }
}
