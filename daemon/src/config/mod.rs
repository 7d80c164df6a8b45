//! Configuration: the YAML file (SPEC §5) read in two stages, ripgrep style.
//!
//! `raw` mirrors the file with serde (every value keeps its YAML location), and
//! `validate` turns it into the [`Config`] below, in which every reference is
//! resolved (a workspace's CI target exists, every package URL has a forge), every
//! secret has been read, and every error names `file:line:col`. Nothing outside this
//! module sees the raw form.

mod duration;
mod file;
mod raw;
pub mod schema;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use forgewatch_adapters::{RepoId, Secret};

pub use duration::parse_duration;
pub use validate::{
    ConfigError, ConfigErrors, load, load_str, load_with_credentials, load_with_env,
};

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// State database, HTTP cache and lock file. Relative paths in the file are
    /// resolved against the directory of the configuration file.
    pub state_dir: PathBuf,
    pub poll_interval: Duration,
    /// Update subprocesses running at once, all workspaces together.
    pub max_parallel_updates: usize,
    pub delivery: DeliveryConfig,
    pub http: HttpConfig,
    /// How long a stop (SIGTERM) may take before the daemon exits anyway.
    pub shutdown_grace: Duration,
    /// How long an HTTP cache row (validators and body of one URL and credential)
    /// is kept without being used: closed PRs, removed targets, rotated credentials.
    pub http_cache_retention: Duration,
    /// How long deliveries and their results are kept (`history.keep`); the last
    /// delivery of each build stays however old it is.
    pub history_keep: Duration,
    /// Names of the environment variables secrets were read from: removed from the
    /// environment of every subprocess.
    pub secret_env_vars: Vec<String>,
    /// By configured name.
    pub forges: BTreeMap<String, ForgeConfig>,
    /// By configured name.
    pub ci: BTreeMap<String, CiConfig>,
    /// The secret each CI target's results are authenticated with, by target name
    /// (only the targets that have one).
    pub results_secrets: BTreeMap<String, Secret>,
    /// In file order; names are unique.
    pub workspaces: Vec<WorkspaceConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForgeKind {
    GitHub,
    GitLab,
}

#[derive(Debug, Clone, PartialEq)]
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
    pub connect_timeout: Duration,
    /// A request (connection to last byte) that takes longer fails.
    pub request_timeout: Duration,
    /// Below this share of the limit (0.0–1.0) the forge pauses until its reset.
    pub rate_limit_reserve: f64,
    /// The wait after a secondary rate limit without `Retry-After` (then doubling).
    pub secondary_limit_wait: Duration,
    /// At most this many requests a minute to this forge (`None`: no cap).
    pub requests_per_minute: Option<u32>,
    /// At most this many commit statuses posted a minute (GitHub: 80) and an hour
    /// (GitHub: 500); a status over either waits in the outbox.
    pub status_writes_per_minute: u32,
    pub status_writes_per_hour: u32,
    /// Verifies this forge's webhooks (`X-Hub-Signature-256` / `X-Gitlab-Token`);
    /// `None`: the forge's webhooks are refused.
    pub webhook_secret: Option<Secret>,
}

/// The HTTP listener: status API, metrics, webhooks, status page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: std::net::SocketAddr,
    /// The URL the API is reached at through a reverse proxy: its host (and port)
    /// is accepted as `Host` besides the listen address.
    pub public_url: Option<url::Url>,
    /// Bearer token of the POST endpoints; `None`: they are refused.
    pub admin_token: Option<Secret>,
    /// What one client can hold of the server.
    pub limits: HttpLimits,
}

/// What one client can hold of the HTTP server (SPEC §10); applied at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a client may take to send a request's headers, from the moment the
    /// server waits for them: on a new connection, and after each response on a
    /// kept-alive one (so it is also the idle timeout).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body, from its headers.
    pub body_timeout: Duration,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 2048,
        }
    }
}

/// How deliveries are retried (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// The wait after a first failure; doubles per failure (with jitter).
    pub retry_initial: Duration,
    /// The longest wait between attempts.
    pub retry_cap: Duration,
    /// How long a CI target may take to answer one delivery.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// A local program: argv run in its own process group, the JSON payload on
    /// stdin; exit 0 means accepted.
    Command {
        argv: Vec<String>,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BasicAuth {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceConfig {
    pub name: String,
    /// Name of an entry of [`Config::ci`].
    pub ci: String,
    /// Packages listed in the configuration file.
    pub packages: Vec<PackageConfig>,
    /// Where more packages are read from (a file an update command refreshes).
    pub manifest: Option<ManifestConfig>,
    pub update: Option<UpdateConfig>,
    /// The command that writes the manifest of the configuration with an open
    /// config PR applied (SPEC §13); needs `manifest` (its format is the same).
    pub discover: Option<CommandConfig>,
    /// The workspace's main build configuration: watched like a package (named
    /// [`BUILDCONF_PACKAGE`]); a push to it is a `config_change`.
    pub buildconf: Option<PackageConfig>,
    pub pull_requests: PullRequestsConfig,
    pub report: ReportConfig,
}

/// What a workspace reports on the forges (SPEC §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportConfig {
    /// A commit status on each PR build's head sha.
    pub statuses: bool,
    /// The same status on every PR of the build's closure.
    pub dependencies: bool,
    /// The status context, `{workspace}` replaced by the workspace's name.
    pub context: String,
}

impl Default for ReportConfig {
    fn default() -> ReportConfig {
        ReportConfig {
            statuses: false,
            dependencies: false,
            context: "forgewatch/{workspace}".to_owned(),
        }
    }
}

/// The package name under which a workspace's `buildconf` is watched (the name
/// autoproj-daemon used in its payloads).
pub const BUILDCONF_PACKAGE: &str = "main configuration";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestFormat {
    /// autoproj's `.autoproj/installation-manifest`.
    Autoproj,
    /// A YAML or JSON list of `{name, repo, branch}`.
    Forgewatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestConfig {
    pub format: ManifestFormat,
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    pub argv: Vec<String>,
    pub dir: PathBuf,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Added to the sanitised environment.
    pub env: Vec<(String, String)>,
    /// Run when the daemon (or `once`) starts.
    pub on_startup: bool,
    /// Run when the head of the buildconf or of a package set moves.
    pub on_config_change: bool,
    /// Run at least this often.
    pub every: Option<Duration>,
}

/// A subprocess of a workspace (the `discover` command): what runs, where, and for
/// how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandConfig {
    pub argv: Vec<String>,
    pub dir: PathBuf,
    pub timeout: Duration,
    pub kill_grace: Duration,
    /// Added to the sanitised environment.
    pub env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageConfig {
    pub name: String,
    pub repo: RepoId,
    /// Name of the entry of [`Config::forges`] whose host owns `repo`.
    pub forge: String,
    pub branch: String,
    pub kind: PackageKind,
}

/// What a watched package is to its workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageKind {
    Package,
    /// An autoproj package set; a push to it is a `config_change`.
    PackageSet,
    /// The workspace's main build configuration; a push to it is a `config_change`.
    /// It gets no override entry (it is not an autoproj package).
    Buildconf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequestsConfig {
    pub enabled: bool,
    pub pr_ref: PrRefMode,
    pub include_drafts: bool,
    /// PRs not updated for this long are not built (they still resolve as dependencies).
    pub stale_after: Duration,
    /// PRs carrying one of these labels are not built.
    pub skip_labels: Vec<String>,
    /// Whether a move of the base branch changes a PR's fingerprint.
    pub rebuild_on_base_change: bool,
    pub trust: TrustConfig,
}

/// Which ref of a pull request the CI builds (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrRefMode {
    /// The merge ref when the forge reports the PR mergeable, else the head.
    Auto,
    Merge,
    Head,
}

/// Whose pull requests are built automatically (the others wait for `approve_label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustConfig {
    pub authors: Vec<String>,
    /// GitHub's `author_association` values trusted (`OWNER`, `MEMBER`, …).
    pub author_associations: Vec<String>,
    /// PRs from branches of the base repository itself.
    pub same_repository: bool,
    /// A maintainer's label that lets any other PR through; `None` when empty.
    pub approve_label: Option<String>,
}
