//! The pure layer: from the configuration and what the forges answered to the
//! builds a workspace owns, their fingerprints and their trigger payloads. No I/O,
//! no clock, no runtime (checked by `daemon/tests/tidy.rs`): every input, `now`
//! included, is passed in.
//!
//! - [`ids`]: build keys, fingerprints, delivery ids.
//! - [`answers`]: watch targets and the forges' answers to them.
//! - [`builds`]: a workspace's mainline and PR builds; [`pr_builds`]: which PRs are
//!   built, their refs, closure and overrides.
//! - [`transient`]: config PRs and the packages they introduce.
//! - [`dependencies`]: PR dependency syntax, closure and graph.
//! - [`fingerprint`]: build inputs, their canonical form and change reasons.
//! - [`payload`]: trigger payloads.
//! - [`statuses`]: where a delivery's commit statuses go.
//! - [`inputs`]: what a computation reads, so one that would change nothing is
//!   skipped.

pub mod answers;
pub mod builds;
pub mod dependencies;
pub mod fingerprint;
pub mod ids;
pub mod inputs;
pub mod payload;
pub mod pr_builds;
pub mod statuses;
pub mod transient;
