//! One cycle: poll every watch target once, compute every build, and deliver each
//! build whose fingerprint differs from the one the CI last accepted. A fingerprint
//! is recorded only after its CI target answered 2xx; a failed delivery is simply
//! tried again next cycle (same delivery id, since the fingerprint is the same).

use std::time::SystemTime;

use forgewatch_adapters::forge::RequestStats;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::builds::{PlannedBuild, WorkspaceBuilds, plan_workspace};
use crate::config::WorkspaceConfig;
use crate::fingerprint::change_reason;
use crate::ids::{BuildKey, DeliveryId};
use crate::payload::{PayloadContext, build_trigger};
use crate::poller::{poll, watch_targets};
use crate::supervisor::Supervisor;

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
    WouldDeliver,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Failed => "failed",
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
        let number = self
            .cycles
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let span = tracing::info_span!("cycle", number);
        let before = self.request_stats();
        let report = self
            .cycle_in_span(mode, shutdown)
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
            tracing::info!(
                forge = %name,
                fresh = new.fresh - old.fresh,
                not_modified = new.not_modified - old.not_modified,
                failed = new.failed - old.failed,
                rate_limit_remaining = ?remaining,
                rate_limit = ?limit,
                "forge requests"
            );
            if let (Some(remaining), Some(limit)) = (remaining, limit)
                && remaining.saturating_mul(10) < limit
            {
                tracing::warn!(forge = %name, remaining, limit, "rate-limit budget below 10%");
            }
        }
    }

    async fn cycle_in_span(
        &self,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        let started = SystemTime::now();
        let packages = self.workspace_packages(shutdown).await;
        let targets = watch_targets(self.config.workspaces.iter().filter_map(|ws| {
            let p = packages.get(&ws.name)?;
            Some((&p.packages[..], ws.pull_requests.enabled))
        }));
        let results = poll(&targets, &self.forges, shutdown).await;
        let mut report = CycleReport {
            poll_errors: results.errors().map(|(t, e)| format!("{t}: {e}")).collect(),
            interrupted: results.interrupted,
            polls: results.heads.len() + results.pulls.len(),
            ..CycleReport::default()
        };
        report.poll_errors.sort();
        for e in &report.poll_errors {
            tracing::warn!("poll failed: {e}");
        }
        if report.interrupted {
            tracing::info!("shutdown requested: cycle stopped before delivering");
            return Ok(report);
        }
        if mode == Mode::Deliver {
            self.schedule_updates(&packages, &results, shutdown).await?;
        }
        let graph = self.dependency_graph(&results).await;
        let detected_at = forgewatch_adapters::http::unix_seconds(started);
        for ws in &self.config.workspaces {
            let Some(ws_packages) = packages.get(&ws.name) else {
                continue;
            };
            // A running update may change the package list: the mainline waits for it.
            let waits = if self.updates.is_running(&ws.name) {
                Some("waiting for its update to end".to_owned())
            } else {
                ws_packages.incomplete.clone()
            };
            let planned = plan_workspace(
                ws,
                &ws_packages.packages,
                waits.as_deref(),
                &results,
                &graph,
                detected_at,
            );
            let span = tracing::info_span!("workspace", workspace = %ws.name);
            self.workspace_cycle(ws, &planned, mode, detected_at, shutdown, &mut report)
                .instrument(span)
                .await?;
        }
        Ok(report)
    }

    async fn workspace_cycle(
        &self,
        ws: &WorkspaceConfig,
        planned: &WorkspaceBuilds,
        mode: Mode,
        detected_at: i64,
        shutdown: &CancellationToken,
        report: &mut CycleReport,
    ) -> anyhow::Result<()> {
        for (key, why) in &planned.not_built {
            self.report_once(format!("{key}: not built: {why}"));
            report.not_built.push(format!("{key}: {why}"));
        }
        for skipped in &planned.skipped {
            tracing::info!(build_key = %skipped.key, "not computed this cycle: {}", skipped.reason);
            report
                .skipped
                .push(format!("{}: {}", skipped.key, skipped.reason));
        }
        for build in &planned.builds {
            if shutdown.is_cancelled() {
                report.interrupted = true;
                return Ok(());
            }
            if let Some(outcome) = self.consider(ws, build, mode, detected_at).await? {
                report.outcomes.push(outcome);
            }
        }
        if mode == Mode::Deliver {
            self.forget_closed(&planned.complete_pr_prefixes, &planned.builds)?;
        }
        Ok(())
    }

    /// Delivers `build` if its fingerprint is new.
    async fn consider(
        &self,
        ws: &WorkspaceConfig,
        build: &PlannedBuild,
        mode: Mode,
        detected_at: i64,
    ) -> anyhow::Result<Option<Outcome>> {
        let fingerprint = build.inputs.fingerprint();
        let previous = self.state.delivered(&build.key)?;
        if previous
            .as_ref()
            .is_some_and(|p| p.fingerprint == fingerprint)
        {
            return Ok(None);
        }
        let previous_inputs = previous.as_ref().and_then(|p| p.inputs.as_ref());
        let reason = change_reason(previous_inputs, &build.inputs);
        let delivery_id = DeliveryId::derive(&build.key, &fingerprint);
        let mut outcome = Outcome {
            build_key: build.key.to_string(),
            status: Status::WouldDeliver,
            reason,
            fingerprint: fingerprint.to_string(),
            delivery_id: delivery_id.to_string(),
        };
        if mode == Mode::DryRun {
            return Ok(Some(outcome));
        }
        let Some(ci) = self.ci.get(&ws.ci) else {
            anyhow::bail!(
                "workspace `{}` names CI target `{}`, which is not configured",
                ws.name,
                ws.ci
            );
        };
        let trigger = build_trigger(
            build,
            &PayloadContext {
                workspace: &ws.name,
                delivery_id: &delivery_id,
                previous: previous_inputs,
                reason: &outcome.reason,
                detected_at,
            },
        );
        let span =
            tracing::info_span!("delivery", build_key = %build.key, %delivery_id, ci = %ws.ci);
        match ci.deliver(&trigger).instrument(span.clone()).await {
            Ok(()) => {
                let now = forgewatch_adapters::http::unix_seconds(SystemTime::now());
                self.state
                    .record_delivery(&build.key, &build.inputs, &outcome.delivery_id, now)?;
                span.in_scope(|| tracing::info!(reason = %outcome.reason, "delivered"));
                outcome.status = Status::Delivered;
            }
            Err(e) => {
                span.in_scope(|| tracing::warn!("delivery failed, will retry next cycle: {e}"));
                outcome.status = Status::Failed;
                outcome.reason = e.to_string();
            }
        }
        Ok(Some(outcome))
    }

    /// Drops the stored builds of pull requests that are no longer open.
    fn forget_closed(&self, prefixes: &[String], open: &[PlannedBuild]) -> anyhow::Result<()> {
        let mut closed: Vec<BuildKey> = Vec::new();
        for prefix in prefixes {
            for key in self.state.build_keys_with_prefix(prefix)? {
                if !open.iter().any(|b| b.key == key) {
                    closed.push(key);
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
