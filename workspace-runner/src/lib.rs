//! Workspace runner: the part of forgewatch that runs workspace update commands
//! (`autoproj update` and the like) and reads the package lists they produce.
//!
//! - [`process`]: runs an argv (no shell) in a new process group with a sanitised
//!   environment, captures its output line by line with timestamps (bounded), and
//!   kills every process of the job, in its group or not (`setsid`, `setpgid`), on
//!   timeout, cancellation or when the leader exits (SIGTERM, then SIGKILL after a
//!   grace period), so that a hanging `git` inside an update never hangs forgewatch
//!   and nothing a job started outlives it.
//! - [`manifest`]: reads autoproj installation manifests and forgewatch package
//!   lists into package entries, with clear errors for missing, empty or malformed
//!   files.
//!
//! It depends on no sibling crate: the daemon hands it argv, directories, timeouts
//! and file paths, and gets exit statuses, log lines and package lists back.

pub mod manifest;
pub mod process;
