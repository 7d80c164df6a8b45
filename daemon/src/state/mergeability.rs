//! GitHub's answer to "is this pull request mergeable?", per PR for its latest
//! (base sha, head sha) pair. GitHub computes it lazily on the single-PR endpoint;
//! remembering it means the question is asked once per pair, not once per cycle,
//! and not again after a restart. The answer for an earlier base at the same head
//! is what the engine goes by until GitHub answers for the new base.

use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

impl State {
    /// The remembered answer for `pr` at this head, with the base sha it was
    /// given for.
    pub fn mergeable(
        &self,
        pr: &str,
        head_sha: &str,
    ) -> Result<Option<(String, bool)>, StateError> {
        self.conn()
            .query_row(
                "SELECT base_sha, mergeable FROM mergeability WHERE pr = ?1 AND head_sha = ?2",
                params![pr, head_sha],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remembers the answer for the latest pair of `pr` (older pairs are dropped).
    pub fn save_mergeable(
        &self,
        pr: &str,
        base_sha: &str,
        head_sha: &str,
        mergeable: bool,
    ) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        self.conn()
            .execute(
                "INSERT INTO mergeability (pr, base_sha, head_sha, mergeable) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (pr) DO UPDATE SET base_sha = excluded.base_sha,
                   head_sha = excluded.head_sha, mergeable = excluded.mergeable",
                params![pr, base_sha, head_sha, mergeable],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_answer_of_the_latest_pair_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let known = |base: &str, mergeable| Some((base.to_owned(), mergeable));
        assert_eq!(state.mergeable("gh/a#1", "h1").unwrap(), None);
        state.save_mergeable("gh/a#1", "b1", "h1", true).unwrap();
        assert_eq!(state.mergeable("gh/a#1", "h1").unwrap(), known("b1", true));
        state.save_mergeable("gh/a#1", "b1", "h2", false).unwrap();
        assert_eq!(state.mergeable("gh/a#1", "h1").unwrap(), None);
        assert_eq!(state.mergeable("gh/a#1", "h2").unwrap(), known("b1", false));
        state.save_mergeable("gh/a#1", "b2", "h2", true).unwrap();
        assert_eq!(state.mergeable("gh/a#1", "h2").unwrap(), known("b2", true));
        assert_eq!(state.mergeable("gh/a#2", "h2").unwrap(), None);
    }
}
