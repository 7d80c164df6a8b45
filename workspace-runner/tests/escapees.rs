//! Tests of `process::run` against processes that leave the job's process group
//! (`setsid` after a double fork, `setpgid`) and ignore SIGTERM: none of them is left
//! once `run` returns, whether the job timed out, was cancelled, was dropped, or its
//! leader exited leaving them behind.
//!
//! Each test marks its processes with a unique environment variable to find them in
//! `/proc`, and kills what is left of them even when it fails.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use forgewatch_workspace_runner::process::{
    JOB_TAG_VAR, LogLine, OUTPUT_ABANDONED, Stream, Termination, run,
};
use nix::sys::wait::waitpid;
use support::{
    Marker, SLACK, escapees, fixture, is_gone, job, printed_pids, run_job, setup, texts,
};
use tokio_util::sync::CancellationToken;

/// How the fixture's escapee leaves the group.
const MODES: [&str; 3] = ["setsid", "setpgid", "daemonise"];

/// Asserts that the processes the fixture printed are gone, reaped: the escapee, and
/// the session leader that a daemonising fixture left as a zombie of ours.
fn assert_printed_gone(mode: &str, lines: &[LogLine]) {
    let escapees = escapees(lines);
    assert_eq!(escapees.len(), 1, "{mode}: {lines:?}");
    assert!(is_gone(escapees[0]), "{mode}: the escapee survived");
    let leaders = printed_pids(lines, "session-leader ");
    assert_eq!(leaders.len(), usize::from(mode == "daemonise"), "{mode}");
    for leader in leaders {
        assert!(is_gone(leader), "{mode}: the session leader was not reaped");
    }
}

#[tokio::test]
async fn escapees_ignoring_sigterm_are_killed_at_timeout() {
    for mode in MODES {
        let dir = setup();
        let mut job = job(dir.path(), &["sh", &fixture("escape.sh"), mode, "hang"]);
        let marker = Marker::new(&mut job);
        job.timeout = Duration::from_secs(3);
        let start = Instant::now();
        let (outcome, _) = run_job(&job).await;
        let elapsed = start.elapsed();

        assert_eq!(outcome.termination, Termination::TimedOut, "{mode}");
        let stdout = texts(&outcome.lines, Stream::Stdout);
        assert!(stdout.contains(&"ready"), "{mode}: {stdout:?}");
        assert_printed_gone(mode, &outcome.lines);
        assert_eq!(marker.alive(), [], "{mode}: processes of the job survived");
        // It ignored SIGTERM, so it lived through the grace period; then it was killed.
        assert!(
            elapsed >= job.timeout + job.kill_grace,
            "{mode}: {elapsed:?}"
        );
        assert!(
            elapsed < job.timeout + job.kill_grace + SLACK,
            "{mode}: {elapsed:?}"
        );
        assert!(
            !outcome.lines.iter().any(|l| l.text == OUTPUT_ABANDONED),
            "{mode}: the escapee's output was closed when it was killed"
        );
    }
}

#[tokio::test]
async fn escapees_are_killed_on_cancellation() {
    for mode in MODES {
        let dir = setup();
        let mut job = job(dir.path(), &["sh", &fixture("escape.sh"), mode, "hang"]);
        let marker = Marker::new(&mut job);
        let cancel = CancellationToken::new();
        let on_ready = cancel.clone();
        let on_line = move |line: &LogLine| {
            if line.text == "ready" {
                on_ready.cancel();
            }
        };
        let outcome = run(&job, &on_line, &cancel).await.unwrap();

        assert_eq!(outcome.termination, Termination::Cancelled, "{mode}");
        assert_printed_gone(mode, &outcome.lines);
        assert_eq!(marker.alive(), [], "{mode}: processes of the job survived");
    }
}

#[tokio::test]
async fn escapees_left_by_a_leader_that_exited_are_killed_when_it_ends() {
    for mode in MODES {
        let dir = setup();
        let mut job = job(dir.path(), &["sh", &fixture("escape.sh"), mode, "exit"]);
        let marker = Marker::new(&mut job);
        let (outcome, _) = run_job(&job).await;

        assert_eq!(outcome.termination, Termination::Exited(0), "{mode}");
        assert_printed_gone(mode, &outcome.lines);
        assert_eq!(marker.alive(), [], "{mode}: processes of the job survived");
        let stdout = texts(&outcome.lines, Stream::Stdout);
        assert_eq!(stdout.last(), Some(&"ready"), "{mode}: {stdout:?}");
        assert!(
            !outcome.lines.iter().any(|l| l.text == OUTPUT_ABANDONED),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn escapees_are_killed_when_the_job_is_dropped() {
    for mode in MODES {
        let dir = setup();
        let mut job = job(dir.path(), &["sh", &fixture("escape.sh"), mode, "hang"]);
        let marker = Marker::new(&mut job);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let running = tokio::spawn(async move {
            let on_line = move |line: &LogLine| {
                let _ = tx.send(line.text.clone());
            };
            run(&job, &on_line, &CancellationToken::new()).await
        });
        let mut escapee = None;
        while let Some(line) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
        {
            if let Some(pid) = line.strip_prefix("escapee ") {
                escapee = Some(nix::unistd::Pid::from_raw(pid.parse().unwrap()));
            }
            if line == "ready" {
                break;
            }
        }
        let escapee = escapee.unwrap();
        running.abort();
        assert!(running.await.unwrap_err().is_cancelled());

        // The escapee is this subreaper's child now: waiting for it is the event.
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || waitpid(escapee, None)),
        )
        .await;
        assert!(waited.is_ok(), "{mode}: the escapee survived the drop");
        assert_eq!(marker.alive(), [], "{mode}: processes of the job survived");
    }
}

/// A leader that answers SIGTERM by starting another SIGTERM-ignoring escapee: what
/// it forks while being ended is found by a later scan and killed too.
#[tokio::test]
async fn escapees_started_while_the_job_is_ended_are_killed_too() {
    let dir = setup();
    let script = r#"trap 'setsid sh -c "trap \"\" TERM; echo \"escapee \$\$\"; exec sleep 1000" &' TERM
echo ready
while :; do sleep 1; done"#;
    let mut job = job(dir.path(), &["sh", "-c", script]);
    let marker = Marker::new(&mut job);
    let cancel = CancellationToken::new();
    let on_ready = cancel.clone();
    let on_line = move |line: &LogLine| {
        if line.text == "ready" {
            on_ready.cancel();
        }
    };
    let outcome = run(&job, &on_line, &cancel).await.unwrap();

    assert_eq!(outcome.termination, Termination::Cancelled);
    let escapees = escapees(&outcome.lines);
    assert_eq!(escapees.len(), 1, "{:?}", outcome.lines);
    assert!(is_gone(escapees[0]), "the escapee survived");
    assert_eq!(marker.alive(), [], "processes of the job survived");
}

/// A process that removed the job's tag but stayed in its group is still the job's,
/// even once the leader that started it has exited.
#[tokio::test]
async fn an_untagged_process_left_in_the_group_is_killed() {
    let dir = setup();
    let script = format!("env -u {JOB_TAG_VAR} sleep 1000 & echo \"escapee $!\"");
    let mut job = job(dir.path(), &["sh", "-c", &script]);
    let marker = Marker::new(&mut job);
    let (outcome, _) = run_job(&job).await;

    assert_eq!(outcome.termination, Termination::Exited(0));
    let escapees = escapees(&outcome.lines);
    assert_eq!(escapees.len(), 1, "{:?}", outcome.lines);
    assert!(is_gone(escapees[0]), "the untagged process survived");
    assert_eq!(marker.alive(), [], "processes of the job survived");
}
