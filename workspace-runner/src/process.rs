//! Running workspace update commands (`autoproj update` and the like) so that the
//! daemon never hangs with them (SPEC §12): `git` sometimes waits forever inside such a
//! command, so every job runs in its own process group with a timeout, after which
//! every process of the job is ended (SIGTERM, a grace period, SIGKILL) and reaped. The
//! same happens when the daemon shuts down (the cancellation token), when the job's
//! future is dropped (SIGKILL only), and when the leader exits leaving processes behind.
//!
//! "Every process of the job" includes those that left its process group (`setsid`,
//! `setpgid`: `git` credential helpers, `ssh` control masters, daemonising build
//! tools): each job's processes carry a unique tag in their environment
//! ([`JOB_TAG_VAR`]) and are found in `/proc` (see `members`). A job that succeeded
//! but left a daemon behind has that daemon killed too: a job owns everything it
//! started, and ends with it.
//!
//! The child gets a sanitised environment (see [`child_env`]) plus its tag, stdin from
//! `/dev/null` or from given bytes, and its stdout and stderr are captured line by
//! line with timestamps into a bounded log.
//!
//! Limits: a process that removed the tag from its environment and was orphaned
//! before a scan saw it, or that runs as another user, is not found (only a cgroup
//! catches it; run the daemon with systemd's `KillMode=control-group`); its output is
//! read for at most [`OUTPUT_AFTER_GROUP`] after the job ended. The daemon should call
//! [`become_child_subreaper`] at startup so that orphaned grandchildren are
//! re-parented to it and reaped here, rather than to an init that may not reap them.

mod env;
mod group;
mod members;
mod output;

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use env::{SANITISED_ENV_REMOVED, WATCHDOG_PREFIX, child_env};
pub use members::JOB_TAG_VAR;
pub use output::CUT_MARKER;

use group::Group;
use members::JobTag;

/// How long output is still read after the job's processes ended. Only a process that
/// could not be traced back to the job can keep a pipe open that long.
pub const OUTPUT_AFTER_GROUP: Duration = Duration::from_secs(1);

/// The log line added when output was abandoned after [`OUTPUT_AFTER_GROUP`].
pub const OUTPUT_ABANDONED: &str =
    "forgewatch: output still open after the job's processes ended; stopped reading";

/// Lines in flight between the pipe readers and the collector.
const LINE_CHANNEL: usize = 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct Job {
    /// The program and its arguments; `argv[0]` is looked up in `PATH`. No shell.
    pub argv: Vec<String>,
    /// The working directory.
    pub dir: PathBuf,
    /// Variables added to the child's environment, or overriding inherited ones.
    pub env_set: Vec<(String, String)>,
    /// Variables removed from the child's environment (e.g. forgewatch's own secrets).
    pub env_remove: Vec<String>,
    /// How long the leader may run before the job's processes are ended.
    pub timeout: Duration,
    /// How long the job's processes have between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// `None`: stdin is `/dev/null`. `Some(bytes)`: written to stdin, which is then closed.
    pub stdin: Option<Vec<u8>>,
    /// The log keeps the last `max_log_lines` lines; older ones are counted as dropped.
    pub max_log_lines: usize,
    /// Longer lines are cut to this many bytes (on a character boundary) and marked
    /// with [`CUT_MARKER`], which comes on top of these bytes.
    pub max_line_bytes: usize,
}

/// Which pipe a line came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as logged and stored.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of a job's output, without its line ending.
#[derive(Clone, Debug)]
pub struct LogLine {
    /// When the line was read.
    pub time: SystemTime,
    pub stream: Stream,
    pub text: String,
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The leader exited with this code.
    Exited(i32),
    /// The leader was killed by this signal (not by us).
    Signaled(i32),
    /// The timeout elapsed; the job's processes were killed.
    TimedOut,
    /// The cancellation token fired; the job's processes were killed.
    Cancelled,
}

/// The result of a job that could be started.
#[derive(Debug)]
pub struct Outcome {
    pub termination: Termination,
    /// From the start of the child to the end of the job's processes and output.
    pub duration: Duration,
    /// The last `max_log_lines` lines, stdout and stderr in the order they were read.
    pub lines: Vec<LogLine>,
    /// Lines read but not kept in `lines`.
    pub dropped_lines: u64,
    /// The job's process group id (the leader's pid). Gone when `run` returns, with
    /// every other process of the job, unless they had to be abandoned (a warning is
    /// logged).
    pub pgid: i32,
}

impl Outcome {
    /// Whether the leader exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.termination == Termination::Exited(0)
    }
}

/// Why a job could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started (not found, not executable, `dir` missing…).
    #[error("cannot start `{program}` in {}: {source}", dir.display())]
    Spawn {
        program: String,
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The job has no program.
    #[error("the command is empty")]
    EmptyArgv,
    /// Waiting for the leader failed. Its processes were ended anyway.
    #[error("cannot wait for `{program}`: {source}")]
    Wait {
        program: String,
        #[source]
        source: io::Error,
    },
}

/// Makes this process the reaper of its orphaned descendants
/// (`prctl(PR_SET_CHILD_SUBREAPER)`), so that the grandchildren of a job are reaped by
/// [`run`] instead of by an init that may not reap them (containers). The daemon
/// calls it once at startup.
pub fn become_child_subreaper() -> io::Result<()> {
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)
}

/// Runs `job` to its end and returns how it ended with its log. Returns once no process
/// of the job exists, in its process group or out of it (see the module documentation
/// for the limits).
///
/// `on_line` is called for every line as it is read, on the task that runs this
/// future; it should be cheap (e.g. send the line to a channel). `cancel` ends the job
/// like a timeout, with [`Termination::Cancelled`].
///
/// If this future is dropped before it completes, every process of the job is sent
/// SIGKILL, but not reaped.
pub async fn run(
    job: &Job,
    on_line: &(dyn Fn(&LogLine) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Outcome, RunError> {
    let program = job.argv.first().ok_or(RunError::EmptyArgv)?;
    let span = tracing::info_span!("job", program = %program);
    run_in_span(job, program, on_line, cancel)
        .instrument(span)
        .await
}

async fn run_in_span(
    job: &Job,
    program: &str,
    on_line: &(dyn Fn(&LogLine) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<Outcome, RunError> {
    let spawn_error = |source| RunError::Spawn {
        program: program.to_owned(),
        dir: job.dir.clone(),
        source,
    };
    let start = Instant::now();
    let tag = JobTag::new();
    let mut child = command(job, program, &tag).spawn().map_err(spawn_error)?;
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(Pid::from_raw)
        .ok_or_else(|| spawn_error(io::Error::other("the started process has no pid")))?;
    tracing::debug!(pgid = pgid.as_raw(), "started");
    // Kills every process of the job if this future is dropped before it ends.
    let mut group = Group::new(pgid, tag);

    // Every task is aborted if this future is dropped.
    let mut tasks = JoinSet::new();
    if let (Some(stdin), Some(bytes)) = (child.stdin.take(), job.stdin.clone()) {
        tasks.spawn(write_stdin(stdin, bytes).in_current_span());
    }
    let (tx, rx) = mpsc::channel(LINE_CHANNEL);
    let mut readers = JoinSet::new();
    if let Some(stdout) = child.stdout.take() {
        let reader = output::read_lines(stdout, Stream::Stdout, job.max_line_bytes, tx.clone());
        readers.spawn(reader.in_current_span());
    }
    if let Some(stderr) = child.stderr.take() {
        let reader = output::read_lines(stderr, Stream::Stderr, job.max_line_bytes, tx.clone());
        readers.spawn(reader.in_current_span());
    }

    let supervision = supervise(&mut child, &mut group, job, cancel, readers, tx);
    let collection = output::collect(rx, on_line, job.max_log_lines);
    let (reason, ring) = tokio::join!(supervision, collection);
    tasks.abort_all();

    let leader = group.take_leader();
    let termination = match (reason, leader) {
        (Some(reason), _) => reason,
        (None, Some(Ok(status))) => termination_of(status),
        (None, Some(Err(source))) => {
            return Err(RunError::Wait {
                program: program.to_owned(),
                source,
            });
        }
        (None, None) => {
            return Err(RunError::Wait {
                program: program.to_owned(),
                source: io::Error::other("the leader's status is unknown"),
            });
        }
    };
    let (lines, dropped_lines) = ring.into_parts();
    let duration = start.elapsed();
    tracing::debug!(?termination, ?duration, dropped_lines, "job ended");
    Ok(Outcome {
        termination,
        duration,
        lines,
        dropped_lines,
        pgid: pgid.as_raw(),
    })
}

/// The command for `job`: no shell, a new process group, a sanitised environment
/// with the job's tag (which `job.env_set` cannot override).
fn command(job: &Job, program: &str, tag: &JobTag) -> Command {
    let mut command = Command::new(program);
    command
        .args(&job.argv[1..])
        .current_dir(&job.dir)
        .env_clear()
        .envs(child_env(std::env::vars_os(), job))
        .env(JOB_TAG_VAR, tag.as_str())
        .process_group(0)
        .stdin(if job.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Writes the job's stdin and closes it. A child that exits or closes its stdin
/// without reading everything is not an error.
async fn write_stdin(mut stdin: ChildStdin, bytes: Vec<u8>) {
    match stdin.write_all(&bytes).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
        Err(e) => tracing::debug!(error = %e, "writing the child's stdin failed"),
    }
    drop(stdin);
}

/// Waits for the leader, the timeout or the cancellation; ends the job's processes
/// if any is left; then waits (boundedly) for the output readers. Returns the reason
/// the job was ended by us, if it was; the leader's status is in `group`.
async fn supervise(
    child: &mut Child,
    group: &mut Group,
    job: &Job,
    cancel: &CancellationToken,
    mut readers: JoinSet<()>,
    tx: mpsc::Sender<LogLine>,
) -> Option<Termination> {
    let reason = tokio::select! {
        biased;
        status = child.wait() => {
            group.set_leader(status);
            None
        }
        () = cancel.cancelled() => {
            tracing::info!("cancelled; ending the job's processes");
            Some(Termination::Cancelled)
        }
        () = tokio::time::sleep(job.timeout) => {
            tracing::info!(timeout = ?job.timeout, "timed out; ending the job's processes");
            Some(Termination::TimedOut)
        }
    };
    if reason.is_some() || !group.stays_gone().await {
        if reason.is_none() {
            tracing::info!("the leader exited but processes of the job are left; ending them");
        }
        group.terminate(child, job.kill_grace).await;
    }

    let drained = tokio::time::timeout(OUTPUT_AFTER_GROUP, async {
        while readers.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !drained {
        tracing::warn!("{OUTPUT_ABANDONED}");
        readers.abort_all();
        while readers.join_next().await.is_some() {}
        let note = LogLine {
            time: SystemTime::now(),
            stream: Stream::Stderr,
            text: OUTPUT_ABANDONED.to_owned(),
        };
        // The collector only stops once this sender is dropped, so this cannot fail.
        let _ = tx.send(note).await;
    }
    drop(tx);
    reason
}

fn termination_of(status: ExitStatus) -> Termination {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited(code),
        (None, Some(signal)) => Termination::Signaled(signal),
        // Neither a code nor a signal: not produced by waitpid for a terminated process.
        (None, None) => Termination::Exited(-1),
    }
}
