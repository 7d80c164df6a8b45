//! Workspace runner: the part of forgewatch that runs workspace update commands
//! (`autoproj update` and the like) and reads the package lists they produce.
//!
//! It will run an argv (no shell) in a new process group with a sanitised
//! environment, capture its output line by line with timestamps, and kill the whole
//! group on timeout (SIGTERM, then SIGKILL after a grace period); and it will read
//! autoproj installation manifests and forgewatch package lists.
//!
//! It depends on no sibling crate: the daemon hands it argv, directories, timeouts
//! and file paths, and gets exit statuses, log lines and package lists back.
//!
//! This release has no update support yet: workspaces list their packages
//! statically in the configuration. The runner is filled by the workspace-runner
//! issue (update subprocesses, job logs, manifest readers).
pub mod manifest;
pub mod process;
