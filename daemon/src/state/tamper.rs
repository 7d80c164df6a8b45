//! For the end-to-end tests only (feature `test-hooks`): SQL run against a state
//! database as another program would, to make the foreign and damaged databases
//! forgewatch must refuse, without the tests naming SQLite (only `state/` does).

use std::path::Path;

use rusqlite::Connection;

use super::{StateError, backend_error};

/// Runs `sql` (statements separated by `;`) on the SQLite database at `database`,
/// creating the file if it does not exist.
pub fn execute_batch(database: &Path, sql: &str) -> Result<(), StateError> {
    Connection::open(database)
        .and_then(|conn| conn.execute_batch(sql))
        .map_err(|source| backend_error(database, &source))
}
