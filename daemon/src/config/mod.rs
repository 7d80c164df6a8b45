//! Configuration: the YAML file (SPEC §5) read in two stages, ripgrep style.
//!
//! `raw` mirrors the file with serde (every value keeps its YAML location), and
//! `validate` turns it into the [`Config`] below, in which every reference is
//! resolved (a workspace's CI target exists, every package URL has a forge), every
//! secret has been read, and every error names `file:line:col`. Nothing outside this
//! module sees the raw form.

mod duration;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use forgewatch_adapters::{RepoId, Secret};

pub use duration::parse_duration;
pub use validate::{ConfigError, ConfigErrors, load, load_str};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// State database, HTTP cache and lock file. Relative paths in the file are
    /// resolved against the directory of the configuration file.
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    /// By configured name.
    pub forges: BTreeMap<String, ForgeConfig>,
    /// By configured name.
    pub ci: BTreeMap<String, CiConfig>,
    /// In file order; names are unique.
    pub workspaces: Vec<WorkspaceConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
}

#[derive(Debug, Clone)]
pub struct ForgeConfig {
    pub name: String,
    pub kind: ForgeKind,
    /// Lower-cased, without `www.`: the host part of the repository identities it owns.
    pub host: String,
    /// API root without a trailing slash, e.g. `https://api.github.com` or
    /// `https://gitlab.example.org/api/v4`.
    pub api_url: String,
    /// `None`: unauthenticated (GitHub allows 60 requests/hour).
    pub token: Option<Secret>,
    pub max_concurrency: usize,
}

#[derive(Debug, Clone)]
pub enum CiConfig {
    Buildbot {
        url: String,
        basic_auth: Option<BasicAuth>,
    },
    Webhook {
        url: String,
        secret: Secret,
    },
    /// `POST {api_url}/projects/{project}/trigger/pipeline` of a GitLab forge.
    GitLabPipeline {
        /// The API root of the forge named by `forge:`.
        api_url: String,
        /// The project's full path (`infra/ci`) or numeric id, as configured.
        project: String,
        /// The ref the pipeline runs on.
        git_ref: String,
        /// The pipeline trigger token.
        token: Secret,
    },
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct WorkspaceConfig {
    pub name: String,
    /// Name of an entry of [`Config::ci`].
    pub ci: String,
    pub packages: Vec<PackageConfig>,
    pub pull_requests: PullRequestsConfig,
}

#[derive(Debug, Clone)]
pub struct PackageConfig {
    pub name: String,
    pub repo: RepoId,
    /// Name of the entry of [`Config::forges`] whose host owns `repo`.
    pub forge: String,
    pub branch: String,
}

#[derive(Debug, Clone)]
pub struct PullRequestsConfig {
    pub enabled: bool,
}
