//! The work of a cycle around polling that keeps workspaces' package lists current:
//! re-reading manifests, learning default branches, and starting the update jobs
//! that are due; and, for `forgewatch once`, running the due updates before the
//! cycle. After polling: the dependency graph of the open pull requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio_util::sync::CancellationToken;

use crate::config::PackageKind;
use crate::engine::background::Background;
use crate::engine::lookups::{Forges, resolve};
use crate::plan::dependencies::graph::DependencyGraph;
use crate::plan::inputs::WorkspacePackages;

use crate::engine::mergeability::IntervalStart;
use crate::engine::status::Metrics;
use crate::engine::supervisor::Supervisor;
use crate::engine::updates::config_heads;
use crate::plan::answers::{PollResults, watch_targets};
use crate::plan::pr_builds::mergeability_used;

impl Supervisor {
    /// Every workspace's packages this cycle, by workspace name, once the default
    /// branches they need are learnt.
    pub(crate) async fn workspace_packages(
        &self,
        shutdown: &CancellationToken,
    ) -> HashMap<String, WorkspacePackages> {
        self.refresh_packages();
        self.learn_default_branches(shutdown).await;
        self.packages_of_workspaces()
    }

    /// `run`: every workspace's packages now. Default branches not known yet are
    /// asked in the background (the mainlines that need them wait), so a hung forge
    /// holds up only those.
    pub(crate) fn workspace_packages_now(
        self: &std::sync::Arc<Self>,
    ) -> HashMap<String, WorkspacePackages> {
        self.refresh_packages();
        let discovered = self.discovered_entries();
        for (forge, repo) in self
            .packages
            .unresolved_default_branches(&self.config, &discovered)
        {
            let Some(client) = self.clients.forge(&forge).cloned() else {
                continue;
            };
            let asked = (forge, repo.clone());
            if !self
                .learning
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(asked.clone())
            {
                continue;
            }
            let supervisor = self.clone();
            tokio::spawn(async move {
                match client.default_branch(&repo).await {
                    Ok(branch) => {
                        Metrics::add(&supervisor.status.metrics().targets_changed, 1);
                        supervisor.packages.set_default_branch(repo, branch);
                        Metrics::add(&supervisor.status.metrics().targets_changed, 1);
                    }
                    Err(e) => tracing::warn!("default branch of {repo} unknown: {e}"),
                }
                let mut learning = supervisor
                    .learning
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                learning.remove(&asked);
            });
        }
        self.packages_of_workspaces()
    }

    fn refresh_packages(&self) {
        let now = self.clock.unix_seconds();
        for ws in self.updates.take_finished() {
            self.packages.invalidate(&ws);
        }
        self.packages.refresh(&self.config, &self.state, now);
    }

    fn packages_of_workspaces(&self) -> HashMap<String, WorkspacePackages> {
        self.config
            .workspaces
            .iter()
            .map(|ws| (ws.name.clone(), self.packages.of(ws, &self.config)))
            .collect()
    }

    /// Asks the forges for the default branches that manifest (and discovered)
    /// packages without a branch need.
    pub(crate) async fn learn_default_branches(&self, shutdown: &CancellationToken) {
        let discovered = self.discovered_entries();
        for (forge, repo) in self
            .packages
            .unresolved_default_branches(&self.config, &discovered)
        {
            if shutdown.is_cancelled() {
                break;
            }
            let Some(client) = self.clients.forge(&forge) else {
                continue;
            };
            match client.default_branch(&repo).await {
                Ok(branch) => self.packages.set_default_branch(repo, branch),
                Err(e) => tracing::warn!("default branch of {repo} unknown: {e}"),
            }
        }
    }

    /// Starts the update jobs that are due after this cycle's polls.
    pub(crate) async fn schedule_updates(
        &self,
        packages: &HashMap<String, WorkspacePackages>,
        results: &PollResults,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let now = self.clock.unix_seconds();
        for ws in self.config.workspaces.iter().filter(|w| w.update.is_some()) {
            let heads = packages
                .get(&ws.name)
                .and_then(|p| config_heads(&p.packages, results));
            if let Some(trigger) = self.updates.due(ws, heads.as_ref(), now).await? {
                self.updates.spawn(ws, trigger, heads, shutdown).await;
            }
        }
        Ok(())
    }

    /// For `once`: polls the buildconfs and package sets, runs every due update
    /// (startup ones included) and waits for them, so the cycle that follows sees
    /// the refreshed package lists.
    pub async fn run_due_updates(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        if self.config.workspaces.iter().all(|w| w.update.is_none()) {
            return Ok(());
        }
        let packages = self.workspace_packages(shutdown).await;
        let config_only: BTreeMap<_, Vec<_>> = packages
            .iter()
            .map(|(name, p)| {
                let config: Vec<_> = p
                    .packages
                    .iter()
                    .filter(|pkg| pkg.kind != PackageKind::Package)
                    .cloned()
                    .collect();
                (name.clone(), config)
            })
            .collect();
        let targets = watch_targets(config_only.values().map(|p| (&p[..], false)));
        let results = self.poll_in_place(&targets, shutdown).await;
        self.schedule_updates(&packages, &results, shutdown).await?;
        self.updates.wait_all().await;
        Ok(())
    }
}

impl Supervisor {
    /// Where questions not answered yet (dependency lookups, mergeability) are
    /// asked: `run` in the background, counted in [`Background`]; `once` in place.
    fn background(&self) -> Option<&std::sync::Arc<Background>> {
        (!self.in_foreground).then_some(&self.background)
    }

    /// The open pull requests of this cycle with their dependencies resolved and
    /// GitHub's mergeability filled in where a build uses it (at `now`, unix
    /// seconds, with these `packages`).
    pub(crate) async fn dependency_graph(
        &self,
        results: &PollResults,
        packages: &HashMap<String, WorkspacePackages>,
        now: i64,
        interval: IntervalStart,
    ) -> DependencyGraph {
        let polled: Vec<_> = results
            .pulls
            .values()
            .filter_map(|r| r.as_ref().ok())
            .flatten()
            .cloned()
            .collect();
        let forges = Forges {
            by_host: self
                .config
                .forges
                .iter()
                .filter_map(|(name, f)| Some((f.host.clone(), self.clients.forge(name)?.clone())))
                .collect(),
        };
        let mut graph = resolve(
            polled,
            &forges,
            &self.lookups,
            self.config.poll_interval,
            self.background(),
        )
        .await;
        let mut wanted = BTreeSet::new();
        for ws in &self.config.workspaces {
            let Some(mainline) = packages.get(&ws.name).map(|p| &p.packages) else {
                continue;
            };
            let transient = self.watched_transients(ws, mainline);
            wanted.extend(mergeability_used(
                ws, mainline, &transient, results, &graph, now,
            ));
        }
        crate::engine::mergeability::fill(
            &mut graph,
            &wanted,
            &forges,
            &self.state,
            &self.computing,
            interval,
            self.background(),
        )
        .await;
        graph
    }
}
