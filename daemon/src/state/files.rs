//! What forgewatch keeps under `state_dir` is its user's alone, whatever the umask
//! (HTTP bodies of private repositories, job logs, the API's address): the
//! directory is created 0700, and every file forgewatch owns there (the database,
//! its WAL and shared-memory index, the lock, `listen-address`, the discovery
//! inputs) is created 0600, and made 0600 again when it is found readable by others
//! (an older forgewatch created them under the umask). An existing `state_dir`
//! is left as its operator made it (systemd's `StateDirectoryMode=` included): only
//! one that any user may enter is warned about.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file forgewatch owns under `state_dir`.
const FILE_MODE: u32 = 0o600;
/// The mode of the directories forgewatch creates.
const DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents 0700, whatever the umask; an existing
/// directory is left as it is.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Logs a warning when any user may enter `dir`.
pub fn warn_if_open(dir: &Path) {
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o007 != 0 {
            tracing::warn!(
                state_dir = %dir.display(),
                mode = format!("{mode:04o}"),
                "any user may enter state_dir; its files are private (0600), but `chmod 700` it to hide them"
            );
        }
    }
}

/// Opens `path` for reading and writing, created 0600 when missing (never
/// truncated); an existing file is made private.
pub fn open(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)?;
    restrict_open(&file)?;
    Ok(file)
}

/// Replaces what `path` holds with `contents`, in a private file.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    restrict_open(&file)?;
    file.write_all(contents)?;
    file.flush()
}

/// Makes the file at `path` private if others may read or write it; a missing file
/// is no error.
pub fn restrict(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if loose(&meta) => {
            std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
        }
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn restrict_open(file: &File) -> io::Result<()> {
    if loose(&file.metadata()?) {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Whether the group or others have any access.
fn loose(meta: &std::fs::Metadata) -> bool {
    meta.permissions().mode() & 0o077 != 0
}
