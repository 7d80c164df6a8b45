//! The state store: one SQLite file in `state_dir` (WAL, transactions) holding the
//! HTTP validators and bodies of every forge URL (so a restart costs no rate limit;
//! [`http_cache`]), per build key the last fingerprint the CI accepted with its
//! inputs (here), each workspace's last good package list and update marks
//! ([`workspaces`]), update and discovery job records with their logs ([`jobs`]),
//! the outcome of the last discovery of each open config PR ([`discoveries`]), and
//! the forges' rate-limit pauses ([`pauses`]).
//!
//! [`State`] is the SQLite backend: synchronous, one connection. It implements
//! [`Backend`], the operations any backend offers; async code reaches a backend only
//! through [`Store`], which runs every call on the store's own thread, never on
//! the runtime's. Errors are [`StateError`]s: no `rusqlite` type leaves this module.
//!
//! A delivered fingerprint is written in a transaction of its own, only after the
//! CI answered 2xx. The schema is versioned with `PRAGMA user_version`; a newer
//! schema than this binary knows is refused rather than guessed at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

mod backend;
pub mod discoveries;
pub mod events;
mod http_cache;
pub mod jobs;
pub mod lock;
mod mergeability;
pub mod outbox;
mod pauses;
mod store;
pub mod workspaces;

pub use backend::Backend;
pub use store::{HttpCache, Store, UnixNow};

use crate::plan::fingerprint::BuildInputs;
use crate::plan::ids::{BuildKey, Fingerprint};

const SCHEMA_VERSION: i64 = 8;
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
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
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
    /// Opens (creating if needed) the database in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<State, StateError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StateError::CreateDir {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(DATABASE_FILE);
        let sql = |source| backend_error(&path, &source);
        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)
            .map_err(sql)?;
        migrate(&conn, &path)?;
        // Every statement the daemon repeats stays prepared (rusqlite keeps 16).
        conn.set_prepared_statement_cache_capacity(STATEMENTS_CACHED);
        Ok(State {
            conn: Mutex::new(conn),
            path,
            read_only: false,
        })
    }

    /// For `--dry-run`: the existing database read-only, or an empty in-memory one.
    pub fn open_read_only(state_dir: &Path) -> Result<State, StateError> {
        let path = state_dir.join(DATABASE_FILE);
        let sql = |source| backend_error(&path, &source);
        let conn = if path.exists() {
            let conn = Connection::open_with_flags(
                &path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(sql)?;
            check_version(&conn, &path)?;
            conn
        } else {
            let conn = Connection::open_in_memory().map_err(sql)?;
            migrate(&conn, &path)?;
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

fn check_version(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|source| backend_error(path, &source))?;
    if version > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found: version,
        });
    }
    Ok(version)
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

/// Schema steps, applied in order: step `i` brings the database to version `i + 1`.
const MIGRATIONS: [&str; 8] = [
    "CREATE TABLE http_cache (
       key TEXT PRIMARY KEY,
       etag TEXT,
       last_modified TEXT,
       next_url TEXT,
       body BLOB NOT NULL
     );
     CREATE TABLE builds (
       build_key TEXT PRIMARY KEY,
       fingerprint TEXT NOT NULL,
       inputs TEXT NOT NULL,
       delivery_id TEXT NOT NULL,
       delivered_at INTEGER NOT NULL
     );",
    "CREATE TABLE package_lists (
       workspace TEXT PRIMARY KEY,
       entries TEXT NOT NULL,
       updated_at INTEGER NOT NULL
     );
     CREATE TABLE update_marks (
       workspace TEXT PRIMARY KEY,
       marks TEXT NOT NULL
     );
     CREATE TABLE jobs (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       workspace TEXT NOT NULL,
       kind TEXT NOT NULL,
       status TEXT NOT NULL,
       started_at INTEGER NOT NULL,
       ended_at INTEGER,
       detail TEXT,
       dropped_lines INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX jobs_by_workspace ON jobs (workspace, id);
     CREATE TABLE job_lines (
       job_id INTEGER NOT NULL,
       seq INTEGER NOT NULL,
       time INTEGER NOT NULL,
       stream TEXT NOT NULL,
       text TEXT NOT NULL,
       PRIMARY KEY (job_id, seq)
     );",
    "CREATE TABLE mergeability (
       pr TEXT PRIMARY KEY,
       base_sha TEXT NOT NULL,
       head_sha TEXT NOT NULL,
       mergeable INTEGER NOT NULL
     );",
    "CREATE TABLE outbox (
       build_key TEXT PRIMARY KEY,
       fingerprint TEXT NOT NULL,
       inputs TEXT NOT NULL,
       delivery_id TEXT NOT NULL,
       ci TEXT NOT NULL,
       reason TEXT NOT NULL,
       payload TEXT NOT NULL,
       attempts INTEGER NOT NULL DEFAULT 0,
       next_attempt INTEGER NOT NULL,
       last_error TEXT,
       created_at INTEGER NOT NULL
     );",
    "CREATE TABLE events (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       time INTEGER NOT NULL,
       kind TEXT NOT NULL,
       workspace TEXT,
       build_key TEXT,
       message TEXT NOT NULL
     );
     CREATE INDEX events_by_time ON events (time);",
    "CREATE TABLE discoveries (
       workspace TEXT NOT NULL,
       config_pr TEXT NOT NULL,
       record TEXT NOT NULL,
       PRIMARY KEY (workspace, config_pr)
     );",
    "CREATE TABLE forge_pauses (
       origin TEXT PRIMARY KEY,
       until_ms INTEGER NOT NULL,
       reason TEXT NOT NULL,
       backoff_step INTEGER NOT NULL
     );",
    // When each HTTP cache row was last used (unix seconds), so unused rows can be
    // pruned; the rows already there count as used at the migration.
    "ALTER TABLE http_cache ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
     UPDATE http_cache SET last_used = CAST(strftime('%s', 'now') AS INTEGER);",
];

fn migrate(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let version = check_version(conn, path)?;
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let target = index as i64 + 1;
        if version >= target {
            continue;
        }
        conn.execute_batch(&format!(
            "BEGIN; {step} PRAGMA user_version = {target}; COMMIT;"
        ))
        .map_err(|source| backend_error(path, &source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
