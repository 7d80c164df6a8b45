//! A workspace subprocess run as a recorded job: the runner's process group with
//! its timeout, the job row (`update` or `discover`) with its timestamped log lines
//! in the state store, so `/api/v1/jobs/ID` serves every run of either kind the
//! same way. Callers decide what the outcome means.

use crate::engine::clock::{Clock, unix_ms};

use forgewatch_workspace_runner::process::{self, Job, LogLine, Termination};
use tokio_util::sync::CancellationToken;

use crate::state::Store;
use crate::state::jobs::{JobEnd, JobLine, JobStatus};

/// Lines of output kept per job.
pub const MAX_LOG_LINES: usize = 10_000;
pub const MAX_LINE_BYTES: usize = 4096;

/// How one recorded run ended.
#[derive(Clone, Debug)]
pub struct JobOutcome {
    pub id: i64,
    pub status: JobStatus,
    /// Exit status, signal, timeout or the reason it could not start.
    pub detail: String,
    /// Unix milliseconds.
    pub ended_at: i64,
}

/// Runs `job` for `workspace` and records it as a job of `kind`.
pub async fn run(
    state: &Store,
    clock: &dyn Clock,
    workspace: &str,
    kind: &str,
    job: &Job,
    cancel: &CancellationToken,
) -> JobOutcome {
    let started = clock.unix_ms();
    let id = state
        .start_job(workspace, kind, started)
        .await
        .unwrap_or_else(|e| {
            tracing::error!("cannot record the job: {e}");
            0
        });
    tracing::info!(job = id, argv = %job.argv.join(" "), "{kind} started");
    let ws = workspace.to_owned();
    let on_line = move |line: &LogLine| {
        tracing::debug!(workspace = %ws, stream = %line.stream.as_str(), "{}", line.text);
    };
    let result = process::run(job, &on_line, cancel).await;
    let ended_at = clock.unix_ms();
    let (status, detail, lines, dropped) = match result {
        Err(e) => (
            JobStatus::Failed,
            format!("cannot start: {e}"),
            Vec::new(),
            0,
        ),
        Ok(outcome) => {
            let (status, detail) = match &outcome.termination {
                Termination::Exited(0) => (JobStatus::Succeeded, "exited with status 0".to_owned()),
                Termination::Exited(code) => {
                    (JobStatus::Failed, format!("exited with status {code}"))
                }
                Termination::Signaled(sig) => {
                    (JobStatus::Failed, format!("killed by signal {sig}"))
                }
                Termination::TimedOut => (
                    JobStatus::TimedOut,
                    format!(
                        "timed out after {}",
                        humantime::format_duration(job.timeout)
                    ),
                ),
                Termination::Cancelled => (
                    JobStatus::Failed,
                    "cancelled: forgewatch is stopping".to_owned(),
                ),
            };
            let lines = outcome
                .lines
                .iter()
                .enumerate()
                .map(|(seq, l)| JobLine {
                    seq: i64::try_from(seq).unwrap_or(i64::MAX),
                    time: unix_ms(l.time),
                    stream: l.stream.as_str().to_owned(),
                    text: l.text.clone(),
                })
                .collect();
            (status, detail, lines, outcome.dropped_lines)
        }
    };
    let end = JobEnd {
        status,
        ended_at,
        detail: Some(detail.clone()),
        lines,
        dropped_lines: dropped,
    };
    if let Err(e) = state.finish_job(id, end).await {
        tracing::error!("cannot record the end of job {id}: {e}");
    }
    JobOutcome {
        id,
        status,
        detail,
        ended_at,
    }
}
