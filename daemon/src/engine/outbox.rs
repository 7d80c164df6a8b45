//! The sender of the persisted outbox: delivers pending deliveries, each CI target
//! on its own task so one target being down never delays the others; records an
//! accepted delivery and removes it from the outbox in one transaction (on the
//! store trip that reads the next one); schedules a failed one again with
//! exponential backoff and jitter, capped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::ReportConfig;
use crate::engine::clients::Clients;
use crate::engine::clock::Clock;
use crate::engine::cycle::{Outcome, Status};
use crate::engine::status::Metrics;
use crate::engine::status_posts::StatusWake;
use crate::plan::builds::PlannedBuild;
use crate::plan::ids::BuildKey;
use crate::plan::statuses::status_targets;
use crate::state::Store;
use crate::state::outbox::{Attempt, Pending};

/// How retries of failed deliveries are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait after the `attempts`-th failure: `initial · 2^(attempts-1)`, capped,
    /// with ±20% jitter so retries of many builds do not arrive together.
    pub fn delay(&self, attempts: u32, jitter_seed: u64) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = self
            .initial
            .saturating_mul(1u32 << exp.min(20))
            .min(self.cap);
        // A cheap deterministic spread in [-20%, +20%].
        let spread = (jitter_seed % 401) as i64 - 200; // per mille
        let millis = base.as_millis() as i64;
        let jittered = millis + millis * spread / 1000;
        Duration::from_millis(u64::try_from(jittered).unwrap_or(0)).min(self.cap)
    }
}

/// What an accepted delivery reports beyond itself: the commit statuses it sets
/// (each workspace's `report`, and what wakes their posters), the result a CI
/// target answered with (counted in the metrics).
pub struct Reporting {
    pub reports: BTreeMap<String, ReportConfig>,
    pub wake: StatusWake,
    pub metrics: Arc<Metrics>,
}

/// Whether recording `done` sets commit statuses.
fn sets_statuses(done: &Option<Attempt>) -> bool {
    matches!(done, Some(Attempt::Accepted { statuses, .. }) if !statuses.is_empty())
}

fn seed(item: &Pending, now: i64) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    item.key.as_str().hash(&mut h);
    item.attempts.hash(&mut h);
    now.hash(&mut h);
    h.finish()
}

/// The outbox's sending side: the store, the CI targets' clients and the retry
/// policy. The loop's senders each hold it (a reload hands them a new one).
#[derive(Clone)]
pub struct Outbox {
    state: Store,
    clients: Arc<Clients>,
    retry: RetryPolicy,
    progress: Arc<AtomicU64>,
    clock: Arc<dyn Clock>,
    reporting: Arc<Reporting>,
}

impl Outbox {
    pub fn new(
        state: Store,
        clients: Arc<Clients>,
        retry: RetryPolicy,
        progress: Arc<AtomicU64>,
        clock: Arc<dyn Clock>,
        reporting: Reporting,
    ) -> Outbox {
        Outbox {
            state,
            clients,
            retry,
            progress,
            clock,
            reporting: Arc::new(reporting),
        }
    }

    /// The CI targets with deliveries pending.
    pub async fn targets_pending(&self) -> anyhow::Result<std::collections::BTreeSet<String>> {
        Ok(self
            .state
            .pending_summaries()
            .await?
            .into_iter()
            .map(|p| p.ci)
            .collect())
    }

    /// Attempts the pending deliveries that are due (all of them when
    /// `attempt_all`, as `once` does), one task per CI target; `only` one target's.
    pub async fn send_pending(
        &self,
        only: Option<&str>,
        attempt_all: bool,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<Outcome>> {
        let mut by_target: BTreeMap<String, Vec<BuildKey>> = BTreeMap::new();
        let pending = self.state.pending_summaries().await?;
        for pending in pending
            .into_iter()
            .filter(|p| only.is_none_or(|ci| p.ci == ci))
        {
            by_target.entry(pending.ci).or_default().push(pending.key);
        }
        let mut tasks = JoinSet::new();
        for (ci_name, items) in by_target {
            let outbox = self.clone();
            let shutdown = shutdown.clone();
            let span = tracing::info_span!("deliveries", ci = %ci_name);
            tasks.spawn(
                async move {
                    let outcomes = outbox
                        .send_to(&ci_name, items, attempt_all, &shutdown)
                        .await;
                    outbox
                        .progress
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    outcomes
                }
                .instrument(span),
            );
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(mut o)) => outcomes.append(&mut o),
                Ok(Err(e)) => return Err(e),
                Err(e) => tracing::error!("a delivery task failed: {e}"),
            }
        }
        outcomes.sort_by(|a, b| a.build_key.cmp(&b.build_key));
        Ok(outcomes)
    }

    /// Attempts the deliveries of `keys` to CI target `ci_name`, one after another.
    /// Each attempt is recorded on the trip to the store that reads the next one,
    /// before that one is sent.
    async fn send_to(
        &self,
        ci_name: &str,
        keys: Vec<BuildKey>,
        attempt_all: bool,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Vec<Outcome>> {
        let (state, clock, policy) = (&self.state, &*self.clock, self.retry);
        let target = self.clients.ci(ci_name);
        let mut outcomes = Vec::new();
        let mut done = None;
        for key in keys {
            let sets_statuses = sets_statuses(&done);
            let read = state.record_then_read(done.take(), Some(key)).await?;
            if sets_statuses {
                self.reporting.wake.wake();
            }
            let Some(item) = read else {
                continue;
            };
            let now = clock.unix_ms();
            let mut outcome = Outcome {
                build_key: item.key.to_string(),
                status: Status::Pending,
                reason: item.reason.clone(),
                fingerprint: item.fingerprint().to_string(),
                delivery_id: item.delivery_id.clone(),
            };
            if shutdown.is_cancelled() || (!attempt_all && item.next_attempt > now) {
                if let Some(e) = &item.last_error {
                    outcome.reason = format!("{}; last attempt: {e}", item.reason);
                }
                outcomes.push(outcome);
                continue;
            }
            let span = tracing::info_span!("delivery", build_key = %item.key, delivery_id = %item.delivery_id);
            let result = match &target {
                Some(t) => t
                    .deliver(&item.trigger)
                    .instrument(span.clone())
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("CI target `{ci_name}` is not configured any more")),
            };
            done = Some(match result {
                Ok(accepted) => {
                    if let Some(result) = &accepted.result {
                        let latency = result.state.is_final().then_some(0.0);
                        let metrics = &self.reporting.metrics.results;
                        metrics.count(Some(ci_name), result.state.as_str(), latency);
                    }
                    let timings = &self.reporting.metrics.timings;
                    timings.delivered(ci_name, item.enqueued_at, now);
                    crate::crash::point("after-accept");
                    span.in_scope(|| tracing::info!(reason = %item.reason, "delivered"));
                    outcome.status = Status::Delivered;
                    let message = format!("{} (delivery {})", item.reason, item.delivery_id);
                    let workspace = item.key.workspace();
                    let statuses = self
                        .reporting
                        .reports
                        .get(workspace)
                        .map_or_else(Vec::new, |r| {
                            status_targets(r, workspace, &item.trigger.properties)
                        });
                    Attempt::Accepted {
                        item,
                        at_ms: now,
                        message,
                        statuses,
                        result: accepted.result,
                    }
                }
                Err(error) => {
                    let attempts = item.attempts.saturating_add(1);
                    let delay = policy.delay(attempts, seed(&item, now));
                    let next_attempt =
                        now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                    span.in_scope(|| {
                        tracing::warn!(
                            attempts,
                            retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs())),
                            "delivery failed: {error}"
                        );
                    });
                    outcome.status = Status::Failed;
                    outcome.reason = error.clone();
                    Attempt::Failed {
                        item,
                        attempts,
                        next_attempt,
                        message: format!("attempt {attempts} failed: {error}"),
                        error,
                        at_ms: now,
                    }
                }
            });
            outcomes.push(outcome);
        }
        if done.is_some() {
            let sets_statuses = sets_statuses(&done);
            state.record_then_read(done, None).await?;
            if sets_statuses {
                self.reporting.wake.wake();
            }
        }
        Ok(outcomes)
    }
}

impl Outbox {
    /// `forgewatch trigger`: puts `build` (the last computed build of its key, for
    /// `workspace` and CI target `ci`) in the outbox again under a fresh delivery
    /// id, due now; returns the delivery id.
    pub async fn enqueue_trigger(
        &self,
        workspace: &str,
        ci: &str,
        build: &PlannedBuild,
    ) -> anyhow::Result<String> {
        let key = &build.key;
        let previous = self.state.delivered(key).await?.and_then(|d| d.inputs);
        let delivery_id = crate::plan::ids::DeliveryId::fresh();
        let reason = "manual trigger".to_owned();
        let now = self.clock.unix_ms();
        let trigger = crate::plan::payload::build_trigger(
            build,
            &crate::plan::payload::PayloadContext {
                workspace,
                delivery_id: &delivery_id,
                previous: previous.as_ref(),
                reason: &reason,
                detected_at: now / 1000,
            },
        );
        let item = Pending {
            key: key.clone(),
            inputs: build.inputs.clone(),
            delivery_id: delivery_id.to_string(),
            ci: ci.to_owned(),
            reason,
            trigger,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            enqueued_at: now,
        };
        self.state.enqueue_manual(&item, now).await?;
        self.state.record_event(
            now,
            "triggered",
            Some(workspace),
            Some(key.as_str()),
            "manual trigger",
        );
        Ok(item.delivery_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_secs(10),
            cap: Duration::from_secs(600),
        };
        for seed in [0u64, 200, 400, 12345] {
            let d1 = p.delay(1, seed).as_secs_f64();
            assert!((8.0..=12.0).contains(&d1), "{d1}");
            let d3 = p.delay(3, seed).as_secs_f64();
            assert!((32.0..=48.0).contains(&d3), "{d3}");
            assert!(p.delay(30, seed) <= Duration::from_secs(600));
        }
        assert_ne!(p.delay(1, 0), p.delay(1, 400), "jitter spreads retries");
    }
}
