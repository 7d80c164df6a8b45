//! Shared set-up of the end-to-end tests: a fake GitHub and a fake CI on loopback,
//! a temporary directory holding the configuration and `state_dir`, and the real
//! `forgewatch` binary run as a subprocess against them.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use forgewatch_tests::fake_ci::FakeCi;
use forgewatch_tests::fake_github::FakeGitHub;
use tempfile::TempDir;

/// A deadline for anything a test waits on; generous, never a sleep.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The token the fake GitHub requires and the daemon is given.
pub const TOKEN: &str = "ghp_e2eTestToken0123456789";
pub const HOOK_SECRET: &str = "e2e-hook-secret";

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_forgewatch-under-test"))
}

pub struct Env {
    pub github: FakeGitHub,
    pub ci: FakeCi,
    pub dir: TempDir,
}

/// What one `forgewatch` invocation printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// `(build key, status, reason)` of each stdout line.
    pub fn lines(&self) -> Vec<(String, String, String)> {
        self.stdout
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, '\t');
                let mut next = || parts.next().unwrap_or_default().to_owned();
                (next(), next(), next())
            })
            .collect()
    }

    /// The stdout lines as `KEY STATUS` pairs, sorted, for exact comparisons.
    pub fn keys_and_statuses(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .lines()
            .into_iter()
            .map(|(k, s, _)| format!("{k} {s}"))
            .collect();
        v.sort();
        v
    }
}

/// A workspace of the generated configuration.
pub struct Ws<'a> {
    pub name: &'a str,
    pub ci: &'a str,
    /// `(package name, owner/repo, branch)`.
    pub packages: &'a [(&'a str, &'a str, &'a str)],
    pub pull_requests: bool,
}

impl Env {
    pub async fn new() -> Env {
        let github = FakeGitHub::start().await;
        github.require_token(Some(TOKEN));
        Env {
            github,
            ci: FakeCi::start().await,
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `config.yml` for these workspaces (CI targets `bb` and `hook`).
    pub fn configure(&self, workspaces: &[Ws<'_>]) {
        let mut yaml = format!(
            "state_dir: ./state\npoll_interval: 1s\nforges:\n  github:\n    kind: github\n    host: github.com\n    api_url: {api}\n    token_env: FW_E2E_TOKEN\n    max_concurrency: 4\nci:\n  bb:\n    kind: buildbot\n    url: {bb}\n  hook:\n    kind: webhook\n    url: {hook}\n    secret_env: FW_E2E_HOOK_SECRET\nworkspaces:\n",
            api = self.github.api_url(),
            bb = self.ci.buildbot_url(),
            hook = self.ci.webhook_url(),
        );
        for ws in workspaces {
            yaml.push_str(&format!(
                "  - name: {}\n    ci: {}\n    packages:\n",
                ws.name, ws.ci
            ));
            for (name, repo, branch) in ws.packages {
                yaml.push_str(&format!(
                    "      - {{ name: {name}, repo: \"https://github.com/{repo}\", branch: {branch} }}\n"
                ));
            }
            yaml.push_str(&format!(
                "    pull_requests:\n      enabled: {}\n",
                ws.pull_requests
            ));
        }
        std::fs::write(self.config_path(), yaml).expect("write config");
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(binary());
        cmd.args(args)
            .arg("--config")
            .arg(self.config_path())
            .env("FW_E2E_TOKEN", TOKEN)
            .env("FW_E2E_HOOK_SECRET", HOOK_SECRET)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `forgewatch ARGS --config …` to completion.
    pub async fn forgewatch(&self, args: &[&str]) -> Run {
        let child = self.command(args).spawn().expect("spawn forgewatch");
        let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .expect("forgewatch did not finish before the deadline")
            .expect("wait for forgewatch");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `forgewatch once`, asserting it succeeded; request counters are cleared first.
    pub async fn once(&self) -> Run {
        self.github.clear_requests();
        let run = self.forgewatch(&["once"]).await;
        assert_eq!(run.code, Some(0), "once failed: {run:#?}");
        run
    }

    /// Requests the last run made, by status.
    pub fn statuses(&self) -> (usize, usize, usize) {
        let requests = self.github.requests();
        let ok = requests.iter().filter(|r| r.status == 200).count();
        let not_modified = requests.iter().filter(|r| r.status == 304).count();
        (ok, not_modified, requests.len() - ok - not_modified)
    }

    /// Build keys of the accepted deliveries from index `from` on, in arrival order.
    pub fn delivered_keys(&self, from: usize) -> Vec<String> {
        self.ci.accepted()[from..]
            .iter()
            .map(|d| {
                d.properties()["build_key"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }
}
