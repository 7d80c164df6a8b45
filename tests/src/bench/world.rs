//! The world a benchmark runs in: the fake GitHub and GitLab populated with
//! repositories, branches, open pull requests and dependency edges, the fake CI
//! receiving deliveries, and the daemon's configuration for them.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::fake_ci::FakeCi;
use crate::fake_github::FakeGitHub;
use crate::fake_gitlab::FakeGitLab;
use crate::forge::{FakeForge, Request};

pub const TOKEN: &str = "ghp_benchToken0123456789";
pub const HOOK_SECRET: &str = "bench-hook-secret";
pub const BRANCH: &str = "main";

/// The size of a scenario.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    pub workspaces: usize,
    /// Distinct watch targets: one repository (one branch) each.
    pub targets: usize,
    /// How many of the targets are GitLab projects (the others are on GitHub).
    pub gitlab_targets: usize,
    /// Packages of each workspace: a window of consecutive targets, so windows
    /// overlap and every target is shared by several workspaces.
    pub packages_per_workspace: usize,
    /// Open pull requests in all, spread evenly over the targets.
    pub prs: usize,
    /// `Depends-On:` edges between pull requests of the same forge.
    pub dependency_edges: usize,
}

impl Size {
    /// `shared` as issue 8 names it: 10 workspaces sharing 100 GitHub repositories
    /// (one branch each, 5 open PRs each).
    pub const SHARED: Size = Size {
        workspaces: 10,
        targets: 100,
        gitlab_targets: 0,
        packages_per_workspace: 100,
        prs: 500,
        dependency_edges: 0,
    };

    /// `large`: 200 workspaces, 2,000 distinct targets across GitHub and GitLab,
    /// 500 open PRs, 100 dependency edges.
    pub const LARGE: Size = Size {
        workspaces: 200,
        targets: 2000,
        gitlab_targets: 1000,
        packages_per_workspace: 50,
        prs: 500,
        dependency_edges: 100,
    };

    /// `latency`: one workspace watching 50 GitHub repositories, no pull requests.
    pub const LATENCY: Size = Size {
        workspaces: 1,
        targets: 50,
        gitlab_targets: 0,
        packages_per_workspace: 50,
        prs: 0,
        dependency_edges: 0,
    };

    fn is_gitlab(&self, target: usize) -> bool {
        target >= self.targets - self.gitlab_targets.min(self.targets)
    }

    /// The target of pull request `k`.
    fn pr_target(&self, k: usize) -> usize {
        if self.prs >= self.targets {
            k % self.targets
        } else {
            k * (self.targets / self.prs.max(1))
        }
    }

    /// The targets workspace `w` watches.
    fn window(&self, w: usize) -> impl Iterator<Item = usize> + '_ {
        let stride = (self.targets / self.workspaces.max(1)).max(1);
        (0..self.packages_per_workspace.min(self.targets))
            .map(move |j| (w * stride + j) % self.targets)
    }
}

/// The fakes, populated.
pub struct World {
    pub size: Size,
    pub github: FakeGitHub,
    pub gitlab: FakeGitLab,
    pub ci: FakeCi,
}

impl World {
    pub async fn start(size: Size) -> World {
        let (github, gitlab, ci) =
            tokio::join!(FakeGitHub::start(), FakeGitLab::start(), FakeCi::start());
        github.require_token(Some(TOKEN));
        gitlab.require_token(Some(TOKEN));
        // A self-managed GitLab without gitlab.com's 2,000 requests/minute.
        gitlab.set_rate_limit(u64::MAX / 2);
        let world = World {
            size,
            github,
            gitlab,
            ci,
        };
        for t in 0..size.targets {
            world.forge(t).create_repo(&world.path(t), BRANCH);
        }
        let mut numbers = Vec::with_capacity(size.prs);
        for k in 0..size.prs {
            let t = size.pr_target(k);
            numbers.push(
                world
                    .forge(t)
                    .open_pr(&world.path(t), BRANCH, &format!("feature-{k}")),
            );
        }
        for e in 0..size.dependency_edges.min(size.prs / 2) {
            let from = e * size.prs / size.dependency_edges;
            let to = from + 1;
            let (tf, tt) = (size.pr_target(from), size.pr_target(to));
            let body = format!(
                "Depends-On: {}",
                world.forge(tt).pr_url(&world.path(tt), numbers[to])
            );
            world
                .forge(tf)
                .set_pr_body(&world.path(tf), numbers[from], &body);
        }
        world
    }

    pub fn forge(&self, target: usize) -> &dyn FakeForge {
        if self.size.is_gitlab(target) {
            &self.gitlab
        } else {
            &self.github
        }
    }

    pub fn path(&self, target: usize) -> String {
        if self.size.is_gitlab(target) {
            format!("lab/sub/repo{target:04}")
        } else {
            format!("acme/repo{target:04}")
        }
    }

    /// A push to target `t`'s branch; returns the new head.
    pub fn push(&self, target: usize) -> String {
        self.forge(target).push(&self.path(target), BRANCH)
    }

    /// Distinct PR lists the daemon polls (every target: PRs are enabled).
    pub fn pr_lists(&self) -> usize {
        if self.size.prs > 0 {
            self.size.targets
        } else {
            0
        }
    }

    /// Requests both fakes recorded, with the forge's kind.
    pub fn requests(&self) -> Vec<(&'static str, Request)> {
        let github = FakeForge::requests(&self.github)
            .into_iter()
            .map(|r| ("github", r));
        let gitlab = FakeForge::requests(&self.gitlab)
            .into_iter()
            .map(|r| ("gitlab", r));
        github.chain(gitlab).collect()
    }

    pub fn clear_requests(&self) {
        FakeForge::clear_requests(&self.github);
        FakeForge::clear_requests(&self.gitlab);
    }

    pub fn is_single_pr(&self, kind: &str, path: &str) -> bool {
        match kind {
            "github" => self.github.is_single_pr(path),
            _ => FakeForge::is_single_pr(&self.gitlab, path),
        }
    }

    /// The daemon's configuration: both forges (webhook secret `HOOK_SECRET`), the
    /// fake Buildbot, the HTTP API on a free port, and the workspaces.
    pub fn config_yaml(&self, poll_interval: Duration) -> String {
        let mut yaml = format!(
            "state_dir: ./state\npoll_interval: {interval}ms\nhttp:\n  listen: 127.0.0.1:0\nforges:\n  github:\n    kind: github\n    host: {gh_host}\n    api_url: {gh}\n    token_env: FW_BENCH_TOKEN\n    webhook_secret_env: FW_BENCH_HOOK\n    max_concurrency: 8\n  lab:\n    kind: gitlab\n    host: {lab_host}\n    api_url: {lab}\n    token_env: FW_BENCH_TOKEN\n    webhook_secret_env: FW_BENCH_HOOK\n    max_concurrency: 8\nci:\n  bb:\n    kind: buildbot\n    url: {bb}\nworkspaces:\n",
            interval = poll_interval.as_millis(),
            gh_host = FakeForge::host(&self.github),
            gh = FakeForge::api_url(&self.github),
            lab_host = FakeForge::host(&self.gitlab),
            lab = FakeForge::api_url(&self.gitlab),
            bb = self.ci.buildbot_url(),
        );
        for w in 0..self.size.workspaces {
            let _ = write!(yaml, "  - name: ws{w:03}\n    ci: bb\n    packages:\n");
            for t in self.size.window(w) {
                let host = self.forge(t).host();
                let _ = writeln!(
                    yaml,
                    "      - {{ name: pkg{t:04}, repo: \"https://{host}/{}\", branch: {BRANCH} }}",
                    self.path(t)
                );
            }
            let _ = writeln!(
                yaml,
                "    pull_requests:\n      enabled: {}",
                self.size.prs > 0
            );
        }
        yaml
    }

    /// The environment the daemon needs for this configuration.
    pub fn env() -> [(&'static str, &'static str); 2] {
        [("FW_BENCH_TOKEN", TOKEN), ("FW_BENCH_HOOK", HOOK_SECRET)]
    }
}
