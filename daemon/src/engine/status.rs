//! What the daemon knows, for people and tools: a summary updated as cycles,
//! computations and deliveries happen, the last computation (from which the
//! workspaces' status rows are rendered when asked, see
//! [`crate::engine::computed`]), served by the status API, the status page and
//! `forgewatch status`; and the counters behind `/metrics`, which outlive reloads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::clients::Clients;
use crate::engine::computed::Computed;
use crate::plan::builds::PlannedBuild;
use crate::plan::dependencies::graph::Unresolved;
use crate::state::{StateError, Store};

#[derive(Clone, Debug, Default, Serialize)]
pub struct Snapshot {
    /// The first cycle is done.
    pub ready: bool,
    pub cycles: u64,
    /// RFC 3339.
    pub last_cycle_at: Option<String>,
    pub last_cycle_seconds: f64,
    /// Wall time of every cycle so far, summed.
    pub cycle_seconds_total: f64,
    /// Builds computed by the last cycle, and the time it took to compute all their
    /// fingerprints.
    pub builds: usize,
    pub fingerprint_seconds: f64,
    /// Deliveries waiting in the outbox.
    pub pending: usize,
    /// Cycles that computed every build (the others found nothing changed).
    pub computations: u64,
    pub forges: BTreeMap<String, ForgeStatus>,
    /// Rendered from the last computation when the snapshot is asked for (empty
    /// in the summary the status keeps).
    pub workspaces: BTreeMap<String, WorkspaceStatus>,
    pub poll_errors: Vec<String>,
    /// The last configuration reload that failed, and why.
    pub config_error: Option<String>,
    /// The status outbox: statuses waiting, repositories refusing them (read from
    /// the store when the snapshot is asked for).
    pub statuses: crate::state::statuses::StatusSummary,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgeStatus {
    pub host: String,
    pub requests_fresh: u64,
    pub requests_not_modified: u64,
    pub requests_failed: u64,
    /// How long those requests took (`/metrics` only).
    #[serde(skip)]
    pub request_durations: forgewatch_adapters::http::RequestDurations,
    pub rate_limit: Option<u64>,
    pub rate_limit_remaining: Option<u64>,
    /// RFC 3339: the end of the rate-limit pause in force, if any.
    pub paused_until: Option<String>,
    pub pause_reason: Option<String>,
}

impl ForgeStatus {
    /// Sets the pause fields to the pause `forge` is under now.
    pub(crate) fn set_pause(&mut self, forge: &dyn forgewatch_adapters::forge::Forge) {
        let pause = forge.pause();
        self.paused_until = pause
            .as_ref()
            .map(|p| humantime::format_rfc3339_seconds(p.until).to_string());
        self.pause_reason = pause.map(|p| p.reason);
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkspaceStatus {
    pub ci: String,
    pub packages: Vec<PackageStatus>,
    pub builds: Vec<BuildStatus>,
    /// Open PRs not built, with the reason (`awaiting_approval`, stale, ...).
    pub not_built: Vec<NotBuiltStatus>,
    /// Builds not computed this cycle, with the reason.
    pub waiting: Vec<String>,
    pub update_running: bool,
    /// Open config PRs (SPEC §13), with their discovery and transient packages.
    pub config_prs: Vec<ConfigPrStatus>,
    /// Package names that several open config PRs introduce with different
    /// repositories (each config PR keeps its own definition).
    pub transient_conflicts: Vec<ConflictStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigPrStatus {
    /// `host/path#N`.
    pub pull_request: String,
    pub url: String,
    pub head_sha: String,
    pub test_ref: String,
    pub discovery: DiscoveryStatus,
    pub transient_packages: Vec<PackageStatus>,
    /// The builds of this cycle built against it: its own and its transient
    /// packages' PRs.
    pub builds: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DiscoveryStatus {
    /// `waiting`, `succeeded` or `failed`.
    pub state: &'static str,
    /// Why it waits or failed.
    pub detail: Option<String>,
    /// The `discover` job of its last run (`/api/v1/jobs/ID`).
    pub job_id: Option<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConflictStatus {
    pub package: String,
    /// Each definition: the config PR and the repository it gives.
    pub definitions: Vec<ConflictDefinition>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConflictDefinition {
    pub config_pr: String,
    pub repository: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PackageStatus {
    pub name: String,
    pub repository: String,
    pub branch: String,
    pub head: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NotBuiltStatus {
    pub build_key: String,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct BuildStatus {
    pub build_key: String,
    pub kind: &'static str,
    pub fingerprint: String,
    /// The fingerprint the CI last accepted, and when (RFC 3339).
    pub delivered_fingerprint: Option<String>,
    pub delivered_at: Option<String>,
    pub pending: Option<PendingStatus>,
    pub pull_request: Option<PullRequestStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PendingStatus {
    pub delivery_id: String,
    pub attempts: u32,
    pub next_attempt: String,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PullRequestStatus {
    pub url: String,
    pub number: u64,
    pub title: String,
    pub author: String,
    pub head_sha: String,
    pub test_ref: String,
    pub dependencies: Vec<String>,
    pub unresolved_dependencies: Vec<Unresolved>,
    /// The dependency cycle it is on, if any.
    pub cycle: Vec<String>,
}

impl serde::Serialize for Unresolved {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Unresolved", 2)?;
        st.serialize_field("reference", &self.reference)?;
        st.serialize_field("reason", &self.reason)?;
        st.end()
    }
}

pub fn rfc3339_ms(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Counters and histograms of `/metrics` (monotonic for the life of the process:
/// a reload hands them to its new engine).
#[derive(Debug, Default)]
pub struct Metrics {
    pub builds_triggered: AtomicU64,
    pub deliveries_failed: AtomicU64,
    pub updates_succeeded: AtomicU64,
    pub updates_failed: AtomicU64,
    pub updates_timed_out: AtomicU64,
    pub discoveries_succeeded: AtomicU64,
    pub discoveries_failed: AtomicU64,
    pub discoveries_timed_out: AtomicU64,
    pub webhooks_accepted: AtomicU64,
    pub webhooks_refused: AtomicU64,
    pub results: crate::engine::result_metrics::ResultMetrics,
    /// Cycle durations, delivery latencies.
    pub timings: crate::engine::timings::Timings,
    pub statuses_posted: AtomicU64,
    /// Status posts the forge refused or failed (each attempt).
    pub statuses_failed: AtomicU64,
    /// Bumped whenever what a cycle's targets are made of may have changed (an
    /// update or discovery ended, a default branch was learnt), before and after
    /// the change is visible: the loop reads the packages again only then. Not
    /// exported.
    pub targets_changed: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What the view reads: the summary (a [`Snapshot`] without its workspaces) and
/// the last computation, each behind its own lock.
#[derive(Clone, Default)]
pub struct Shown {
    summary: Arc<Mutex<Snapshot>>,
    computed: Arc<Mutex<Arc<Computed>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shown {
    /// Reads the summary under its lock (cheap however many builds); its
    /// `workspaces` are empty.
    pub fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&lock(&self.summary))
    }

    /// The last computation.
    pub fn computed(&self) -> Arc<Computed> {
        lock(&self.computed).clone()
    }

    /// The whole snapshot: the summary and every workspace's status, with the
    /// deliveries as the store has them now.
    pub async fn snapshot(&self, store: &Store) -> Result<Snapshot, StateError> {
        let computed = self.computed();
        let marks = store.build_marks().await?;
        let pending = pending_by_key(store).await?;
        let mut snapshot = self.read(Snapshot::clone);
        snapshot.workspaces = computed.workspaces(&marks, &pending);
        Ok(snapshot)
    }
}

/// The status part of the engine: what the API shows (shared with the
/// [`crate::engine::view::View`]) and the counters.
#[derive(Default)]
pub struct Status {
    shown: Shown,
    metrics: Arc<Metrics>,
}

impl Status {
    /// A status whose counters continue `metrics` (across reloads).
    pub fn new(metrics: Arc<Metrics>) -> Status {
        Status {
            metrics,
            ..Status::default()
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What a view reads.
    pub fn shown(&self) -> Shown {
        self.shown.clone()
    }

    /// After a reload: what `old` showed and built, until the first computation.
    pub fn carry_over(&self, old: &Status) {
        let mut summary = old.shown.read(Snapshot::clone);
        summary.config_error = None;
        *lock(&self.shown.summary) = summary;
        *lock(&self.shown.computed) = old.shown.computed();
    }

    /// A reload was refused: the snapshot says why until the next one succeeds.
    pub fn set_config_error(&self, message: String) {
        lock(&self.shown.summary).config_error = Some(message);
    }

    /// The last computed build of `key`: its workspace, CI target and build.
    pub fn last_build(
        &self,
        key: &crate::plan::ids::BuildKey,
    ) -> Option<(String, String, Arc<PlannedBuild>)> {
        self.shown.computed().build(key)
    }

    /// `builds`, just planned for workspace `ws`, sharing those that did not change
    /// with the last computation.
    pub(crate) fn share_unchanged(
        &self,
        ws: &str,
        builds: Vec<PlannedBuild>,
    ) -> Vec<Arc<PlannedBuild>> {
        self.shown.computed().share_unchanged(ws, builds)
    }

    /// A computation ended: it becomes the one shown.
    pub(crate) async fn refresh(
        &self,
        state: &Store,
        clients: &Clients,
        computed: Computed,
        report: &crate::engine::cycle::CycleReport,
    ) -> anyhow::Result<()> {
        let pending = state.pending_summaries().await?.len();
        let builds = computed.build_count();
        *lock(&self.shown.computed) = Arc::new(computed);
        let forges = forge_statuses(clients);
        let mut summary = lock(&self.shown.summary);
        summary.builds = builds;
        summary.fingerprint_seconds = report.fingerprint_seconds;
        summary.computations += 1;
        summary.pending = pending;
        summary.forges = forges;
        summary.poll_errors = report.poll_errors.clone();
        Ok(())
    }

    /// The one-line summary systemd shows (`STATUS=`).
    pub fn line(&self) -> String {
        let workspaces = self.shown.computed().workspace_count();
        self.shown.read(|s| {
            format!(
                "{workspaces} workspaces, {} builds, {} pending deliveries, {} poll errors",
                s.builds,
                s.pending,
                s.poll_errors.len()
            )
        })
    }

    /// After deliveries were attempted: counts them and how many wait.
    pub(crate) async fn record_deliveries(
        &self,
        state: &Store,
        outcomes: &[crate::engine::cycle::Outcome],
    ) -> anyhow::Result<()> {
        self.count_deliveries(outcomes);
        let pending = state.pending_summaries().await?.len();
        lock(&self.shown.summary).pending = pending;
        Ok(())
    }

    /// A cycle (every forge asked once, or its round skipped) ended: the daemon is
    /// ready, and the cycle figures move on.
    pub(crate) fn close_cycle(
        &self,
        clients: &Clients,
        started: std::time::SystemTime,
        elapsed: std::time::Duration,
        poll_errors: &[String],
    ) {
        let forges = forge_statuses(clients);
        let mut summary = lock(&self.shown.summary);
        summary.ready = true;
        summary.cycles += 1;
        summary.last_cycle_at = Some(humantime::format_rfc3339_seconds(started).to_string());
        summary.last_cycle_seconds = elapsed.as_secs_f64();
        self.metrics.timings.cycle(elapsed);
        summary.cycle_seconds_total += summary.last_cycle_seconds;
        summary.forges = forges;
        summary.poll_errors = poll_errors.to_vec();
    }

    fn count_deliveries(&self, outcomes: &[crate::engine::cycle::Outcome]) {
        use crate::engine::cycle::Status as Outcome;
        let count = |status| outcomes.iter().filter(|o| o.status == status).count() as u64;
        Metrics::add(&self.metrics.builds_triggered, count(Outcome::Delivered));
        Metrics::add(&self.metrics.deliveries_failed, count(Outcome::Failed));
    }
}

async fn pending_by_key(
    state: &Store,
) -> Result<BTreeMap<String, crate::state::outbox::PendingSummary>, StateError> {
    Ok(state
        .pending_summaries()
        .await?
        .into_iter()
        .map(|p| (p.key.to_string(), p))
        .collect())
}

fn forge_statuses(clients: &Clients) -> BTreeMap<String, ForgeStatus> {
    clients
        .forges()
        .iter()
        .map(|(name, f)| {
            let stats = clients.requests(name);
            let rate = f.rate_limit();
            let mut status = ForgeStatus {
                host: f.host().to_owned(),
                requests_fresh: stats.fresh,
                requests_not_modified: stats.not_modified,
                requests_failed: stats.failed,
                request_durations: stats.durations,
                rate_limit: rate.as_ref().and_then(|r| r.limit),
                rate_limit_remaining: rate.as_ref().and_then(|r| r.remaining),
                ..ForgeStatus::default()
            };
            status.set_pause(f.as_ref());
            (name.clone(), status)
        })
        .collect()
}
