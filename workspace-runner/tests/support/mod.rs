//! Shared set-up of the runner's integration tests: a temporary directory in a test
//! process that is a child subreaper (as the daemon is), a job with generous limits,
//! the fixtures, and finding a test's processes by a marker in their environment.

#![allow(dead_code)] // each test binary uses its own part of this module
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forgewatch_workspace_runner::process::{
    Job, LogLine, Outcome, Stream, become_child_subreaper, run,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Slack on top of timeout + grace for a job to be ended and reaped.
pub const SLACK: Duration = Duration::from_secs(2);

/// The environment variable that marks the processes of one test.
pub const MARKER: &str = "FW_RUNNER_TEST_MARKER";

pub fn setup() -> TempDir {
    become_child_subreaper().unwrap();
    tempfile::tempdir().unwrap()
}

pub fn job(dir: &Path, argv: &[&str]) -> Job {
    Job {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        dir: dir.to_owned(),
        env_set: Vec::new(),
        env_remove: Vec::new(),
        timeout: Duration::from_secs(20),
        kill_grace: Duration::from_secs(1),
        stdin: None,
        max_log_lines: 1000,
        max_line_bytes: 4096,
    }
}

pub fn fixture(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    path.to_str().unwrap().to_owned()
}

pub fn texts(lines: &[LogLine], stream: Stream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.text.as_str())
        .collect()
}

/// Runs a job without cancellation and returns its outcome and the lines `on_line` saw.
pub async fn run_job(job: &Job) -> (Outcome, Vec<LogLine>) {
    let seen = std::sync::Mutex::new(Vec::new());
    let on_line = |line: &LogLine| seen.lock().unwrap().push(line.clone());
    let outcome = run(job, &on_line, &CancellationToken::new()).await.unwrap();
    (outcome, seen.into_inner().unwrap())
}

/// The pids printed as `escapee PID` lines.
pub fn escapees(lines: &[LogLine]) -> Vec<Pid> {
    printed_pids(lines, "escapee ")
}

/// The pids printed as `WHAT PID` lines (`what` with its space).
pub fn printed_pids(lines: &[LogLine], what: &str) -> Vec<Pid> {
    lines
        .iter()
        .filter_map(|l| l.text.strip_prefix(what))
        .map(|pid| Pid::from_raw(pid.parse().unwrap()))
        .collect()
}

/// Whether `pid` is gone: dead and reaped.
pub fn is_gone(pid: Pid) -> bool {
    kill(pid, None) == Err(Errno::ESRCH)
}

/// A unique marker for one test's processes: `job` gets it in its environment, which
/// every descendant inherits; dropping the marker kills and reaps whatever still has
/// it, so that a failing test leaves no process behind.
pub struct Marker {
    value: String,
}

impl Marker {
    pub fn new(job: &mut Job) -> Marker {
        let value = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        job.env_set.push((MARKER.to_owned(), value.clone()));
        Marker { value }
    }

    /// The live (not zombie) processes that carry the marker.
    pub fn alive(&self) -> Vec<Pid> {
        let me = std::process::id() as i32;
        procfs::process::all_processes()
            .unwrap()
            .flatten()
            .filter(|p| p.pid() != me)
            .filter(|p| p.stat().is_ok_and(|s| s.state != 'Z'))
            .filter(|p| {
                p.environ().is_ok_and(|env| {
                    env.get(OsStr::new(MARKER)) == Some(&self.value.clone().into())
                })
            })
            .map(|p| Pid::from_raw(p.pid()))
            .collect()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        for pid in self.alive() {
            let _ = kill(pid, Signal::SIGKILL);
            // Blocks only for a child of ours, which SIGKILL ends promptly.
            let _ = waitpid(pid, None);
        }
    }
}
