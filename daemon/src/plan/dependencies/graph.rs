//! The dependency graph of a cycle's open pull requests: the PRs known (polled or
//! looked up), their resolved edges and their unresolved references. Pure data;
//! building it with lookups is the engine's.

use std::collections::BTreeMap;

use forgewatch_adapters::forge::PullRequest;

use super::parse::PrRef;

/// An unresolved reference, as reported in payloads (`{reference, reason}`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unresolved {
    pub reference: String,
    pub reason: String,
}

/// Everything known about dependencies this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DependencyGraph {
    /// Open PRs: those polled and those looked up.
    pub open: BTreeMap<PrRef, PullRequest>,
    /// Direct resolved dependencies of each open PR (only edges to open PRs).
    pub edges: BTreeMap<PrRef, Vec<PrRef>>,
    /// Unresolved references of each open PR.
    pub unresolved: BTreeMap<PrRef, Vec<Unresolved>>,
    /// Direct dependencies of each open PR whose lookup has not been answered yet
    /// (`run` asks them in the background): its builds wait for them.
    pub pending: BTreeMap<PrRef, Vec<PrRef>>,
}

impl DependencyGraph {
    /// The lookups `id`'s build waits for: those of `id` and of its closure.
    pub fn pending_for(&self, id: &PrRef) -> Vec<&PrRef> {
        let closure = super::closure::closure(&self.edges, id);
        let mut pending: Vec<&PrRef> = std::iter::once(id)
            .chain(&closure.members)
            .filter_map(|m| self.pending.get(m))
            .flatten()
            .collect();
        pending.sort();
        pending.dedup();
        pending
    }
}

pub fn pr_ref(pr: &PullRequest) -> PrRef {
    PrRef {
        host: pr.base_repo.host().to_owned(),
        path: pr.base_repo.path().to_owned(),
        number: pr.number,
    }
}
