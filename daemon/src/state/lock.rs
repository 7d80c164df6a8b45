//! The exclusive lock on `state_dir` (SPEC §6): one daemon (or one `once`) per state
//! directory. The lock is an `flock` on the directory itself, so it cannot be
//! bypassed: a file in it can be deleted and created anew (another inode, another
//! lock), the directory holding the database cannot be while it is in use. The
//! database file is not what is locked either: the lock is taken before the database
//! is opened, or created, and SQLite's own locks on it are of another kind. The file
//! `state_dir/lock` only holds the holder's pid, so a second process can say who
//! holds the lock. The kernel releases the lock when the process dies, so a crash
//! never leaves a stale one.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};

use super::files;

/// The file in `state_dir` holding the pid of the lock's holder.
pub const PID_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("state_dir {dir} is locked by another forgewatch (pid {pid})")]
    Held { dir: PathBuf, pid: String },
    #[error("cannot lock state_dir {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the life of the process; dropping it releases the lock.
pub struct StateLock {
    _dir: Flock<File>,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            dir: state_dir.to_owned(),
            source,
        };
        files::create_dir(state_dir).map_err(io)?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_DIRECTORY.bits())
            .open(state_dir)
            .map_err(io)?;
        let dir = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((_, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                if let Ok(mut file) = File::open(state_dir.join(PID_FILE)) {
                    let _ = file.read_to_string(&mut pid);
                }
                let pid = pid.trim();
                return Err(LockError::Held {
                    dir: state_dir.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        files::write(
            &state_dir.join(PID_FILE),
            format!("{}\n", std::process::id()).as_bytes(),
        )
        .map_err(io)?;
        Ok(StateLock { _dir: dir })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_told_the_first_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).err().unwrap();
        let message = err.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        StateLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn deleting_the_pid_file_does_not_release_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(PID_FILE)).unwrap();
        let err = StateLock::acquire(dir.path()).err().unwrap();
        assert!(
            matches!(&err, LockError::Held { pid, .. } if pid == "unknown"),
            "{err}"
        );
    }
}
