//! Ending every process of a job — its process group and whatever left it (see
//! [`members`](super::members)) — with SIGTERM, a grace period, SIGKILL, and reaping,
//! so that none survives a timeout, a cancellation, the daemon's exit, or a leader
//! that exited leaving background processes behind (rust-stack notes §7).
//!
//! Each pass scans the job's processes and signals those not signalled yet in this
//! phase (a process forked meanwhile is found by the next pass; no process is
//! signalled twice with SIGTERM, whose handler may not expect it). "Gone" means a
//! scan finds no member alive and no zombie of ours. The leader is reaped through
//! tokio's `Child::wait` (never by us: that would steal its status); the other
//! members that are our children (the daemon is a child subreaper) are reaped by pid,
//! `waitpid(pid, WNOHANG)`. Never `waitpid(-1)`: it would steal statuses tokio is
//! waiting for. Members that are another process's children are reaped by it; we
//! only see them exit.
//!
//! There is no event for "the job's processes are gone", so they are scanned every
//! [`POLL`].

use std::collections::HashSet;
use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;

use super::members::{JobTag, Member, Members, ProcId};

/// How often the job's processes are scanned while waiting for them to end.
const POLL: Duration = Duration::from_millis(50);

/// How long to wait for the processes to disappear after SIGKILL before giving up (a
/// process in uninterruptible sleep ignores even SIGKILL until its I/O ends). The
/// daemon must never hang with a job, so after this the job is abandoned with a warning.
const KILL_SETTLE: Duration = Duration::from_secs(5);

/// How many scans a dropped job gets to SIGKILL what is left of it (it cannot wait
/// for the processes to go), and the pause between two scans.
const DROP_SCANS: usize = 6;
const DROP_PAUSE: Duration = Duration::from_millis(20);

/// A job's processes and what is known of its leader. If it is dropped before the
/// job's processes were found gone (the job's future was dropped), every process of
/// the job is sent SIGKILL, but not reaped.
pub struct Group {
    members: Members,
    /// The leader's status once tokio has reaped it.
    leader: Option<io::Result<ExitStatus>>,
    /// Whether the processes were found gone, or abandoned with a warning.
    settled: bool,
}

impl Group {
    pub fn new(pgid: Pid, tag: JobTag) -> Self {
        Self {
            members: Members::new(pgid, tag),
            leader: None,
            settled: false,
        }
    }

    /// Records the leader's status, as returned by `Child::wait`.
    pub fn set_leader(&mut self, status: io::Result<ExitStatus>) {
        self.members.leader_reaped();
        self.leader = Some(status);
    }

    pub fn take_leader(&mut self) -> Option<io::Result<ExitStatus>> {
        self.leader.take()
    }

    /// Whether no process of the job is left, by two scans [`POLL`] apart: a process
    /// in the middle of an `exec` has no readable environment for a moment, so one
    /// scan that finds nothing could miss an escapee no scan has seen yet.
    pub async fn stays_gone(&mut self) -> bool {
        if !self.is_gone() {
            return false;
        }
        tokio::time::sleep(POLL).await;
        self.is_gone()
    }

    /// Whether no process of the job is left, after reaping the members that are
    /// zombies of ours. Always false while the leader has not been reaped.
    pub fn is_gone(&mut self) -> bool {
        let gone = self.leader.is_some() && self.live_members().is_none_or(|l| l.is_empty());
        self.settled |= gone;
        gone
    }

    /// The members alive, and the zombies of ours that could not be reaped, after
    /// reaping those that could. `None` if `/proc` cannot be read.
    fn live_members(&mut self) -> Option<Vec<Member>> {
        let pgid = self.members.pgid();
        let members = self.members.scan()?;
        let live = members
            .into_iter()
            .filter(|m| {
                // The leader is tokio's to reap; a zombie of another's is its to reap.
                !m.zombie || (m.ours && (m.id.pid == pgid || !reap(m.id.pid)))
            })
            .collect();
        Some(live)
    }

    /// One pass of a phase: sends `signal` to each member alive that has not had it in
    /// this phase (without `/proc`, to the process group, once). Returns whether the
    /// job is gone (without `/proc`: whether the leader is).
    fn signal_pass(&mut self, signal: Signal, signalled: &mut Signalled) -> bool {
        let Some(live) = self.live_members() else {
            if !signalled.group && self.members.group_is_ours() {
                signalled.group = true;
                signal_group(self.members.pgid(), signal);
            }
            return self.leader.is_some();
        };
        for member in live.iter().filter(|m| !m.zombie) {
            if signalled.processes.insert(member.id) {
                send(member.id.pid, signal);
            }
        }
        self.leader.is_some() && live.is_empty()
    }

    /// Signals the job's processes with `signal` as they are found, until they are
    /// gone or `within` has elapsed, reaping the leader through `child` meanwhile.
    /// Returns whether they are gone.
    async fn phase(&mut self, child: &mut Child, signal: Signal, within: Duration) -> bool {
        let mut signalled = Signalled::default();
        let deadline = tokio::time::sleep(within);
        tokio::pin!(deadline);
        // Gone only when two passes in a row found nothing (see `stays_gone`).
        let mut gone_before = false;
        loop {
            let gone = self.signal_pass(signal, &mut signalled);
            if gone && gone_before {
                self.settled = true;
                return true;
            }
            gone_before = gone;
            tokio::select! {
                biased;
                status = child.wait(), if self.leader.is_none() => self.set_leader(status),
                () = &mut deadline => return self.is_gone(),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Ends every process of the job: SIGTERM (and SIGCONT, so that stopped processes
    /// receive it), up to `grace` for them to exit, then SIGKILL and up to
    /// [`KILL_SETTLE`] for them to disappear. Returns whether they are gone.
    pub async fn terminate(&mut self, child: &mut Child, grace: Duration) -> bool {
        let pgid = self.members.pgid().as_raw();
        tracing::debug!(pgid, "sending SIGTERM to the job's processes");
        if self.phase(child, Signal::SIGTERM, grace).await {
            tracing::debug!(pgid, "the job's processes ended after SIGTERM");
            return true;
        }
        tracing::debug!(
            pgid,
            ?grace,
            "the job's processes are still alive after the grace period; sending SIGKILL"
        );
        if self.phase(child, Signal::SIGKILL, KILL_SETTLE).await {
            tracing::debug!(pgid, "the job's processes ended after SIGKILL");
            return true;
        }
        tracing::warn!(
            pgid,
            "the job still has processes after SIGKILL; abandoning them"
        );
        self.settled = true;
        false
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        tracing::debug!(
            pgid = self.members.pgid().as_raw(),
            "job dropped while running; killing its processes"
        );
        if self.members.group_is_ours() {
            signal_group(self.members.pgid(), Signal::SIGKILL);
        }
        let mut killed = HashSet::new();
        let mut quiet = 0;
        for _ in 0..DROP_SCANS {
            let Some(members) = self.members.scan() else {
                return;
            };
            let mut any = false;
            for member in members.iter().filter(|m| !m.zombie) {
                if killed.insert(member.id) {
                    any = true;
                    let _ = kill(member.id.pid, Signal::SIGKILL);
                }
            }
            // As when a job ends: gone only when two scans a moment apart find
            // nothing new (a process in the middle of an exec has no readable
            // environment, so one scan can miss an escapee).
            quiet = if any { 0 } else { quiet + 1 };
            if quiet == 2 {
                return;
            }
            std::thread::sleep(DROP_PAUSE);
        }
    }
}

/// What a phase signalled already.
#[derive(Default)]
struct Signalled {
    processes: HashSet<ProcId>,
    /// The process group (only without `/proc`).
    group: bool,
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pgid.as_raw(), ?signal, error = %e, "cannot signal the process group")
        }
    }
}

/// Sends `signal` to `pid`, and SIGCONT after a SIGTERM so that a stopped process
/// receives it.
fn send(pid: Pid, signal: Signal) {
    let signals: &[Signal] = if signal == Signal::SIGTERM {
        &[Signal::SIGTERM, Signal::SIGCONT]
    } else {
        &[signal]
    };
    for &signal in signals {
        match kill(pid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pid = pid.as_raw(), ?signal, error = %e, "cannot signal a process of the job")
            }
        }
    }
}

/// Reaps `pid`, a zombie child of ours. Non-blocking (`WNOHANG`), so it runs inline
/// rather than on a blocking thread. Returns whether it is reaped (or was already).
fn reap(pid: Pid) -> bool {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Err(Errno::EINTR) => {}
            Ok(nix::sys::wait::WaitStatus::StillAlive) => return false,
            Ok(status) => {
                tracing::debug!(?status, "reaped a process of the job");
                return true;
            }
            Err(Errno::ECHILD) => return true,
            Err(e) => {
                tracing::debug!(pid = pid.as_raw(), error = %e, "waitpid failed");
                return false;
            }
        }
    }
}
