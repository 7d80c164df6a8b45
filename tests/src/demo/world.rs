//! The demo's little world: a fake GitHub holding `acme/lib` and `acme/app` with a
//! pull request each (the app's depends on the lib's), a Buildbot-style change hook
//! receiver, and the configuration of a daemon watching both repositories every
//! `poll_interval`, written to a temporary directory that also holds `state_dir` and
//! is removed when the world is dropped.

use std::path::PathBuf;

use anyhow::Context as _;
use forgewatch::config::Config;
use tempfile::TempDir;

use crate::fake_ci::FakeCi;
use crate::fake_github::{FakeGitHub, NewPr};

/// The repositories the demo's workspace watches, on branch [`MAIN`].
pub const LIB: &str = "acme/lib";
pub const APP: &str = "acme/app";
pub const MAIN: &str = "main";
/// The workspace's name: the first part of every build key.
pub const WORKSPACE: &str = "demo";

/// The environment variables the configuration names for its secrets; their values
/// are handed to the configuration loader directly, never set in the process.
const TOKEN_ENV: &str = "DEMO_GITHUB_TOKEN";
const RESULTS_SECRET_ENV: &str = "DEMO_RESULTS_SECRET";

/// The fakes, the temporary directory and the secrets of one demo run.
pub struct World {
    pub github: FakeGitHub,
    pub ci: FakeCi,
    dir: TempDir,
    token: String,
    /// What the Buildbot target's results are authenticated with (a bearer token).
    pub results_secret: String,
}

impl World {
    /// Starts the fakes on `127.0.0.1:0` and fills the fake GitHub: both
    /// repositories, PR `acme/lib#1` and PR `acme/app#1`, which depends on it.
    pub async fn start() -> anyhow::Result<World> {
        let dir = tempfile::Builder::new()
            .prefix("forgewatch-demo-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let token = format!("ghp_demo{}", random_hex()?);
        let github = FakeGitHub::start().await;
        github.require_token(Some(&token));
        github.create_repo(LIB, MAIN);
        github.create_repo(APP, MAIN);
        let mut lib_pr = NewPr::new(MAIN, "faster-parser");
        lib_pr.title = "Parse twice as fast".to_owned();
        github.open_pr(LIB, lib_pr);
        let mut app_pr = NewPr::new(MAIN, "use-faster-parser");
        app_pr.title = "Use the faster parser".to_owned();
        app_pr.body = Some(format!(
            "Loads big files in half the time.\r\n\r\nDepends on:\r\n- [ ] {LIB}#1\r\n"
        ));
        github.open_pr(APP, app_pr);
        Ok(World {
            github,
            ci: FakeCi::start().await,
            dir,
            token,
            results_secret: random_hex()?,
        })
    }

    /// The temporary directory (configuration and state), removed with the world.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Writes `config.yml` (the daemon polls every `poll_interval`) and reads it
    /// back as the daemon's configuration.
    pub fn config(&self, poll_interval: &str) -> anyhow::Result<Config> {
        let yaml = format!(
            "# The configuration of `forgewatch-tests --bin demo` (removed when it stops).\n\
             state_dir: ./state\n\
             poll_interval: {poll_interval}\n\
             shutdown_grace: 5s\n\
             http:\n  listen: 127.0.0.1:0\n\
             forges:\n  github:\n    kind: github\n    host: github.com\n    api_url: {api}\n    token_env: {TOKEN_ENV}\n\
             ci:\n  buildbot:\n    kind: buildbot\n    url: {bb}\n    results_secret_env: {RESULTS_SECRET_ENV}\n\
             workspaces:\n  - name: {WORKSPACE}\n    ci: buildbot\n    packages:\n\
             \x20     - {{ name: lib, repo: https://github.com/{LIB}, branch: {MAIN} }}\n\
             \x20     - {{ name: app, repo: https://github.com/{APP}, branch: {MAIN} }}\n",
            api = self.github.api_url(),
            bb = self.ci.buildbot_url(),
        );
        let path = self.config_path();
        std::fs::write(&path, &yaml).with_context(|| format!("cannot write {}", path.display()))?;
        let secrets = |name: &str| match name {
            TOKEN_ENV => Some(self.token.clone()),
            RESULTS_SECRET_ENV => Some(self.results_secret.clone()),
            _ => None,
        };
        forgewatch::config::load_with_env(&yaml, &path, &secrets)
            .map_err(|errors| anyhow::anyhow!("the demo's configuration is wrong: {errors}"))
    }
}

/// 32 hex digits from the kernel's random source: the demo's secrets.
fn random_hex() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(bytes))
}
