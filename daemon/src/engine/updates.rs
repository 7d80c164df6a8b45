//! Workspace update jobs: when each workspace's update command is due (at startup,
//! when its buildconf or a package set moved, every `every`, or for a retry after a
//! failure with exponential backoff), running it in the background with the
//! workspace runner (at most one per workspace, `max_parallel_updates` in all), and
//! recording each run as a job with its log. An update never blocks polling or the
//! other workspaces: only its own workspace's mainline waits for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use forgewatch_adapters::forge::WatchTarget;
use forgewatch_workspace_runner::process::Job;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, PackageConfig, PackageKind, UpdateConfig, WorkspaceConfig};
use crate::engine::clock::Clock;
use crate::engine::recorded_job::{self, MAX_LINE_BYTES, MAX_LOG_LINES};
use crate::plan::answers::PollResults;
use crate::state::Store;
use crate::state::jobs::JobStatus;

/// First retry delay after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(60);
const BACKOFF_CAP: Duration = Duration::from_secs(60 * 60);

/// Why an update runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    ConfigChange,
    Every,
    Retry,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::ConfigChange => "config_change",
            Trigger::Every => "every",
            Trigger::Retry => "retry after failure",
        }
    }
}

/// `target → head` of a workspace's buildconf and package sets; `None` when one
/// of them could not be polled this cycle.
pub fn config_heads(
    packages: &[PackageConfig],
    poll: &PollResults,
) -> Option<BTreeMap<String, String>> {
    let mut heads = BTreeMap::new();
    for pkg in packages.iter().filter(|p| p.kind != PackageKind::Package) {
        let target = WatchTarget {
            repo: pkg.repo.clone(),
            branch: pkg.branch.clone(),
        };
        let head = poll.heads.get(&target)?.as_ref().ok()?;
        heads.insert(target.to_string(), head.clone());
    }
    Some(heads)
}

/// Whether a config target known at the last update has another head now.
fn moved(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> bool {
    then.iter()
        .any(|(target, head)| now.get(target).is_some_and(|h| h != head))
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
}

pub struct Updates {
    permits: Arc<Semaphore>,
    state: Store,
    /// Variables removed from every child's environment (forgewatch's secrets).
    secret_env_vars: Vec<String>,
    running: Arc<Mutex<HashSet<String>>>,
    /// Workspaces whose startup update has not started yet in this process.
    startup_pending: Mutex<HashSet<String>>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    /// Workspaces whose update finished since the last [`Updates::take_finished`].
    finished: Arc<Mutex<Vec<String>>>,
    metrics: Arc<crate::engine::status::Metrics>,
    clock: Arc<dyn Clock>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Updates {
    /// After a reload: the updates still running (or finished and not yet seen)
    /// stay known and their tasks move here (dropping the old set would abort them
    /// and leave their workspaces waiting forever), and startup updates run only
    /// for workspaces the old configuration did not have.
    pub fn carry_over(&mut self, old: &Updates, old_workspaces: &[String]) {
        self.running = old.running.clone();
        self.finished = old.finished.clone();
        // Only `spawn` and `wait_all` lock the set, and neither runs during a reload.
        if let Ok(mut tasks) = old.tasks.try_lock() {
            *self.tasks.get_mut() = std::mem::take(&mut *tasks);
        }
        let mut pending = lock(&self.startup_pending);
        pending.retain(|ws| !old_workspaces.contains(ws));
    }

    pub fn new(
        config: &Config,
        state: Store,
        metrics: Arc<crate::engine::status::Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Updates {
        let startup = config
            .workspaces
            .iter()
            .filter(|w| w.update.as_ref().is_some_and(|u| u.on_startup))
            .map(|w| w.name.clone())
            .collect();
        Updates {
            permits: Arc::new(Semaphore::new(config.max_parallel_updates.max(1))),
            state,
            secret_env_vars: config.secret_env_vars.clone(),
            running: Arc::new(Mutex::new(HashSet::new())),
            startup_pending: Mutex::new(startup),
            tasks: tokio::sync::Mutex::new(JoinSet::new()),
            finished: Arc::new(Mutex::new(Vec::new())),
            clock,
            metrics,
        }
    }

    /// The subprocess permits (`max_parallel_updates`), shared with discoveries.
    pub fn permits(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }

    pub fn is_running(&self, workspace: &str) -> bool {
        lock(&self.running).contains(workspace)
    }

    /// Workspaces whose update ended since the last call (their manifest is re-read).
    pub fn take_finished(&self) -> Vec<String> {
        std::mem::take(&mut *lock(&self.finished))
    }

    /// Whether `ws`'s update is due now, and why. `heads` are this cycle's config
    /// heads (`None`: unknown this cycle, so no `config_change` can be decided).
    pub async fn due(
        &self,
        ws: &WorkspaceConfig,
        heads: Option<&BTreeMap<String, String>>,
        now: i64,
    ) -> anyhow::Result<Option<Trigger>> {
        let Some(update) = &ws.update else {
            return Ok(None);
        };
        if self.is_running(&ws.name) {
            return Ok(None);
        }
        if lock(&self.startup_pending).contains(&ws.name) {
            return Ok(Some(Trigger::Startup));
        }
        let marks = self.state.update_marks(&ws.name).await?;
        let since_attempt = marks.last_attempt.map(|t| now.saturating_sub(t));
        if marks.failures > 0 {
            let wait = i64::try_from(backoff(marks.failures).as_secs()).unwrap_or(i64::MAX);
            return Ok(since_attempt
                .is_none_or(|s| s >= wait)
                .then_some(Trigger::Retry));
        }
        if update.on_config_change
            && let Some(heads) = heads
        {
            if marks.last_success.is_none() || moved(&marks.config_heads, heads) {
                return Ok(Some(Trigger::ConfigChange));
            }
            if marks.config_heads != *heads {
                // Package sets appeared or went with the last update; none moved.
                let mut marks = marks.clone();
                marks.config_heads = heads.clone();
                self.state.save_update_marks(&ws.name, &marks).await?;
            }
        }
        if let Some(every) = update.every {
            let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
            if since_attempt.is_none_or(|s| s >= every) {
                return Ok(Some(Trigger::Every));
            }
        }
        Ok(None)
    }

    /// Starts `ws`'s update in the background.
    pub async fn spawn(
        &self,
        ws: &WorkspaceConfig,
        trigger: Trigger,
        heads: Option<BTreeMap<String, String>>,
        cancel: &CancellationToken,
    ) {
        let Some(update) = ws.update.clone() else {
            return;
        };
        lock(&self.running).insert(ws.name.clone());
        lock(&self.startup_pending).remove(&ws.name);
        let run = UpdateRun {
            workspace: ws.name.clone(),
            update,
            trigger,
            heads,
            state: self.state.clone(),
            secret_env_vars: self.secret_env_vars.clone(),
            metrics: self.metrics.clone(),
            clock: self.clock.clone(),
        };
        let permits = self.permits.clone();
        let cancel = cancel.clone();
        let finished = self.finished.clone();
        let metrics = self.metrics.clone();
        let span = tracing::info_span!("update", workspace = %ws.name, trigger = %trigger.as_str());
        let (name, running) = (ws.name.clone(), self.running.clone());
        let mut tasks = self.tasks.lock().await;
        // Reap the updates that ended, so a long-running daemon does not keep them.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(
            async move {
                // Waiting for a permit counts as running: the workspace's mainline waits.
                if let Ok(_permit) = permits.acquire_owned().await {
                    run.execute(&cancel).await;
                }
                crate::engine::status::Metrics::add(&metrics.targets_changed, 1);
                lock(&running).remove(&name);
                lock(&finished).push(name);
                crate::engine::status::Metrics::add(&metrics.targets_changed, 1);
            }
            .instrument(span),
        );
    }

    /// Waits for every started update to end (after cancellation at shutdown, or in
    /// `once`).
    pub async fn wait_all(&self) {
        let mut tasks = self.tasks.lock().await;
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!("an update task failed: {e}");
            }
        }
    }
}

/// One run of one workspace's update command.
struct UpdateRun {
    workspace: String,
    update: UpdateConfig,
    trigger: Trigger,
    /// The config heads when it started (recorded on success).
    heads: Option<BTreeMap<String, String>>,
    state: Store,
    secret_env_vars: Vec<String>,
    metrics: Arc<crate::engine::status::Metrics>,
    clock: Arc<dyn Clock>,
}

impl UpdateRun {
    async fn execute(self, cancel: &CancellationToken) {
        let now_s = self.clock.unix_seconds();
        let mut marks = self
            .state
            .update_marks(&self.workspace)
            .await
            .unwrap_or_default();
        marks.last_attempt = Some(now_s);
        let _ = self.state.save_update_marks(&self.workspace, &marks).await;
        let job = Job {
            argv: self.update.argv.clone(),
            dir: self.update.dir.clone(),
            env_set: self.update.env.clone(),
            env_remove: self.secret_env_vars.clone(),
            timeout: self.update.timeout,
            kill_grace: self.update.kill_grace,
            stdin: None,
            max_log_lines: MAX_LOG_LINES,
            max_line_bytes: MAX_LINE_BYTES,
        };
        let outcome = recorded_job::run(
            &self.state,
            &*self.clock,
            &self.workspace,
            "update",
            &job,
            cancel,
        )
        .await;
        let (job_id, status, detail) = (outcome.id, outcome.status, outcome.detail);
        let (kind, counter) = match status {
            JobStatus::Succeeded => ("update_succeeded", &self.metrics.updates_succeeded),
            JobStatus::TimedOut => ("update_timed_out", &self.metrics.updates_timed_out),
            _ => ("update_failed", &self.metrics.updates_failed),
        };
        crate::engine::status::Metrics::add(counter, 1);
        let message = format!("job {job_id} ({}): {detail}", self.trigger.as_str());
        self.state.record_event(
            self.clock.unix_ms(),
            kind,
            Some(&self.workspace),
            None,
            &message,
        );
        if status == JobStatus::Succeeded {
            if let Some(heads) = self.heads {
                marks.config_heads = heads;
            }
            marks.last_success = Some(outcome.ended_at / 1000);
            marks.failures = 0;
            tracing::info!(
                job = job_id,
                trigger = %self.trigger.as_str(),
                "update succeeded"
            );
        } else {
            marks.failures = marks.failures.saturating_add(1);
            tracing::warn!(
                job = job_id,
                failures = marks.failures,
                retry_in = %humantime::format_duration(backoff(marks.failures)),
                "update {}: {detail}; keeping the last good package list",
                status.as_str()
            );
        }
        if let Err(e) = self.state.save_update_marks(&self.workspace, &marks).await {
            tracing::error!("cannot record the update marks: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), Duration::from_secs(60));
        assert_eq!(backoff(2), Duration::from_secs(120));
        assert_eq!(backoff(4), Duration::from_secs(480));
        assert_eq!(backoff(30), BACKOFF_CAP);
    }

    #[test]
    fn a_new_package_set_is_not_a_move() {
        let then: BTreeMap<String, String> = [("a".to_owned(), "1".to_owned())].into();
        let mut now = then.clone();
        now.insert("b".into(), "2".into());
        assert!(!moved(&then, &now));
        now.insert("a".into(), "3".into());
        assert!(moved(&then, &now));
    }
}
