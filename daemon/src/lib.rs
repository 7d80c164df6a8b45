//! forgewatch: one daemon that watches many build workspaces and triggers CI exactly
//! when a build's fingerprint changes.
//!
//! The modules are layers; each depends only on those listed after it (checked
//! by `daemon/tests/tidy.rs`):
//!
//! - [`cli`]: the command line, logging, systemd notify, the `status`/`trigger`
//!   clients.
//! - [`service`]: the daemon of `run`: the loop, the HTTP server, reloads.
//! - [`http`]: the HTTP API, webhooks, the status page and metrics text.
//! - [`engine`]: polling, jobs, deliveries: everything that runs.
//! - [`state`]: the state store (its backend trait, the SQLite backend, and the
//!   handle that runs it on a thread of its own) and the `state_dir` lock.
//! - [`plan`]: pure: builds, fingerprints, payloads from the forges' answers.
//! - [`config`]: the YAML file, read and validated with located errors.
//! - [`crash`]: named crash points for the crash-safety tests.

pub mod cli;
pub mod config;
pub mod crash;
pub mod engine;
pub mod http;
pub mod plan;
pub mod service;
pub mod state;
