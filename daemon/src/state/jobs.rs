//! Update job records: every run of a workspace's update command with its status,
//! times and timestamped output lines, kept for the last [`JOBS_KEPT`] runs per
//! workspace, so the HTTP API can serve a job and its log after the fact.

use rusqlite::{OptionalExtension, params};

use super::{State, StateError};

/// Runs kept per workspace; older ones are deleted with their lines.
pub const JOBS_KEPT: i64 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed_out",
        }
    }

    fn parse(s: &str) -> JobStatus {
        match s {
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "timed_out" => JobStatus::TimedOut,
            _ => JobStatus::Failed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: i64,
    pub workspace: String,
    /// `update`.
    pub kind: String,
    pub status: JobStatus,
    /// Unix milliseconds.
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// Why it ended (exit code, signal, timeout, the manifest error).
    pub detail: Option<String>,
    pub dropped_lines: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLine {
    pub seq: i64,
    /// Unix milliseconds.
    pub time: i64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// How a job ended, as recorded by [`State::finish_job`].
#[derive(Clone, Debug)]
pub struct JobEnd {
    pub status: JobStatus,
    pub ended_at: i64,
    pub detail: Option<String>,
    pub lines: Vec<JobLine>,
    pub dropped_lines: u64,
}

impl State {
    /// Records a new running job; its id. Read-only state gives id 0.
    pub fn start_job(
        &self,
        workspace: &str,
        kind: &str,
        started_at: i64,
    ) -> Result<i64, StateError> {
        if self.read_only() {
            return Ok(0);
        }
        let conn = self.conn();
        conn.execute(
            "INSERT INTO jobs (workspace, kind, status, started_at) VALUES (?1, ?2, 'running', ?3)",
            params![workspace, kind, started_at],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records the end of a job and its lines, and prunes old jobs, in one transaction.
    pub fn finish_job(&self, id: i64, end: &JobEnd) -> Result<(), StateError> {
        if self.read_only() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let dropped = i64::try_from(end.dropped_lines).unwrap_or(i64::MAX);
        tx.execute(
            "UPDATE jobs SET status = ?2, ended_at = ?3, detail = ?4, dropped_lines = ?5 WHERE id = ?1",
            params![id, end.status.as_str(), end.ended_at, end.detail, dropped],
        )
        .map_err(|e| self.err(e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO job_lines (job_id, seq, time, stream, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.err(e))?;
            for line in &end.lines {
                insert
                    .execute(params![id, line.seq, line.time, line.stream, line.text])
                    .map_err(|e| self.err(e))?;
            }
        }
        let workspace: String = tx
            .query_row("SELECT workspace FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM job_lines WHERE job_id IN (SELECT id FROM jobs WHERE workspace = ?1
               AND id NOT IN (SELECT id FROM jobs WHERE workspace = ?1 ORDER BY id DESC LIMIT ?2))",
            params![workspace, JOBS_KEPT],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM jobs WHERE workspace = ?1
               AND id NOT IN (SELECT id FROM jobs WHERE workspace = ?1 ORDER BY id DESC LIMIT ?2)",
            params![workspace, JOBS_KEPT],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Jobs still marked running belong to a process that died: mark them failed.
    /// Call it only while holding the `state_dir` lock.
    pub fn fail_interrupted_jobs(&self, now: i64) -> Result<usize, StateError> {
        if self.read_only() {
            return Ok(0);
        }
        self.conn()
            .execute(
                "UPDATE jobs SET status = 'failed', ended_at = ?1,
                   detail = 'interrupted: forgewatch stopped while it ran' WHERE status = 'running'",
                [now],
            )
            .map_err(|e| self.err(e))
    }

    pub fn job(&self, id: i64) -> Result<Option<JobRecord>, StateError> {
        self.conn()
            .query_row(
                "SELECT id, workspace, kind, status, started_at, ended_at, detail, dropped_lines
                 FROM jobs WHERE id = ?1",
                [id],
                row_to_job,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The most recent jobs of `workspace`, newest first.
    pub fn jobs_of(&self, workspace: &str, limit: i64) -> Result<Vec<JobRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, workspace, kind, status, started_at, ended_at, detail, dropped_lines
                 FROM jobs WHERE workspace = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![workspace, limit], row_to_job)
            .and_then(|rows| rows.collect())
            .map_err(|e| self.err(e))
    }

    /// The lines of job `id` at or after `since` (unix ms), in order.
    pub fn job_lines(&self, id: i64, since: i64) -> Result<Vec<JobLine>, StateError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, time, stream, text FROM job_lines WHERE job_id = ?1 AND time >= ?2
                 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        stmt.query_map(params![id, since], |row| {
            Ok(JobLine {
                seq: row.get(0)?,
                time: row.get(1)?,
                stream: row.get(2)?,
                text: row.get(3)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(|e| self.err(e))
    }
}

fn row_to_job(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let status: String = row.get(3)?;
    let dropped: i64 = row.get(7)?;
    Ok(JobRecord {
        id: row.get(0)?,
        workspace: row.get(1)?,
        kind: row.get(2)?,
        status: JobStatus::parse(&status),
        started_at: row.get(4)?,
        ended_at: row.get(5)?,
        detail: row.get(6)?,
        dropped_lines: u64::try_from(dropped).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: i64, time: i64) -> JobLine {
        JobLine {
            seq,
            time,
            stream: "stdout".into(),
            text: format!("line {seq}"),
        }
    }

    #[test]
    fn jobs_are_recorded_with_their_lines_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let first = state.start_job("ws", "update", 1000).unwrap();
        assert_eq!(
            state.job(first).unwrap().unwrap().status,
            JobStatus::Running
        );
        let lines = [line(0, 1000), line(1, 2000), line(2, 3000)];
        state
            .finish_job(
                first,
                &JobEnd {
                    status: JobStatus::TimedOut,
                    ended_at: 4000,
                    detail: Some("timed out after 1s".into()),
                    lines: lines.to_vec(),
                    dropped_lines: 7,
                },
            )
            .unwrap();
        let job = state.job(first).unwrap().unwrap();
        assert_eq!(
            (job.status, job.ended_at, job.dropped_lines),
            (JobStatus::TimedOut, Some(4000), 7)
        );
        assert_eq!(state.job_lines(first, 2000).unwrap(), lines[1..].to_vec());

        for i in 0..JOBS_KEPT {
            let id = state.start_job("ws", "update", 5000 + i).unwrap();
            let end = JobEnd {
                status: JobStatus::Succeeded,
                ended_at: 6000 + i,
                detail: None,
                lines: lines.to_vec(),
                dropped_lines: 0,
            };
            state.finish_job(id, &end).unwrap();
        }
        assert_eq!(state.job(first).unwrap(), None, "the oldest run was pruned");
        assert!(state.job_lines(first, 0).unwrap().is_empty());
        assert_eq!(state.jobs_of("ws", 100).unwrap().len() as i64, JOBS_KEPT);
    }

    #[test]
    fn a_job_left_running_by_a_dead_process_is_failed() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let id = state.start_job("ws", "update", 1).unwrap();
        assert_eq!(state.fail_interrupted_jobs(2).unwrap(), 1);
        let job = state.job(id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Failed);
        assert!(job.detail.unwrap().contains("interrupted"));
    }
}
