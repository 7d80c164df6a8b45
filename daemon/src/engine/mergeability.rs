//! Fills in GitHub's `mergeable` for the open pull requests of a cycle, which the
//! list endpoint does not carry: from the state store when this (base sha, head
//! sha) pair was answered before, else with one single-PR request. A `null` (not
//! computed yet) is asked again next cycle, never in a loop. GitLab reports
//! mergeability in its list, so nothing is asked there.

use forgewatch_adapters::RepoId;

use crate::engine::lookups::Forges;
use crate::plan::dependencies::graph::DependencyGraph;
use crate::state::State;

pub async fn fill(graph: &mut DependencyGraph, forges: &Forges, state: &State) {
    for (id, pr) in graph.open.iter_mut() {
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
        let key = id.to_string();
        match state.mergeable(&key, &base_sha, &pr.head_sha) {
            Ok(Some(known)) => {
                pr.mergeable = Some(known);
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        let Ok(repo) = RepoId::from_host_path(&id.host, &id.path) else {
            continue;
        };
        match forge.pull_request(&repo, id.number).await {
            // Only an answer about the heads we are building counts.
            Ok(single) if single.head_sha == pr.head_sha => {
                if let Some(known) = single.mergeable {
                    if let Err(e) = state.save_mergeable(&key, &base_sha, &pr.head_sha, known) {
                        tracing::warn!("{e}");
                    }
                    pr.mergeable = Some(known);
                }
            }
            Ok(_) => tracing::debug!("{id} moved while asking for its mergeability"),
            Err(e) => tracing::warn!("mergeability of {id}: {e}"),
        }
    }
}
