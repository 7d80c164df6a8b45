//! The exclusive lock on `state_dir` (SPEC §6): one daemon (or one `once`) per state
//! directory. The lock is an `flock` on `state_dir/lock`, which also holds the
//! holder's pid so a second process can say who holds it. The kernel releases it when
//! the process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

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
    _file: Flock<File>,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let io = |source| LockError::Io {
            dir: state_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(state_dir.join("lock"))
            .map_err(io)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
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
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StateLock { _file: file })
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
}
