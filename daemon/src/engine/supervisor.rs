//! The supervisor: the configuration wired to real clients (one per forge, one per
//! CI target) and the state store. It is the only place that turns config values
//! into adapter objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use forgewatch_adapters::ci::{Buildbot, CiTarget, GitLabPipeline, Webhook};
use forgewatch_adapters::forge::{Forge, RequestStats};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::gitlab::{GitLabClient, GitLabOptions};
use forgewatch_adapters::governor::{PauseStore, RatePolicy};
use forgewatch_adapters::http::{ClientOptions, ValidatorStore};

use crate::config::{CiConfig, Config, ForgeConfig, ForgeKind};
use crate::engine::command_target::CommandTarget;
use crate::engine::outbox::RetryPolicy;
use crate::engine::packages::Packages;
use crate::engine::updates::Updates;
use crate::state::Store;

pub struct Supervisor {
    pub config: Config,
    pub state: Store,
    pub forges: BTreeMap<String, Arc<dyn Forge>>,
    /// Requests of each forge's earlier clients (replaced by reloads that changed
    /// its settings), so its counters never go backwards.
    pub requests_before: BTreeMap<String, RequestStats>,
    pub ci: BTreeMap<String, Arc<dyn CiTarget>>,
    pub packages: Packages,
    pub updates: Updates,
    pub discoveries: crate::engine::discovery::Discoveries,
    /// `once`: a cycle waits for the discoveries it starts (and polls what they add)
    /// before computing builds; `run` lets them run in the background.
    pub discover_in_foreground: bool,
    /// Cycles started so far (for the `cycle` span).
    pub(crate) cycles: AtomicU64,
    pub retry: RetryPolicy,
    /// `once` attempts every pending delivery whatever its backoff.
    pub attempt_all_pending: bool,
    /// The latest answer of every target (a cycle may poll only a slice of them).
    pub(crate) known: std::sync::Mutex<crate::plan::answers::PollResults>,
    pub snapshot: std::sync::Mutex<crate::engine::status::Snapshot>,
    pub metrics: Arc<crate::engine::status::Metrics>,
    /// The builds of the last cycle, by key, with their workspace and CI target
    /// (what a manual trigger sends again).
    pub(crate) last_builds: std::sync::Mutex<
        BTreeMap<crate::plan::ids::BuildKey, (String, String, crate::plan::builds::PlannedBuild)>,
    >,
    /// Advanced by every forge answer and delivery attempt: the watchdog is fed
    /// during a cycle only while this moves.
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    /// PRs whose mergeability GitHub was still computing this poll interval.
    pub(crate) computing: crate::engine::mergeability::Computing,
    /// Default branches being asked for in the background (`run`).
    pub(crate) learning:
        std::sync::Mutex<std::collections::BTreeSet<(String, forgewatch_adapters::RepoId)>>,
    /// Dependency lookups of the current poll interval.
    pub(crate) lookups: crate::engine::lookups::LookupCache,
    /// The last failure logged per poll, so a repeating one is logged once.
    pub(crate) poll_failures: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Messages already logged once (see `report_once`).
    pub(crate) reported: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The last state logged per topic (see `is_news`), so a repeating state is
    /// logged once rather than every slice.
    pub(crate) last_logged: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// The inputs of the last computation of every build.
    pub(crate) last_inputs: crate::plan::inputs::LastInputs,
}

impl Supervisor {
    pub async fn new(config: Config, state: Store) -> anyhow::Result<Supervisor> {
        Self::build(config, state, Arc::default(), None).await
    }

    /// A supervisor whose counters continue `metrics` (across reloads).
    pub async fn with_metrics(
        config: Config,
        state: Store,
        metrics: Arc<crate::engine::status::Metrics>,
    ) -> anyhow::Result<Supervisor> {
        Self::build(config, state, metrics, None).await
    }

    /// The supervisor of a reloaded configuration: forges and CI targets whose
    /// settings did not change keep their clients (pauses, budgets, counters,
    /// requests in flight); the request counters of a changed forge continue
    /// where its old client's stopped.
    pub async fn reloaded(config: Config, old: &Supervisor) -> anyhow::Result<Supervisor> {
        Self::build(config, old.state.clone(), old.metrics.clone(), Some(old)).await
    }

    async fn build(
        config: Config,
        state: Store,
        metrics: Arc<crate::engine::status::Metrics>,
        old: Option<&Supervisor>,
    ) -> anyhow::Result<Supervisor> {
        let store: Arc<dyn ValidatorStore> = Arc::new(state.clone());
        // Rate-limit pauses outlive the clients: a reload or restart starts from them.
        let pauses: Arc<dyn PauseStore> = Arc::new(state.clone());
        let mut forges: BTreeMap<String, Arc<dyn Forge>> = BTreeMap::new();
        let mut requests_before = BTreeMap::new();
        for (name, forge) in &config.forges {
            let kept = old.and_then(|old| {
                let unchanged = old.config.forges.get(name) == Some(forge);
                let base = old.requests_before.get(name).copied().unwrap_or_default();
                let client = old.forges.get(name)?;
                if unchanged {
                    Some(Ok((client.clone(), base)))
                } else {
                    Some(Err(base + client.stats()))
                }
            });
            let base = match kept {
                Some(Ok((client, base))) => {
                    forges.insert(name.clone(), client);
                    requests_before.insert(name.clone(), base);
                    continue;
                }
                Some(Err(base)) => base,
                None => RequestStats::default(),
            };
            requests_before.insert(name.clone(), base);
            forges.insert(name.clone(), forge_client(name, forge, &store, &pauses)?);
        }
        let mut ci: BTreeMap<String, Arc<dyn CiTarget>> = BTreeMap::new();
        for (name, target) in &config.ci {
            let unchanged = old.filter(|old| {
                old.config.ci.get(name) == Some(target)
                    && old.config.delivery.timeout == config.delivery.timeout
                    && old.config.path == config.path
                    && old.config.secret_env_vars == config.secret_env_vars
            });
            let client = match unchanged.and_then(|old| old.ci.get(name)) {
                Some(client) => client.clone(),
                None => ci_client(name, target, &config)?,
            };
            ci.insert(name.clone(), client);
        }
        let packages = Packages::load(&config, &state).await?;
        let retry = RetryPolicy {
            initial: config.delivery.retry_initial,
            cap: config.delivery.retry_cap,
        };
        let updates = Updates::new(&config, state.clone(), metrics.clone());
        let discoveries = crate::engine::discovery::Discoveries::new(
            &config,
            state.clone(),
            updates.permits(),
            metrics.clone(),
        );
        Ok(Supervisor {
            config,
            state,
            forges,
            requests_before,
            ci,
            packages,
            updates,
            discoveries,
            discover_in_foreground: false,
            cycles: AtomicU64::new(0),
            retry,
            attempt_all_pending: false,
            known: Default::default(),
            poll_failures: Default::default(),
            lookups: Default::default(),
            learning: Default::default(),
            computing: Default::default(),
            progress: Default::default(),
            snapshot: Default::default(),
            metrics,
            last_builds: Default::default(),
            reported: Default::default(),
            last_logged: Default::default(),
            last_inputs: Default::default(),
        })
    }
}

/// The client of one configured forge.
fn forge_client(
    name: &str,
    forge: &ForgeConfig,
    store: &Arc<dyn ValidatorStore>,
    pauses: &Arc<dyn PauseStore>,
) -> anyhow::Result<Arc<dyn Forge>> {
    if forge.token.is_none() {
        let budget = match forge.kind {
            ForgeKind::GitHub => "GitHub allows 60 requests per hour without one, and counts 304s",
            ForgeKind::GitLab => "only public projects are visible",
        };
        tracing::warn!(forge = %name, "no token configured: {budget}");
    }
    let client = ClientOptions {
        max_concurrency: forge.max_concurrency,
        connect_timeout: forge.connect_timeout,
        request_timeout: forge.request_timeout,
        rate: RatePolicy {
            reserve: forge.rate_limit_reserve,
            secondary_wait: forge.secondary_limit_wait,
            requests_per_minute: forge.requests_per_minute,
            ..RatePolicy::default()
        },
        ..ClientOptions::default()
    };
    let (host, api_url, token) = (
        forge.host.clone(),
        forge.api_url.clone(),
        forge.token.clone(),
    );
    let built: Arc<dyn Forge> = match forge.kind {
        ForgeKind::GitHub => Arc::new(
            GitHubClient::new(
                GitHubOptions {
                    host,
                    api_url,
                    token,
                    client,
                },
                store.clone(),
            )
            .with_context(|| format!("forge `{name}`"))?
            .with_pauses(pauses.clone()),
        ),
        ForgeKind::GitLab => Arc::new(
            GitLabClient::new(
                GitLabOptions {
                    host,
                    api_url,
                    token,
                    client,
                },
                store.clone(),
            )
            .with_context(|| format!("forge `{name}`"))?
            .with_pauses(pauses.clone()),
        ),
    };
    Ok(built)
}

/// The client of one configured CI target.
fn ci_client(name: &str, target: &CiConfig, config: &Config) -> anyhow::Result<Arc<dyn CiTarget>> {
    let target: Arc<dyn CiTarget> = match target {
        CiConfig::Buildbot { url, basic_auth } => Arc::new(
            Buildbot::new(
                url.clone(),
                basic_auth
                    .as_ref()
                    .map(|a| (a.user.clone(), a.password.clone())),
                config.delivery.timeout,
            )
            .with_context(|| format!("CI target `{name}`"))?,
        ),
        CiConfig::Webhook { url, secret } => Arc::new(
            Webhook::new(url.clone(), secret.clone(), config.delivery.timeout)
                .with_context(|| format!("CI target `{name}`"))?,
        ),
        CiConfig::GitLabPipeline {
            api_url,
            project,
            git_ref,
            token,
        } => Arc::new(
            GitLabPipeline::new(
                api_url,
                project,
                git_ref.clone(),
                token.clone(),
                config.delivery.timeout,
            )
            .with_context(|| format!("CI target `{name}`"))?,
        ),
        CiConfig::Command { argv, timeout } => Arc::new(CommandTarget {
            argv: argv.clone(),
            timeout: *timeout,
            dir: config
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| ".".into(), Into::into),
            secret_env_vars: config.secret_env_vars.clone(),
        }),
    };
    Ok(target)
}

impl Supervisor {
    /// After a reload: keep what `old` knew (latest poll answers, the snapshot and
    /// the builds of the last cycle) until this supervisor's first cycle.
    pub fn carry_over(&mut self, old: &Supervisor) {
        let lock = |e: std::sync::PoisonError<_>| e.into_inner();
        *self.known.lock().unwrap_or_else(lock) = old.known.lock().unwrap_or_else(lock).clone();
        let mut snapshot = old
            .snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        snapshot.config_error = None;
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        *self.last_builds.lock().unwrap_or_else(|e| e.into_inner()) = old
            .last_builds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
    }
}
