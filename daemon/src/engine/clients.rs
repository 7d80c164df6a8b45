//! The clients: one per configured forge, one per CI target, built from the
//! configuration. It is the only place that turns config values into adapter
//! objects, and what a reload keeps: a forge or CI target whose settings did not
//! change keeps its client (pauses, budgets, counters, requests in flight).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use forgewatch_adapters::ci::{Buildbot, CiTarget, GitLabPipeline, Webhook};
use forgewatch_adapters::forge::{Forge, RequestStats};
use forgewatch_adapters::github::{GitHubClient, GitHubOptions};
use forgewatch_adapters::gitlab::{GitLabClient, GitLabOptions};
use forgewatch_adapters::governor::{PauseStore, RatePolicy};
use forgewatch_adapters::http::{ClientOptions, ValidatorStore};

use crate::config::{CiConfig, Config, ForgeConfig, ForgeKind};
use crate::engine::clock::Clock;
use crate::engine::command_target::CommandTarget;
use crate::state::Store;

pub struct Clients {
    forges: BTreeMap<String, Arc<dyn Forge>>,
    /// Requests of each forge's earlier clients (replaced by reloads that changed
    /// its settings), so its counters never go backwards.
    requests_before: BTreeMap<String, RequestStats>,
    ci: BTreeMap<String, Arc<dyn CiTarget>>,
}

impl Clients {
    /// The clients of `config`; with `old` (a reload), those whose settings did not
    /// change are kept, and the request counters of a changed forge continue where
    /// its old client's stopped.
    pub fn new(
        config: &Config,
        state: &Store,
        clock: &Arc<dyn Clock>,
        old: Option<(&Config, &Clients)>,
    ) -> anyhow::Result<Clients> {
        let clock = clock.clone();
        let store: Arc<dyn ValidatorStore> =
            Arc::new(state.http_cache(Arc::new(move || clock.unix_seconds())));
        // Rate-limit pauses outlive the clients: a reload or restart starts from them.
        let pauses: Arc<dyn PauseStore> = Arc::new(state.clone());
        let mut forges: BTreeMap<String, Arc<dyn Forge>> = BTreeMap::new();
        let mut requests_before = BTreeMap::new();
        for (name, forge) in &config.forges {
            let kept = old.and_then(|(old_config, old)| {
                let unchanged = old_config.forges.get(name) == Some(forge);
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
            let unchanged = old.filter(|(old_config, _)| {
                old_config.ci.get(name) == Some(target)
                    && old_config.delivery.timeout == config.delivery.timeout
                    && old_config.path == config.path
                    && old_config.secret_env_vars == config.secret_env_vars
            });
            let client = match unchanged.and_then(|(_, old)| old.ci.get(name)) {
                Some(client) => client.clone(),
                None => ci_client(name, target, config)?,
            };
            ci.insert(name.clone(), client);
        }
        Ok(Clients {
            forges,
            requests_before,
            ci,
        })
    }

    /// Every forge client, by forge name.
    pub fn forges(&self) -> &BTreeMap<String, Arc<dyn Forge>> {
        &self.forges
    }

    pub fn forge(&self, name: &str) -> Option<&Arc<dyn Forge>> {
        self.forges.get(name)
    }

    pub fn ci(&self, name: &str) -> Option<&Arc<dyn CiTarget>> {
        self.ci.get(name)
    }

    /// The requests of forge `name` since the daemon started (across reloads).
    pub fn requests(&self, name: &str) -> RequestStats {
        let before = self.requests_before.get(name).copied().unwrap_or_default();
        before + self.forges.get(name).map(|f| f.stats()).unwrap_or_default()
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
            writes_per_minute: Some(forge.status_writes_per_minute),
            writes_per_hour: Some(forge.status_writes_per_hour),
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
