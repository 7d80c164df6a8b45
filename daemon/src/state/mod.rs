//! The state store: one SQLite file in `state_dir` (WAL, transactions) holding the
//! HTTP validators and bodies of every forge URL (so a restart costs no rate limit;
//! [`http_cache`]), per build key the last fingerprint the CI accepted with its
//! inputs (here), each workspace's last good package list and update marks
//! ([`workspaces`]), update and discovery job records with their logs ([`jobs`]),
//! the outcome of the last discovery of each open config PR ([`discoveries`]), the
//! forges' rate-limit pauses ([`pauses`]), and the history of deliveries and their
//! results ([`history`]).
//!
//! [`State`] is the SQLite backend: synchronous, one connection. It implements
//! [`Backend`], the operations any backend offers; async code reaches a backend only
//! through [`Store`], which runs every call on the store's own thread, never on
//! the runtime's. Errors are [`StateError`]s: no `rusqlite` type leaves this module.
//!
//! A delivered fingerprint is written in a transaction of its own, only after the
//! CI answered 2xx. The schema is versioned with `PRAGMA user_version` ([`schema`]),
//! and a file that is not a whole forgewatch database of a version this binary knows
//! is refused, never taken for a new one. The files are private ([`files`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

mod backend;
pub mod discoveries;
pub mod events;
pub mod files;
pub mod history;
mod http_cache;
pub mod jobs;
pub mod lock;
mod mergeability;
pub mod outbox;
mod pauses;
mod schema;
pub mod statuses;
mod store;
#[cfg(feature = "test-hooks")]
pub mod tamper;
pub mod workspaces;

pub use backend::Backend;
pub use store::{HttpCache, Store, UnixNow};

use crate::plan::fingerprint::BuildInputs;
use crate::plan::ids::{BuildKey, Fingerprint};
use schema::SCHEMA_VERSION;

const DATABASE_FILE: &str = "state.sqlite3";
/// More than the distinct statements `prepare_cached` is called with.
const STATEMENTS_CACHED: usize = 64;
/// SQLite's page cache, half its default: the file is in the kernel's cache anyway,
/// and this one stays in the store thread's malloc arena (BENCHMARKS.md, peak RSS).
const PAGE_CACHE_KIB: i64 = 1024;

/// What can go wrong with the store, whatever its backend: the backend's own error
/// is kept as its message, with the database it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {message}")]
    Backend { path: PathBuf, message: String },
    #[error(
        "{path}: schema version {found} is newer than this forgewatch supports ({SCHEMA_VERSION}); upgrade forgewatch or restore an older state"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    /// A 0-byte file, another kind of file, someone else's SQLite database.
    #[error(
        "{path} exists but is not a forgewatch state database ({why}); move it away to start from an empty state, or restore it from a backup"
    )]
    NotState { path: PathBuf, why: String },
    /// A forgewatch database lacking part of its schema, or failing SQLite's check.
    #[error(
        "{path}: the state database is damaged: {problems}; restore it from a backup, or move it away to start from an empty state"
    )]
    Damaged { path: PathBuf, problems: String },
    /// The database was moved away without its write-ahead log.
    #[error(
        "the state database is missing but its write-ahead log {log} is there; move the log away too to start from an empty state, or put the database back"
    )]
    OrphanLog { log: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("cannot start the state store's thread: {source}")]
    Thread { source: std::io::Error },
    /// The store's thread is gone (the process is stopping).
    #[error("the state store has stopped")]
    Stopped,
}

/// A SQLite error on the database at `path`, as its message.
fn backend_error(path: &Path, source: &rusqlite::Error) -> StateError {
    StateError::Backend {
        path: path.to_owned(),
        message: source.to_string(),
    }
}

/// What the state knows of a build, without its inputs: the fingerprint the CI last
/// accepted (and when) and the one waiting in the outbox.
#[derive(Clone, Debug, Default)]
pub struct BuildMark {
    pub delivered: Option<Fingerprint>,
    pub delivered_at: Option<i64>,
    pub pending: Option<Fingerprint>,
}

/// What was last delivered for a build key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveredBuild {
    pub fingerprint: Fingerprint,
    /// `None` when the stored inputs are of another version.
    pub inputs: Option<BuildInputs>,
    /// Unix seconds.
    pub delivered_at: Option<i64>,
}

/// The SQLite backend. Its methods block on the database: async code calls them
/// through a [`Store`].
pub struct State {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// Dry runs read the cache and the delivered builds but write nothing.
    read_only: bool,
}

impl State {
    /// Opens the database in `state_dir`, creating it (and the directory) when
    /// missing; a file that is not a whole state database is refused.
    pub fn open(state_dir: &Path) -> Result<State, StateError> {
        let io = |action, path: &Path, source| StateError::Io {
            path: path.to_owned(),
            action,
            source,
        };
        files::create_dir(state_dir)
            .map_err(|e| io("cannot create state directory", state_dir, e))?;
        files::warn_if_open(state_dir);
        let path = state_dir.join(DATABASE_FILE);
        if !schema::probe(&path)? {
            schema::create(&path)?;
        }
        // SQLite gives the WAL and its index the database's mode when it creates them.
        for file in [
            path.clone(),
            schema::suffixed(&path, "-wal"),
            schema::suffixed(&path, "-shm"),
        ] {
            files::restrict(&file).map_err(|e| io("cannot make private", &file, e))?;
        }
        let sql = |source| backend_error(&path, &source);
        // Without `SQLITE_OPEN_CREATE`: a file gone since the probe is not made anew.
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        let version = schema::check(&conn, &path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(sql)?;
        schema::migrate(&conn, &path, version)?;
        // Every statement the daemon repeats stays prepared (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        Ok(State {
            conn: Mutex::new(conn),
            path,
            read_only: false,
        })
    }

    /// For `--dry-run` and `check`: the existing database read-only (refused as
    /// [`State::open`] refuses it), or an empty in-memory one; nothing is created.
    pub fn open_read_only(state_dir: &Path) -> Result<State, StateError> {
        let path = state_dir.join(DATABASE_FILE);
        let sql = |source| backend_error(&path, &source);
        let conn = if schema::probe(&path)? {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sql)?;
            schema::check(&conn, &path)?;
            conn
        } else {
            let conn = Connection::open_in_memory().map_err(sql)?;
            schema::migrate(&conn, &path, 0)?;
            conn
        };
        Ok(State {
            conn: Mutex::new(conn),
            path,
            read_only: true,
        })
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a connection that is still usable.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        backend_error(&self.path, &source)
    }

    pub fn delivered(&self, key: &BuildKey) -> Result<Option<DeliveredBuild>, StateError> {
        let mut found = self.delivered_builds(std::slice::from_ref(key))?;
        Ok(found.remove(key))
    }

    /// What was last delivered for each of `keys` that has a delivery (a cycle reads
    /// the inputs of its changed builds in one call).
    pub fn delivered_builds(
        &self,
        keys: &[BuildKey],
    ) -> Result<HashMap<BuildKey, DeliveredBuild>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT fingerprint, inputs, delivered_at FROM builds WHERE build_key = ?1",
            )
            .map_err(|e| self.err(e))?;
        let mut found = HashMap::new();
        for key in keys {
            let delivered = stmt
                .query_row([key.as_str()], |row| {
                    let fingerprint: String = row.get(0)?;
                    let inputs: String = row.get(1)?;
                    Ok(DeliveredBuild {
                        fingerprint: Fingerprint::from_stored(fingerprint),
                        inputs: BuildInputs::from_stored(&inputs),
                        delivered_at: row.get(2)?,
                    })
                })
                .optional()
                .map_err(|e| self.err(e))?;
            if let Some(delivered) = delivered {
                found.insert(key.clone(), delivered);
            }
        }
        Ok(found)
    }

    /// The delivered and pending fingerprint of every known build, in two queries
    /// (a cycle compares every build with them; the inputs are read only on change).
    pub fn build_marks(&self) -> Result<HashMap<BuildKey, BuildMark>, StateError> {
        let conn = self.conn();
        let mut marks: HashMap<BuildKey, BuildMark> = HashMap::new();
        let mut delivered = conn
            .prepare_cached("SELECT build_key, fingerprint, delivered_at FROM builds")
            .map_err(|e| self.err(e))?;
        let rows = delivered
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<i64>>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        for (key, fingerprint, at) in rows {
            let mark = marks.entry(BuildKey::from_stored(key)).or_default();
            mark.delivered = Some(Fingerprint::from_stored(fingerprint));
            mark.delivered_at = at;
        }
        let mut pending = conn
            .prepare_cached("SELECT build_key, fingerprint FROM outbox")
            .map_err(|e| self.err(e))?;
        let rows = pending
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        for (key, fingerprint) in rows {
            marks.entry(BuildKey::from_stored(key)).or_default().pending =
                Some(Fingerprint::from_stored(fingerprint));
        }
        Ok(marks)
    }

    /// Keys starting with `prefix` of builds delivered or pending.
    pub fn build_keys_with_prefix(&self, prefix: &str) -> Result<Vec<BuildKey>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT build_key FROM builds WHERE build_key >= ?1 AND build_key < ?2
                 UNION SELECT build_key FROM outbox WHERE build_key >= ?1 AND build_key < ?2",
            )
            .map_err(|e| self.err(e))?;
        let keys = stmt
            .query_map([prefix, &prefix_end(prefix)], |row| row.get::<_, String>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(keys.into_iter().map(BuildKey::from_stored).collect())
    }

    /// Forgets builds (closed pull requests), in one transaction.
    pub fn forget_builds(&self, keys: &[BuildKey]) -> Result<(), StateError> {
        if self.read_only || keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        for key in keys {
            tx.execute("DELETE FROM builds WHERE build_key = ?1", [key.as_str()])
                .map_err(|e| self.err(e))?;
            tx.execute("DELETE FROM outbox WHERE build_key = ?1", [key.as_str()])
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }
}

/// The smallest string greater than every string starting with `prefix`, so that
/// a prefix search is a range the primary-key index answers.
fn prefix_end(prefix: &str) -> String {
    let mut end: Vec<char> = prefix.chars().collect();
    while let Some(last) = end.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            end.push(next);
            return end.into_iter().collect();
        }
    }
    // Only a prefix of `char::MAX`es: no upper bound short of infinity.
    "\u{10FFFF}".repeat(prefix.chars().count() + 1)
}

#[cfg(test)]
mod tests;
