//! The schema of the SQLite state, and what makes a file a forgewatch state
//! database. The schema is versioned with `PRAGMA user_version` and migrated step
//! by step ([`MIGRATIONS`]); a newer one than this binary knows is refused rather
//! than guessed at.
//!
//! Nothing is accepted silently: SQLite would take an empty file, or someone else's
//! database, for a new one, and every build would be delivered again as a "first
//! delivery". So a missing database is created whole under another name and renamed
//! into place (the database file never exists without its schema, even after a
//! crash), and an existing file is used only if it is an SQLite file ([`probe`])
//! whose schema is every table and column a fresh database of its version has, and
//! which passes SQLite's `quick_check` ([`check`]). Otherwise it is refused, saying
//! what is wrong and what to do; the file is left untouched.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{StateError, backend_error, files};

pub(super) const SCHEMA_VERSION: i64 = 10;

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8] = b"SQLite format 3\0";

/// Schema steps, applied in order: step `i` brings the database to version `i + 1`.
pub(super) const MIGRATIONS: [&str; 10] = [
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
    // The history (SPEC §14): every accepted delivery, with its payload and last
    // result, and every result the CIs reported (times in unix milliseconds).
    "CREATE TABLE deliveries (
       delivery_id TEXT PRIMARY KEY,
       build_key TEXT NOT NULL,
       workspace TEXT NOT NULL,
       fingerprint TEXT NOT NULL,
       ci TEXT NOT NULL,
       reason TEXT NOT NULL,
       payload TEXT NOT NULL,
       delivered_at INTEGER NOT NULL,
       state TEXT,
       url TEXT,
       summary TEXT,
       result_at INTEGER
     );
     CREATE INDEX deliveries_by_key ON deliveries (build_key, delivered_at);
     CREATE INDEX deliveries_by_time ON deliveries (delivered_at);
     CREATE TABLE results (
       id INTEGER PRIMARY KEY AUTOINCREMENT,
       digest TEXT NOT NULL UNIQUE,
       delivery_id TEXT,
       ref_delivery_id TEXT,
       ref_build_key TEXT,
       ref_fingerprint TEXT,
       source TEXT NOT NULL,
       state TEXT NOT NULL,
       url TEXT,
       summary TEXT,
       started_at INTEGER,
       finished_at INTEGER,
       received_at INTEGER NOT NULL,
       flag TEXT
     );
     CREATE INDEX results_by_delivery ON results (delivery_id, id);
     CREATE INDEX results_by_time ON results (received_at);",
    // Commit statuses to set (SPEC §14), one row per commit and context: the newest
    // state wins; due while `sent_version < version`. A repository that refused a
    // status for want of permission is in `status_refusals` until one is accepted.
    "CREATE TABLE statuses (
       host TEXT NOT NULL,
       path TEXT NOT NULL,
       sha TEXT NOT NULL,
       context TEXT NOT NULL,
       delivery_id TEXT NOT NULL,
       build_key TEXT NOT NULL,
       state TEXT NOT NULL,
       target_url TEXT,
       description TEXT NOT NULL,
       version INTEGER NOT NULL,
       sent_version INTEGER NOT NULL DEFAULT 0,
       attempts INTEGER NOT NULL DEFAULT 0,
       next_at INTEGER NOT NULL,
       last_error TEXT,
       updated_at INTEGER NOT NULL,
       PRIMARY KEY (host, path, sha, context)
     );
     CREATE INDEX statuses_due ON statuses (host, next_at) WHERE sent_version < version;
     CREATE INDEX statuses_by_delivery ON statuses (delivery_id);
     CREATE TABLE status_refusals (
       host TEXT NOT NULL,
       path TEXT NOT NULL,
       status INTEGER NOT NULL,
       message TEXT NOT NULL,
       at INTEGER NOT NULL,
       PRIMARY KEY (host, path)
     );",
];

/// Whether a database exists at `path`; one that cannot be an SQLite database (0
/// bytes, another kind of file) is refused without being opened.
pub(super) fn probe(path: &Path) -> Result<bool, StateError> {
    let io = |source| StateError::Io {
        path: path.to_owned(),
        action: "cannot read",
        source,
    };
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    match File::open(path) {
        Ok(file) => file
            .take(SQLITE_HEADER.len() as u64)
            .read_to_end(&mut header)
            .map_err(io)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io(e)),
    };
    match header.len() {
        0 => Err(not_state(path, "0 bytes".to_owned())),
        _ if header != SQLITE_HEADER => Err(not_state(path, "not an SQLite file".to_owned())),
        _ => Ok(true),
    }
}

/// The schema version of the database open on `conn`, once its schema is known to
/// be whole: every table and column of a fresh database of that version, and no
/// damage SQLite's `quick_check` finds. Tables and columns of others' are left alone.
pub(super) fn check(conn: &Connection, path: &Path) -> Result<i64, StateError> {
    let sql = |source| backend_error(path, &source);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found: version,
        });
    }
    let found = tables(conn).map_err(sql)?;
    if version <= 0 {
        let names: Vec<&str> = found.keys().map(String::as_str).collect();
        return Err(not_state(
            path,
            if names.is_empty() {
                "an SQLite database with no tables and no schema version".to_owned()
            } else {
                format!("an SQLite database of other tables: {}", names.join(", "))
            },
        ));
    }
    let expected = Connection::open_in_memory()
        .and_then(|fresh| {
            fresh.execute_batch(&MIGRATIONS[..version as usize].join("\n"))?;
            tables(&fresh)
        })
        .map_err(sql)?;
    let mut problems = differences(&expected, &found);
    if problems.is_empty() {
        problems = quick_check(conn);
    }
    if problems.is_empty() {
        Ok(version)
    } else {
        Err(StateError::Damaged {
            path: path.to_owned(),
            problems: problems.join("; "),
        })
    }
}

/// Brings a database of schema `version` (checked) to [`SCHEMA_VERSION`], one
/// transaction per step.
pub(super) fn migrate(conn: &Connection, path: &Path, version: i64) -> Result<(), StateError> {
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

/// Creates the database at `path`, which does not exist (and refuses to while the
/// write-ahead log of a database that was there remains): made whole as
/// `….new` (private before SQLite writes a byte; its journal takes its mode), then
/// renamed into place. What a crash left of an earlier attempt is replaced.
pub(super) fn create(path: &Path) -> Result<(), StateError> {
    // SQLite would replay another database's committed pages into the new one.
    let log = suffixed(path, "-wal");
    if std::fs::metadata(&log).is_ok_and(|meta| meta.len() > 0) {
        return Err(StateError::OrphanLog { log });
    }
    let fresh = suffixed(path, ".new");
    let io = |action, source| StateError::Io {
        path: fresh.clone(),
        action,
        source,
    };
    for stale in [fresh.clone(), suffixed(&fresh, "-journal")] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("cannot remove", e));
            }
            _ => {}
        }
    }
    drop(files::open(&fresh).map_err(|e| io("cannot create", e))?);
    let sql = |source| backend_error(&fresh, &source);
    let conn = Connection::open_with_flags(
        &fresh,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    migrate(&conn, &fresh, 0)?;
    conn.close().map_err(|(_, source)| sql(source))?;
    std::fs::rename(&fresh, path).map_err(|e| io("cannot rename", e))?;
    // The rename is on disk before anything is recorded in the database.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io("cannot sync the directory of", e))?;
    }
    Ok(())
}

/// `path` with `suffix` appended to its file name (SQLite names its WAL, index and
/// journal so).
pub(super) fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn not_state(path: &Path, why: String) -> StateError {
    StateError::NotState {
        path: path.to_owned(),
        why,
    }
}

/// A column as `PRAGMA table_info` describes it: name, declared type, constraints.
#[derive(Debug, PartialEq, Eq)]
struct Column {
    name: String,
    declared: String,
}

/// Every table of the database but SQLite's own, with its columns in order.
fn tables(conn: &Connection) -> rusqlite::Result<BTreeMap<String, Vec<Column>>> {
    let mut stmt = conn.prepare(
        "SELECT m.name, c.name, c.type, c.\"notnull\", c.pk
         FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS c
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite!_%' ESCAPE '!'
         ORDER BY m.name, c.cid",
    )?;
    let mut tables: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    let rows = stmt.query_map([], |row| {
        let declared = format!(
            "{}{}{}",
            row.get::<_, String>(2)?,
            if row.get::<_, bool>(3)? {
                " NOT NULL"
            } else {
                ""
            },
            if row.get::<_, i64>(4)? > 0 {
                " PRIMARY KEY"
            } else {
                ""
            },
        );
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, declared))
    })?;
    for row in rows {
        let (table, name, declared) = row?;
        tables
            .entry(table)
            .or_default()
            .push(Column { name, declared });
    }
    Ok(tables)
}

/// What `found` lacks of `expected`, or has otherwise, table by table.
fn differences(
    expected: &BTreeMap<String, Vec<Column>>,
    found: &BTreeMap<String, Vec<Column>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, columns) in expected {
        let Some(have) = found.get(table) else {
            problems.push(format!("table {table} is missing"));
            continue;
        };
        for column in columns {
            match have.iter().find(|c| c.name == column.name) {
                None => problems.push(format!("table {table} lacks column {}", column.name)),
                Some(c) if c.declared != column.declared => problems.push(format!(
                    "column {table}.{} is `{}`, not `{}`",
                    column.name, c.declared, column.declared
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

/// What SQLite's `quick_check` (the pages and their structure, without comparing
/// indexes with their tables) finds wrong, at most three of its messages.
fn quick_check(conn: &Connection) -> Vec<String> {
    let found = conn.prepare("PRAGMA quick_check(3)").and_then(|mut stmt| {
        stmt.query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<String>>>()
    });
    match found {
        Ok(lines) if lines == ["ok"] => Vec::new(),
        Ok(lines) => lines
            .into_iter()
            .map(|line| format!("quick_check: {line}"))
            .collect(),
        Err(e) => vec![format!("quick_check failed: {e}")],
    }
}
