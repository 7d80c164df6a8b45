//! Shared polling: every watch target `(repository, branch)` is asked for once per
//! cycle, however many workspaces watch it. Requests of all targets run
//! concurrently; each forge client caps its own concurrency. A target that fails is
//! reported for that target only.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use forgewatch_adapters::forge::{Forge, ForgeError, PullRequest, WatchTarget};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::plan::answers::{PollResults, TargetNeeds};

/// `(target, pull requests?)` whose last answer the caller holds: a 304 for one of
/// them is "unchanged", its stored body neither read nor decoded.
pub type Held = HashSet<(WatchTarget, bool)>;

enum Answer {
    Head(WatchTarget, Result<String, String>),
    Pulls(WatchTarget, Result<Vec<PullRequest>, String>),
    /// The forge answered 304 to a request whose answer the caller holds.
    Unchanged,
    /// Not sent: the forge got paused meanwhile.
    Paused(String, std::time::SystemTime),
}

/// Polls every target. Stops starting requests once `shutdown` is cancelled; requests
/// already sent are finished.
pub async fn poll(
    targets: &BTreeMap<WatchTarget, TargetNeeds>,
    held: &Held,
    forges: &BTreeMap<String, Arc<dyn Forge>>,
    shutdown: &CancellationToken,
    progress: &std::sync::atomic::AtomicU64,
) -> PollResults {
    let mut tasks = JoinSet::new();
    let mut paused = BTreeMap::new();
    for (target, needs) in targets {
        let Some(forge) = forges.get(&needs.forge) else {
            continue;
        };
        // A paused forge is not waited for: its targets are skipped this cycle.
        if let Some(until) = forge.paused_until() {
            let entry = paused.entry(needs.forge.clone()).or_insert((0, until));
            entry.0 += 1;
            continue;
        }
        let span = tracing::debug_span!("target", %target);
        let requests = [false, true]
            .into_iter()
            .filter(|&pulls| !pulls || needs.pulls);
        for pulls in requests {
            let (forge, target, shutdown) = (forge.clone(), target.clone(), shutdown.clone());
            let forge_name = needs.forge.clone();
            let held = held.contains(&(target.clone(), pulls));
            tasks.spawn(
                async move {
                    if shutdown.is_cancelled() {
                        return None;
                    }
                    let answer = if pulls {
                        match forge.open_pull_requests_if_changed(&target, held).await {
                            Err(ForgeError::Paused { until, .. }) => {
                                Answer::Paused(forge_name, until)
                            }
                            Ok(None) => Answer::Unchanged,
                            Ok(Some(answer)) => Answer::Pulls(target, Ok(answer)),
                            Err(e) => Answer::Pulls(target, Err(e.to_string())),
                        }
                    } else {
                        match forge.branch_head_if_changed(&target, held).await {
                            Err(ForgeError::Paused { until, .. }) => {
                                Answer::Paused(forge_name, until)
                            }
                            Ok(None) => Answer::Unchanged,
                            Ok(Some(answer)) => Answer::Head(target, Ok(answer)),
                            Err(e) => Answer::Head(target, Err(e.to_string())),
                        }
                    };
                    Some(answer)
                }
                .instrument(span.clone()),
            );
        }
    }
    let mut results = PollResults {
        paused,
        ..PollResults::default()
    };
    while let Some(joined) = tasks.join_next().await {
        progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match joined {
            Ok(Some(Answer::Head(t, r))) => {
                results.heads.insert(t, r);
            }
            Ok(Some(Answer::Pulls(t, r))) => {
                results.pulls.insert(t, r);
            }
            // The held answer stands: merging keeps it.
            Ok(Some(Answer::Unchanged)) => {}
            Ok(Some(Answer::Paused(forge, until))) => {
                let entry = results.paused.entry(forge).or_insert((0, until));
                entry.0 += 1;
                // The effective end: the latest any refusal named.
                entry.1 = entry.1.max(until);
            }
            Ok(None) => results.interrupted = true,
            Err(e) => tracing::error!("a poll task failed: {e}"),
        }
    }
    results.interrupted |= shutdown.is_cancelled();
    results
}
