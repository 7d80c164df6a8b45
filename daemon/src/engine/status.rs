//! What the daemon knows, for people and tools: a snapshot refreshed at the end of
//! every cycle (served by the status API, the status page and `forgewatch status`),
//! and the counters behind `/metrics`, which outlive reloads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::clients::Clients;
use crate::plan::builds::{PlannedBuild, Subject};
use crate::plan::dependencies::graph::Unresolved;
use crate::state::Store;

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
    pub workspaces: BTreeMap<String, WorkspaceStatus>,
    pub poll_errors: Vec<String>,
    /// The last configuration reload that failed, and why.
    pub config_error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ForgeStatus {
    pub host: String,
    pub requests_fresh: u64,
    pub requests_not_modified: u64,
    pub requests_failed: u64,
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

/// The pull-request part of a build's status.
pub fn pull_request_status(build: &PlannedBuild) -> Option<PullRequestStatus> {
    let Subject::PullRequest {
        pr,
        test_ref,
        dependencies,
        unresolved,
        cycle,
        ..
    } = &build.subject
    else {
        return None;
    };
    Some(PullRequestStatus {
        url: pr.web_url.clone(),
        number: pr.number,
        title: pr.title.clone(),
        author: pr.author.clone(),
        head_sha: pr.head_sha.clone(),
        test_ref: pr.test_ref(*test_ref),
        dependencies: dependencies
            .iter()
            .map(|d| format!("{}#{}", d.base_repo, d.number))
            .collect(),
        unresolved_dependencies: unresolved.clone(),
        cycle: cycle.clone(),
    })
}

fn package_status(
    pkg: &crate::config::PackageConfig,
    results: &crate::plan::answers::PollResults,
) -> PackageStatus {
    PackageStatus {
        name: pkg.name.clone(),
        repository: pkg.repo.to_string(),
        branch: pkg.branch.clone(),
        head: results
            .heads
            .get(&crate::plan::builds::target_of(pkg))
            .and_then(|r| r.as_ref().ok())
            .cloned(),
    }
}

fn config_pr_statuses(
    transients: &crate::plan::transient::Transients,
    planned: &crate::plan::builds::WorkspaceBuilds,
    results: &crate::plan::answers::PollResults,
) -> Vec<ConfigPrStatus> {
    use crate::plan::transient::DiscoveryState;
    transients
        .config_prs
        .iter()
        .map(|c| {
            let builds = planned
                .builds
                .iter()
                .filter(|b| match &b.subject {
                    Subject::PullRequest { pr, .. } => {
                        crate::plan::dependencies::graph::pr_ref(pr) == c.id
                            || c.packages
                                .iter()
                                .any(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
                    }
                    Subject::Mainline(_) => false,
                })
                .map(|b| b.key.to_string())
                .collect();
            ConfigPrStatus {
                pull_request: c.id.to_string(),
                url: c.pr.web_url.clone(),
                head_sha: c.pr.head_sha.clone(),
                test_ref: c.test_ref.clone(),
                discovery: DiscoveryStatus {
                    state: c.discovery.as_str(),
                    detail: match &c.discovery {
                        DiscoveryState::Waiting(why) | DiscoveryState::Failed(why) => {
                            Some(why.clone())
                        }
                        DiscoveryState::Succeeded => None,
                    },
                    job_id: c.job_id,
                },
                transient_packages: c
                    .packages
                    .iter()
                    .map(|p| package_status(p, results))
                    .collect(),
                builds,
            }
        })
        .collect()
}

/// Counters of `/metrics` (monotonic for the life of the process).
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

/// The builds of the last computation, by key, with their workspace and CI target
/// (what a manual trigger sends again).
type LastBuilds = BTreeMap<crate::plan::ids::BuildKey, (String, String, PlannedBuild)>;

/// The status part of the engine: the snapshot the API serves (shared with the
/// [`crate::engine::view::View`]), the builds it was made from, the counters.
#[derive(Default)]
pub struct Status {
    snapshot: Arc<Mutex<Snapshot>>,
    last_builds: Mutex<LastBuilds>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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

    /// The snapshot, shared (what a view reads).
    pub fn shared(&self) -> Arc<Mutex<Snapshot>> {
        self.snapshot.clone()
    }

    /// After a reload: what `old` showed and built, until the first computation.
    pub fn carry_over(&self, old: &Status) {
        let mut snapshot = lock(&old.snapshot).clone();
        snapshot.config_error = None;
        *lock(&self.snapshot) = snapshot;
        *lock(&self.last_builds) = lock(&old.last_builds).clone();
    }

    /// A reload was refused: the snapshot says why until the next one succeeds.
    pub fn set_config_error(&self, message: String) {
        lock(&self.snapshot).config_error = Some(message);
    }

    /// The last computed build of `key`: its workspace, CI target and build.
    pub fn last_build(
        &self,
        key: &crate::plan::ids::BuildKey,
    ) -> Option<(String, String, PlannedBuild)> {
        lock(&self.last_builds).get(key).cloned()
    }

    /// A computation begins: the builds of the last one go now rather than when
    /// the new ones are in, so memory holds one computation's builds, not two. No
    /// trigger can ask for them meanwhile: the loop handles one event at a time.
    pub(crate) fn forget_builds(&self) {
        lock(&self.last_builds).clear();
    }

    /// Rebuilds the snapshot after a computation.
    pub(crate) async fn refresh(
        &self,
        state: &Store,
        clients: &Clients,
        updates: &crate::engine::updates::Updates,
        results: &crate::plan::answers::PollResults,
        seen: Vec<crate::engine::cycle::SeenWorkspace<'_>>,
        report: &crate::engine::cycle::CycleReport,
    ) -> anyhow::Result<()> {
        let pending = pending_by_key(state).await?;
        let marks = state.build_marks().await?;
        let mut names = std::collections::BTreeSet::new();
        let mut last_builds = BTreeMap::new();
        let mut build_count = 0;
        for seen_ws in seen {
            let crate::engine::cycle::SeenWorkspace {
                config: ws,
                packages,
                planned,
                fingerprints,
                transients,
            } = seen_ws;
            build_count += planned.builds.len();
            let mut status = WorkspaceStatus {
                ci: ws.ci.clone(),
                update_running: updates.is_running(&ws.name),
                waiting: planned
                    .skipped
                    .iter()
                    .map(|s| format!("{}: {}", s.key, s.reason))
                    .collect(),
                not_built: planned
                    .not_built
                    .iter()
                    .map(|(k, why)| NotBuiltStatus {
                        build_key: k.to_string(),
                        reason: why.to_string(),
                    })
                    .collect(),
                ..WorkspaceStatus::default()
            };
            status.packages = packages
                .iter()
                .map(|p| package_status(p, results))
                .collect();
            status.config_prs = config_pr_statuses(&transients, &planned, results);
            status.transient_conflicts = transients
                .conflicts()
                .into_iter()
                .map(|c| ConflictStatus {
                    package: c.package,
                    definitions: c
                        .definitions
                        .into_iter()
                        .map(|(config_pr, repository)| ConflictDefinition {
                            config_pr,
                            repository,
                        })
                        .collect(),
                })
                .collect();
            for (build, fingerprint) in planned.builds.into_iter().zip(fingerprints) {
                let mut build_status = BuildStatus {
                    build_key: build.key.to_string(),
                    kind: if build.key.as_str().ends_with("/mainline") {
                        "mainline"
                    } else {
                        "pull_request"
                    },
                    fingerprint: fingerprint.to_string(),
                    delivered_fingerprint: None,
                    delivered_at: None,
                    pending: None,
                    pull_request: pull_request_status(&build),
                };
                build_status.set_delivery(&build.key, &marks, &pending);
                status.builds.push(build_status);
                last_builds.insert(build.key.clone(), (ws.name.clone(), ws.ci.clone(), build));
            }
            // Replaced one at a time, so memory never holds two snapshots; a
            // reader may see some workspaces of the last computation and some of
            // this one for an instant, each whole.
            names.insert(ws.name.as_str());
            lock(&self.snapshot)
                .workspaces
                .insert(ws.name.clone(), status);
        }
        let forges = forge_statuses(clients);
        let mut snapshot = lock(&self.snapshot);
        snapshot.builds = build_count;
        snapshot
            .workspaces
            .retain(|name, _| names.contains(name.as_str()));
        snapshot.fingerprint_seconds = report.fingerprint_seconds;
        snapshot.computations += 1;
        snapshot.pending = pending.len();
        snapshot.forges = forges;
        snapshot.poll_errors = report.poll_errors.clone();
        *lock(&self.last_builds) = last_builds;
        Ok(())
    }

    /// A copy of the snapshot as it stands.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.snapshot).clone()
    }

    /// After deliveries were attempted: counts them and refreshes what the
    /// snapshot says of each build's delivery.
    pub(crate) async fn record_deliveries(
        &self,
        state: &Store,
        outcomes: &[crate::engine::cycle::Outcome],
    ) -> anyhow::Result<()> {
        self.count_deliveries(outcomes);
        let pending = pending_by_key(state).await?;
        let marks = state.build_marks().await?;
        let mut snapshot = lock(&self.snapshot);
        for build in snapshot
            .workspaces
            .values_mut()
            .flat_map(|w| w.builds.iter_mut())
        {
            let key = crate::plan::ids::BuildKey::from_stored(build.build_key.clone());
            build.set_delivery(&key, &marks, &pending);
        }
        snapshot.pending = pending.len();
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
        let mut snapshot = lock(&self.snapshot);
        snapshot.ready = true;
        snapshot.cycles += 1;
        snapshot.last_cycle_at = Some(humantime::format_rfc3339_seconds(started).to_string());
        snapshot.last_cycle_seconds = elapsed.as_secs_f64();
        snapshot.cycle_seconds_total += snapshot.last_cycle_seconds;
        snapshot.forges = forges;
        snapshot.poll_errors = poll_errors.to_vec();
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
) -> anyhow::Result<BTreeMap<String, crate::state::outbox::PendingSummary>> {
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
                rate_limit: rate.as_ref().and_then(|r| r.limit),
                rate_limit_remaining: rate.as_ref().and_then(|r| r.remaining),
                ..ForgeStatus::default()
            };
            status.set_pause(f.as_ref());
            (name.clone(), status)
        })
        .collect()
}

impl BuildStatus {
    /// What the CI accepted for this build and what waits in the outbox.
    fn set_delivery(
        &mut self,
        key: &crate::plan::ids::BuildKey,
        marks: &std::collections::HashMap<crate::plan::ids::BuildKey, crate::state::BuildMark>,
        pending: &BTreeMap<String, crate::state::outbox::PendingSummary>,
    ) {
        let mark = marks.get(key);
        self.delivered_fingerprint = mark
            .and_then(|m| m.delivered.as_ref())
            .map(ToString::to_string);
        self.delivered_at = mark
            .and_then(|m| m.delivered_at)
            .map(|s| rfc3339_ms(s * 1000));
        self.pending = pending.get(key.as_str()).map(|p| PendingStatus {
            delivery_id: p.delivery_id.clone(),
            attempts: p.attempts,
            next_attempt: rfc3339_ms(p.next_attempt),
            last_error: p.last_error.clone(),
        });
    }
}
