//! Tests of `process::run` against real processes: exit statuses, captured output,
//! timeouts and cancellation that end the whole process group, floods of output, the
//! child's environment and stdin, and processes that outlive their leader.
//!
//! Every test makes the test process a child subreaper first, so that orphaned
//! grandchildren are re-parented to it and reaped by the runner (as in the daemon).
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forgewatch_workspace_runner::process::{
    CUT_MARKER, JOB_TAG_VAR, Job, LogLine, OUTPUT_ABANDONED, RunError, Stream, Termination, run,
};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use support::{SLACK, fixture, job, run_job, setup, texts};
use tokio_util::sync::CancellationToken;

fn assert_group_gone(pgid: i32) {
    assert_eq!(
        killpg(Pid::from_raw(pgid), None),
        Err(Errno::ESRCH),
        "process group {pgid} still exists"
    );
}

#[test]
fn run_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let job = job(Path::new("/"), &["true"]);
    let cancel = CancellationToken::new();
    let future = run(&job, &|_| {}, &cancel);
    assert_send(&future);
}

#[tokio::test]
async fn exit_codes() {
    let dir = setup();
    let (outcome, _) = run_job(&job(dir.path(), &["true"])).await;
    assert_eq!(outcome.termination, Termination::Exited(0));
    assert!(outcome.succeeded());
    assert_group_gone(outcome.pgid);

    let (outcome, _) = run_job(&job(dir.path(), &["sh", "-c", "exit 3"])).await;
    assert_eq!(outcome.termination, Termination::Exited(3));
    assert!(!outcome.succeeded());

    let (outcome, _) = run_job(&job(dir.path(), &["sh", "-c", "kill -KILL $$"])).await;
    assert_eq!(outcome.termination, Termination::Signaled(9));
    assert!(!outcome.succeeded());
}

#[tokio::test]
async fn output_is_captured_per_stream_in_order() {
    let dir = setup();
    let script = "echo o1; echo e1 >&2; printf 'o2\\r\\n'; echo e2 >&2; echo o3; pwd";
    let (outcome, seen) = run_job(&job(dir.path(), &["sh", "-c", script])).await;
    assert!(outcome.succeeded());
    let cwd = dir.path().canonicalize().unwrap();
    let cwd = cwd.to_str().unwrap();
    assert_eq!(
        texts(&outcome.lines, Stream::Stdout),
        ["o1", "o2", "o3", cwd]
    );
    assert_eq!(texts(&outcome.lines, Stream::Stderr), ["e1", "e2"]);
    assert_eq!(outcome.dropped_lines, 0);
    // on_line saw every line, in the same order as the log.
    let seen: Vec<_> = seen.iter().map(|l| (&l.stream, &l.text)).collect();
    let kept: Vec<_> = outcome.lines.iter().map(|l| (&l.stream, &l.text)).collect();
    assert_eq!(seen, kept);
    // Timestamps do not go backwards within the log.
    assert!(outcome.lines.windows(2).all(|w| w[0].time <= w[1].time));
}

#[tokio::test]
async fn timeout_kills_the_group() {
    let dir = setup();
    let mut job = job(dir.path(), &["sleep", "30"]);
    job.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let (outcome, _) = run_job(&job).await;
    assert_eq!(outcome.termination, Termination::TimedOut);
    assert!(
        start.elapsed() < job.timeout + job.kill_grace + SLACK,
        "{:?}",
        start.elapsed()
    );
    assert!(start.elapsed() >= job.timeout);
    assert_group_gone(outcome.pgid);
}

#[tokio::test]
async fn timeout_kills_processes_that_ignore_sigterm() {
    let dir = setup();
    let mut job = job(dir.path(), &["sh", &fixture("stubborn.sh")]);
    job.timeout = Duration::from_millis(300);
    let start = Instant::now();
    let (outcome, _) = run_job(&job).await;
    let elapsed = start.elapsed();
    assert_eq!(outcome.termination, Termination::TimedOut);
    assert_eq!(texts(&outcome.lines, Stream::Stdout), ["ready"]);
    // SIGTERM was ignored, so the group lived through the grace period.
    assert!(elapsed >= job.timeout + job.kill_grace, "{elapsed:?}");
    assert!(
        elapsed < job.timeout + job.kill_grace + SLACK,
        "{elapsed:?}"
    );
    assert_group_gone(outcome.pgid);
}

#[tokio::test]
async fn cancellation_kills_the_group() {
    let dir = setup();
    let job = job(dir.path(), &["sh", "-c", "echo started; exec sleep 30"]);
    let cancel = CancellationToken::new();
    let on_start = cancel.clone();
    let on_line = move |line: &LogLine| {
        if line.text == "started" {
            on_start.cancel();
        }
    };
    let start = Instant::now();
    let outcome = run(&job, &on_line, &cancel).await.unwrap();
    assert_eq!(outcome.termination, Termination::Cancelled);
    assert!(
        start.elapsed() < job.kill_grace + SLACK,
        "{:?}",
        start.elapsed()
    );
    assert_group_gone(outcome.pgid);
}

#[tokio::test]
async fn a_flood_of_output_does_not_block_and_is_bounded() {
    let dir = setup();
    let mut job = job(dir.path(), &["sh", &fixture("flood.sh")]);
    job.max_log_lines = 1000;
    let per_stream = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let on_line = |line: &LogLine| {
        let i = usize::from(line.stream == Stream::Stderr);
        per_stream[i].fetch_add(1, Ordering::Relaxed);
    };
    let outcome = run(&job, &on_line, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(outcome.termination, Termination::Exited(0));
    let total = 2 * 100_000;
    assert_eq!(
        per_stream.each_ref().map(|n| n.load(Ordering::Relaxed)),
        [100_000; 2]
    );
    assert!(outcome.lines.len() <= job.max_log_lines);
    assert_eq!(outcome.lines.len(), job.max_log_lines);
    assert!(outcome.dropped_lines > 0);
    assert_eq!(outcome.lines.len() as u64 + outcome.dropped_lines, total);
    assert!(outcome.lines.iter().all(|l| l.text == "0".repeat(99)));
    assert_group_gone(outcome.pgid);
}

#[tokio::test]
async fn a_very_long_line_is_cut() {
    let dir = setup();
    let script = "head -c 5000000 /dev/zero | tr '\\0' a";
    let mut job = job(dir.path(), &["sh", "-c", script]);
    job.max_line_bytes = 1000;
    let (outcome, _) = run_job(&job).await;
    assert!(outcome.succeeded());
    assert_eq!(outcome.lines.len(), 1);
    assert_eq!(
        outcome.lines[0].text,
        format!("{}{CUT_MARKER}", "a".repeat(1000))
    );
}

#[tokio::test]
async fn environment_is_sanitised_and_extended() {
    let dir = setup();
    // Some variable the test process has (other than PATH, needed to find `env`).
    let (removed, _) = std::env::vars().find(|(k, _)| k != "PATH").unwrap();
    let mut job = job(dir.path(), &["env"]);
    job.env_set = vec![("FW_TEST_VAR".into(), "hello world".into())];
    job.env_remove = vec![removed.clone()];
    let (outcome, _) = run_job(&job).await;
    assert!(outcome.succeeded());
    let env = texts(&outcome.lines, Stream::Stdout);
    assert!(env.contains(&"GIT_TERMINAL_PROMPT=0"), "{env:?}");
    assert!(env.contains(&"FW_TEST_VAR=hello world"), "{env:?}");
    assert!(env.iter().any(|l| l.starts_with("PATH=")), "{env:?}");
    let prefix = format!("{removed}=");
    assert!(
        !env.iter().any(|l| l.starts_with(&prefix)),
        "{removed} was not removed"
    );
}

#[tokio::test]
async fn stdin_bytes_reach_the_child() {
    let dir = setup();
    let mut with_input = job(dir.path(), &["cat"]);
    with_input.stdin = Some(b"{\"a\":1}".to_vec());
    let (outcome, _) = run_job(&with_input).await;
    assert!(outcome.succeeded());
    assert_eq!(texts(&outcome.lines, Stream::Stdout), ["{\"a\":1}"]);

    // Without stdin bytes, stdin is /dev/null: `cat` ends at once.
    let (outcome, _) = run_job(&job(dir.path(), &["cat"])).await;
    assert!(outcome.succeeded());
    assert!(outcome.lines.is_empty());
}

#[tokio::test]
async fn stdin_not_read_by_the_child_is_not_an_error() {
    let dir = setup();
    let mut job = job(dir.path(), &["true"]);
    job.stdin = Some(vec![b'x'; 1 << 20]);
    let (outcome, _) = run_job(&job).await;
    assert!(outcome.succeeded());
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error() {
    let dir = setup();
    let job = job(dir.path(), &["forgewatch-test-no-such-program", "arg"]);
    let error = run(&job, &|_| {}, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("forgewatch-test-no-such-program"),
        "{error}"
    );
    match error {
        RunError::Spawn { program, .. } => assert_eq!(program, "forgewatch-test-no-such-program"),
        other => panic!("unexpected error {other:?}"),
    }

    let empty = Job {
        argv: Vec::new(),
        ..job
    };
    let error = run(&empty, &|_| {}, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(error, RunError::EmptyArgv), "{error:?}");
}

#[tokio::test]
async fn background_children_of_an_exited_leader_are_killed() {
    let dir = setup();
    let job = job(dir.path(), &["sh", "-c", "sleep 30 & echo started"]);
    let start = Instant::now();
    let (outcome, _) = run_job(&job).await;
    assert_eq!(outcome.termination, Termination::Exited(0));
    assert_eq!(texts(&outcome.lines, Stream::Stdout), ["started"]);
    assert!(
        start.elapsed() < job.kill_grace + SLACK,
        "{:?}",
        start.elapsed()
    );
    assert_group_gone(outcome.pgid);
}

/// A process that left the session, removed the job's tag and was orphaned cannot be
/// found (see `escapees.rs` for those that can): its output is read for a bounded time.
#[tokio::test]
async fn output_held_open_by_an_untraceable_escapee_is_abandoned() {
    let dir = setup();
    let job = job(dir.path(), &["sh", &fixture("escapee.sh"), JOB_TAG_VAR]);
    let start = Instant::now();
    let (outcome, _) = run_job(&job).await;
    let elapsed = start.elapsed();

    // Kill and reap the escapee (re-parented to this subreaper) whatever happens next.
    let escapees = support::escapees(&outcome.lines);
    for &pid in &escapees {
        kill(pid, Signal::SIGKILL).unwrap();
        let _ = waitpid(pid, None);
    }

    assert_eq!(escapees.len(), 1, "{:?}", outcome.lines);
    assert_eq!(outcome.termination, Termination::Exited(0));
    let last = outcome.lines.last().unwrap();
    assert_eq!(
        (&last.stream, last.text.as_str()),
        (&Stream::Stderr, OUTPUT_ABANDONED)
    );
    assert!(texts(&outcome.lines, Stream::Stdout).contains(&"leader done"));
    assert!(elapsed < job.kill_grace + SLACK, "{elapsed:?}");
    assert_group_gone(outcome.pgid);
}
