//! Finding every process of a job, including those that left its process group: a
//! `git` credential helper, an `ssh` control master or a daemonising build tool calls
//! `setsid` or `setpgid`, and `killpg` no longer reaches it.
//!
//! Each job's leader is started with a unique tag in its environment
//! ([`JOB_TAG_VAR`]), which every descendant inherits, whatever group or session it
//! moves to. A scan of `/proc` finds the job's processes: those that carry the tag,
//! those still in the job's process group (until a scan after the leader was reaped
//! finds the group empty: its id may be reused then), the descendants of any of them (a process
//! that cleared its environment is still found while its parent is), the processes
//! seen in an earlier scan (by pid and start time, so a reused pid is not mistaken for
//! one), and the zombies, children of ours, that led the session of one of them (the
//! middle process of a double fork). The caller signals and reaps what a scan
//! returns, and scans again until nothing is left: a process forked meanwhile shows
//! up in the next scan.
//!
//! Not found: a process that removed the tag from its environment and was orphaned
//! (its parent died) before a scan saw it, and a process of another user (its
//! environment cannot be read; a daemon running as root reads every one). A cgroup
//! (systemd's `KillMode=control-group`) catches those too. Not reaped: the zombie of
//! a process that led only a process group (`setpgid`, then fork and exit) and that
//! no scan saw alive; it cannot be told from another job's leader, whose status is
//! tokio's, so it stays until the daemon exits.

use std::collections::HashSet;
use std::ffi::OsStr;

use nix::unistd::{Pid, getpid, getsid};

/// The environment variable that carries a job's tag in all its processes.
pub const JOB_TAG_VAR: &str = "FORGEWATCH_JOB";

/// One job's tag: the value of [`JOB_TAG_VAR`] in its processes (a random UUID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobTag(String);

impl JobTag {
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A process's identity: its pid and its start time (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProcId {
    pub pid: Pid,
    start: u64,
}

/// A process of the job, as one scan saw it.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub id: ProcId,
    /// Exited, not reaped yet.
    pub zombie: bool,
    /// A child of this process (re-parented to it, the daemon being a subreaper, or
    /// the leader): only we can reap it.
    pub ours: bool,
}

/// What one scan of `/proc` read of a process.
struct Entry {
    member: Member,
    ppid: i32,
    session: i32,
}

/// The processes of one job, found by scanning `/proc`.
pub struct Members {
    pgid: Pid,
    tag: JobTag,
    /// Every process a scan found, so that it is still found after it left everything
    /// else that made it a member (its group, its parent).
    seen: HashSet<ProcId>,
    /// Whether the leader was reaped: from then on, the group's id is free for reuse
    /// as soon as the group is empty (no pid is reused while it names a group).
    leader_reaped: bool,
    /// Whether a scan found the group empty after the leader was reaped: from then on
    /// a process in a group of that id is not taken for a member (it may be another
    /// group that reused the id).
    group_released: bool,
    me: Pid,
    my_session: Option<Pid>,
    /// Whether a failed scan was logged already.
    warned: bool,
}

impl Members {
    pub fn new(pgid: Pid, tag: JobTag) -> Self {
        Self {
            pgid,
            tag,
            seen: HashSet::new(),
            leader_reaped: false,
            group_released: false,
            me: getpid(),
            my_session: getsid(None).ok(),
            warned: false,
        }
    }

    pub fn pgid(&self) -> Pid {
        self.pgid
    }

    /// Whether the process group id still names the job's group, so that `killpg`
    /// cannot reach another group that reused it.
    pub fn group_is_ours(&self) -> bool {
        !self.group_released
    }

    /// The leader was reaped (by tokio).
    pub fn leader_reaped(&mut self) {
        self.leader_reaped = true;
    }

    /// The job's processes now. `None` if `/proc` cannot be read (logged once): then
    /// only the process group can be reached.
    pub fn scan(&mut self) -> Option<Vec<Member>> {
        let processes = match procfs::process::all_processes() {
            Ok(processes) => processes,
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(error = %e, "cannot list the processes in /proc; only the process group is ended");
                }
                return None;
            }
        };
        let mut table: Vec<(Entry, bool)> = Vec::new();
        let mut group_occupied = false;
        // A process that exited since the listing has no stat: it is not a member.
        for (process, stat) in processes
            .flatten()
            .filter_map(|p| p.stat().ok().map(|s| (p, s)))
        {
            let pid = Pid::from_raw(stat.pid);
            if pid == self.me {
                continue;
            }
            let member = Member {
                id: ProcId {
                    pid,
                    start: stat.starttime,
                },
                zombie: stat.state == 'Z',
                ours: stat.ppid == self.me.as_raw(),
            };
            let in_group = stat.pgrp == self.pgid.as_raw();
            group_occupied |= in_group;
            let found = (in_group && !self.group_released)
                || self.seen.contains(&member.id)
                || (!member.zombie && self.is_tagged(&process));
            let entry = Entry {
                member,
                ppid: stat.ppid,
                session: stat.session,
            };
            table.push((entry, found));
        }
        if self.leader_reaped && !group_occupied {
            self.group_released = true;
        }
        self.close_over_relatives(&mut table);
        let members: Vec<Member> = table
            .into_iter()
            .filter_map(|(entry, found)| found.then_some(entry.member))
            .collect();
        self.seen.extend(members.iter().map(|m| m.id));
        Some(members)
    }

    fn is_tagged(&self, process: &procfs::process::Process) -> bool {
        process.environ().is_ok_and(|env| {
            env.get(OsStr::new(JOB_TAG_VAR))
                .is_some_and(|v| v == OsStr::new(self.tag.as_str()))
        })
    }

    /// Adds to the members the descendants of members, and our zombie children that
    /// led a member's session (not ours: the daemon's own session leader is no member).
    fn close_over_relatives(&self, table: &mut [(Entry, bool)]) {
        loop {
            let pids: HashSet<i32> = member_values(table, |e| e.member.id.pid.as_raw());
            let sessions: HashSet<i32> = member_values(table, |e| e.session);
            let mut grew = false;
            for (entry, found) in table.iter_mut().filter(|(_, found)| !found) {
                let pid = entry.member.id.pid;
                let led_a_session = entry.member.zombie
                    && entry.member.ours
                    && sessions.contains(&pid.as_raw())
                    && Some(pid) != self.my_session;
                if pids.contains(&entry.ppid) || led_a_session {
                    *found = true;
                    grew = true;
                }
            }
            if !grew {
                return;
            }
        }
    }
}

fn member_values(table: &[(Entry, bool)], value: impl Fn(&Entry) -> i32) -> HashSet<i32> {
    table
        .iter()
        .filter(|(_, found)| *found)
        .map(|(entry, _)| value(entry))
        .collect()
}
