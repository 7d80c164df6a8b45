//! One cycle: poll every watch target once, compute every build, enqueue each build
//! whose fingerprint differs from the one the CI last accepted into the persisted
//! outbox (all of a cycle's changes in one transaction), then send what is due
//! ([`crate::engine::outbox`]). A fingerprint is recorded only after its CI target answered
//! 2xx; a failed delivery stays pending with the same delivery id.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use forgewatch_adapters::forge::WatchTarget;

use forgewatch_adapters::forge::RequestStats;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::engine::computed::{Computed, SeenWorkspace};
use crate::engine::mergeability::IntervalStart;
use crate::engine::poller::poll;
use crate::engine::supervisor::Supervisor;
use crate::plan::answers::{PollResults, TargetNeeds};
use crate::plan::builds::{PlannedBuild, plan_workspace};
use crate::plan::fingerprint::change_reason;
use crate::plan::ids::{BuildKey, DeliveryId, Fingerprint};
use crate::plan::inputs::{AllPackages, PlanInputs, WorkspacePackages};
use crate::plan::payload::{PayloadContext, build_trigger};
use crate::state::outbox::{Enqueued, Pending};
use crate::state::{BuildMark, DeliveredBuild};

/// What one cycle tells the outbox.
#[derive(Default)]
struct Changes {
    new: Vec<Enqueued>,
    /// Keys whose pending delivery is obsolete.
    obsolete: Vec<BuildKey>,
    /// Per workspace: PR key prefixes whose lists were complete, and the builds seen.
    closed: Vec<(Vec<String>, Vec<BuildKey>)>,
}

/// Whether a cycle sends anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Deliver,
    /// Compute and report; send nothing, record nothing.
    DryRun,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Delivered,
    Failed,
    /// In the outbox, not attempted this time (backoff, or shutdown).
    Pending,
    WouldDeliver,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Pending => "pending",
            Status::WouldDeliver => "would-deliver",
        }
    }
}

/// One changed build and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub build_key: String,
    pub status: Status,
    /// The changed inputs, or the failure.
    pub reason: String,
    pub fingerprint: String,
    pub delivery_id: String,
}

#[derive(Debug, Default)]
pub struct CycleReport {
    pub outcomes: Vec<Outcome>,
    /// Targets that could not be polled, with the error.
    pub poll_errors: Vec<String>,
    /// Builds that could not be computed, with the reason.
    pub skipped: Vec<String>,
    /// Shutdown arrived before the cycle could deliver.
    pub interrupted: bool,
    /// Forge requests answered this cycle (including failures).
    pub polls: usize,
    /// Open pull requests that are not built, with the reason.
    pub not_built: Vec<String>,
    /// Time spent computing the fingerprint of every build (the whole state).
    pub fingerprint_seconds: f64,
    /// Every build was computed (not skipped because nothing changed).
    pub computed: bool,
}

impl CycleReport {
    pub fn count(&self, status: Status) -> usize {
        self.outcomes.iter().filter(|o| o.status == status).count()
    }

    /// Every poll failed: nothing could be computed (network down, bad token, …).
    pub fn nothing_polled(&self) -> bool {
        self.polls > 0 && self.poll_errors.len() == self.polls
    }
}

impl Supervisor {
    /// The number of the next cycle (the `cycle` span).
    pub(crate) fn next_cycle_number(&self) -> u64 {
        self.cycles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// `once`: polls `targets` from this task, telling the forges which answers
    /// are held.
    pub(crate) async fn poll_in_place(
        &self,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
        shutdown: &CancellationToken,
    ) -> PollResults {
        let held = self.known.held(targets);
        poll(
            targets,
            &held,
            self.clients.forges(),
            shutdown,
            &self.progress,
        )
        .await
    }

    /// [`Supervisor::absorb`] of answers every forge was asked for.
    pub(crate) fn absorb_from_every_forge(
        &self,
        polled: PollResults,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
    ) {
        let every_forge: Vec<&str> = self.clients.forges().keys().map(String::as_str).collect();
        self.absorb(polled, targets, &every_forge);
    }

    pub(crate) fn request_stats(&self) -> Vec<(String, RequestStats)> {
        self.clients
            .forges()
            .iter()
            .map(|(name, f)| (name.clone(), f.stats()))
            .collect()
    }

    /// Requests of one forge since `before`, and the rate-limit budget it reported.
    pub(crate) fn log_forge_usage(&self, name: &str, before: &RequestStats) {
        let Some(forge) = self.clients.forge(name) else {
            return;
        };
        let new = forge.stats();
        let rate = forge.rate_limit();
        let remaining = rate.as_ref().and_then(|r| r.remaining);
        let limit = rate.as_ref().and_then(|r| r.limit);
        let (fresh, not_modified, failed) = (
            new.fresh.saturating_sub(before.fresh),
            new.not_modified.saturating_sub(before.not_modified),
            new.failed.saturating_sub(before.failed),
        );
        // Only news at info: a quiet round (all 304s) is a debug line.
        if fresh + failed > 0 {
            tracing::info!(forge = %name, fresh, not_modified, failed, rate_limit_remaining = remaining, rate_limit = limit, "forge requests");
        } else {
            tracing::debug!(forge = %name, fresh, not_modified, failed, rate_limit_remaining = remaining, rate_limit = limit, "forge requests");
        }
        let (Some(remaining), Some(limit)) = (remaining, limit) else {
            return;
        };
        let low = remaining.saturating_mul(10) < limit;
        let state = if low { "low" } else { "ok" };
        if self.reports.is_news(format!("budget {name}"), Some(state)) && low {
            tracing::warn!(forge = %name, remaining, limit, "rate-limit budget below 10%");
        }
    }

    /// Takes in a round of answers of `forges` (their pauses replace the ones
    /// known): logs failures that start or end and returns every known answer.
    pub(crate) fn absorb(
        &self,
        polled: PollResults,
        targets: &BTreeMap<WatchTarget, TargetNeeds>,
        forges: &[&str],
    ) -> bool {
        let changed = self.known.absorb(polled, targets, forges);
        if changed {
            self.last_inputs.answers_changed();
        }
        changed
    }

    /// Computes every build from `results` (the latest answers of every target) and
    /// enqueues those that changed; sends nothing (the caller does). Unless
    /// `always`, a computation whose inputs are those of the last one is skipped.
    pub(crate) async fn compute(
        &self,
        mode: Mode,
        all_packages: &AllPackages,
        mut results: std::sync::Arc<PollResults>,
        always: bool,
        started: SystemTime,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        let packages: &HashMap<String, WorkspacePackages> = all_packages;
        let mut report = CycleReport {
            poll_errors: results.errors().map(|(t, e)| format!("{t}: {e}")).collect(),
            interrupted: results.interrupted,
            polls: results.heads.len() + results.pulls.len(),
            ..CycleReport::default()
        };
        report.poll_errors.sort();
        for (forge, (targets, until)) in &results.paused {
            let until_text = humantime::format_rfc3339_seconds(*until).to_string();
            if self
                .reports
                .is_news(format!("pause {forge}"), Some(&until_text))
            {
                tracing::warn!(forge = %forge, until = %until_text, "paused by its rate limit: {targets} targets skipped");
            } else {
                tracing::debug!(forge = %forge, until = %until_text, "still paused: {targets} targets skipped");
            }
            report
                .skipped
                .push(format!("forge {forge}: paused, {targets} targets skipped"));
        }
        if report.interrupted {
            tracing::info!("shutdown requested: cycle stopped before delivering");
            return Ok(report);
        }
        if mode == Mode::Deliver {
            self.schedule_updates(packages, &results, shutdown).await?;
        }
        let detected_at = forgewatch_adapters::http::unix_seconds(started);
        let interval = if always {
            IntervalStart::Yes
        } else {
            IntervalStart::No
        };
        let mut graph = self
            .dependency_graph(&results, packages, detected_at, interval)
            .await;
        let mut open = self.open_config_prs(packages, &results, &graph, detected_at);
        if mode == Mode::Deliver
            && self.start_discoveries(&open, packages, shutdown).await > 0
            && self.in_foreground
        {
            // `once`: every due discovery runs (one per workspace at a time) and
            // what they add is polled before builds are computed, so each key is
            // delivered at most once. Bounded: each run records its config PR.
            let mut rounds = open.values().map(Vec::len).sum::<usize>();
            loop {
                self.discoveries.wait_all().await;
                rounds = rounds.saturating_sub(1);
                if rounds == 0 || self.start_discoveries(&open, packages, shutdown).await == 0 {
                    break;
                }
            }
            self.learn_default_branches(shutdown).await;
            let targets = self.cycle_targets(packages);
            let added = self.known.unanswered(&targets);
            if !added.is_empty() {
                let polled = self.poll_in_place(&added, shutdown).await;
                self.absorb_from_every_forge(polled, &targets);
                results = self.known.answers();
                graph = self
                    .dependency_graph(&results, packages, detected_at, IntervalStart::No)
                    .await;
                open = self.open_config_prs(packages, &results, &graph, detected_at);
            }
        }
        // Each workspace's config PRs, and whether its update runs.
        let mut prepared = Vec::new();
        for ws in &self.config.workspaces {
            let Some(ws_packages) = packages.get(&ws.name) else {
                continue;
            };
            let open_here = open.get(&ws.name).map_or(&[][..], Vec::as_slice);
            if mode == Mode::Deliver {
                self.forget_closed_config_prs(ws, &ws_packages.packages, open_here, &results)
                    .await?;
            }
            let transients = self.transients(ws, &ws_packages.packages, open_here);
            prepared.push((
                ws,
                ws_packages,
                transients,
                self.updates.is_running(&ws.name),
            ));
        }
        let inputs = PlanInputs {
            packages: all_packages.clone(),
            paused: Cow::Borrowed(&results.paused),
            graph: Cow::Borrowed(&graph),
            open_config_prs: Cow::Borrowed(&open),
            transients: prepared.iter().map(|p| Cow::Borrowed(&p.2)).collect(),
            updates_running: prepared.iter().map(|p| p.3).collect(),
        };
        if mode == Mode::Deliver && !always && self.last_inputs.still_hold(&inputs) {
            tracing::debug!("nothing changed since the last computation: builds kept");
            return Ok(report);
        }
        let inputs = inputs.into_owned();
        let mut changes = Changes::default();
        let mut seen = Vec::new();
        let mut fingerprinting = std::time::Duration::ZERO;
        let marks = self.state.build_marks().await?;
        for (ws, ws_packages, transients, update_running) in prepared {
            // A running update may change the package list: the mainline waits for it.
            let waits = if update_running {
                Some("waiting for its update to end".to_owned())
            } else {
                ws_packages.incomplete.clone()
            };
            let mut planned = plan_workspace(
                ws,
                &ws_packages.packages,
                &transients,
                waits.as_deref(),
                &results,
                &graph,
                detected_at,
            );
            let timer = tokio::time::Instant::now();
            let fingerprints: Vec<Fingerprint> = planned
                .builds
                .iter()
                .map(|b| b.inputs.fingerprint())
                .collect();
            fingerprinting += timer.elapsed();
            let builds = self
                .status
                .share_unchanged(&ws.name, std::mem::take(&mut planned.builds));
            // A change's reason needs the delivered inputs: read in one call.
            let changed = changed_keys(&builds, &fingerprints, &marks, mode);
            let delivered = self.state.delivered_builds(changed).await?;
            let _span = tracing::info_span!("workspace", workspace = %ws.name).entered();
            let seen_ws = SeenWorkspace {
                config: ws,
                packages: &ws_packages.packages,
                planned,
                builds,
                fingerprints,
                transients,
            };
            self.observe_workspace(
                &seen_ws,
                &marks,
                &delivered,
                mode,
                detected_at,
                &mut changes,
                &mut report,
            )?;
            seen.push(seen_ws);
            let changed = !changes.new.is_empty() || !changes.obsolete.is_empty();
            if mode == Mode::Deliver && changed {
                // Each workspace's new payloads go to the outbox as soon as they
                // are made, not kept in memory for the whole cycle; nothing is sent
                // before the cycle's last workspace is in.
                let new = std::mem::take(&mut changes.new);
                let obsolete = std::mem::take(&mut changes.obsolete);
                self.state
                    .enqueue(new, obsolete, detected_at.saturating_mul(1000))
                    .await?;
            }
        }
        report.fingerprint_seconds = fingerprinting.as_secs_f64();
        if mode == Mode::DryRun {
            return Ok(report);
        }
        crate::crash::point("after-enqueue");
        let known: BTreeSet<&str> = marks.keys().map(BuildKey::as_str).collect();
        for closed in &changes.closed {
            self.forget_closed(&known, &closed.0, &closed.1).await?;
        }
        report.computed = true;
        let computed = Computed::new(all_packages.clone(), seen, &self.updates, &results);
        self.status
            .refresh(&self.state, &self.clients, computed, &report)
            .await?;
        self.last_inputs.computed(inputs);
        Ok(report)
    }

    /// Compares each build of a workspace with what was delivered and what is
    /// pending (`marks`, read once per cycle); collects what the outbox must learn.
    /// `delivered` holds what was delivered of the [`changed_keys`].
    #[allow(clippy::too_many_arguments)]
    fn observe_workspace(
        &self,
        seen: &SeenWorkspace<'_>,
        marks: &HashMap<BuildKey, BuildMark>,
        delivered: &HashMap<BuildKey, DeliveredBuild>,
        mode: Mode,
        detected_at: i64,
        changes: &mut Changes,
        report: &mut CycleReport,
    ) -> anyhow::Result<()> {
        let planned = &seen.planned;
        for (key, why) in &planned.not_built {
            self.reports.once(format!("{key}: not built: {why}"));
            report.not_built.push(format!("{key}: {why}"));
        }
        for skipped in &planned.skipped {
            if self
                .reports
                .is_news(format!("skipped {}", skipped.key), Some(&skipped.reason))
            {
                tracing::info!(build_key = %skipped.key, "not computed: {}", skipped.reason);
            }
            report
                .skipped
                .push(format!("{}: {}", skipped.key, skipped.reason));
        }
        for (build, fingerprint) in seen.builds.iter().zip(&seen.fingerprints) {
            if self.reports.is_news(format!("skipped {}", build.key), None) {
                tracing::info!(build_key = %build.key, "computed again");
            }
            let mark = marks.get(&build.key);
            let pending = mark.and_then(|m| m.pending.as_ref());
            if mark.and_then(|m| m.delivered.as_ref()) == Some(fingerprint) {
                // Back to what the CI has: an older pending change is obsolete.
                if pending.is_some() {
                    changes.obsolete.push(build.key.clone());
                }
                continue;
            }
            if mode == Mode::Deliver && pending == Some(fingerprint) {
                continue;
            }
            // A change: the delivered inputs give the reason.
            let previous = delivered.get(&build.key).and_then(|d| d.inputs.as_ref());
            let reason = change_reason(previous, &build.inputs);
            let delivery_id = DeliveryId::derive(&build.key, fingerprint);
            if mode == Mode::DryRun {
                report.outcomes.push(Outcome {
                    build_key: build.key.to_string(),
                    status: Status::WouldDeliver,
                    reason,
                    fingerprint: fingerprint.to_string(),
                    delivery_id: delivery_id.to_string(),
                });
                continue;
            }
            let trigger = build_trigger(
                build,
                &PayloadContext {
                    workspace: &seen.config.name,
                    delivery_id: &delivery_id,
                    previous,
                    reason: &reason,
                    detected_at,
                },
            );
            changes.new.push(Enqueued::from(&Pending {
                key: build.key.clone(),
                inputs: build.inputs.clone(),
                delivery_id: delivery_id.to_string(),
                ci: seen.config.ci.clone(),
                reason,
                trigger,
                attempts: 0,
                next_attempt: 0,
                last_error: None,
                enqueued_at: 0,
            }));
        }
        // A build waiting this cycle (for a discovery) is still open.
        changes.closed.push((
            planned.complete_pr_prefixes.clone(),
            seen.builds
                .iter()
                .map(|b| b.key.clone())
                .chain(planned.skipped.iter().map(|s| s.key.clone()))
                .collect(),
        ));
        Ok(())
    }

    /// Drops the stored and pending builds of pull requests that are no longer
    /// open (or no longer built): those of `known` (the keys the state held when
    /// the cycle began) under a complete list's prefix that this cycle did not see.
    async fn forget_closed(
        &self,
        known: &BTreeSet<&str>,
        prefixes: &[String],
        open: &[BuildKey],
    ) -> anyhow::Result<()> {
        let open: HashSet<&str> = open.iter().map(BuildKey::as_str).collect();
        let mut closed: Vec<BuildKey> = Vec::new();
        for prefix in prefixes {
            let under = known
                .range(prefix.as_str()..)
                .take_while(|k| k.starts_with(prefix.as_str()));
            for key in under {
                if !open.contains(key) {
                    closed.push(BuildKey::from_stored((*key).to_owned()));
                }
            }
        }
        if !closed.is_empty() {
            tracing::info!(
                count = closed.len(),
                "forgetting builds of closed pull requests"
            );
            self.state.forget_builds(closed).await?;
        }
        Ok(())
    }
}

/// The builds of `planned` whose fingerprint is neither the delivered one nor, when
/// delivering, the pending one (as [`Supervisor::observe_workspace`] decides).
fn changed_keys(
    builds: &[std::sync::Arc<PlannedBuild>],
    fingerprints: &[Fingerprint],
    marks: &HashMap<BuildKey, BuildMark>,
    mode: Mode,
) -> Vec<BuildKey> {
    builds
        .iter()
        .zip(fingerprints)
        .filter(|(build, fingerprint)| {
            let mark = marks.get(&build.key);
            mark.and_then(|m| m.delivered.as_ref()) != Some(*fingerprint)
                && !(mode == Mode::Deliver
                    && mark.and_then(|m| m.pending.as_ref()) == Some(*fingerprint))
        })
        .map(|(build, _)| build.key.clone())
        .collect()
}
