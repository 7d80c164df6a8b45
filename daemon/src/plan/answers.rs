//! What the forges answered: the watch targets a set of workspaces needs and the
//! answers (heads, open pull requests, failures, pauses) the plan is computed from.
//! Pure data: polling them is the engine's.

use std::collections::{BTreeMap, HashMap};

use forgewatch_adapters::forge::{PullRequest, WatchTarget};

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
