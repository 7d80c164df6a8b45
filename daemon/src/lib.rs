//! forgewatch: one daemon that watches many build workspaces and triggers CI exactly
//! when a build's fingerprint changes.
//!
//! - [`config`]: the YAML file, read and validated with located errors.
//! - [`ids`]: build keys, fingerprints, delivery ids.
//! - [`fingerprint`]: build inputs, their canonical form and change reasons.
//! - [`state`]: the SQLite state store (HTTP validators, delivered fingerprints).
//! - [`lock`]: the exclusive lock on `state_dir`.
//! - [`packages`]: each workspace's packages (static, buildconf, manifest).
//! - [`updates`]: workspace update jobs: when they are due, running them.
//! - [`refresh`]: package lists and update jobs around a cycle's polls.
//! - [`command_target`]: the `command` CI target.
//! - [`poller`]: watch targets, polled once per cycle.
//! - [`builds`]: the builds a workspace owns, from poll answers.
//! - [`pr_builds`]: which pull requests are built, their refs, closure, overrides.
//! - [`dependencies`]: PR dependency syntax, resolution and closure.
//! - [`mergeability`]: GitHub's `mergeable`, asked once per (base, head).
//! - [`payload`]: trigger payloads.
//! - [`supervisor`]: configuration wired to clients.
//! - [`transient`]: config PRs and the packages they introduce (pure);
//!   [`discovery`]: the discovery jobs that find those packages;
//!   [`recorded_job`]: a subprocess recorded as a job with its log.
//! - [`cycle`]: one poll → compute → enqueue pass; [`plan_inputs`]: what it
//!   computes from, so a slice that changed nothing skips the computation.
//! - [`outbox`]: sends pending deliveries, with retries and backoff.
//! - [`crash`]: named crash points for the crash-safety tests.
//! - [`status`]: the snapshot and counters the HTTP API serves.
//! - [`status_api`]: the HTTP API, webhooks; [`status_page`]: the page and metrics.
//! - [`cli`]: the command line (`check`, `once`, `run`, `status`, `trigger`, `schema`).
//! - [`service`]: the daemon's loop: cycles, HTTP API, webhooks, reloads, signals.
//! - [`notify`]: systemd's notify protocol.
//! - [`remote`]: `status` and `trigger`, clients of a running daemon's API.

pub mod builds;
pub mod cli;
pub mod command_target;
pub mod config;
pub mod crash;
pub mod cycle;
pub mod dependencies;
pub mod discovery;
pub mod fingerprint;
pub mod ids;
pub mod lock;
pub mod mergeability;
pub mod notify;
pub mod outbox;
pub mod packages;
pub mod payload;
pub mod plan_inputs;
pub mod poller;
pub mod pr_builds;
pub mod recorded_job;
pub mod refresh;
pub mod remote;
pub mod service;
pub mod state;
pub mod status;
pub mod status_api;
pub mod status_page;
pub mod supervisor;
pub mod transient;
pub mod updates;
