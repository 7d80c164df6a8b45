//! Fills in GitHub's `mergeable` for the open pull requests of a cycle whose refs
//! follow it (which ones is decided, purely, by
//! [`crate::pr_builds::mergeability_used`]): the list endpoint does not carry it, so
//! it comes from the state store when this (base sha, head sha) pair was answered
//! before, else from one single-PR request. A `null` (GitHub still computing) is
//! not stored; it is asked again in the first cycle of the next poll interval (or
//! as soon as the pair changes), not in every slice of `run`. GitLab reports
//! mergeability in its list, so nothing is asked there.
//!
//! In `run` the single-PR request is made in the background: the PR waits (is
//! recorded as pending in the graph) until the answer is stored, and the answer
//! wakes the loop to compute again; a hung forge holds up only that PR. A failed
//! request counts as `null` for the interval. `once` waits for the answers. The
//! failures are logged at the end of a computation's asking (in `run` those of
//! background requests at the next one), those failing alike as one line: a pause
//! refuses every request after it.
//!
//! While the answer for the current pair is not known (not asked yet, `null`, a
//! failure) the PR goes by the answer remembered for its head at an earlier base:
//! the base moving alone does not change its test ref, so a PR whose head did not
//! move is not built at its head and then again at its merge ref while GitHub
//! recomputes (with or without a restart in between; issue 14, item 11). With no
//! answer at this head at all, the PR is built at its head.

use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use forgewatch_adapters::RepoId;
use forgewatch_adapters::forge::{Forge, ForgeError};
use tracing::Level;

use crate::engine::background::{Background, Question};
use crate::engine::fold::Folded;
use crate::engine::lookups::Forges;
use crate::plan::dependencies::graph::DependencyGraph;
use crate::plan::dependencies::parse::PrRef;
use crate::state::Store;

/// The PRs answered `null` in the current poll interval, with the (base sha, head
/// sha) pair they were asked at: not asked again before the next interval. And the
/// failed requests not logged yet.
#[derive(Debug, Default)]
pub struct Computing {
    nulls: std::sync::Mutex<BTreeMap<PrRef, (String, String)>>,
    failures: std::sync::Mutex<Folded>,
}

impl Computing {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PrRef, (String, String)>> {
        self.nulls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new poll interval: every `null` may be asked once more.
    fn new_interval(&self) {
        self.lock().clear();
    }

    /// Whether `id` was answered `null` at these heads in this interval.
    fn answered_null(&self, id: &PrRef, base_sha: &str, head_sha: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|(b, h)| b == base_sha && h == head_sha)
    }

    /// A failed request, to log with the others failing alike.
    fn failed(&self, id: &PrRef, error: &ForgeError) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.add_error(id.to_string(), &error.to_string());
    }

    /// Logs the failures recorded since the last call, one line per reason.
    fn log_failures(&self) {
        let failures =
            std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()));
        failures.log(Level::WARN, "mergeability of ");
    }

    /// Records the answer of this interval for `id` at these heads.
    fn answered(&self, id: &PrRef, base_sha: &str, head_sha: &str, known: Option<bool>) {
        let mut answers = self.lock();
        match known {
            None => {
                answers.insert(id.clone(), (base_sha.to_owned(), head_sha.to_owned()));
            }
            Some(_) => {
                answers.remove(id);
            }
        }
    }
}

/// Where a cycle stands in the poll interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalStart {
    /// The first cycle of an interval (a full cycle or the first slice): a `null`
    /// of the previous interval is asked again.
    Yes,
    /// A later slice, or a webhook's poll: a `null` of this interval is kept.
    No,
}

/// Fills `mergeable` into the `wanted` PRs of `graph` (GitHub ones, not drafts,
/// with a known base sha). An answer not stored is awaited, or with `background`
/// asked in the background (notifying it once stored) and the PR recorded as
/// pending; meanwhile, and while it is `null`, the answer stored at the PR's head
/// for an earlier base is filled in.
pub async fn fill(
    graph: &mut DependencyGraph,
    wanted: &BTreeSet<PrRef>,
    forges: &Forges,
    state: &Store,
    computing: &Arc<Computing>,
    interval: IntervalStart,
    background: Option<&Arc<Background>>,
) {
    if interval == IntervalStart::Yes {
        computing.new_interval();
    }
    for id in wanted {
        let Some(pr) = graph.open.get_mut(id) else {
            continue;
        };
        if pr.mergeable.is_some() || pr.draft {
            continue;
        }
        let Some(forge) = forges
            .by_host
            .get(&id.host)
            .filter(|f| f.mergeable_needs_single_request())
        else {
            continue;
        };
        let Some(base_sha) = pr.base_sha.clone() else {
            continue;
        };
        match state.mergeable(&id.to_string(), &pr.head_sha).await {
            Ok(Some((known_base, known))) => {
                pr.mergeable = Some(known);
                if known_base == base_sha {
                    continue;
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        if computing.answered_null(id, &base_sha, &pr.head_sha) {
            tracing::debug!("{id}: mergeability still being computed: asked next interval");
            continue;
        }
        let Ok(repo) = RepoId::from_host_path(&id.host, &id.path) else {
            continue;
        };
        let ask = Ask {
            id: id.clone(),
            repo,
            base_sha,
            head_sha: pr.head_sha.clone(),
        };
        match background {
            None => {
                let answer = ask.run(forge.as_ref(), state, computing).await;
                pr.mergeable = answer.or(pr.mergeable);
            }
            Some(background) => {
                graph
                    .pending
                    .entry(id.clone())
                    .or_default()
                    .push(id.clone());
                let question = Question::Mergeability(id.clone());
                if background.ask(&question) {
                    let (forge, state, computing) =
                        (forge.clone(), state.clone(), computing.clone());
                    let background = background.clone();
                    tokio::spawn(async move {
                        ask.run(forge.as_ref(), &state, &computing).await;
                        background.answered(&question);
                    });
                }
            }
        }
    }
    computing.log_failures();
}

/// One single-PR request for the mergeability of `id` at these heads.
struct Ask {
    id: PrRef,
    repo: RepoId,
    base_sha: String,
    head_sha: String,
}

impl Ask {
    /// Asks, records the answer (stored when known, `null` or a failure kept for
    /// the interval) and returns it.
    async fn run(&self, forge: &dyn Forge, state: &Store, computing: &Computing) -> Option<bool> {
        let Ask {
            id,
            repo,
            base_sha,
            head_sha,
        } = self;
        match forge.pull_request(repo, id.number).await {
            // Only an answer about the heads we are building counts.
            Ok(single) if single.head_sha == *head_sha => {
                computing.answered(id, base_sha, head_sha, single.mergeable);
                let known = single.mergeable?;
                if let Err(e) = state
                    .save_mergeable(&id.to_string(), base_sha, head_sha, known)
                    .await
                {
                    tracing::warn!("{e}");
                }
                Some(known)
            }
            Ok(_) => {
                tracing::debug!("{id} moved while asking for its mergeability");
                None
            }
            Err(e) => {
                computing.failed(id, &e);
                computing.answered(id, base_sha, head_sha, None);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(number: u64) -> PrRef {
        PrRef {
            host: "github.com".into(),
            path: "acme/app".into(),
            number,
        }
    }

    #[test]
    fn a_null_is_kept_for_its_pair_until_the_next_interval() {
        let computing = Computing::default();
        assert!(!computing.answered_null(&id(1), "b", "h"));
        computing.answered(&id(1), "b", "h", None);
        assert!(computing.answered_null(&id(1), "b", "h"));
        assert!(!computing.answered_null(&id(2), "b", "h"));
        assert!(!computing.answered_null(&id(1), "b", "h2"), "a new head");
        assert!(!computing.answered_null(&id(1), "b2", "h"), "a new base");
        computing.new_interval();
        assert!(!computing.answered_null(&id(1), "b", "h"));
        computing.answered(&id(1), "b", "h", None);
        computing.answered(&id(1), "b", "h", Some(true));
        assert!(!computing.answered_null(&id(1), "b", "h"), "answered");
    }
}
