//! The engine's data, owned by the loop: the parts a cycle reads and writes, each
//! with its own small API (the clients, the packages, the update and discovery
//! jobs, the known answers, the outbox, the status). Nothing outside `engine`
//! sees it: the HTTP API reads a [`crate::engine::view::View`], the senders an
//! [`Outbox`].

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crate::config::Config;
use crate::engine::clients::Clients;
use crate::engine::clock::Clock;
use crate::engine::known::Known;
use crate::engine::outbox::{Outbox, RetryPolicy};
use crate::engine::packages::Packages;
use crate::engine::reports::Reports;
use crate::engine::status::{Metrics, Status};
use crate::engine::status_posts::{StatusPoster, StatusWake};
use crate::engine::updates::Updates;
use crate::state::Store;

pub struct Supervisor {
    pub(crate) config: Config,
    pub(crate) state: Store,
    pub(crate) clients: Arc<Clients>,
    pub(crate) outbox: Arc<Outbox>,
    /// Posts the due commit statuses (one task per forge host in `run`).
    pub(crate) status_poster: Arc<StatusPoster>,
    /// Wakes the status posters (kept across reloads).
    pub(crate) status_wake: StatusWake,
    pub(crate) packages: Packages,
    pub(crate) updates: Updates,
    pub(crate) discoveries: crate::engine::discovery::Discoveries,
    /// `once`: a cycle waits for the discoveries it starts (and polls what they add)
    /// and for its dependency lookups before computing builds; `run` lets them run
    /// in the background.
    pub(crate) in_foreground: bool,
    /// Cycles started so far (for the `cycle` span).
    pub(crate) cycles: AtomicU64,
    /// `once` attempts every pending delivery whatever its backoff.
    pub(crate) attempt_all_pending: bool,
    pub(crate) known: Known,
    pub(crate) status: Status,
    /// Advanced by every forge answer and delivery attempt: the watchdog is fed
    /// during a cycle only while this moves.
    pub(crate) progress: Arc<AtomicU64>,
    /// PRs whose mergeability GitHub was still computing this poll interval.
    pub(crate) computing: Arc<crate::engine::mergeability::Computing>,
    /// Default branches being asked for in the background (`run`).
    pub(crate) learning: Mutex<std::collections::BTreeSet<(String, forgewatch_adapters::RepoId)>>,
    /// Dependency lookups of the current poll interval.
    pub(crate) lookups: Arc<crate::engine::lookups::LookupCache>,
    /// The questions asked in the background (dependency lookups, mergeability):
    /// their answers wake the loop to compute again.
    pub(crate) background: Arc<crate::engine::background::Background>,
    pub(crate) reports: Reports,
    pub(crate) clock: Arc<dyn Clock>,
    /// The inputs of the last computation of every build.
    pub(crate) last_inputs: crate::plan::inputs::LastInputs,
    /// When the HTTP cache was last pruned (kept across reloads).
    pub(crate) cache_pruning: Arc<crate::engine::cache_pruning::CachePruning>,
}

impl Supervisor {
    pub async fn new(
        config: Config,
        state: Store,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Supervisor> {
        Self::build(config, state, Arc::default(), clock, None).await
    }

    /// The supervisor of a reloaded configuration: forges and CI targets whose
    /// settings did not change keep their clients (see [`Clients::new`]); running
    /// updates and discoveries, the questions asked in the background (and their
    /// cached answers), the latest answers, the snapshot and the builds of the last
    /// computation are kept.
    pub async fn reloaded(config: Config, old: &Supervisor) -> anyhow::Result<Supervisor> {
        let mut new = Self::build(
            config,
            old.state.clone(),
            old.status.metrics().clone(),
            old.clock.clone(),
            Some(old),
        )
        .await?;
        let old_names: Vec<String> = old
            .config
            .workspaces
            .iter()
            .map(|w| w.name.clone())
            .collect();
        new.updates.carry_over(&old.updates, &old_names);
        new.discoveries.carry_over(&old.discoveries);
        new.known.carry_over(&old.known);
        new.status.carry_over(&old.status);
        // Questions asked in the background are answered to the new engine.
        new.lookups = old.lookups.clone();
        new.computing = old.computing.clone();
        new.background = old.background.clone();
        new.cache_pruning = old.cache_pruning.clone();
        Ok(new)
    }

    async fn build(
        config: Config,
        state: Store,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        old: Option<&Supervisor>,
    ) -> anyhow::Result<Supervisor> {
        let clients = Arc::new(Clients::new(
            &config,
            &state,
            &clock,
            old.map(|old| (&old.config, &*old.clients)),
        )?);
        let packages = Packages::load(&config, &state).await?;
        let retry = RetryPolicy {
            initial: config.delivery.retry_initial,
            cap: config.delivery.retry_cap,
        };
        let progress = Arc::new(AtomicU64::new(0));
        let status_wake = old.map(|o| o.status_wake.clone()).unwrap_or_default();
        let reports = config
            .workspaces
            .iter()
            .map(|w| (w.name.clone(), w.report.clone()))
            .collect();
        let outbox = Arc::new(Outbox::new(
            state.clone(),
            clients.clone(),
            retry,
            progress.clone(),
            clock.clone(),
            crate::engine::outbox::Reporting {
                reports,
                wake: status_wake.clone(),
                metrics: metrics.clone(),
            },
        ));
        let status_poster = Arc::new(StatusPoster::new(
            &config,
            &clients,
            state.clone(),
            retry,
            clock.clone(),
            metrics.clone(),
        ));
        let updates = Updates::new(&config, state.clone(), metrics.clone(), clock.clone());
        let discoveries = crate::engine::discovery::Discoveries::new(
            &config,
            state.clone(),
            updates.permits(),
            metrics.clone(),
            clock.clone(),
        );
        Ok(Supervisor {
            config,
            state,
            clients,
            outbox,
            status_poster,
            status_wake,
            packages,
            updates,
            discoveries,
            in_foreground: false,
            cycles: AtomicU64::new(0),
            attempt_all_pending: false,
            known: Known::default(),
            lookups: Default::default(),
            background: Default::default(),
            learning: Default::default(),
            computing: Default::default(),
            progress,
            status: Status::new(metrics),
            reports: Reports::default(),
            clock,
            last_inputs: Default::default(),
            cache_pruning: Default::default(),
        })
    }

    /// Prunes the HTTP cache rows unused for `http_cache_retention`, when due.
    pub(crate) fn prune_http_cache_if_due(&self) {
        self.cache_pruning.prune_if_due(
            &self.state,
            self.clock.now(),
            self.config.http_cache_retention,
            self.config.history_keep,
        );
    }

    /// What the HTTP API reads of this engine.
    pub(crate) fn view(&self) -> crate::engine::view::View {
        crate::engine::view::View::new(
            &self.config,
            self.status.shown(),
            self.status.metrics().clone(),
            self.clients.clone(),
            self.state.clone(),
            self.status_wake.clone(),
        )
    }
}

/// Reads the configuration at `path` again; a valid one replaces the supervisor (state,
/// running updates and the latest poll answers are kept), an invalid one is
/// refused and the running configuration stays.
pub(crate) async fn reload(
    path: &std::path::Path,
    current: &Supervisor,
) -> Result<Arc<Supervisor>, String> {
    let state = &current.state;
    let reloaded = match crate::config::load(path) {
        Err(errors) => Err(errors.to_string()),
        Ok(config) if config.state_dir != current.config.state_dir => {
            Err("`state_dir` cannot change while running; restart forgewatch".to_owned())
        }
        Ok(config) => {
            if config.http != current.config.http {
                tracing::warn!("`http` changed: it applies at the next restart");
            }
            Supervisor::reloaded(config, current)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    };
    let new = match reloaded {
        Ok(new) => new,
        Err(message) => {
            tracing::error!("reload refused, the running configuration stays: {message}");
            state.record_event(
                current.clock.unix_ms(),
                "reload_failed",
                None,
                None,
                &message,
            );
            current.status.set_config_error(message.clone());
            return Err(message);
        }
    };
    state.record_event(
        current.clock.unix_ms(),
        "reloaded",
        None,
        None,
        "configuration reloaded",
    );
    tracing::info!(
        workspaces = new.config.workspaces.len(),
        "configuration reloaded"
    );
    Ok(Arc::new(new))
}
