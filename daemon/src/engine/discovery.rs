//! Discovery jobs (SPEC §13): for each open config PR of a workspace with
//! `discover` (and again when its head or test ref changes), the workspace's
//! discover command runs through the workspace runner with `FORGEWATCH_OVERRIDES`
//! (an overrides file pointing the config repository at the PR's test ref) and
//! `FORGEWATCH_MANIFEST_OUT` (where it writes the manifest of the configuration with
//! that PR applied). One discovery at a time per workspace (they share its `dir`),
//! `max_parallel_updates` subprocesses in all, each recorded as a `discover` job,
//! and its outcome persisted ([`crate::state::discoveries`]).
//!
//! Also the supervisor's steps around it: which packages are watched for recorded
//! discoveries, the [`Transients`] of a workspace this cycle, starting the due
//! discoveries, and forgetting those of config PRs that closed (with the builds of
//! their transient repositories).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::{PullRequest, WatchTarget};
use forgewatch_workspace_runner::manifest::{self, Format};
use forgewatch_workspace_runner::process::Job;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{
    CommandConfig, Config, ManifestFormat, PackageConfig, PackageKind, WorkspaceConfig,
};
use crate::engine::clock::Clock;
use crate::engine::recorded_job::{self, MAX_LINE_BYTES, MAX_LOG_LINES};
use crate::engine::status::Metrics;
use crate::engine::supervisor::Supervisor;
use crate::plan::answers::{PollResults, TargetNeeds, watch_targets};
use crate::plan::dependencies::graph::{DependencyGraph, pr_ref};
use crate::plan::ids::BuildKey;
use crate::plan::inputs::WorkspacePackages;
use crate::plan::transient::{
    ConfigPr, DiscoveryState, Transients, config_lists_complete, config_overrides, open_config_prs,
    overrides_yaml,
};
use crate::state::discoveries::DiscoveryRecord;
use crate::state::jobs::JobStatus;
use crate::state::workspaces::StoredPackage;
use crate::state::{Store, files};

/// One discovery to run.
struct Request {
    workspace: String,
    command: CommandConfig,
    format: ManifestFormat,
    pr: PullRequest,
    /// `buildconf` or `package_set`.
    kind: &'static str,
    test_ref: String,
    overrides: Vec<(String, String)>,
}

pub struct Discoveries {
    state: Store,
    /// Shared with the updates: `max_parallel_updates` subprocesses in all.
    permits: Arc<Semaphore>,
    secret_env_vars: Vec<String>,
    /// `state_dir/discovery`: the overrides file and manifest of each workspace's run.
    files: PathBuf,
    /// Workspace → the config PR (`host/path#N`) whose discovery runs.
    running: Arc<Mutex<BTreeMap<String, String>>>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Discoveries {
    pub fn new(
        config: &Config,
        state: Store,
        permits: Arc<Semaphore>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Discoveries {
        let state_dir = std::path::absolute(&config.state_dir).unwrap_or(config.state_dir.clone());
        Discoveries {
            state,
            permits,
            secret_env_vars: config.secret_env_vars.clone(),
            files: state_dir.join("discovery"),
            running: Arc::default(),
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
            metrics,
            clock,
        }
    }

    /// After a reload: the discoveries still running stay known (and are waited
    /// for at shutdown), so none is started twice in a workspace's `dir`.
    pub fn carry_over(&mut self, old: &Discoveries) {
        self.running = old.running.clone();
        if let Ok(mut tasks) = old.tasks.try_lock() {
            *self.tasks.get_mut() = std::mem::take(&mut *tasks);
        }
    }

    /// The config PR whose discovery runs for `workspace`, if any.
    pub fn running(&self, workspace: &str) -> Option<String> {
        lock(&self.running).get(workspace).cloned()
    }

    async fn spawn(&self, request: Request, cancel: &CancellationToken) {
        let id = pr_ref(&request.pr).to_string();
        lock(&self.running).insert(request.workspace.clone(), id.clone());
        let span =
            tracing::info_span!("discovery", workspace = %request.workspace, config_pr = %id);
        let (state, permits, running, metrics, clock) = (
            self.state.clone(),
            self.permits.clone(),
            self.running.clone(),
            self.metrics.clone(),
            self.clock.clone(),
        );
        // Prefixed: a workspace may be named `..`.
        let dir = self.files.join(format!("ws-{}", request.workspace));
        let secret_env_vars = self.secret_env_vars.clone();
        let cancel = cancel.clone();
        let mut tasks = self.tasks.lock().await;
        while tasks.try_join_next().is_some() {}
        tasks.spawn(
            async move {
                if let Ok(_permit) = permits.acquire_owned().await {
                    let (record, status) =
                        execute(&request, &dir, &state, &*clock, &secret_env_vars, &cancel).await;
                    let counter = match (&record.outcome, status) {
                        (Ok(_), _) => &metrics.discoveries_succeeded,
                        (Err(_), JobStatus::TimedOut) => &metrics.discoveries_timed_out,
                        (Err(_), _) => &metrics.discoveries_failed,
                    };
                    Metrics::add(counter, 1);
                    // Interrupted by a stop: it runs again after the restart.
                    if !cancel.is_cancelled()
                        && let Err(e) = state.save_discovery(&request.workspace, &record).await
                    {
                        tracing::error!("cannot record the discovery: {e}");
                    }
                }
                Metrics::add(&metrics.targets_changed, 1);
                lock(&running).remove(&request.workspace);
                Metrics::add(&metrics.targets_changed, 1);
            }
            .instrument(span),
        );
    }

    /// Waits for every started discovery to end (in `once`, and at shutdown).
    pub async fn wait_all(&self) {
        let mut tasks = self.tasks.lock().await;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!("a discovery task failed: {e}");
            }
        }
    }
}

/// Runs one discovery and says what it found, with how its job ended.
async fn execute(
    request: &Request,
    dir: &std::path::Path,
    state: &Store,
    clock: &dyn Clock,
    secret_env_vars: &[String],
    cancel: &CancellationToken,
) -> (DiscoveryRecord, JobStatus) {
    let config_pr = pr_ref(&request.pr).to_string();
    let overrides_file = dir.join("overrides.yml");
    let manifest_out = dir.join("manifest");
    let prepared = files::create_dir(dir)
        .and_then(|()| {
            files::write(
                &overrides_file,
                overrides_yaml(&request.overrides).as_bytes(),
            )
        })
        .and_then(|()| match std::fs::remove_file(&manifest_out) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        });
    let mut env_set = request.command.env.clone();
    env_set.extend([
        (
            "FORGEWATCH_OVERRIDES".to_owned(),
            path_text(&overrides_file),
        ),
        (
            "FORGEWATCH_MANIFEST_OUT".to_owned(),
            path_text(&manifest_out),
        ),
        ("FORGEWATCH_CONFIG_PR".to_owned(), config_pr.clone()),
        (
            "FORGEWATCH_CONFIG_REPOSITORY".to_owned(),
            request.pr.base_repo.web_url(),
        ),
        ("FORGEWATCH_CONFIG_REF".to_owned(), request.test_ref.clone()),
        ("FORGEWATCH_CONFIG_KIND".to_owned(), request.kind.to_owned()),
    ]);
    let job = Job {
        argv: request.command.argv.clone(),
        dir: request.command.dir.clone(),
        env_set,
        env_remove: secret_env_vars.to_vec(),
        timeout: request.command.timeout,
        kill_grace: request.command.kill_grace,
        stdin: None,
        max_log_lines: MAX_LOG_LINES,
        max_line_bytes: MAX_LINE_BYTES,
    };
    let (job_id, status, outcome) = match prepared {
        Err(e) => (
            0,
            JobStatus::Failed,
            Err(format!("cannot write {}: {e}", dir.display())),
        ),
        Ok(()) => {
            let run =
                recorded_job::run(state, clock, &request.workspace, "discover", &job, cancel).await;
            let outcome: Result<Vec<StoredPackage>, String> = if run.status == JobStatus::Succeeded
            {
                let format = match request.format {
                    ManifestFormat::Autoproj => Format::Autoproj,
                    ManifestFormat::Forgewatch => Format::Forgewatch,
                };
                manifest::read(&manifest_out, format)
                    .map(|m| {
                        m.entries
                            .into_iter()
                            .map(|e| StoredPackage {
                                name: e.name,
                                url: e.url,
                                branch: e.branch,
                                package_set: e.package_set,
                            })
                            .collect()
                    })
                    .map_err(|e| format!("the manifest it wrote: {e}"))
            } else {
                Err(run.detail)
            };
            (run.id, run.status, outcome)
        }
    };
    let key = BuildKey::pull_request(&request.workspace, &request.pr.base_repo, request.pr.number);
    match &outcome {
        Ok(entries) => {
            tracing::info!(
                job = job_id,
                packages = entries.len(),
                "discovery succeeded"
            );
            let message = format!("job {job_id}: {config_pr}: {} packages", entries.len());
            state.record_event(
                clock.unix_ms(),
                "discovery_succeeded",
                Some(&request.workspace),
                Some(key.as_str()),
                &message,
            );
        }
        Err(why) => {
            tracing::warn!(
                job = job_id,
                "discovery failed: {why}; the config PR is built without transient packages"
            );
            let message = format!("job {job_id}: {config_pr}: {why}");
            state.record_event(
                clock.unix_ms(),
                "discovery_failed",
                Some(&request.workspace),
                Some(key.as_str()),
                &message,
            );
        }
    }
    let record = DiscoveryRecord {
        config_pr,
        head_sha: request.pr.head_sha.clone(),
        test_ref: request.test_ref.clone(),
        outcome,
        job_id,
    };
    (record, status)
}

fn path_text(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The repository of a config PR named `host/path#N`.
fn repo_of(config_pr: &str) -> Option<RepoId> {
    let (repo, _) = config_pr.rsplit_once('#')?;
    let (host, path) = repo.split_once('/')?;
    RepoId::from_host_path(host, path).ok()
}

/// Entries of a discovered manifest that the mainline lacks, by name.
fn new_entries(record: &DiscoveryRecord, mainline: &[PackageConfig]) -> Vec<StoredPackage> {
    let Ok(entries) = &record.outcome else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| !mainline.iter().any(|m| m.name == e.name))
        .cloned()
        .collect()
}

impl Supervisor {
    /// The recorded discoveries of `ws` (also when it has no `discover` any more:
    /// they are forgotten, with their builds, once its config PR lists are read).
    fn records(&self, ws: &WorkspaceConfig) -> Vec<DiscoveryRecord> {
        self.state.discoveries_of(&ws.name)
    }

    /// The discovered entries of every workspace (their default branches are
    /// learnt like those of manifests).
    pub(crate) fn discovered_entries(&self) -> Vec<StoredPackage> {
        self.config
            .workspaces
            .iter()
            .flat_map(|ws| self.records(ws))
            .filter_map(|r| r.outcome.ok())
            .flatten()
            .collect()
    }

    /// The transient packages of every recorded discovery of `ws` (watched before
    /// this cycle's answers say which config PRs are still open).
    pub(crate) fn watched_transients(
        &self,
        ws: &WorkspaceConfig,
        mainline: &[PackageConfig],
    ) -> Vec<PackageConfig> {
        let mut packages = Vec::new();
        for record in self.records(ws) {
            let mut found = Vec::new();
            self.packages.resolve(
                &ws.name,
                new_entries(&record, mainline),
                &mut found,
                &self.config,
            );
            packages.extend(found);
        }
        packages
    }

    /// The open config PRs of `ws` with the state of their discovery and their
    /// transient packages.
    pub(crate) fn transients(
        &self,
        ws: &WorkspaceConfig,
        mainline: &[PackageConfig],
        open: &[(PullRequest, String)],
    ) -> Transients {
        let records = self.records(ws);
        let running = self.discoveries.running(&ws.name);
        let config_prs = open
            .iter()
            .map(|(pr, test_ref)| {
                let id = pr_ref(pr);
                let record = records.iter().find(|r| r.config_pr == id.to_string());
                let current =
                    record.filter(|r| r.head_sha == pr.head_sha && r.test_ref == *test_ref);
                let mut packages = Vec::new();
                let incomplete = record.and_then(|r| {
                    self.packages.resolve(
                        &ws.name,
                        new_entries(r, mainline),
                        &mut packages,
                        &self.config,
                    )
                });
                let discovery = match (current.map(|r| &r.outcome), incomplete) {
                    // Its packages are complete once their default branches are known.
                    (Some(Ok(_)), Some(why)) => DiscoveryState::Waiting(why),
                    (Some(Ok(_)), None) => DiscoveryState::Succeeded,
                    (Some(Err(why)), _) => DiscoveryState::Failed(why.clone()),
                    (None, _) if running.as_deref() == Some(&id.to_string()) => {
                        DiscoveryState::Waiting("waiting for its discovery (running)".to_owned())
                    }
                    (None, _) => DiscoveryState::Waiting("waiting for its discovery".to_owned()),
                };
                ConfigPr {
                    id,
                    pr: pr.clone(),
                    test_ref: test_ref.clone(),
                    discovery,
                    job_id: record.map(|r| r.job_id),
                    packages,
                }
            })
            .collect();
        Transients { config_prs }
    }

    /// Starts the discoveries that are due: for each workspace without a running
    /// one, the first of its open config PRs whose current head and ref have no
    /// recorded discovery. Returns how many started.
    pub(crate) async fn start_discoveries(
        &self,
        open: &BTreeMap<String, Vec<(PullRequest, String)>>,
        mainline: &HashMap<String, WorkspacePackages>,
        cancel: &CancellationToken,
    ) -> usize {
        let mut started = 0;
        for ws in &self.config.workspaces {
            let (Some(command), Some(m)) = (&ws.discover, &ws.manifest) else {
                continue;
            };
            if self.discoveries.running(&ws.name).is_some() {
                continue;
            }
            let records = self.records(ws);
            let packages = mainline.get(&ws.name).map_or(&[][..], |p| &p.packages[..]);
            let due = open
                .get(&ws.name)
                .into_iter()
                .flatten()
                .find(|(pr, test_ref)| {
                    let id = pr_ref(pr).to_string();
                    !records.iter().any(|r| {
                        r.config_pr == id && r.head_sha == pr.head_sha && r.test_ref == *test_ref
                    })
                });
            let Some((pr, test_ref)) = due else { continue };
            let kind = packages
                .iter()
                .find(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
                .map_or("package_set", |p| match p.kind {
                    PackageKind::Buildconf => "buildconf",
                    _ => "package_set",
                });
            let request = Request {
                workspace: ws.name.clone(),
                command: command.clone(),
                format: m.format,
                pr: pr.clone(),
                kind,
                test_ref: test_ref.clone(),
                overrides: config_overrides(packages, pr, test_ref),
            };
            self.discoveries.spawn(request, cancel).await;
            started += 1;
        }
        started
    }

    /// Forgets the discoveries of config PRs that are no longer open (their config
    /// targets' PR lists were read and do not have them), and the builds of their
    /// transient repositories that `ws` does not watch otherwise.
    pub(crate) async fn forget_closed_config_prs(
        &self,
        ws: &WorkspaceConfig,
        mainline: &[PackageConfig],
        open: &[(PullRequest, String)],
        poll: &PollResults,
    ) -> anyhow::Result<()> {
        let records = self.records(ws);
        let open_ids: BTreeSet<String> =
            open.iter().map(|(pr, _)| pr_ref(pr).to_string()).collect();
        let (closed, kept): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| {
            !open_ids.contains(&r.config_pr)
                && repo_of(&r.config_pr)
                    .is_none_or(|repo| config_lists_complete(mainline, poll, &repo))
        });
        if closed.is_empty() {
            return Ok(());
        }
        let watched: BTreeSet<RepoId> = mainline
            .iter()
            .map(|p| p.repo.clone())
            .chain(kept.iter().flat_map(|r| {
                new_entries(r, mainline)
                    .into_iter()
                    .filter_map(|e| RepoId::parse(&e.url).ok())
            }))
            .collect();
        for record in closed {
            tracing::info!(workspace = %ws.name, config_pr = %record.config_pr, "config PR closed: its transient packages are dropped");
            self.state
                .forget_discovery(&ws.name, &record.config_pr)
                .await?;
            let repos: BTreeSet<RepoId> = new_entries(&record, mainline)
                .iter()
                .filter_map(|e| RepoId::parse(&e.url).ok())
                .filter(|repo| !watched.contains(repo))
                .collect();
            let mut keys = Vec::new();
            for repo in repos {
                let prefix = BuildKey::pull_request_prefix(&ws.name, &repo);
                keys.extend(self.state.build_keys_with_prefix(&prefix).await?);
            }
            if !keys.is_empty() {
                self.state.forget_builds(keys).await?;
            }
        }
        Ok(())
    }
}

impl Supervisor {
    /// This cycle's watch targets: every workspace's packages and the transient
    /// packages of its recorded discoveries.
    pub(crate) fn cycle_targets(
        &self,
        packages: &HashMap<String, WorkspacePackages>,
    ) -> BTreeMap<WatchTarget, TargetNeeds> {
        let lists: Vec<(Vec<PackageConfig>, bool)> = self
            .config
            .workspaces
            .iter()
            .filter_map(|ws| {
                let mainline = &packages.get(&ws.name)?.packages;
                let mut all = mainline.clone();
                all.extend(self.watched_transients(ws, mainline));
                Some((all, ws.pull_requests.enabled))
            })
            .collect();
        watch_targets(lists.iter().map(|(p, pulls)| (&p[..], *pulls)))
    }

    /// Every workspace's open config PRs that would be built.
    pub(crate) fn open_config_prs(
        &self,
        packages: &HashMap<String, WorkspacePackages>,
        poll: &PollResults,
        graph: &DependencyGraph,
        now: i64,
    ) -> BTreeMap<String, Vec<(PullRequest, String)>> {
        self.config
            .workspaces
            .iter()
            .filter_map(|ws| {
                let mainline = &packages.get(&ws.name)?.packages;
                let open = open_config_prs(ws, mainline, poll, graph, now);
                (!open.is_empty()).then(|| (ws.name.clone(), open))
            })
            .collect()
    }
}
