//! Pull-request builds of one workspace: whether a PR is built at all (drafts,
//! staleness, skip labels, trust), which ref the CI builds, its dependency closure
//! and unresolved references, and the overrides that point the workspace's packages
//! at the refs of the PR and of every PR it depends on (SPEC §2–§5). Pure.

use std::fmt;

use forgewatch_adapters::forge::{PullRequest, TestRef};

use crate::config::{PackageConfig, PackageKind, PrRefMode, PullRequestsConfig, WorkspaceConfig};
use crate::plan::builds::{PlannedBuild, Subject};
use crate::plan::dependencies::closure::closure;
use crate::plan::dependencies::graph::{DependencyGraph, Unresolved, pr_ref};
use crate::plan::fingerprint::{BuildInputs, DependencyInput, PullRequestInputs};
use crate::plan::ids::BuildKey;

/// Why an open pull request is not built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotBuilt {
    Draft,
    Stale,
    SkipLabel(String),
    /// Not from a trusted source; a maintainer's label would let it through.
    AwaitingApproval,
}

impl fmt::Display for NotBuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotBuilt::Draft => f.write_str("draft (include_drafts is false)"),
            NotBuilt::Stale => f.write_str("stale (not updated within stale_after)"),
            NotBuilt::SkipLabel(l) => write!(f, "labelled `{l}` (skip_labels)"),
            NotBuilt::AwaitingApproval => f.write_str("awaiting_approval"),
        }
    }
}

/// Whether `pr` is built under these settings at `now` (unix seconds).
pub fn eligibility(pr: &PullRequest, cfg: &PullRequestsConfig, now: i64) -> Result<(), NotBuilt> {
    if pr.draft && !cfg.include_drafts {
        return Err(NotBuilt::Draft);
    }
    let stale_after = i64::try_from(cfg.stale_after.as_secs()).unwrap_or(i64::MAX);
    if pr
        .updated_at
        .is_some_and(|t| now.saturating_sub(t) > stale_after)
    {
        return Err(NotBuilt::Stale);
    }
    if let Some(label) = pr.labels.iter().find(|l| cfg.skip_labels.contains(l)) {
        return Err(NotBuilt::SkipLabel(label.clone()));
    }
    let trust = &cfg.trust;
    let trusted = (trust.same_repository && pr.head_repo.as_ref() == Some(&pr.base_repo))
        || trust.authors.contains(&pr.author)
        || pr
            .author_association
            .as_ref()
            .is_some_and(|a| trust.author_associations.contains(a))
        || trust
            .approve_label
            .as_ref()
            .is_some_and(|label| pr.labels.contains(label));
    if trusted {
        Ok(())
    } else {
        Err(NotBuilt::AwaitingApproval)
    }
}

/// The ref the CI builds for `pr` (SPEC §4): drafts at their head; `auto` takes the
/// merge ref only once the forge says the PR is mergeable.
pub fn test_ref(pr: &PullRequest, mode: PrRefMode) -> TestRef {
    match mode {
        _ if pr.draft => TestRef::Head,
        PrRefMode::Head => TestRef::Head,
        PrRefMode::Merge => TestRef::Merge,
        PrRefMode::Auto if pr.mergeable == Some(true) => TestRef::Merge,
        PrRefMode::Auto => TestRef::Head,
    }
}

/// The workspace's packages built from `pr`'s base (the buildconf is not an
/// autoproj package and gets no override).
fn packages_on_base<'a>(packages: &'a [PackageConfig], pr: &PullRequest) -> Vec<&'a PackageConfig> {
    packages
        .iter()
        .filter(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
        .filter(|p| p.kind != PackageKind::Buildconf)
        .collect()
}

/// What a config PR's build adds to an ordinary PR build (SPEC §13).
#[derive(Clone, Debug, Default)]
pub struct PrExtras {
    /// Overrides after the PR's own and before its dependencies' (a config PR's
    /// transient packages: they win over the refs of the PRs of its closure).
    pub overrides: Vec<(String, String)>,
    /// The `discovery` property of a config PR's payload.
    pub discovery: Option<&'static str>,
}

pub fn plan_pull_request(
    ws: &WorkspaceConfig,
    packages: &[PackageConfig],
    pr: &PullRequest,
    graph: &DependencyGraph,
    extras: &PrExtras,
) -> PlannedBuild {
    let mode = ws.pull_requests.pr_ref;
    let id = pr_ref(pr);
    let closure = closure(&graph.edges, &id);
    let members: Vec<&PullRequest> = closure
        .members
        .iter()
        .filter_map(|m| graph.open.get(m))
        .collect();

    // Overrides: the PR first, then the extras, then its dependencies; a package is
    // pointed at one ref.
    let mut overrides: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, ref_name: &str| {
        if !overrides.iter().any(|(n, _)| n == name) {
            overrides.push((name.to_owned(), ref_name.to_owned()));
        }
    };
    let own_ref_name = pr.test_ref(test_ref(pr, mode));
    for pkg in packages_on_base(packages, pr) {
        add(&pkg.name, &own_ref_name);
    }
    for (name, ref_name) in &extras.overrides {
        add(name, ref_name);
    }
    for x in members.iter().copied() {
        let ref_name = x.test_ref(test_ref(x, mode));
        for pkg in packages_on_base(packages, x) {
            add(&pkg.name, &ref_name);
        }
    }
    let mut unresolved: Vec<Unresolved> = std::iter::once(&id)
        .chain(&closure.members)
        .filter_map(|m| graph.unresolved.get(m))
        .flatten()
        .cloned()
        .collect();
    unresolved.sort();
    unresolved.dedup();

    let mut dependencies: Vec<DependencyInput> = members
        .iter()
        .map(|d| DependencyInput {
            id: pr_ref(d).to_string(),
            head_sha: d.head_sha.clone(),
            draft: d.draft,
        })
        .collect();
    dependencies.sort();
    let mut sorted_overrides = overrides.clone();
    sorted_overrides.sort();
    let own_ref = test_ref(pr, mode);
    let inputs = BuildInputs::PullRequest(PullRequestInputs {
        id: id.to_string(),
        head_sha: pr.head_sha.clone(),
        base_branch: pr.base_branch.clone(),
        draft: pr.draft,
        test_ref: own_ref.as_str().to_owned(),
        dependencies,
        overrides: sorted_overrides,
        base_sha: if ws.pull_requests.rebuild_on_base_change {
            pr.base_sha.clone()
        } else {
            None
        },
    });
    PlannedBuild {
        key: BuildKey::pull_request(&ws.name, &pr.base_repo, pr.number),
        inputs,
        subject: Subject::PullRequest {
            pr: Box::new(pr.clone()),
            test_ref: own_ref,
            packages: packages_on_base(packages, pr)
                .into_iter()
                .cloned()
                .collect(),
            dependencies: members.into_iter().cloned().collect(),
            unresolved,
            overrides,
            cycle: closure.cycle.iter().map(ToString::to_string).collect(),
            discovery: extras.discovery,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use forgewatch_adapters::RepoId;
    use forgewatch_adapters::forge::PrState;

    use super::*;
    use crate::config::TrustConfig;

    fn repo(path: &str) -> RepoId {
        RepoId::from_host_path("github.com", path).unwrap()
    }

    fn pr() -> PullRequest {
        PullRequest {
            number: 1,
            title: "t".into(),
            body: None,
            author: "stranger".into(),
            author_association: Some("CONTRIBUTOR".into()),
            labels: vec![],
            draft: false,
            updated_at: Some(1_000_000),
            head_sha: "h".into(),
            head_ref: "fix".into(),
            head_repo: Some(repo("stranger/app")),
            head_repo_numeric_id: Some(2),
            base_repo: repo("acme/app"),
            base_branch: "main".into(),
            base_sha: Some("b".into()),
            state: PrState::Open,
            web_url: "https://github.com/acme/app/pull/1".into(),
            mergeable: None,
            refs_prefix: "refs/pull/1".into(),
        }
    }

    fn cfg() -> PullRequestsConfig {
        PullRequestsConfig {
            enabled: true,
            pr_ref: PrRefMode::Auto,
            include_drafts: true,
            stale_after: Duration::from_secs(120 * 86_400),
            skip_labels: vec!["no-ci".into()],
            rebuild_on_base_change: false,
            trust: TrustConfig {
                authors: vec!["alice".into()],
                author_associations: vec!["OWNER".into(), "MEMBER".into(), "COLLABORATOR".into()],
                same_repository: true,
                approve_label: Some("ok-to-test".into()),
            },
        }
    }

    const NOW: i64 = 1_000_100;

    #[test]
    fn strangers_forks_wait_for_approval() {
        let mut p = pr();
        assert_eq!(
            eligibility(&p, &cfg(), NOW),
            Err(NotBuilt::AwaitingApproval)
        );
        p.labels = vec!["ok-to-test".into()];
        assert_eq!(eligibility(&p, &cfg(), NOW), Ok(()));
    }

    #[test]
    fn trusted_sources() {
        let mut same = pr();
        same.head_repo = Some(same.base_repo.clone());
        assert_eq!(eligibility(&same, &cfg(), NOW), Ok(()));
        let mut member = pr();
        member.author_association = Some("MEMBER".into());
        assert_eq!(eligibility(&member, &cfg(), NOW), Ok(()));
        let mut alice = pr();
        alice.author = "alice".into();
        assert_eq!(eligibility(&alice, &cfg(), NOW), Ok(()));
        let mut deleted_fork = pr();
        deleted_fork.head_repo = None;
        assert_eq!(
            eligibility(&deleted_fork, &cfg(), NOW),
            Err(NotBuilt::AwaitingApproval)
        );
    }

    #[test]
    fn filters_come_before_trust() {
        let mut p = pr();
        p.author = "alice".into();
        p.labels = vec!["no-ci".into()];
        assert_eq!(
            eligibility(&p, &cfg(), NOW),
            Err(NotBuilt::SkipLabel("no-ci".into()))
        );
        p.labels.clear();
        p.updated_at = Some(NOW - 121 * 86_400);
        assert_eq!(eligibility(&p, &cfg(), NOW), Err(NotBuilt::Stale));
        p.updated_at = Some(NOW);
        p.draft = true;
        let mut no_drafts = cfg();
        no_drafts.include_drafts = false;
        assert_eq!(eligibility(&p, &no_drafts, NOW), Err(NotBuilt::Draft));
        assert_eq!(eligibility(&p, &cfg(), NOW), Ok(()));
    }

    #[test]
    fn test_refs() {
        let mut p = pr();
        assert_eq!(
            test_ref(&p, PrRefMode::Auto),
            TestRef::Head,
            "unknown mergeability"
        );
        p.mergeable = Some(true);
        assert_eq!(test_ref(&p, PrRefMode::Auto), TestRef::Merge);
        assert_eq!(test_ref(&p, PrRefMode::Head), TestRef::Head);
        p.mergeable = Some(false);
        assert_eq!(test_ref(&p, PrRefMode::Auto), TestRef::Head);
        assert_eq!(test_ref(&p, PrRefMode::Merge), TestRef::Merge);
        p.draft = true;
        p.mergeable = Some(true);
        assert_eq!(
            test_ref(&p, PrRefMode::Merge),
            TestRef::Head,
            "drafts build their head"
        );
    }
}
