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
}

pub fn pr_ref(pr: &PullRequest) -> PrRef {
    PrRef {
        host: pr.base_repo.host().to_owned(),
        path: pr.base_repo.path().to_owned(),
        number: pr.number,
    }
}
