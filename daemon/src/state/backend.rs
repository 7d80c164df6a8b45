//! [`Backend`]: the operations of the state store, whatever keeps the data. They
//! are synchronous and may block; [`super::Store`] runs them on its own thread, so
//! async code never waits on a backend on a runtime thread. [`State`] (SQLite) is
//! the backend today; a later one (PostgreSQL, SPEC §16) implements the same trait
//! and keeps the same transactions: an enqueue in one transaction, an accepted
//! delivery recorded and removed from the outbox in one transaction.
//!
//! Errors are [`StateError`]s, so nothing of a backend's own types reaches callers.

use std::collections::{BTreeMap, HashMap};

use forgewatch_adapters::governor::PauseRecord;
use forgewatch_adapters::http::CachedResponse;

use super::discoveries::DiscoveryRecord;
use super::events::{Event, EventQuery};
use super::history::{BuildsQuery, DeliveryRow, ResultOutcome, ResultRow};
use super::jobs::{JobEnd, JobLine, JobRecord};
use super::outbox::{Enqueued, Pending, PendingSummary};
use super::statuses::{DueStatus, StatusAttempt, StatusSummary};
use super::workspaces::{StoredPackage, UpdateMarks};
use super::{BuildMark, DeliveredBuild, State, StateError};
use crate::plan::ids::BuildKey;
use crate::plan::statuses::StatusTarget;
use forgewatch_adapters::results::ReportedResult;

/// What a state backend does. A read-only backend (dry runs) reads and writes
/// nothing, answering writes with success. The methods that return no `Result`
/// report their failures themselves (a log line): their callers go on regardless.
pub trait Backend: Send + 'static {
    fn is_read_only(&self) -> bool;

    // Builds (the last delivered fingerprint of each build key).
    fn delivered_builds(
        &self,
        keys: &[BuildKey],
    ) -> Result<HashMap<BuildKey, DeliveredBuild>, StateError>;
    fn build_marks(&self) -> Result<HashMap<BuildKey, BuildMark>, StateError>;
    fn build_keys_with_prefix(&self, prefix: &str) -> Result<Vec<BuildKey>, StateError>;
    /// In one transaction.
    fn forget_builds(&self, keys: &[BuildKey]) -> Result<(), StateError>;

    // The outbox (SPEC §8).
    /// In one transaction.
    fn enqueue(
        &self,
        items: &[Enqueued],
        obsolete: &[BuildKey],
        now: i64,
    ) -> Result<(), StateError>;
    fn enqueue_manual(&self, item: &Pending, now: i64) -> Result<(), StateError>;
    fn pending_summaries(&self) -> Result<Vec<PendingSummary>, StateError>;
    fn pending_item(&self, key: &BuildKey) -> Result<Option<Pending>, StateError>;
    /// Records the delivery, removes it from the outbox and adds its event to the
    /// history, in one transaction.
    fn complete_delivery(
        &self,
        item: &Pending,
        at_ms: i64,
        message: &str,
        statuses: &[StatusTarget],
    ) -> Result<(), StateError>;
    /// Schedules the next attempt and adds the failure's event, in one transaction.
    fn delivery_failed(
        &self,
        item: &Pending,
        attempts: u32,
        next_attempt: i64,
        error: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), StateError>;

    // The history of deliveries and results (SPEC §14).
    /// In one transaction, with its event.
    fn record_result(
        &self,
        source: &str,
        reported: &ReportedResult,
        at_ms: i64,
    ) -> Result<ResultOutcome, StateError>;
    fn builds(&self, query: &BuildsQuery) -> Result<Vec<DeliveryRow>, StateError>;
    fn results_of(&self, delivery_id: &str) -> Result<Vec<ResultRow>, StateError>;
    fn last_overrides(&self, key: &str) -> Result<Option<Vec<(String, String)>>, StateError>;
    fn prune_history(&self, cutoff_ms: i64) -> Result<usize, StateError>;

    // The status outbox (SPEC §14).
    fn due_statuses(
        &self,
        host: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueStatus>, StateError>;
    fn next_status_due(&self, host: &str) -> Result<Option<i64>, StateError>;
    /// In one transaction, with its event.
    fn record_status_attempt(&self, attempt: &StatusAttempt) -> Result<bool, StateError>;
    fn status_summary(&self) -> Result<StatusSummary, StateError>;
    fn status_refusals(&self, host: &str) -> Result<Vec<(String, i64)>, StateError>;
    fn defer_statuses(&self, host: &str, until: i64) -> Result<(), StateError>;

    // Jobs and their logs.
    fn start_job(&self, workspace: &str, kind: &str, started_at: i64) -> Result<i64, StateError>;
    fn finish_job(&self, id: i64, end: &JobEnd) -> Result<(), StateError>;
    fn fail_interrupted_jobs(&self, now: i64) -> Result<usize, StateError>;
    fn job(&self, id: i64) -> Result<Option<JobRecord>, StateError>;
    fn jobs_of(&self, workspace: &str, limit: i64) -> Result<Vec<JobRecord>, StateError>;
    fn job_lines(&self, id: i64, since: i64) -> Result<Vec<JobLine>, StateError>;

    // The event history.
    fn record_event(
        &self,
        at_ms: i64,
        kind: &str,
        workspace: Option<&str>,
        build_key: Option<&str>,
        message: &str,
    );
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StateError>;
    /// The id of the newest event (0 without any): the store tells streams of the
    /// events when it grows.
    fn newest_event_id(&self) -> Result<i64, StateError>;

    // Workspaces: package lists and update marks.
    fn package_list(&self, workspace: &str) -> Result<Option<Vec<StoredPackage>>, StateError>;
    fn save_package_list(
        &self,
        workspace: &str,
        entries: &[StoredPackage],
        now: i64,
    ) -> Result<(), StateError>;
    fn update_marks(&self, workspace: &str) -> Result<UpdateMarks, StateError>;
    fn save_update_marks(&self, workspace: &str, marks: &UpdateMarks) -> Result<(), StateError>;

    // Discoveries of config PRs.
    fn discoveries(&self) -> Result<BTreeMap<String, Vec<DiscoveryRecord>>, StateError>;
    fn save_discovery(&self, workspace: &str, record: &DiscoveryRecord) -> Result<(), StateError>;
    fn forget_discovery(&self, workspace: &str, config_pr: &str) -> Result<(), StateError>;

    // GitHub's mergeability per (base sha, head sha): the latest answer at a head,
    // with the base sha it was given for.
    fn mergeable(&self, pr: &str, head_sha: &str) -> Result<Option<(String, bool)>, StateError>;
    fn save_mergeable(
        &self,
        pr: &str,
        base_sha: &str,
        head_sha: &str,
        mergeable: bool,
    ) -> Result<(), StateError>;

    // The forges' HTTP validators and bodies, and their rate-limit pauses.
    // Each read or write marks the row used at `now` (unix seconds).
    fn cached(&self, key: &str, with_body: bool, now: i64) -> Option<CachedResponse>;
    fn save_cached(&self, key: &str, response: &CachedResponse, now: i64);
    /// Deletes the rows not used since before `cutoff` (unix seconds); how many.
    fn prune_http_cache(&self, cutoff: i64) -> Result<usize, StateError>;
    fn pauses(&self) -> Result<BTreeMap<String, PauseRecord>, StateError>;
    fn save_pause(&self, key: &str, record: Option<&PauseRecord>);
}

/// Each operation is the inherent method of the same name (in this module's files).
impl Backend for State {
    fn is_read_only(&self) -> bool {
        State::is_read_only(self)
    }

    fn delivered_builds(
        &self,
        keys: &[BuildKey],
    ) -> Result<HashMap<BuildKey, DeliveredBuild>, StateError> {
        State::delivered_builds(self, keys)
    }

    fn build_marks(&self) -> Result<HashMap<BuildKey, BuildMark>, StateError> {
        State::build_marks(self)
    }

    fn build_keys_with_prefix(&self, prefix: &str) -> Result<Vec<BuildKey>, StateError> {
        State::build_keys_with_prefix(self, prefix)
    }

    fn forget_builds(&self, keys: &[BuildKey]) -> Result<(), StateError> {
        State::forget_builds(self, keys)
    }

    fn enqueue(
        &self,
        items: &[Enqueued],
        obsolete: &[BuildKey],
        now: i64,
    ) -> Result<(), StateError> {
        State::enqueue(self, items, obsolete, now)
    }

    fn enqueue_manual(&self, item: &Pending, now: i64) -> Result<(), StateError> {
        State::enqueue_manual(self, item, now)
    }

    fn pending_summaries(&self) -> Result<Vec<PendingSummary>, StateError> {
        State::pending_summaries(self)
    }

    fn pending_item(&self, key: &BuildKey) -> Result<Option<Pending>, StateError> {
        State::pending_item(self, key)
    }

    fn complete_delivery(
        &self,
        item: &Pending,
        at_ms: i64,
        message: &str,
        statuses: &[StatusTarget],
    ) -> Result<(), StateError> {
        State::complete_delivery(self, item, at_ms, message, statuses)
    }

    fn delivery_failed(
        &self,
        item: &Pending,
        attempts: u32,
        next_attempt: i64,
        error: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), StateError> {
        State::delivery_failed(self, item, attempts, next_attempt, error, at_ms, message)
    }

    fn record_result(
        &self,
        source: &str,
        reported: &ReportedResult,
        at_ms: i64,
    ) -> Result<ResultOutcome, StateError> {
        State::record_result(self, source, reported, at_ms)
    }

    fn builds(&self, query: &BuildsQuery) -> Result<Vec<DeliveryRow>, StateError> {
        State::builds(self, query)
    }

    fn results_of(&self, delivery_id: &str) -> Result<Vec<ResultRow>, StateError> {
        State::results_of(self, delivery_id)
    }

    fn last_overrides(&self, key: &str) -> Result<Option<Vec<(String, String)>>, StateError> {
        State::last_overrides(self, key)
    }

    fn prune_history(&self, cutoff_ms: i64) -> Result<usize, StateError> {
        State::prune_history(self, cutoff_ms)
    }

    fn due_statuses(
        &self,
        host: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<DueStatus>, StateError> {
        State::due_statuses(self, host, now_ms, limit)
    }

    fn next_status_due(&self, host: &str) -> Result<Option<i64>, StateError> {
        State::next_status_due(self, host)
    }

    fn record_status_attempt(&self, attempt: &StatusAttempt) -> Result<bool, StateError> {
        State::record_status_attempt(self, attempt)
    }

    fn status_summary(&self) -> Result<StatusSummary, StateError> {
        State::status_summary(self)
    }

    fn status_refusals(&self, host: &str) -> Result<Vec<(String, i64)>, StateError> {
        State::status_refusals(self, host)
    }

    fn defer_statuses(&self, host: &str, until: i64) -> Result<(), StateError> {
        State::defer_statuses(self, host, until)
    }

    fn start_job(&self, workspace: &str, kind: &str, started_at: i64) -> Result<i64, StateError> {
        State::start_job(self, workspace, kind, started_at)
    }

    fn finish_job(&self, id: i64, end: &JobEnd) -> Result<(), StateError> {
        State::finish_job(self, id, end)
    }

    fn fail_interrupted_jobs(&self, now: i64) -> Result<usize, StateError> {
        State::fail_interrupted_jobs(self, now)
    }

    fn job(&self, id: i64) -> Result<Option<JobRecord>, StateError> {
        State::job(self, id)
    }

    fn jobs_of(&self, workspace: &str, limit: i64) -> Result<Vec<JobRecord>, StateError> {
        State::jobs_of(self, workspace, limit)
    }

    fn job_lines(&self, id: i64, since: i64) -> Result<Vec<JobLine>, StateError> {
        State::job_lines(self, id, since)
    }

    fn record_event(
        &self,
        at_ms: i64,
        kind: &str,
        workspace: Option<&str>,
        build_key: Option<&str>,
        message: &str,
    ) {
        State::record_event(self, at_ms, kind, workspace, build_key, message);
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StateError> {
        State::events(self, query)
    }

    fn newest_event_id(&self) -> Result<i64, StateError> {
        State::newest_event_id(self)
    }

    fn package_list(&self, workspace: &str) -> Result<Option<Vec<StoredPackage>>, StateError> {
        State::package_list(self, workspace)
    }

    fn save_package_list(
        &self,
        workspace: &str,
        entries: &[StoredPackage],
        now: i64,
    ) -> Result<(), StateError> {
        State::save_package_list(self, workspace, entries, now)
    }

    fn update_marks(&self, workspace: &str) -> Result<UpdateMarks, StateError> {
        State::update_marks(self, workspace)
    }

    fn save_update_marks(&self, workspace: &str, marks: &UpdateMarks) -> Result<(), StateError> {
        State::save_update_marks(self, workspace, marks)
    }

    fn discoveries(&self) -> Result<BTreeMap<String, Vec<DiscoveryRecord>>, StateError> {
        State::discoveries(self)
    }

    fn save_discovery(&self, workspace: &str, record: &DiscoveryRecord) -> Result<(), StateError> {
        State::save_discovery(self, workspace, record)
    }

    fn forget_discovery(&self, workspace: &str, config_pr: &str) -> Result<(), StateError> {
        State::forget_discovery(self, workspace, config_pr)
    }

    fn mergeable(&self, pr: &str, head_sha: &str) -> Result<Option<(String, bool)>, StateError> {
        State::mergeable(self, pr, head_sha)
    }

    fn save_mergeable(
        &self,
        pr: &str,
        base_sha: &str,
        head_sha: &str,
        mergeable: bool,
    ) -> Result<(), StateError> {
        State::save_mergeable(self, pr, base_sha, head_sha, mergeable)
    }

    fn cached(&self, key: &str, with_body: bool, now: i64) -> Option<CachedResponse> {
        State::cached(self, key, with_body, now)
    }

    fn save_cached(&self, key: &str, response: &CachedResponse, now: i64) {
        State::save_cached(self, key, response, now);
    }

    fn prune_http_cache(&self, cutoff: i64) -> Result<usize, StateError> {
        State::prune_http_cache(self, cutoff)
    }

    fn pauses(&self) -> Result<BTreeMap<String, PauseRecord>, StateError> {
        State::pauses(self)
    }

    fn save_pause(&self, key: &str, record: Option<&PauseRecord>) {
        State::save_pause(self, key, record);
    }
}
