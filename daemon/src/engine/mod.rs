//! The engine: everything that runs. It polls the forges, keeps the workspaces'
//! package lists current (manifests, update and discovery jobs), asks the plan for
//! the builds, and delivers changed ones through the persisted outbox.
//!
//! - [`supervisor`]: the engine's data, owned by the loop, made of the parts below;
//!   [`clients`]: the configuration wired to clients (the only place that turns
//!   config values into adapter objects); [`known`]: the latest answer of every
//!   target; [`reports`]: what was logged already; [`fold`]: a burst of alike
//!   failures logged as one line; [`clock`]: the wall clock
//!   handed in.
//! - [`event_loop`]: the loop of `run`, one [`event`] at a time; [`forge_poller`]:
//!   one task per forge; [`senders`]: one task per CI target.
//! - [`cycle`]: the steps of a cycle (absorb, compute, enqueue); [`once`]: the
//!   whole cycle of `forgewatch once`; [`lifecycle`]: what the loop tells systemd; [`poller`]: polls watch
//!   targets; [`lookups`]: dependencies outside the watched targets;
//!   [`mergeability`]: GitHub's `mergeable`; [`background`]: those of their
//!   questions `run` asks in the background.
//! - [`packages`]: each workspace's packages; [`refresh`]: package lists and
//!   update jobs around a cycle's polls; [`updates`], [`discovery`] and
//!   [`recorded_job`]: the workspace subprocesses.
//! - [`outbox`]: sends pending deliveries; [`command_target`]: the `command` CI
//!   target.
//! - [`status`]: the summary and counters; [`computed`]: the last computation,
//!   from which the status rows are rendered when asked; [`view`]: what the HTTP
//!   API reads of them.

pub mod background;
pub mod cache_pruning;
pub mod clients;
pub mod clock;
pub mod command_target;
pub mod computed;
pub mod cycle;
pub mod discovery;
pub mod event;
pub mod event_loop;
pub mod fold;
pub mod forge_poller;
pub mod known;
pub mod lifecycle;
pub mod lookups;
pub mod mergeability;
pub mod once;
pub mod outbox;
pub mod packages;
pub mod poller;
pub mod recorded_job;
pub mod refresh;
pub mod reports;
pub mod result_metrics;
pub mod senders;
pub mod status;
pub mod status_posts;
pub mod supervisor;
pub mod timings;
pub mod updates;
pub mod view;
