//! From configuration and poll answers to the builds a workspace owns right now:
//! its mainline and one build per open pull request against a watched target (see
//! [`crate::plan::pr_builds`]), each with its inputs (and so its fingerprint). Pure: no I/O.

use std::collections::BTreeSet;

use forgewatch_adapters::forge::{PullRequest, TestRef, WatchTarget};

use crate::config::{PackageConfig, WorkspaceConfig};
use crate::plan::answers::PollResults;
use crate::plan::dependencies::graph::{DependencyGraph, Unresolved, pr_ref};
use crate::plan::fingerprint::{BuildInputs, PackageHead};
use crate::plan::ids::BuildKey;
use crate::plan::pr_builds::{NotBuilt, eligibility, plan_pull_request};
use crate::plan::transient::{Transients, packages_for};

/// A build as computed this cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedBuild {
    pub key: BuildKey,
    pub inputs: BuildInputs,
    pub subject: Subject,
}

/// What the build is about, for its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The workspace's packages with their current heads, in name order.
    Mainline(Vec<(PackageConfig, String)>),
    PullRequest {
        pr: Box<PullRequest>,
        test_ref: TestRef,
        /// The workspace's packages whose repository and branch are the PR's base.
        packages: Vec<PackageConfig>,
        /// The PRs of its dependency closure.
        dependencies: Vec<PullRequest>,
        unresolved: Vec<Unresolved>,
        /// `(package, ref)`, the PR's own first, then its dependencies'.
        overrides: Vec<(String, String)>,
        /// The dependency cycle it is on (`host/path#N`), if any.
        cycle: Vec<String>,
        /// For a config PR of a workspace with `discover`: `succeeded` or `failed`.
        discovery: Option<&'static str>,
    },
}

/// A build that could not be computed this cycle, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub key: BuildKey,
    pub reason: String,
}

/// The builds of one workspace.
#[derive(Debug, Default)]
pub struct WorkspaceBuilds {
    pub builds: Vec<PlannedBuild>,
    pub skipped: Vec<Skipped>,
    /// Pull-request key prefixes whose open-PR lists were all read this cycle: any
    /// stored PR build under them that is not in `builds` belongs to a closed PR
    /// (or one that is not built any more).
    pub complete_pr_prefixes: Vec<String>,
    /// Open PRs that are not built, and why.
    pub not_built: Vec<(BuildKey, NotBuilt)>,
}

/// The watch target of a package.
pub(crate) fn target_of(pkg: &PackageConfig) -> WatchTarget {
    WatchTarget {
        repo: pkg.repo.clone(),
        branch: pkg.branch.clone(),
    }
}

/// The builds of workspace `ws` watching `packages` (and the transient packages of
/// its open config PRs). When `mainline_waits` gives a reason (an update is running,
/// the package list is incomplete), the mainline is not computed this cycle. `now`
/// is unix seconds (for `stale_after`).
pub fn plan_workspace(
    ws: &WorkspaceConfig,
    packages: &[PackageConfig],
    transients: &Transients,
    mainline_waits: Option<&str>,
    poll: &PollResults,
    graph: &DependencyGraph,
    now: i64,
) -> WorkspaceBuilds {
    let mut out = WorkspaceBuilds::default();
    match mainline_waits {
        Some(reason) => out.skipped.push(Skipped {
            key: BuildKey::mainline(&ws.name),
            reason: reason.to_owned(),
        }),
        None if !packages.is_empty() => plan_mainline(ws, packages, poll, &mut out),
        None => {}
    }
    if ws.pull_requests.enabled {
        plan_pull_requests(ws, packages, transients, poll, graph, now, &mut out);
    }
    out.builds.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn plan_mainline(
    ws: &WorkspaceConfig,
    packages: &[PackageConfig],
    poll: &PollResults,
    out: &mut WorkspaceBuilds,
) {
    let key = BuildKey::mainline(&ws.name);
    let mut heads = Vec::new();
    for pkg in packages {
        match poll.heads.get(&target_of(pkg)) {
            Some(Ok(sha)) => heads.push((pkg.clone(), sha.clone())),
            Some(Err(e)) => {
                out.skipped.push(Skipped {
                    key,
                    reason: format!("head of {} unknown: {e}", pkg.name),
                });
                return;
            }
            None => {
                out.skipped.push(Skipped {
                    key,
                    reason: format!("head of {} not polled", pkg.name),
                });
                return;
            }
        }
    }
    heads.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let inputs = BuildInputs::mainline(
        heads
            .iter()
            .map(|(pkg, sha)| PackageHead {
                name: pkg.name.clone(),
                repository: pkg.repo.to_string(),
                branch: pkg.branch.clone(),
                head: sha.clone(),
            })
            .collect(),
    );
    out.builds.push(PlannedBuild {
        key,
        inputs,
        subject: Subject::Mainline(heads),
    });
}

fn plan_pull_requests(
    ws: &WorkspaceConfig,
    packages: &[PackageConfig],
    transients: &Transients,
    poll: &PollResults,
    graph: &DependencyGraph,
    now: i64,
    out: &mut WorkspaceBuilds,
) {
    let graph = transients.graph_with_edges(graph, poll);
    let targets: BTreeSet<WatchTarget> = packages
        .iter()
        .chain(transients.packages())
        .map(target_of)
        .collect();
    let mut complete_repos = BTreeSet::new();
    let mut incomplete_repos = BTreeSet::new();
    for target in &targets {
        match poll.pulls.get(target) {
            Some(Ok(pulls)) => {
                complete_repos.insert(target.repo.clone());
                for listed in pulls {
                    // The graph's copy carries what was learnt since (mergeability).
                    let pr = graph.open.get(&pr_ref(listed)).unwrap_or(listed);
                    let key = BuildKey::pull_request(&ws.name, &pr.base_repo, pr.number);
                    if let Err(why) = eligibility(pr, &ws.pull_requests, now) {
                        out.not_built.push((key, why));
                        continue;
                    }
                    let waits_for = graph.pending_for(&pr_ref(pr));
                    if !waits_for.is_empty() {
                        let deps: Vec<String> = waits_for.iter().map(ToString::to_string).collect();
                        out.skipped.push(Skipped {
                            key,
                            reason: format!(
                                "waiting for the forge's answer about {}",
                                deps.join(", ")
                            ),
                        });
                        continue;
                    }
                    let role = transients.role_of(pr);
                    match role.extras(&ws.pull_requests, poll, &graph, now) {
                        Ok(extras) => {
                            let pkgs = packages_for(packages, &role);
                            out.builds
                                .push(plan_pull_request(ws, &pkgs, pr, &graph, &extras));
                        }
                        Err(reason) => out.skipped.push(Skipped { key, reason }),
                    }
                }
            }
            Some(Err(_)) | None => {
                incomplete_repos.insert(target.repo.clone());
            }
        }
    }
    out.complete_pr_prefixes = complete_repos
        .difference(&incomplete_repos)
        .map(|repo| BuildKey::pull_request_prefix(&ws.name, repo))
        .collect();
}
