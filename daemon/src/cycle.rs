//! One cycle: poll every watch target once, compute every build, enqueue each build
//! whose fingerprint differs from the one the CI last accepted into the persisted
//! outbox (all of a cycle's changes in one transaction), then send what is due
//! ([`crate::outbox`]). A fingerprint is recorded only after its CI target answered
//! 2xx; a failed delivery stays pending with the same delivery id.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use forgewatch_adapters::forge::WatchTarget;

use forgewatch_adapters::forge::RequestStats;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::builds::{WorkspaceBuilds, plan_workspace};
use crate::config::WorkspaceConfig;
use crate::fingerprint::change_reason;
use crate::ids::{BuildKey, DeliveryId, Fingerprint};
use crate::mergeability::IntervalStart;
use crate::payload::{PayloadContext, build_trigger};
use crate::plan_inputs::PlanInputs;
use crate::poller::poll;
use crate::state::BuildMark;
use crate::state::outbox::{Enqueued, Pending};
use crate::supervisor::Supervisor;

/// What one cycle saw of a workspace: its configuration, packages and builds, with
/// each build's fingerprint (in the order of `planned.builds`).
pub struct SeenWorkspace<'a> {
    pub config: &'a WorkspaceConfig,
    pub packages: Vec<crate::config::PackageConfig>,
    pub planned: WorkspaceBuilds,
    pub fingerprints: Vec<Fingerprint>,
    /// Its config PRs and their transient packages.
    pub transients: crate::transient::Transients,
}

/// What one cycle tells the outbox.
#[derive(Default)]
struct Changes {
    new: Vec<Enqueued>,
    /// Keys whose pending delivery is obsolete.
    obsolete: Vec<BuildKey>,
    /// Per workspace: PR key prefixes whose lists were complete, and the builds seen.
    closed: Vec<(Vec<String>, Vec<BuildKey>)>,
}

/// Which watch targets a cycle polls; the others keep their latest answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    All,
    /// Those whose index (in target order) is `index` modulo `of`.
    Slice {
        index: usize,
        of: usize,
    },
    /// The targets of these repositories (webhooks named them).
    Repos(std::collections::BTreeSet<forgewatch_adapters::RepoId>),
}

impl Selection {
    /// Whether a cycle of this selection starts a poll interval (a full cycle, or
    /// the first slice of `run`'s interval).
    fn starts_interval(&self) -> IntervalStart {
        match self {
            Selection::All | Selection::Slice { index: 0, .. } => IntervalStart::Yes,
            Selection::Slice { .. } | Selection::Repos(_) => IntervalStart::No,
        }
    }

    fn of<V: Clone>(&self, targets: &BTreeMap<WatchTarget, V>) -> BTreeMap<WatchTarget, V> {
        targets
            .iter()
            .enumerate()
            .filter(|(i, (t, _))| match self {
                Selection::All => true,
                Selection::Slice { index, of } => i % (*of).max(1) == *index,
                Selection::Repos(repos) => repos.contains(&t.repo),
            })
            .map(|(_, (k, v))| (k.clone(), v.clone()))
            .collect()
    }
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
    /// One cycle, in a `cycle` span numbered from 1 for the life of the supervisor.
    pub async fn cycle(
        &self,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        self.cycle_slice(mode, Selection::All, shutdown).await
    }

    /// A cycle that polls only `slice` of the targets and computes every build from
    /// the latest answers known for all of them (`run` spreads its requests so).
    pub async fn cycle_slice(
        &self,
        mode: Mode,
        slice: Selection,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        let number = self
            .cycles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let span = tracing::info_span!("cycle", number);
        let before = self.request_stats();
        let report = self
            .cycle_in_span(mode, slice, shutdown)
            .instrument(span.clone())
            .await;
        span.in_scope(|| self.log_forge_usage(&before));
        report
    }

    fn request_stats(&self) -> Vec<(String, RequestStats)> {
        self.forges
            .iter()
            .map(|(name, f)| (name.clone(), f.stats()))
            .collect()
    }

    /// Requests of this cycle per forge, and the rate-limit budget the forge reported.
    fn log_forge_usage(&self, before: &[(String, RequestStats)]) {
        for ((name, old), (_, new)) in before.iter().zip(self.request_stats()) {
            let rate = self.forges.get(name).and_then(|f| f.rate_limit());
            let remaining = rate.as_ref().and_then(|r| r.remaining);
            let limit = rate.as_ref().and_then(|r| r.limit);
            let (fresh, not_modified, failed) = (
                new.fresh - old.fresh,
                new.not_modified - old.not_modified,
                new.failed - old.failed,
            );
            // Only news at info: a quiet slice (all 304s) is a debug line.
            if fresh + failed > 0 {
                tracing::info!(forge = %name, fresh, not_modified, failed, rate_limit_remaining = ?remaining, rate_limit = ?limit, "forge requests");
            } else {
                tracing::debug!(forge = %name, fresh, not_modified, failed, rate_limit_remaining = ?remaining, rate_limit = ?limit, "forge requests");
            }
            let (Some(remaining), Some(limit)) = (remaining, limit) else {
                continue;
            };
            let low = remaining.saturating_mul(10) < limit;
            let state = if low { "low" } else { "ok" };
            if self.is_news(format!("budget {name}"), Some(state)) && low {
                tracing::warn!(forge = %name, remaining, limit, "rate-limit budget below 10%");
            }
        }
    }

    async fn cycle_in_span(
        &self,
        mode: Mode,
        slice: Selection,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        crate::crash::block_point("cycle").await;
        let started = SystemTime::now();
        let packages = self.workspace_packages(shutdown).await;
        let targets = self.cycle_targets(&packages);
        let mut selected = slice.of(&targets);
        selected.extend(self.unanswered(&targets));
        let held = self.held_answers(&selected);
        let polled = poll(&selected, &held, &self.forges, shutdown, &self.progress).await;
        self.log_poll_changes(&polled);
        let (mut results, changed) = self.merge_known(polled, &targets);
        if changed {
            self.last_inputs.answers_changed();
        }
        let mut report = CycleReport {
            poll_errors: results.errors().map(|(t, e)| format!("{t}: {e}")).collect(),
            interrupted: results.interrupted,
            polls: results.heads.len() + results.pulls.len(),
            ..CycleReport::default()
        };
        report.poll_errors.sort();
        for (forge, (targets, until)) in &results.paused {
            let until_text = humantime::format_rfc3339_seconds(*until).to_string();
            if self.is_news(format!("pause {forge}"), Some(&until_text)) {
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
            self.schedule_updates(&packages, &results, shutdown).await?;
        }
        let detected_at = forgewatch_adapters::http::unix_seconds(started);
        let interval = slice.starts_interval();
        let mut graph = self
            .dependency_graph(&results, &packages, detected_at, interval)
            .await;
        let mut open = self.open_config_prs(&packages, &results, &graph, detected_at);
        if mode == Mode::Deliver
            && self.start_discoveries(&open, &packages, shutdown).await > 0
            && self.discover_in_foreground
        {
            // `once`: every due discovery runs (one per workspace at a time) and
            // what they add is polled before builds are computed, so each key is
            // delivered at most once. Bounded: each run records its config PR.
            let mut rounds = open.values().map(Vec::len).sum::<usize>();
            loop {
                self.discoveries.wait_all().await;
                rounds = rounds.saturating_sub(1);
                if rounds == 0 || self.start_discoveries(&open, &packages, shutdown).await == 0 {
                    break;
                }
            }
            self.learn_default_branches(shutdown).await;
            let targets = self.cycle_targets(&packages);
            let added = self.unanswered(&targets);
            if !added.is_empty() {
                let held = self.held_answers(&added);
                let polled = poll(&added, &held, &self.forges, shutdown, &self.progress).await;
                self.log_poll_changes(&polled);
                let changed;
                (results, changed) = self.merge_known(polled, &targets);
                if changed {
                    self.last_inputs.answers_changed();
                }
                graph = self
                    .dependency_graph(&results, &packages, detected_at, IntervalStart::No)
                    .await;
                open = self.open_config_prs(&packages, &results, &graph, detected_at);
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
                self.forget_closed_config_prs(ws, &ws_packages.packages, open_here, &results)?;
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
            packages: Cow::Borrowed(&packages),
            paused: Cow::Borrowed(&results.paused),
            graph: Cow::Borrowed(&graph),
            open_config_prs: Cow::Borrowed(&open),
            transients: prepared.iter().map(|p| Cow::Borrowed(&p.2)).collect(),
            updates_running: prepared.iter().map(|p| p.3).collect(),
        };
        let later_slice = matches!(slice, Selection::Slice { index, .. } if index != 0);
        if mode == Mode::Deliver && later_slice && self.last_inputs.still_hold(&inputs) {
            tracing::debug!("nothing changed since the last computation: builds kept");
            report.outcomes = self
                .send_pending(self.attempt_all_pending, shutdown)
                .await?;
            self.refresh_deliveries(&report, started)?;
            return Ok(report);
        }
        let inputs = inputs.into_owned();
        let mut changes = Changes::default();
        let mut seen = Vec::new();
        let mut fingerprinting = std::time::Duration::ZERO;
        let marks = self.state.build_marks()?;
        for (ws, ws_packages, transients, update_running) in prepared {
            // A running update may change the package list: the mainline waits for it.
            let waits = if update_running {
                Some("waiting for its update to end".to_owned())
            } else {
                ws_packages.incomplete.clone()
            };
            let planned = plan_workspace(
                ws,
                &ws_packages.packages,
                &transients,
                waits.as_deref(),
                &results,
                &graph,
                detected_at,
            );
            let timer = std::time::Instant::now();
            let fingerprints: Vec<Fingerprint> = planned
                .builds
                .iter()
                .map(|b| b.inputs.fingerprint())
                .collect();
            fingerprinting += timer.elapsed();
            let _span = tracing::info_span!("workspace", workspace = %ws.name).entered();
            let seen_ws = SeenWorkspace {
                config: ws,
                packages: ws_packages.packages.clone(),
                planned,
                fingerprints,
                transients,
            };
            self.observe_workspace(
                &seen_ws,
                &marks,
                mode,
                detected_at,
                &mut changes,
                &mut report,
            )?;
            seen.push(seen_ws);
        }
        report.fingerprint_seconds = fingerprinting.as_secs_f64();
        if mode == Mode::DryRun {
            return Ok(report);
        }
        let now_ms = detected_at.saturating_mul(1000);
        // The new payloads are in the outbox now: not kept in memory as well.
        let new = std::mem::take(&mut changes.new);
        self.state.enqueue(&new, &changes.obsolete, now_ms)?;
        drop(new);
        crate::crash::point("after-enqueue");
        let known: BTreeSet<&str> = marks.keys().map(BuildKey::as_str).collect();
        for closed in &changes.closed {
            self.forget_closed(&known, &closed.0, &closed.1)?;
        }
        report.outcomes = self
            .send_pending(self.attempt_all_pending, shutdown)
            .await?;
        self.refresh_snapshot(&results, seen, &report, started)?;
        self.last_inputs.computed(inputs);
        Ok(report)
    }

    /// Compares each build of a workspace with what was delivered and what is
    /// pending (`marks`, read once per cycle); collects what the outbox must learn.
    fn observe_workspace(
        &self,
        seen: &SeenWorkspace<'_>,
        marks: &HashMap<BuildKey, BuildMark>,
        mode: Mode,
        detected_at: i64,
        changes: &mut Changes,
        report: &mut CycleReport,
    ) -> anyhow::Result<()> {
        let planned = &seen.planned;
        for (key, why) in &planned.not_built {
            self.report_once(format!("{key}: not built: {why}"));
            report.not_built.push(format!("{key}: {why}"));
        }
        for skipped in &planned.skipped {
            if self.is_news(format!("skipped {}", skipped.key), Some(&skipped.reason)) {
                tracing::info!(build_key = %skipped.key, "not computed: {}", skipped.reason);
            }
            report
                .skipped
                .push(format!("{}: {}", skipped.key, skipped.reason));
        }
        for (build, fingerprint) in planned.builds.iter().zip(&seen.fingerprints) {
            if self.is_news(format!("skipped {}", build.key), None) {
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
            // A change: only now are the delivered inputs read, for the reason.
            let delivered = self.state.delivered(&build.key)?;
            let previous = delivered.as_ref().and_then(|d| d.inputs.as_ref());
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
            }));
        }
        // A build waiting this cycle (for a discovery) is still open.
        changes.closed.push((
            planned.complete_pr_prefixes.clone(),
            planned
                .builds
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
    fn forget_closed(
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
            self.state.forget_builds(&closed)?;
        }
        Ok(())
    }
}
