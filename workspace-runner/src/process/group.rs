//! Ending a job's whole process group: SIGTERM, a grace period, SIGKILL, and reaping,
//! so that no process of the group survives a timeout, a cancellation, or a leader that
//! exited leaving background children behind (rust-stack notes §7).
//!
//! "Gone" means `killpg(pgid, 0)` fails with `ESRCH`. Zombies count as members, so the
//! leader is reaped through tokio's `Child::wait` (never by us: that would steal its
//! status) and, once it has been, the other members that were re-parented to us (the
//! daemon is a child subreaper) are reaped with `waitpid(-pgid, WNOHANG)`. Never
//! `waitpid(-1)`: it would steal statuses tokio is waiting for. Members re-parented to
//! another reaper are reaped by it; we only see them disappear.
//!
//! There is no event for "the group is empty", so it is polled every [`POLL`].
//!
//! A process that called `setsid` has left the group; nothing here can find it (only a
//! cgroup, e.g. systemd's `KillMode=control-group`, catches it).

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;

/// How often group emptiness is checked while waiting for it.
const POLL: Duration = Duration::from_millis(20);

/// How long to wait for the group to disappear after SIGKILL before giving up (a
/// process in uninterruptible sleep ignores even SIGKILL until its I/O ends). The
/// daemon must never hang with a job, so after this the job is abandoned with a warning.
const KILL_SETTLE: Duration = Duration::from_secs(5);

/// A job's process group and what is known of its leader.
pub struct Group {
    pgid: Pid,
    /// The leader's status once tokio has reaped it.
    leader: Option<io::Result<ExitStatus>>,
}

impl Group {
    pub fn new(pgid: Pid) -> Self {
        Self { pgid, leader: None }
    }

    /// Records the leader's status, as returned by `Child::wait`.
    pub fn set_leader(&mut self, status: io::Result<ExitStatus>) {
        self.leader = Some(status);
    }

    pub fn take_leader(&mut self) -> Option<io::Result<ExitStatus>> {
        self.leader.take()
    }

    /// Whether no process of the group exists any more, after reaping the members that
    /// are zombies of ours. Always false while the leader has not been reaped.
    pub fn is_gone(&self) -> bool {
        if self.leader.is_none() {
            return false;
        }
        self.reap_members();
        matches!(killpg(self.pgid, None), Err(Errno::ESRCH))
    }

    /// Reaps every member of the group that has exited and is our child. Non-blocking
    /// (`WNOHANG`), so it runs inline rather than on a blocking thread.
    fn reap_members(&self) {
        let group = Pid::from_raw(-self.pgid.as_raw());
        loop {
            match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(status) => tracing::debug!(?status, "reaped a process of the group"),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "waitpid on the process group failed");
                    return;
                }
            }
        }
    }

    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pgid = self.pgid.as_raw(), ?signal, error = %e, "cannot signal the process group")
            }
        }
    }

    /// Waits until the group is gone or `within` has elapsed, reaping the leader
    /// through `child` meanwhile. Returns whether the group is gone.
    async fn wait_gone(&mut self, child: &mut Child, within: Duration) -> bool {
        let deadline = tokio::time::sleep(within);
        tokio::pin!(deadline);
        loop {
            if self.is_gone() {
                return true;
            }
            tokio::select! {
                biased;
                status = child.wait(), if self.leader.is_none() => self.leader = Some(status),
                () = &mut deadline => return self.is_gone(),
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Ends every process of the group: SIGTERM (and SIGCONT, so that stopped
    /// processes receive it), up to `grace` for the group to exit, then SIGKILL and up
    /// to [`KILL_SETTLE`] for it to disappear. Returns whether the group is gone.
    pub async fn terminate(&mut self, child: &mut Child, grace: Duration) -> bool {
        let pgid = self.pgid.as_raw();
        tracing::debug!(pgid, "sending SIGTERM to the process group");
        self.signal(Signal::SIGTERM);
        self.signal(Signal::SIGCONT);
        if self.wait_gone(child, grace).await {
            tracing::debug!(pgid, "process group ended after SIGTERM");
            return true;
        }
        tracing::debug!(
            pgid,
            ?grace,
            "process group still alive after the grace period; sending SIGKILL"
        );
        self.signal(Signal::SIGKILL);
        if self.wait_gone(child, KILL_SETTLE).await {
            tracing::debug!(pgid, "process group ended after SIGKILL");
            return true;
        }
        tracing::warn!(
            pgid,
            "process group still has processes after SIGKILL; abandoning it"
        );
        false
    }
}

/// Kills the group with SIGKILL if the job's future is dropped before it finished
/// (`kill_on_drop` only reaches the leader). Disarmed once the group was dealt with,
/// so that a later group reusing the number is never signalled.
pub struct KillOnDrop {
    pgid: Option<Pid>,
}

impl KillOnDrop {
    pub fn new(pgid: Pid) -> Self {
        Self { pgid: Some(pgid) }
    }

    pub fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid {
            tracing::debug!(
                pgid = pgid.as_raw(),
                "job dropped while running; killing its process group"
            );
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}
