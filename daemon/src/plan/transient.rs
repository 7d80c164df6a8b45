//! Transient packages (SPEC §13): packages that an open config PR (a PR against a
//! workspace's buildconf or one of its package sets) introduces, as its discovery
//! found them, and what they change in the workspace's pull-request builds while
//! the PR is open:
//!
//! - they are watched like any package (their heads and open PRs are polled);
//! - the config PR and each open PR of its transient packages depend on each other
//!   implicitly (extra edges of the dependency graph, so they form a cycle);
//! - the config PR's overrides point a transient package at its PR's test ref when
//!   it has exactly one built PR, else at its tracked branch;
//! - while the discovery of a config PR's current head has not ended, the config PR
//!   and the PRs built against it wait, so each is delivered once, complete.
//!
//! Pure: the records of discoveries come from the state store and the packages are
//! resolved by [`crate::engine::packages`]; running discoveries is [`crate::engine::discovery`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use forgewatch_adapters::forge::PullRequest;

use crate::config::{PackageConfig, PackageKind, PullRequestsConfig, WorkspaceConfig};
use crate::plan::answers::PollResults;
use crate::plan::builds::target_of;
use crate::plan::dependencies::graph::{DependencyGraph, pr_ref};
use crate::plan::dependencies::parse::PrRef;
use crate::plan::pr_builds::{PrExtras, eligibility, test_ref};

/// Where the discovery of a config PR's current head stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryState {
    /// Not ended for this head yet (queued or running): its builds wait.
    Waiting(String),
    Succeeded,
    /// The config PR is built without transient packages (`discovery: "failed"`).
    Failed(String),
}

impl DiscoveryState {
    pub fn as_str(&self) -> &'static str {
        match self {
            DiscoveryState::Waiting(_) => "waiting",
            DiscoveryState::Succeeded => "succeeded",
            DiscoveryState::Failed(_) => "failed",
        }
    }
}

/// One open config PR of a workspace, as far as transient packages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigPr {
    pub id: PrRef,
    pub pr: PullRequest,
    /// The full ref its build (and its discovery) uses.
    pub test_ref: String,
    pub discovery: DiscoveryState,
    /// The job of its last discovery, if one ran.
    pub job_id: Option<i64>,
    /// Its transient packages: those of the last discovery (of an older head while
    /// a new one is pending) that the mainline lacks.
    pub packages: Vec<PackageConfig>,
}

/// A package name that two open config PRs introduce with different repositories
/// (both are kept, each PR with its own definition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub package: String,
    /// `(config PR, repository)` of each definition.
    pub definitions: Vec<(String, String)>,
}

/// The config PRs of one workspace this cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transients {
    pub config_prs: Vec<ConfigPr>,
}

/// What a pull request is to a workspace with transient packages.
pub enum Role<'a> {
    Plain,
    Config(&'a ConfigPr),
    /// A PR of a transient package of these config PRs.
    OfTransient(Vec<&'a ConfigPr>),
}

impl Role<'_> {
    /// What a PR of this role adds to its build, or why it waits (its config PR's
    /// discovery has not ended for its current head).
    pub fn extras(
        &self,
        cfg: &PullRequestsConfig,
        poll: &PollResults,
        graph: &DependencyGraph,
        now: i64,
    ) -> Result<PrExtras, String> {
        match self {
            Role::Plain => Ok(PrExtras::default()),
            Role::Config(c) => match &c.discovery {
                DiscoveryState::Waiting(why) => Err(why.clone()),
                state => Ok(PrExtras {
                    overrides: transient_overrides(c, cfg, poll, graph, now),
                    discovery: Some(state.as_str()),
                }),
            },
            Role::OfTransient(configs) => match configs
                .iter()
                .find(|c| matches!(c.discovery, DiscoveryState::Waiting(_)))
            {
                Some(c) => Err(format!("waiting for the discovery of config PR {}", c.id)),
                None => Ok(PrExtras::default()),
            },
        }
    }
}

/// The workspace's open PRs against its buildconf or a package set that would be
/// built (a discovery runs the PR's configuration, so untrusted PRs get none), with
/// the graph's copy (it knows mergeability) and the ref their build uses.
pub fn open_config_prs(
    ws: &WorkspaceConfig,
    mainline: &[PackageConfig],
    poll: &PollResults,
    graph: &DependencyGraph,
    now: i64,
) -> Vec<(PullRequest, String)> {
    if ws.discover.is_none() || !ws.pull_requests.enabled {
        return Vec::new();
    }
    let mut found: BTreeMap<PrRef, (PullRequest, String)> = BTreeMap::new();
    for pkg in mainline.iter().filter(|p| p.kind != PackageKind::Package) {
        let Some(Ok(pulls)) = poll.pulls.get(&target_of(pkg)) else {
            continue;
        };
        for listed in pulls {
            let pr = graph.open.get(&pr_ref(listed)).unwrap_or(listed);
            if eligibility(pr, &ws.pull_requests, now).is_ok() {
                let reference = pr.test_ref(test_ref(pr, ws.pull_requests.pr_ref));
                found.insert(pr_ref(pr), (pr.clone(), reference));
            }
        }
    }
    found.into_values().collect()
}

/// Whether every PR list of the workspace's config targets on `repo` was read
/// (so a config PR of `repo` absent from them is closed, merged or not built).
pub fn config_lists_complete(
    mainline: &[PackageConfig],
    poll: &PollResults,
    repo: &forgewatch_adapters::RepoId,
) -> bool {
    mainline
        .iter()
        .filter(|p| p.kind != PackageKind::Package && p.repo == *repo)
        .all(|p| matches!(poll.pulls.get(&target_of(p)), Some(Ok(_))))
}

/// The overrides that point the config repository at `pr`'s ref: the workspace's
/// packages on its base (a package set's `pkg_set:` entry; the buildconf has none).
pub fn config_overrides(
    mainline: &[PackageConfig],
    pr: &PullRequest,
    test_ref: &str,
) -> Vec<(String, String)> {
    mainline
        .iter()
        .filter(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
        .filter(|p| p.kind != PackageKind::Buildconf)
        .map(|p| (p.name.clone(), test_ref.to_owned()))
        .collect()
}

/// The packages of `discovered` that the mainline lacks (by name).
pub fn new_packages(
    discovered: Vec<PackageConfig>,
    mainline: &[PackageConfig],
) -> Vec<PackageConfig> {
    discovered
        .into_iter()
        .filter(|d| d.kind != PackageKind::Buildconf)
        .filter(|d| !mainline.iter().any(|m| m.name == d.name))
        .collect()
}

/// The overrides file of a discovery, in autoproj form (a YAML list of one-key
/// maps; names and refs as JSON strings, which YAML reads as double-quoted scalars).
pub fn overrides_yaml(overrides: &[(String, String)]) -> String {
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    if overrides.is_empty() {
        return "[]\n".to_owned();
    }
    overrides
        .iter()
        .map(|(name, reference)| {
            format!(
                "- {}:\n    remote_branch: {}\n    single_branch: false\n    shallow: false\n",
                quote(name),
                quote(reference)
            )
        })
        .collect()
}

impl Transients {
    /// Every transient package of every config PR (for polling).
    pub fn packages(&self) -> impl Iterator<Item = &PackageConfig> {
        self.config_prs.iter().flat_map(|c| &c.packages)
    }

    pub fn role_of(&self, pr: &PullRequest) -> Role<'_> {
        let id = pr_ref(pr);
        if let Some(c) = self.config_prs.iter().find(|c| c.id == id) {
            return Role::Config(c);
        }
        let of: Vec<&ConfigPr> = self
            .config_prs
            .iter()
            .filter(|c| {
                c.packages
                    .iter()
                    .any(|p| p.repo == pr.base_repo && p.branch == pr.base_branch)
            })
            .collect();
        if of.is_empty() {
            Role::Plain
        } else {
            Role::OfTransient(of)
        }
    }

    /// `graph` with the implicit edges between each config PR and the open PRs of
    /// its transient packages, both ways (a cycle).
    pub fn graph_with_edges<'g>(
        &self,
        graph: &'g DependencyGraph,
        poll: &PollResults,
    ) -> Cow<'g, DependencyGraph> {
        let mut edges: Vec<(PrRef, PrRef)> = Vec::new();
        for c in &self.config_prs {
            for pkg in &c.packages {
                let Some(Ok(pulls)) = poll.pulls.get(&target_of(pkg)) else {
                    continue;
                };
                for pr in pulls {
                    let id = pr_ref(pr);
                    if id != c.id && graph.open.contains_key(&id) {
                        edges.push((c.id.clone(), id.clone()));
                        edges.push((id, c.id.clone()));
                    }
                }
            }
        }
        if edges.is_empty() {
            return Cow::Borrowed(graph);
        }
        let mut augmented = graph.clone();
        for (from, to) in edges {
            let list = augmented.edges.entry(from).or_default();
            if !list.contains(&to) {
                list.push(to);
            }
        }
        Cow::Owned(augmented)
    }

    /// Names introduced by several config PRs with different repositories.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut by_name: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        for c in &self.config_prs {
            for p in &c.packages {
                by_name
                    .entry(&p.name)
                    .or_default()
                    .push((c.id.to_string(), p.repo.to_string()));
            }
        }
        by_name
            .into_iter()
            .filter(|(_, defs)| defs.iter().any(|(_, repo)| *repo != defs[0].1))
            .map(|(name, definitions)| Conflict {
                package: name.to_owned(),
                definitions,
            })
            .collect()
    }
}

/// The overrides a config PR's build gets for its transient packages: each at the
/// test ref of its one built open PR, else at its tracked branch.
pub fn transient_overrides(
    c: &ConfigPr,
    cfg: &PullRequestsConfig,
    poll: &PollResults,
    graph: &DependencyGraph,
    now: i64,
) -> Vec<(String, String)> {
    c.packages
        .iter()
        .map(|pkg| {
            let built: Vec<&PullRequest> = match poll.pulls.get(&target_of(pkg)) {
                Some(Ok(pulls)) => pulls
                    .iter()
                    .map(|p| graph.open.get(&pr_ref(p)).unwrap_or(p))
                    .filter(|p| eligibility(p, cfg, now).is_ok())
                    .collect(),
                _ => Vec::new(),
            };
            let reference = match built.as_slice() {
                [one] => one.test_ref(test_ref(one, cfg.pr_ref)),
                _ => pkg.branch.clone(),
            };
            (pkg.name.clone(), reference)
        })
        .collect()
}

/// The workspace's packages as a PR of this role sees them: the mainline's plus the
/// transient packages of its config PR(s), the first definition of a name winning.
pub fn packages_for<'a>(
    mainline: &'a [PackageConfig],
    role: &Role<'_>,
) -> Cow<'a, [PackageConfig]> {
    let extra: Vec<&PackageConfig> = match role {
        Role::Plain => return Cow::Borrowed(mainline),
        Role::Config(c) => c.packages.iter().collect(),
        Role::OfTransient(cs) => cs.iter().flat_map(|c| &c.packages).collect(),
    };
    let mut all = mainline.to_vec();
    for p in extra {
        if !all.iter().any(|a| a.name == p.name) {
            all.push(p.clone());
        }
    }
    Cow::Owned(all)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use forgewatch_adapters::RepoId;
    use forgewatch_adapters::forge::PrState;

    use super::*;
    use crate::config::{PrRefMode, TrustConfig};

    fn repo(path: &str) -> RepoId {
        RepoId::from_host_path("github.com", path).unwrap()
    }

    fn package(name: &str, path: &str) -> PackageConfig {
        PackageConfig {
            name: name.into(),
            repo: repo(path),
            forge: "github".into(),
            branch: "main".into(),
            kind: PackageKind::Package,
        }
    }

    fn pr(path: &str, number: u64) -> PullRequest {
        PullRequest {
            number,
            title: "t".into(),
            body: None,
            author: "alice".into(),
            author_association: Some("MEMBER".into()),
            labels: vec![],
            draft: false,
            updated_at: Some(NOW),
            head_sha: format!("{path}-{number}"),
            head_ref: "topic".into(),
            head_repo: Some(repo(path)),
            head_repo_numeric_id: Some(1),
            base_repo: repo(path),
            base_branch: "main".into(),
            base_sha: None,
            state: PrState::Open,
            web_url: format!("https://github.com/{path}/pull/{number}"),
            mergeable: Some(true),
            refs_prefix: format!("refs/pull/{number}"),
        }
    }

    fn cfg() -> PullRequestsConfig {
        PullRequestsConfig {
            enabled: true,
            pr_ref: PrRefMode::Merge,
            include_drafts: true,
            stale_after: Duration::from_secs(86_400),
            skip_labels: vec!["no-ci".into()],
            rebuild_on_base_change: false,
            trust: TrustConfig {
                authors: vec![],
                author_associations: vec!["MEMBER".into()],
                same_repository: true,
                approve_label: None,
            },
        }
    }

    const NOW: i64 = 1_000_000;

    fn config_pr(path: &str, packages: Vec<PackageConfig>) -> ConfigPr {
        let pr = pr(path, 1);
        ConfigPr {
            id: pr_ref(&pr),
            test_ref: "refs/pull/1/merge".into(),
            pr,
            discovery: DiscoveryState::Succeeded,
            job_id: Some(1),
            packages,
        }
    }

    /// Poll answers listing `pulls` as the open PRs of each repository's `main`.
    fn poll(pulls: &[PullRequest]) -> PollResults {
        let mut poll = PollResults::default();
        for pr in pulls {
            let target = forgewatch_adapters::forge::WatchTarget {
                repo: pr.base_repo.clone(),
                branch: "main".into(),
            };
            let list = poll.pulls.entry(target).or_insert_with(|| Ok(Vec::new()));
            list.as_mut().unwrap().push(pr.clone());
        }
        poll
    }

    #[test]
    fn a_transient_package_follows_its_one_built_pr_else_its_branch() {
        let c = config_pr(
            "acme/pkgset",
            vec![
                package("one", "acme/one"),
                package("two", "acme/two"),
                package("none", "acme/none"),
                package("skipped", "acme/skipped"),
            ],
        );
        let mut labelled = pr("acme/skipped", 2);
        labelled.labels = vec!["no-ci".into()];
        let pulls = [
            pr("acme/one", 4),
            pr("acme/two", 1),
            pr("acme/two", 2),
            labelled,
            pr("acme/skipped", 3),
        ];
        let overrides =
            transient_overrides(&c, &cfg(), &poll(&pulls), &DependencyGraph::default(), NOW);
        assert_eq!(
            overrides,
            [
                ("one".to_owned(), "refs/pull/4/merge".to_owned()),
                ("two".to_owned(), "main".to_owned()),
                ("none".to_owned(), "main".to_owned()),
                ("skipped".to_owned(), "refs/pull/3/merge".to_owned()),
            ]
        );
    }

    #[test]
    fn config_pr_and_transient_prs_form_a_cycle_and_conflicts_are_named() {
        let set = config_pr("acme/pkgset", vec![package("new/pkg", "acme/r")]);
        let conf = config_pr("acme/buildconf", vec![package("new/pkg", "acme/other")]);
        let transients = Transients {
            config_prs: vec![set.clone(), conf.clone()],
        };
        let impl_pr = pr("acme/r", 2);
        let mut graph = DependencyGraph::default();
        for p in [&set.pr, &conf.pr, &impl_pr] {
            graph.open.insert(pr_ref(p), p.clone());
        }
        let pulls = poll(std::slice::from_ref(&impl_pr));
        let with = transients.graph_with_edges(&graph, &pulls);
        assert_eq!(with.edges[&set.id], vec![pr_ref(&impl_pr)]);
        assert_eq!(with.edges[&pr_ref(&impl_pr)], vec![set.id.clone()]);
        assert!(!with.edges.contains_key(&conf.id));
        assert!(matches!(
            transients.graph_with_edges(&graph, &PollResults::default()),
            Cow::Borrowed(_)
        ));

        let Role::OfTransient(of) = transients.role_of(&impl_pr) else {
            panic!("a PR of a transient package");
        };
        assert_eq!(of.len(), 1);
        let mainline = [package("base/a", "acme/a")];
        let seen = packages_for(&mainline, &transients.role_of(&impl_pr));
        let names: Vec<&str> = seen.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base/a", "new/pkg"]);
        assert_eq!(seen[1].repo, repo("acme/r"));
        assert!(matches!(transients.role_of(&pr("acme/a", 1)), Role::Plain));

        assert_eq!(
            transients.conflicts(),
            [Conflict {
                package: "new/pkg".into(),
                definitions: vec![
                    (set.id.to_string(), "github.com/acme/r".into()),
                    (conf.id.to_string(), "github.com/acme/other".into()),
                ],
            }]
        );
    }

    #[test]
    fn the_overrides_file_is_autoproj_yaml() {
        assert_eq!(overrides_yaml(&[]), "[]\n");
        assert_eq!(
            overrides_yaml(&[(
                "pkg_set:github:/acme/pkgset.git".into(),
                "refs/pull/3/merge".into()
            )]),
            "- \"pkg_set:github:/acme/pkgset.git\":\n    remote_branch: \"refs/pull/3/merge\"\n    single_branch: false\n    shallow: false\n"
        );
    }
}
