//! Pull-request builds of one workspace: whether a PR is built at all (drafts,
//! staleness, skip labels, trust), which ref the CI builds, its dependency closure
//! and unresolved references, and the overrides that point the workspace's packages
//! at the refs of the PR and of every PR it depends on (SPEC §2–§5); and which
//! PRs' mergeability those refs follow, so only those are asked. Pure.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use forgewatch_adapters::forge::{PullRequest, TestRef, WatchTarget};

use crate::config::{PackageConfig, PackageKind, PrRefMode, PullRequestsConfig, WorkspaceConfig};
use crate::plan::answers::PollResults;
use crate::plan::builds::{PlannedBuild, Subject, target_of};
use crate::plan::dependencies::closure::closure;
use crate::plan::dependencies::graph::{DependencyGraph, Unresolved, pr_ref};
use crate::plan::dependencies::parse::PrRef;
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

/// Whether [`test_ref`] of `pr` depends on the forge's mergeability: only with
/// `pr_ref: auto`, and never for a draft.
pub fn ref_follows_mergeability(pr: &PullRequest, mode: PrRefMode) -> bool {
    mode == PrRefMode::Auto && !pr.draft
}

/// The open PRs whose mergeability the builds of `ws` use at `now` (unix seconds):
/// each PR it builds (listed on the targets of its `mainline` or `transient`
/// packages, and eligible) and each PR of such a build's dependency closure that
/// one of its overrides points at — those of them whose ref follows mergeability
/// (see [`plan_pull_request`], which takes the same refs). The implicit edges of
/// config PRs are over-approximated: every built config PR is taken to depend on
/// every open PR of a transient target, both ways (which config PR introduced which
/// transient package is not known before the cycle's config PRs are).
pub fn mergeability_used(
    ws: &WorkspaceConfig,
    mainline: &[PackageConfig],
    transient: &[PackageConfig],
    poll: &PollResults,
    graph: &DependencyGraph,
    now: i64,
) -> BTreeSet<PrRef> {
    let cfg = &ws.pull_requests;
    let mut used = BTreeSet::new();
    if !cfg.enabled || cfg.pr_ref != PrRefMode::Auto {
        return used;
    }
    // The open PRs listed on the targets of `packages`, as the graph knows them.
    let listed = |packages: &mut dyn Iterator<Item = &PackageConfig>| -> Vec<&PullRequest> {
        let targets: BTreeSet<WatchTarget> = packages.map(target_of).collect();
        targets
            .iter()
            .filter_map(|t| match poll.pulls.get(t) {
                Some(Ok(pulls)) => Some(pulls),
                _ => None,
            })
            .flatten()
            .map(|listed| graph.open.get(&pr_ref(listed)).unwrap_or(listed))
            .collect()
    };
    let built = |prs: Vec<&'_ PullRequest>| -> Vec<PrRef> {
        prs.into_iter()
            .filter(|pr| eligibility(pr, cfg, now).is_ok())
            .map(pr_ref)
            .collect()
    };
    let mut edges = Cow::Borrowed(&graph.edges);
    if ws.discover.is_some() && !transient.is_empty() {
        let mut config_targets = mainline.iter().filter(|p| p.kind != PackageKind::Package);
        let of_transients: Vec<PrRef> = listed(&mut transient.iter())
            .into_iter()
            .map(pr_ref)
            .collect();
        for config_pr in built(listed(&mut config_targets)) {
            for other in of_transients.iter().filter(|o| **o != config_pr) {
                for (from, to) in [(&config_pr, other), (other, &config_pr)] {
                    let list = edges.to_mut().entry(from.clone()).or_default();
                    if !list.contains(to) {
                        list.push(to.clone());
                    }
                }
            }
        }
    }
    let follows = |id: &PrRef| {
        graph
            .open
            .get(id)
            .is_some_and(|pr| ref_follows_mergeability(pr, cfg.pr_ref))
    };
    for id in built(listed(&mut mainline.iter().chain(transient))) {
        if follows(&id) {
            used.insert(id.clone());
        }
        for member in closure(&edges, &id).members {
            let overridden = graph.open.get(&member).is_some_and(|dep| {
                !packages_on_base(mainline, dep).is_empty()
                    || !packages_on_base(transient, dep).is_empty()
            });
            if overridden && follows(&member) {
                used.insert(member);
            }
        }
    }
    used
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

    fn ws(pr_ref: PrRefMode, packages: &[(&str, &str, PackageKind)]) -> WorkspaceConfig {
        let mut pull_requests = cfg();
        pull_requests.pr_ref = pr_ref;
        WorkspaceConfig {
            name: "ws".into(),
            ci: "bb".into(),
            packages: packages
                .iter()
                .map(|(name, path, kind)| PackageConfig {
                    name: (*name).into(),
                    repo: repo(path),
                    forge: "github".into(),
                    branch: "main".into(),
                    kind: *kind,
                })
                .collect(),
            manifest: None,
            update: None,
            discover: None,
            buildconf: None,
            pull_requests,
            report: crate::config::ReportConfig::default(),
        }
    }

    /// An open PR of `path`'s `main` by a member.
    fn open(path: &str, number: u64) -> PullRequest {
        let mut p = pr();
        p.number = number;
        p.base_repo = repo(path);
        p.author_association = Some("MEMBER".into());
        p.updated_at = Some(NOW);
        p
    }

    /// The poll answers and graph of these open PRs, with `edges` (by index).
    fn seen(pulls: &[PullRequest], edges: &[(usize, usize)]) -> (PollResults, DependencyGraph) {
        let mut poll = PollResults::default();
        let mut graph = DependencyGraph::default();
        for p in pulls {
            let target = WatchTarget {
                repo: p.base_repo.clone(),
                branch: "main".into(),
            };
            let list = poll.pulls.entry(target).or_insert_with(|| Ok(Vec::new()));
            list.as_mut().unwrap().push(p.clone());
            graph.open.insert(pr_ref(p), p.clone());
        }
        for (from, to) in edges {
            let to = pr_ref(&pulls[*to]);
            graph
                .edges
                .entry(pr_ref(&pulls[*from]))
                .or_default()
                .push(to);
        }
        (poll, graph)
    }

    fn ids(pulls: &[&PullRequest]) -> BTreeSet<PrRef> {
        pulls.iter().map(|p| pr_ref(p)).collect()
    }

    #[test]
    fn mergeability_is_used_by_built_prs_and_the_prs_they_override() {
        use PackageKind::Package;
        let app = ws(
            PrRefMode::Auto,
            &[("app", "acme/app", Package), ("lib", "acme/lib", Package)],
        );
        let built = open("acme/app", 1);
        // A stale PR that a built draft (its head whatever it says) depends on.
        let mut stale = open("acme/app", 2);
        stale.updated_at = Some(NOW - 200 * 86_400);
        let mut lonely = open("acme/app", 6);
        lonely.updated_at = Some(NOW - 200 * 86_400);
        let mut draft = open("acme/app", 3);
        draft.draft = true;
        let mut stranger = open("acme/app", 4);
        stranger.author_association = Some("NONE".into());
        let mut labelled = open("acme/app", 5);
        labelled.labels = vec!["no-ci".into()];
        // Dependencies of #1: a stale PR of a package (overridden), a PR of no
        // package (no override), a draft of a package (its head whatever it says).
        let mut stale_dep = open("acme/lib", 1);
        stale_dep.updated_at = Some(NOW - 200 * 86_400);
        let mut elsewhere = open("acme/other", 1);
        elsewhere.updated_at = Some(NOW - 200 * 86_400);
        let mut draft_dep = open("acme/lib", 2);
        draft_dep.draft = true;
        draft_dep.updated_at = Some(NOW - 200 * 86_400);
        let pulls = [
            built.clone(),
            stale.clone(),
            draft.clone(),
            stranger,
            labelled,
            stale_dep.clone(),
            elsewhere,
            draft_dep,
            lonely,
        ];
        let (poll, graph) = seen(&pulls, &[(0, 5), (0, 6), (0, 7), (2, 1)]);
        let (mainline, transient) = (&app.packages[..], &[][..]);
        assert_eq!(
            mergeability_used(&app, mainline, transient, &poll, &graph, NOW),
            ids(&[&built, &stale, &stale_dep])
        );
        for mode in [PrRefMode::Merge, PrRefMode::Head] {
            let fixed = ws(
                mode,
                &[("app", "acme/app", Package), ("lib", "acme/lib", Package)],
            );
            let used = mergeability_used(&fixed, mainline, transient, &poll, &graph, NOW);
            assert_eq!(used, BTreeSet::new(), "{mode:?}");
        }
        let mut disabled = app.clone();
        disabled.pull_requests.enabled = false;
        let used = mergeability_used(&disabled, mainline, transient, &poll, &graph, NOW);
        assert_eq!(used, BTreeSet::new());
    }

    #[test]
    fn a_config_pr_and_the_prs_of_transient_packages_use_each_others() {
        use PackageKind::{Package, PackageSet};
        let mut auto = ws(
            PrRefMode::Auto,
            &[("pkg_set:acme/set", "acme/set", PackageSet)],
        );
        let mainline = auto.packages.clone();
        let transient = ws(
            PrRefMode::Auto,
            &[("new", "acme/new", Package), ("two", "acme/two", Package)],
        )
        .packages;
        let config_pr = open("acme/set", 1);
        let new = open("acme/new", 1);
        let mut untrusted = open("acme/two", 1);
        untrusted.author_association = Some("NONE".into());
        let pulls = [config_pr.clone(), new.clone(), untrusted.clone()];
        let (poll, graph) = seen(&pulls, &[]);
        // Without `discover` there are no config PRs: only what is built.
        assert_eq!(
            mergeability_used(&auto, &mainline, &transient, &poll, &graph, NOW),
            ids(&[&config_pr, &new])
        );
        auto.discover = Some(crate::config::CommandConfig {
            argv: vec!["discover".into()],
            dir: "/".into(),
            timeout: Duration::from_secs(1),
            kill_grace: Duration::from_secs(1),
            env: vec![],
        });
        // The build of `new` depends on the config PR, which depends on `two`'s PR.
        assert_eq!(
            mergeability_used(&auto, &mainline, &transient, &poll, &graph, NOW),
            ids(&[&config_pr, &new, &untrusted])
        );
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
