//! Reading the configuration file and secret files with a size cap, from regular
//! files only: `token_file: /dev/zero` (or a FIFO, or a runaway file) must give a
//! clear error at once, not grow the process until the kernel kills it.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The largest configuration file read: ample for 10,000 packages listed inline.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// The largest secret file read: a token, a password, or a PEM private key.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Why a file was not read; `Display` is a reason that does not name the file, so
/// callers can prefix it with what the file is.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a regular file")]
    NotRegular,
    #[error("it is larger than {} KiB", .0 / 1024)]
    TooLarge(u64),
}

/// The contents of the regular file at `path`, if it holds at most `limit` bytes.
pub fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    // Checked before opening, which blocks on a FIFO, and again on what was opened.
    if !std::fs::metadata(path)?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let file = File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(ReadError::NotRegular);
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_up_to_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, b"12345678").unwrap();
        assert_eq!(read_capped(&file, 8).unwrap(), b"12345678");
        assert!(matches!(read_capped(&file, 7), Err(ReadError::TooLarge(7))));
        for special in [Path::new("/dev/zero"), dir.path()] {
            assert!(
                matches!(read_capped(special, 8), Err(ReadError::NotRegular)),
                "{}",
                special.display()
            );
        }
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(read_capped(&fifo, 8), Err(ReadError::NotRegular)));
        assert_eq!(
            read_capped(&dir.path().join("missing"), 8)
                .unwrap_err()
                .to_string(),
            "No such file or directory (os error 2)"
        );
    }
}
