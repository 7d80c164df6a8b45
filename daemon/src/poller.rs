//! Shared polling: every watch target `(repository, branch)` is asked for once per
//! cycle, however many workspaces watch it. Requests of all targets run
//! concurrently; each forge client caps its own concurrency. A target that fails is
//! reported for that target only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use forgewatch_adapters::forge::{Forge, ForgeError, PullRequest, WatchTarget};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::PackageConfig;

/// What one cycle must ask of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetNeeds {
    /// Name of the forge that owns the repository.
    pub forge: String,
    /// Whether some watching workspace builds pull requests.
    pub pulls: bool,
}

/// The distinct watch targets of the workspaces' packages; `pulls` tells whether a
/// workspace builds pull requests.
pub fn watch_targets<'a>(
    workspaces: impl IntoIterator<Item = (&'a [PackageConfig], bool)>,
) -> BTreeMap<WatchTarget, TargetNeeds> {
    let mut targets: BTreeMap<WatchTarget, TargetNeeds> = BTreeMap::new();
    for (packages, pulls) in workspaces {
        for pkg in packages {
            let target = WatchTarget {
                repo: pkg.repo.clone(),
                branch: pkg.branch.clone(),
            };
            let needs = targets.entry(target).or_insert_with(|| TargetNeeds {
                forge: pkg.forge.clone(),
                pulls: false,
            });
            needs.pulls |= pulls;
        }
    }
    targets
}

/// The answers of one cycle. Errors are one-line messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollResults {
    pub heads: HashMap<WatchTarget, Result<String, String>>,
    pub pulls: HashMap<WatchTarget, Result<Vec<PullRequest>, String>>,
    /// Set when shutdown interrupted the cycle: the results are incomplete.
    pub interrupted: bool,
    /// Forges paused by their rate limit this cycle (not asked), with the number of
    /// targets skipped and until when.
    pub paused: BTreeMap<String, (usize, std::time::SystemTime)>,
}

impl PollResults {
    pub fn errors(&self) -> impl Iterator<Item = (&WatchTarget, &String)> {
        let heads = self
            .heads
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| (t, e)));
        let pulls = self
            .pulls
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|e| (t, e)));
        heads.chain(pulls)
    }
}

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
