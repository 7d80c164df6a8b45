//! Per-workspace state that outlives the process: the last good package list read
//! from its manifest (a restart with a broken manifest keeps it) and the marks of
//! its update command (config heads at the last success, attempts, failures), so a
//! restart neither forgets a failure's backoff nor reruns a `config_change` update.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{State, StateError};

/// One package of a manifest, as persisted (version 1 of the format).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPackage {
    pub name: String,
    pub url: String,
    pub branch: Option<String>,
    /// The repository id of a package set.
    pub package_set: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredList {
    version: u32,
    entries: Vec<StoredPackage>,
}

/// What is remembered of a workspace's update command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateMarks {
    /// `target → head` of the buildconf and package sets when the last successful
    /// update started: a `config_change` is a difference from these.
    pub config_heads: BTreeMap<String, String>,
    /// Unix seconds.
    pub last_attempt: Option<i64>,
    pub last_success: Option<i64>,
    /// Consecutive failures (backoff), 0 after a success.
    pub failures: u32,
}

impl State {
    /// The last good package list of `workspace`; `None` if it never had one (or it
    /// was written by an unknown version of forgewatch).
    pub fn package_list(&self, workspace: &str) -> Result<Option<Vec<StoredPackage>>, StateError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT entries FROM package_lists WHERE workspace = ?1",
                [workspace],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text.and_then(|t| {
            serde_json::from_str::<StoredList>(&t)
                .ok()
                .filter(|l| l.version == 1)
                .map(|l| l.entries)
        }))
    }

    pub fn save_package_list(
        &self,
        workspace: &str,
        entries: &[StoredPackage],
        now: i64,
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let list = StoredList {
            version: 1,
            entries: entries.to_vec(),
        };
        let text = serde_json::to_string(&list).unwrap_or_else(|e| unreachable!("{e}"));
        self.conn()
            .execute(
                "INSERT INTO package_lists (workspace, entries, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace) DO UPDATE SET entries = excluded.entries,
                   updated_at = excluded.updated_at",
                params![workspace, text, now],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn update_marks(&self, workspace: &str) -> Result<UpdateMarks, StateError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT marks FROM update_marks WHERE workspace = ?1",
                [workspace],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    pub fn save_update_marks(
        &self,
        workspace: &str,
        marks: &UpdateMarks,
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let text = serde_json::to_string(marks).unwrap_or_else(|e| unreachable!("{e}"));
        self.conn()
            .execute(
                "INSERT INTO update_marks (workspace, marks) VALUES (?1, ?2)
                 ON CONFLICT (workspace) DO UPDATE SET marks = excluded.marks",
                params![workspace, text],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_marks_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.package_list("ws").unwrap(), None);
        let list = vec![StoredPackage {
            name: "pkg_set:git:https://x/y".into(),
            url: "https://x/y".into(),
            branch: None,
            package_set: Some("git:https://x/y".into()),
        }];
        state.save_package_list("ws", &list, 1).unwrap();
        assert_eq!(state.package_list("ws").unwrap(), Some(list));
        assert_eq!(state.update_marks("ws").unwrap(), UpdateMarks::default());
        let marks = UpdateMarks {
            config_heads: [("a".to_owned(), "1".to_owned())].into(),
            last_attempt: Some(5),
            last_success: None,
            failures: 2,
        };
        state.save_update_marks("ws", &marks).unwrap();
        assert_eq!(state.update_marks("ws").unwrap(), marks);
    }
}
