//! `forgewatch once`: the steps of the loop run in sequence in one task. Its due
//! updates first, then one whole cycle: poll every target, compute every build,
//! send every pending delivery (whatever its backoff), post the commit statuses
//! that are due, waiting for the updates, discoveries and forge answers it starts.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Config;
use crate::engine::clock::Clock;
use crate::engine::cycle::{CycleReport, Mode};
use crate::engine::supervisor::Supervisor;
use crate::state::Store;

/// `forgewatch once`: the due updates, then one whole cycle (waiting for the
/// updates it starts).
pub async fn once(
    config: Config,
    state: Store,
    mode: Mode,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<CycleReport> {
    let mut supervisor = Supervisor::new(config, state, clock).await?;
    // `once` attempts every pending delivery, whatever its backoff.
    supervisor.attempt_all_pending = true;
    supervisor.in_foreground = true;
    let never = CancellationToken::new();
    if mode == Mode::Deliver {
        // Startup and due config_change updates first, so the cycle sees their lists.
        supervisor.run_due_updates(&never).await?;
    }
    let report = supervisor.cycle(mode, &never).await?;
    if mode == Mode::Deliver {
        supervisor.status_poster.post_all_due().await?;
    }
    supervisor.updates.wait_all().await;
    Ok(report)
}

impl Supervisor {
    /// One whole cycle (`once`): poll every target, compute every build, send what
    /// is due, in a `cycle` span numbered from 1 for the life of the supervisor.
    pub async fn cycle(
        &self,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        let span = tracing::info_span!("cycle", number = self.next_cycle_number());
        let before = self.request_stats();
        let report = self
            .whole_cycle(mode, shutdown)
            .instrument(span.clone())
            .await;
        span.in_scope(|| {
            for (name, old) in &before {
                self.log_forge_usage(name, old);
            }
        });
        report
    }

    async fn whole_cycle(
        &self,
        mode: Mode,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<CycleReport> {
        crate::crash::block_point("cycle").await;
        let started = self.clock.now();
        let packages = std::sync::Arc::new(self.workspace_packages(shutdown).await);
        let targets = self.cycle_targets(&packages);
        let polled = self.poll_in_place(&targets, shutdown).await;
        self.absorb_from_every_forge(polled, &targets);
        let results = self.known.answers();
        if mode == Mode::Deliver {
            self.prune_http_cache_if_due();
        }
        let mut report = self
            .compute(mode, &packages, results, true, started, shutdown)
            .await?;
        if mode == Mode::Deliver && !report.interrupted {
            report.outcomes = self
                .outbox
                .send_pending(None, self.attempt_all_pending, shutdown)
                .await?;
            self.status
                .record_deliveries(&self.state, &report.outcomes)
                .await?;
        }
        self.status.close_cycle(
            &self.clients,
            started,
            self.clock.now().duration_since(started).unwrap_or_default(),
            &report.poll_errors,
        );
        Ok(report)
    }
}
