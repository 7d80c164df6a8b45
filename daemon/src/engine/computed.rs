//! The last computation, kept as it was computed: each workspace's builds (shared by
//! `Arc` with the next computation where they did not change) and what else its
//! status shows. The status rows of the API and the page are rendered from it when
//! asked, with the deliveries as the store has them then.
//!
//! Why not a ready-made snapshot: it held every build twice (as computed, for
//! manual triggers, and as status rows), and a new one was built beside the one
//! being served after every computation. Rendering on demand keeps one copy of
//! each build, and a computation that changed nothing allocates none.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::PackageConfig;
use crate::engine::status::{
    BuildStatus, ConfigPrStatus, ConflictDefinition, ConflictStatus, DiscoveryStatus,
    NotBuiltStatus, PackageStatus, PendingStatus, PullRequestStatus, WorkspaceStatus, rfc3339_ms,
};
use crate::plan::answers::PollResults;
use crate::plan::builds::{PlannedBuild, Subject, WorkspaceBuilds, target_of};
use crate::plan::ids::{BuildKey, Fingerprint};
use crate::plan::inputs::AllPackages;
use crate::state::BuildMark;
use crate::state::outbox::PendingSummary;

/// What one computation saw of a workspace: its configuration, packages and builds,
/// with each build's fingerprint (in the order of `builds`).
pub struct SeenWorkspace<'a> {
    pub config: &'a crate::config::WorkspaceConfig,
    pub packages: &'a [PackageConfig],
    /// What the plan said, but its builds, which are in `builds`.
    pub planned: WorkspaceBuilds,
    pub builds: Vec<Arc<PlannedBuild>>,
    pub fingerprints: Vec<Fingerprint>,
    /// Its config PRs and their transient packages.
    pub transients: crate::plan::transient::Transients,
}

/// Every workspace of the last computation, by name.
#[derive(Default)]
pub struct Computed {
    /// The package lists it was computed from (shared with the loop).
    packages: AllPackages,
    workspaces: BTreeMap<String, ComputedWorkspace>,
}

struct ComputedWorkspace {
    ci: String,
    update_running: bool,
    /// The head of each package (in the order of its package list), if known.
    heads: Vec<Option<String>>,
    /// Sorted by key (as planned).
    builds: Vec<Arc<PlannedBuild>>,
    fingerprints: Vec<Fingerprint>,
    waiting: Vec<String>,
    not_built: Vec<NotBuiltStatus>,
    config_prs: Vec<ConfigPrStatus>,
    transient_conflicts: Vec<ConflictStatus>,
}

impl Computed {
    pub(crate) fn new(
        packages: AllPackages,
        seen: Vec<SeenWorkspace<'_>>,
        updates: &crate::engine::updates::Updates,
        results: &PollResults,
    ) -> Computed {
        let workspaces = seen
            .into_iter()
            .map(|seen| {
                let ws = seen.config;
                let computed = ComputedWorkspace {
                    ci: ws.ci.clone(),
                    update_running: updates.is_running(&ws.name),
                    heads: seen.packages.iter().map(|p| head(p, results)).collect(),
                    waiting: seen
                        .planned
                        .skipped
                        .iter()
                        .map(|s| format!("{}: {}", s.key, s.reason))
                        .collect(),
                    not_built: seen
                        .planned
                        .not_built
                        .iter()
                        .map(|(k, why)| NotBuiltStatus {
                            build_key: k.to_string(),
                            reason: why.to_string(),
                        })
                        .collect(),
                    config_prs: config_pr_statuses(&seen.transients, &seen.builds, results),
                    transient_conflicts: conflicts(&seen.transients),
                    builds: seen.builds,
                    fingerprints: seen.fingerprints,
                };
                (ws.name.clone(), computed)
            })
            .collect();
        Computed {
            packages,
            workspaces,
        }
    }

    pub fn workspace_count(&self) -> usize {
        self.workspaces.len()
    }

    /// How many builds it computed.
    pub fn build_count(&self) -> usize {
        self.workspaces.values().map(|w| w.builds.len()).sum()
    }

    /// `builds` of workspace `ws`, each replaced by this computation's own when
    /// equal to it: an unchanged build is kept once.
    pub fn share_unchanged(&self, ws: &str, builds: Vec<PlannedBuild>) -> Vec<Arc<PlannedBuild>> {
        let old = self.workspaces.get(ws).map_or(&[][..], |w| &w.builds[..]);
        builds
            .into_iter()
            .map(
                |build| match old.binary_search_by(|o| o.key.cmp(&build.key)) {
                    Ok(i) if *old[i] == build => old[i].clone(),
                    _ => Arc::new(build),
                },
            )
            .collect()
    }

    /// The build of `key`: its workspace, CI target and build.
    pub fn build(&self, key: &BuildKey) -> Option<(String, String, Arc<PlannedBuild>)> {
        self.workspaces.iter().find_map(|(name, ws)| {
            let i = ws.builds.binary_search_by(|b| b.key.cmp(key)).ok()?;
            Some((name.clone(), ws.ci.clone(), ws.builds[i].clone()))
        })
    }

    /// The status of every workspace, with what the CI accepted (`marks`) and what
    /// waits in the outbox (`pending`, by key).
    pub fn workspaces(
        &self,
        marks: &HashMap<BuildKey, BuildMark>,
        pending: &BTreeMap<String, PendingSummary>,
    ) -> BTreeMap<String, WorkspaceStatus> {
        self.workspaces
            .iter()
            .map(|(name, ws)| {
                let packages = self.packages.get(name).map_or(&[][..], |p| &p.packages[..]);
                let status = WorkspaceStatus {
                    ci: ws.ci.clone(),
                    packages: packages
                        .iter()
                        .zip(&ws.heads)
                        .map(|(p, head)| package_status(p, head.clone()))
                        .collect(),
                    builds: ws
                        .builds
                        .iter()
                        .zip(&ws.fingerprints)
                        .map(|(b, fp)| build_status(b, fp, marks, pending))
                        .collect(),
                    not_built: ws.not_built.clone(),
                    waiting: ws.waiting.clone(),
                    update_running: ws.update_running,
                    config_prs: ws.config_prs.clone(),
                    transient_conflicts: ws.transient_conflicts.clone(),
                };
                (name.clone(), status)
            })
            .collect()
    }
}

fn head(pkg: &PackageConfig, results: &PollResults) -> Option<String> {
    results
        .heads
        .get(&target_of(pkg))
        .and_then(|r| r.as_ref().ok())
        .cloned()
}

fn package_status(pkg: &PackageConfig, head: Option<String>) -> PackageStatus {
    PackageStatus {
        name: pkg.name.clone(),
        repository: pkg.repo.to_string(),
        branch: pkg.branch.clone(),
        head,
    }
}

fn build_status(
    build: &PlannedBuild,
    fingerprint: &Fingerprint,
    marks: &HashMap<BuildKey, BuildMark>,
    pending: &BTreeMap<String, PendingSummary>,
) -> BuildStatus {
    let mark = marks.get(&build.key);
    BuildStatus {
        build_key: build.key.to_string(),
        kind: match build.subject {
            Subject::Mainline(_) => "mainline",
            Subject::PullRequest { .. } => "pull_request",
        },
        fingerprint: fingerprint.to_string(),
        delivered_fingerprint: mark
            .and_then(|m| m.delivered.as_ref())
            .map(ToString::to_string),
        delivered_at: mark
            .and_then(|m| m.delivered_at)
            .map(|s| rfc3339_ms(s * 1000)),
        pending: pending.get(build.key.as_str()).map(|p| PendingStatus {
            delivery_id: p.delivery_id.clone(),
            attempts: p.attempts,
            next_attempt: rfc3339_ms(p.next_attempt),
            last_error: p.last_error.clone(),
        }),
        pull_request: pull_request_status(build),
    }
}

/// The pull-request part of a build's status.
fn pull_request_status(build: &PlannedBuild) -> Option<PullRequestStatus> {
    let Subject::PullRequest {
        pr,
        test_ref,
        dependencies,
        unresolved,
        cycle,
        ..
    } = &build.subject
    else {
        return None;
    };
    Some(PullRequestStatus {
        url: pr.web_url.clone(),
        number: pr.number,
        title: pr.title.clone(),
        author: pr.author.clone(),
        head_sha: pr.head_sha.clone(),
        test_ref: pr.test_ref(*test_ref),
        dependencies: dependencies
            .iter()
            .map(|d| format!("{}#{}", d.base_repo, d.number))
            .collect(),
        unresolved_dependencies: unresolved.clone(),
        cycle: cycle.clone(),
    })
}

fn conflicts(transients: &crate::plan::transient::Transients) -> Vec<ConflictStatus> {
    transients
        .conflicts()
        .into_iter()
        .map(|c| ConflictStatus {
            package: c.package,
            definitions: c
                .definitions
                .into_iter()
                .map(|(config_pr, repository)| ConflictDefinition {
                    config_pr,
                    repository,
                })
                .collect(),
        })
        .collect()
}

fn config_pr_statuses(
    transients: &crate::plan::transient::Transients,
    builds: &[Arc<PlannedBuild>],
    results: &PollResults,
) -> Vec<ConfigPrStatus> {
    use crate::plan::transient::DiscoveryState;
    transients
        .config_prs
        .iter()
        .map(|c| {
            let builds = builds
                .iter()
                .filter(|b| match &b.subject {
                    Subject::PullRequest { pr, .. } => {
                        crate::plan::dependencies::graph::pr_ref(pr) == c.id
                            || c.packages
                                .iter()
                                .any(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
                    }
                    Subject::Mainline(_) => false,
                })
                .map(|b| b.key.to_string())
                .collect();
            ConfigPrStatus {
                pull_request: c.id.to_string(),
                url: c.pr.web_url.clone(),
                head_sha: c.pr.head_sha.clone(),
                test_ref: c.test_ref.clone(),
                discovery: DiscoveryStatus {
                    state: c.discovery.as_str(),
                    detail: match &c.discovery {
                        DiscoveryState::Waiting(why) | DiscoveryState::Failed(why) => {
                            Some(why.clone())
                        }
                        DiscoveryState::Succeeded => None,
                    },
                    job_id: c.job_id,
                },
                transient_packages: c
                    .packages
                    .iter()
                    .map(|p| package_status(p, head(p, results)))
                    .collect(),
                builds,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fingerprint::{BuildInputs, PackageHead};

    fn mainline(workspace: &str, head: &str) -> PlannedBuild {
        PlannedBuild {
            key: BuildKey::mainline(workspace),
            inputs: BuildInputs::mainline(vec![PackageHead {
                name: "base/types".to_owned(),
                repository: "github.com/rock-core/base-types".to_owned(),
                branch: "master".to_owned(),
                head: head.to_owned(),
            }]),
            subject: Subject::Mainline(Vec::new()),
        }
    }

    fn computed_with(workspace: &str, build: PlannedBuild) -> Computed {
        let fingerprint = build.inputs.fingerprint();
        let ws = ComputedWorkspace {
            ci: "buildbot".to_owned(),
            update_running: false,
            heads: Vec::new(),
            builds: vec![Arc::new(build)],
            fingerprints: vec![fingerprint],
            waiting: Vec::new(),
            not_built: Vec::new(),
            config_prs: Vec::new(),
            transient_conflicts: Vec::new(),
        };
        Computed {
            packages: AllPackages::default(),
            workspaces: BTreeMap::from([(workspace.to_owned(), ws)]),
        }
    }

    #[test]
    fn an_unchanged_build_is_kept_once_and_a_changed_one_is_new() {
        let last = computed_with("rock", mainline("rock", "aaa"));
        let kept = last.build(&BuildKey::mainline("rock")).expect("known").2;

        let same = last.share_unchanged("rock", vec![mainline("rock", "aaa")]);
        assert!(Arc::ptr_eq(&same[0], &kept));

        let changed = last.share_unchanged("rock", vec![mainline("rock", "bbb")]);
        assert!(!Arc::ptr_eq(&changed[0], &kept));
        assert_eq!(*changed[0], mainline("rock", "bbb"));

        // Another workspace's equal build is not this one's.
        let other = last.share_unchanged("orocos", vec![mainline("rock", "aaa")]);
        assert!(!Arc::ptr_eq(&other[0], &kept));
        assert_eq!(last.build(&BuildKey::mainline("orocos")), None);
    }
}
