//! The supervisor: the configuration wired to real clients (one per forge, one per
//! CI target) and the state store. It is the only place that turns config values
//! into adapter objects.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use anyhow::Context as _;
use forgewatch_adapters::ci::{Buildbot, CiTarget, GitLabPipeline, Webhook};
use forgewatch_adapters::forge::Forge;
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::gitlab::{GitLabClient, GitLabOptions};
use forgewatch_adapters::governor::RatePolicy;
use forgewatch_adapters::http::{ClientOptions, ValidatorStore};

use crate::command_target::CommandTarget;
use crate::config::{CiConfig, Config, ForgeKind};
use crate::outbox::RetryPolicy;
use crate::packages::Packages;
use crate::state::State;
use crate::updates::Updates;

pub struct Supervisor {
    pub config: Config,
    pub state: Arc<State>,
    pub forges: BTreeMap<String, Arc<dyn Forge>>,
    pub ci: BTreeMap<String, Arc<dyn CiTarget>>,
    pub packages: Packages,
    pub updates: Updates,
    pub discoveries: crate::discovery::Discoveries,
    /// `once`: a cycle waits for the discoveries it starts (and polls what they add)
    /// before computing builds; `run` lets them run in the background.
    pub discover_in_foreground: bool,
    /// Cycles started so far (for the `cycle` span).
    pub(crate) cycles: AtomicU64,
    pub retry: RetryPolicy,
    /// `once` attempts every pending delivery whatever its backoff.
    pub attempt_all_pending: bool,
    /// The latest answer of every target (a cycle may poll only a slice of them).
    pub(crate) known: std::sync::Mutex<crate::poller::PollResults>,
    pub snapshot: std::sync::Mutex<crate::status::Snapshot>,
    pub metrics: Arc<crate::status::Metrics>,
    /// The builds of the last cycle, by key, with their workspace and CI target
    /// (what a manual trigger sends again).
    pub(crate) last_builds: std::sync::Mutex<
        BTreeMap<crate::ids::BuildKey, (String, String, crate::builds::PlannedBuild)>,
    >,
    /// Advanced by every forge answer and delivery attempt: the watchdog is fed
    /// during a cycle only while this moves.
    pub progress: Arc<std::sync::atomic::AtomicU64>,
    /// Dependency lookups of the current poll interval.
    pub(crate) lookups: crate::dependencies::resolve::LookupCache,
    /// PRs whose mergeability GitHub was still computing this poll interval.
    pub(crate) computing: crate::mergeability::Computing,
    /// The last failure logged per poll, so a repeating one is logged once.
    pub(crate) poll_failures: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Messages already logged once (see `report_once`).
    pub(crate) reported: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The last state logged per topic (see `is_news`), so a repeating state is
    /// logged once rather than every slice.
    pub(crate) last_logged: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// The inputs of the last computation of every build.
    pub(crate) last_inputs: crate::plan_inputs::LastInputs,
}

impl Supervisor {
    pub fn new(config: Config, state: Arc<State>) -> anyhow::Result<Supervisor> {
        Self::with_metrics(config, state, Arc::default())
    }

    /// A supervisor whose counters continue `metrics` (across reloads).
    pub fn with_metrics(
        config: Config,
        state: Arc<State>,
        metrics: Arc<crate::status::Metrics>,
    ) -> anyhow::Result<Supervisor> {
        let store: Arc<dyn ValidatorStore> = state.clone();
        let mut forges: BTreeMap<String, Arc<dyn Forge>> = BTreeMap::new();
        for (name, forge) in &config.forges {
            if forge.token.is_none() {
                let budget = match forge.kind {
                    ForgeKind::GitHub => {
                        "GitHub allows 60 requests per hour without one, and counts 304s"
                    }
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
                    .with_context(|| format!("forge `{name}`"))?,
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
                    .with_context(|| format!("forge `{name}`"))?,
                ),
            };
            forges.insert(name.clone(), built);
        }
        let mut ci: BTreeMap<String, Arc<dyn CiTarget>> = BTreeMap::new();
        for (name, target) in &config.ci {
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
            ci.insert(name.clone(), target);
        }
        let packages = Packages::load(&config, &state)?;
        let retry = RetryPolicy {
            initial: config.delivery.retry_initial,
            cap: config.delivery.retry_cap,
        };
        let updates = Updates::new(&config, state.clone(), metrics.clone());
        let discoveries = crate::discovery::Discoveries::new(
            &config,
            state.clone(),
            updates.permits(),
            metrics.clone(),
        );
        Ok(Supervisor {
            config,
            state,
            forges,
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
