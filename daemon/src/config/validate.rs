//! Second stage of loading: from the [`raw`] form to a [`Config`] whose
//! references are resolved and whose secrets are read, or to every error found.
//!
//! A YAML syntax or type error stops serde, so it is reported alone; everything after
//! that (missing keys, unknown kinds, dangling names, unreadable secrets ...) is
//! collected, so that `forgewatch check` shows all the problems of a file at once,
//! each as `file:line:col: message`. Messages never contain a secret: inline secrets
//! are skipped unread by serde, and names of variables or files that may be a pasted
//! secret are not echoed.

mod ci;
mod forge;
#[cfg(test)]
mod tests;
mod values;
mod workspace;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::file::{MAX_CONFIG_BYTES, read_capped};
use super::raw::{self, RawConfig, RawPackage, RawWorkspace, line_col, q};
use super::{Config, PackageConfig, PackageKind, WorkspaceConfig};

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_HTTP_CACHE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
const DEFAULT_HISTORY_KEEP: Duration = Duration::from_secs(90 * 24 * 3600);
const DEFAULT_MAX_PARALLEL_UPDATES: usize = 2;
/// The most of anything at once a count may allow (`max_concurrency`,
/// `max_parallel_updates`).
const MAX_COUNT: usize = 256;
/// `http.max_connections`: at most this many (the process's descriptor limit lowers it further).
const MAX_CONNECTIONS: usize = 65_536;
const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(10);
const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(600);
const DEFAULT_DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// One located problem of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the whole file (e.g. it cannot be read).
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub column: u32,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            let (file, line, column) = (self.file.display(), self.line, self.column);
            write!(f, "{file}:{line}:{column}: {}", self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_credentials(path, None)
}

/// [`load`], with systemd credentials (`*_credential` keys) read from
/// `credentials_dir` rather than `$CREDENTIALS_DIRECTORY` (`forgewatch check
/// --credentials-dir`, outside the unit).
pub fn load_with_credentials(
    path: &Path,
    credentials_dir: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let unreadable = |reason: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the configuration file: {reason}"),
        }])
    };
    let bytes = read_capped(path, MAX_CONFIG_BYTES).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("it is not UTF-8".into()))?;
    let dir = credentials_dir.map(|d| d.display().to_string());
    let env = |name: &str| match (name, &dir) {
        ("CREDENTIALS_DIRECTORY", Some(dir)) => Some(dir.clone()),
        _ => std::env::var(name).ok(),
    };
    load_with_env(&text, path, &env)
}

/// Validates `text` as if read from `path`: `path` names the file in messages, and
/// relative paths of the file are resolved against its directory.
pub fn load_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(text, path, &|name| std::env::var(name).ok())
}

/// [`load_str`] with the environment as a function, so that tests need not modify the
/// process environment.
pub fn load_with_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let raw = match raw::parse(text) {
        Ok(raw) => raw,
        Err((line, column, message)) => {
            let file = path.to_path_buf();
            let error = ConfigError {
                file,
                line,
                column,
                message,
            };
            return Err(ConfigErrors(vec![error]));
        }
    };
    let mut checker = Checker {
        file: path,
        dir: config_dir(path),
        env,
        errors: Vec::new(),
        secret_env_vars: Vec::new(),
    };
    let config = checker.config(raw);
    let mut errors = checker.errors;
    match config {
        Some(config) if errors.is_empty() => Ok(config),
        _ => {
            if errors.is_empty() {
                errors.push(ConfigError {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                    message: "internal error: invalid configuration without a message".into(),
                });
            }
            errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// The directory relative paths are resolved against, absolute when possible.
fn config_dir(path: &Path) -> PathBuf {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The message for `key: VALUE` where a secret was written inline; never the value.
fn inline_secret_message(key: &str, use_instead: &str) -> String {
    format!("`{key}` must not be written inline: use {use_instead}")
}

fn env_or_file(prefix: &str) -> String {
    format!(
        "`{prefix}_env` (an environment variable name), `{prefix}_file` (a path) or `{prefix}_credential` (a systemd credential)"
    )
}

/// Marker: the problem has been recorded in [`Checker::errors`].
struct Reported;

type Checked<T> = Result<T, Reported>;

struct Checker<'a> {
    file: &'a Path,
    dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
    /// Every `*_env` variable a secret was read from.
    secret_env_vars: Vec<String>,
}

/// Where a configured forge is, for package lookups and duplicate detection.
struct ForgeHost {
    forge: String,
    line: u32,
}

impl Checker<'_> {
    fn error(&mut self, at: Location, message: impl Into<String>) -> Reported {
        let (line, column) = line_col(at);
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
        Reported
    }

    fn config(&mut self, raw: Spanned<RawConfig>) -> Option<Config> {
        let top = raw.referenced;
        let raw = raw.value;
        let state_dir = match &raw.state_dir {
            None => Err(self.error(
                top,
                "missing key `state_dir` (the directory of the state database, HTTP cache and lock file)",
            )),
            Some(s) if s.value.is_empty() => Err(self.error(s.referenced, "`state_dir` is empty")),
            Some(s) => Ok(self.resolve(&s.value)),
        };
        let poll_interval = match &raw.poll_interval {
            None => Ok(DEFAULT_POLL_INTERVAL),
            Some(s) => self.duration(s).and_then(|d| {
                if d < Duration::from_secs(1) {
                    let msg = format!("`poll_interval` must be at least 1s, not {}", q(&s.value));
                    Err(self.error(s.referenced, msg))
                } else {
                    Ok(d)
                }
            }),
        };

        let max_parallel_updates = self.count(
            "max_parallel_updates",
            raw.max_parallel_updates.as_ref(),
            DEFAULT_MAX_PARALLEL_UPDATES,
        );

        let delivery = raw.delivery.as_ref().map(|d| &d.value);
        let retry_initial = self.positive_duration(
            delivery.and_then(|d| d.retry_initial.as_ref()),
            DEFAULT_RETRY_INITIAL,
        );
        let retry_cap = self.positive_duration(
            delivery.and_then(|d| d.retry_cap.as_ref()),
            DEFAULT_RETRY_CAP,
        );
        let delivery_timeout = self.positive_duration(
            delivery.and_then(|d| d.timeout.as_ref()),
            DEFAULT_DELIVERY_TIMEOUT,
        );
        let delivery = match (retry_initial, retry_cap, delivery_timeout) {
            (Ok(retry_initial), Ok(retry_cap), Ok(timeout)) => Ok(crate::config::DeliveryConfig {
                retry_initial,
                retry_cap: retry_cap.max(retry_initial),
                timeout,
            }),
            _ => Err(Reported),
        };

        let http = self.http(raw.http.as_ref());
        let shutdown_grace =
            self.positive_duration(raw.shutdown_grace.as_ref(), Duration::from_secs(60));
        let http_cache_retention = self.positive_duration(
            raw.http_cache_retention.as_ref(),
            DEFAULT_HTTP_CACHE_RETENTION,
        );
        let history_keep = self.positive_duration(
            raw.history.as_ref().and_then(|h| h.value.keep.as_ref()),
            DEFAULT_HISTORY_KEEP,
        );

        let mut forges = BTreeMap::new();
        let mut hosts: BTreeMap<String, ForgeHost> = BTreeMap::new();
        let mut forges_ok = true;
        for (name, forge) in raw.forges.iter().flat_map(|f| &f.0) {
            match self.forge(name, forge, &mut hosts) {
                Ok(f) => {
                    forges.insert(name.value.clone(), f);
                }
                Err(Reported) => forges_ok = false,
            }
        }

        let mut ci = BTreeMap::new();
        let mut ci_ok = true;
        let ci_names: Vec<&str> = raw
            .ci
            .iter()
            .flat_map(|c| &c.0)
            .map(|(n, _)| n.value.as_str())
            .collect();
        let forge_names: Vec<&str> = raw
            .forges
            .iter()
            .flat_map(|f| &f.0)
            .map(|(n, _)| n.value.as_str())
            .collect();
        let mut results_secrets = BTreeMap::new();
        for (name, target) in raw.ci.iter().flat_map(|c| &c.0) {
            match (
                self.ci(name, target, &forges, &forge_names),
                self.results_secret(&target.value),
            ) {
                (Ok(c), Ok(secret)) => {
                    ci.insert(name.value.clone(), c);
                    if let Some(secret) = secret {
                        results_secrets.insert(name.value.clone(), secret);
                    }
                }
                _ => ci_ok = false,
            }
        }

        let mut workspaces = Vec::new();
        let mut workspaces_ok = true;
        let mut names: BTreeMap<String, u32> = BTreeMap::new();
        for (index, ws) in raw.workspaces.iter().flatten().enumerate() {
            match self.workspace(index + 1, ws, &mut names, &ci_names, &hosts) {
                Ok(w) => workspaces.push(w),
                Err(Reported) => workspaces_ok = false,
            }
        }

        let (
            Ok(state_dir),
            Ok(poll_interval),
            Ok(delivery),
            Ok(http),
            Ok(shutdown_grace),
            Ok(http_cache_retention),
            Ok(history_keep),
            true,
            true,
            true,
            true,
        ) = (
            state_dir,
            poll_interval,
            delivery,
            http,
            shutdown_grace,
            http_cache_retention,
            history_keep,
            max_parallel_updates.is_ok(),
            forges_ok,
            ci_ok,
            workspaces_ok,
        )
        else {
            return None;
        };
        Some(Config {
            path: self.file.to_path_buf(),
            state_dir,
            poll_interval,
            max_parallel_updates: max_parallel_updates.unwrap_or(DEFAULT_MAX_PARALLEL_UPDATES),
            delivery,
            http,
            shutdown_grace,
            http_cache_retention,
            history_keep,
            secret_env_vars: std::mem::take(&mut self.secret_env_vars),
            forges,
            ci,
            results_secrets,
            workspaces,
        })
    }

    fn workspace(
        &mut self,
        number: usize,
        entry: &Spanned<RawWorkspace>,
        names: &mut BTreeMap<String, u32>,
        ci_names: &[&str],
        hosts: &BTreeMap<String, ForgeHost>,
    ) -> Checked<WorkspaceConfig> {
        let raw = &entry.value;
        let name = match &raw.name {
            None => Err(self.error(
                entry.referenced,
                format!("workspace #{number} needs `name`"),
            )),
            Some(n) => self.workspace_name(n, names),
        };
        let label = raw
            .name
            .as_ref()
            .map_or_else(|| format!("#{number}"), |n| q(&n.value));
        let ci = match &raw.ci {
            None => Err(self.error(
                entry.referenced,
                format!("workspace {label} needs `ci` (the name of an entry of `ci`)"),
            )),
            Some(c) if ci_names.contains(&c.value.as_str()) => Ok(c.value.clone()),
            Some(c) => {
                let defined = if ci_names.is_empty() {
                    "no CI target is defined".to_owned()
                } else {
                    format!("defined: {}", ci_names.join(", "))
                };
                let msg = format!(
                    "workspace {label} names CI target {}, which is not defined ({defined})",
                    q(&c.value)
                );
                Err(self.error(c.referenced, msg))
            }
        };
        let mut packages = Ok(Vec::new());
        let mut package_names: BTreeMap<String, u32> = BTreeMap::new();
        for (index, package) in raw.packages.iter().flatten().enumerate() {
            let checked = self.package(index + 1, package, &label, &mut package_names, hosts);
            match (checked, &mut packages) {
                (Ok(p), Ok(list)) => list.push(p),
                (Ok(_), Err(Reported)) => {}
                (Err(Reported), _) => packages = Err(Reported),
            }
        }
        let pull_requests = self.pull_requests(raw.pull_requests.as_ref());
        let report = self.report(raw.report.as_ref());
        let manifest = raw
            .manifest
            .as_ref()
            .map(|m| self.manifest(m, &label))
            .transpose();
        let update = match &raw.update {
            Some(u) if raw.manifest.is_none() => {
                let msg = format!(
                    "workspace {label} has an `update` but no `manifest` to read its packages from"
                );
                Err(self.error(u.referenced, msg))
            }
            update => update.as_ref().map(|u| self.update(u, &label)).transpose(),
        };
        let discover = match &raw.discover {
            Some(d) if raw.manifest.is_none() => {
                let msg = format!(
                    "workspace {label} has a `discover` but no `manifest` (the discovered manifest has its format)"
                );
                Err(self.error(d.referenced, msg))
            }
            discover => discover
                .as_ref()
                .map(|d| self.discover(d, &label))
                .transpose(),
        };
        let buildconf = raw
            .buildconf
            .as_ref()
            .map(|b| self.buildconf(b, &label, hosts))
            .transpose();
        Ok(WorkspaceConfig {
            name: name?,
            ci: ci?,
            packages: packages?,
            manifest: manifest?,
            update: update?,
            discover: discover?,
            buildconf: buildconf?,
            pull_requests: pull_requests?,
            report: report?,
        })
    }

    fn package(
        &mut self,
        number: usize,
        entry: &Spanned<RawPackage>,
        workspace: &str,
        names: &mut BTreeMap<String, u32>,
        hosts: &BTreeMap<String, ForgeHost>,
    ) -> Checked<PackageConfig> {
        let raw = &entry.value;
        let name = match &raw.name {
            None => Err(self.error(entry.referenced, format!("package #{number} needs `name`"))),
            Some(n) if n.value.is_empty() => {
                Err(self.error(n.referenced, "package `name` is empty"))
            }
            Some(n) => match names.get(&n.value) {
                Some(first) => {
                    let msg = format!(
                        "package {} is defined twice in workspace {workspace} (first at line {first})",
                        q(&n.value)
                    );
                    Err(self.error(n.referenced, msg))
                }
                None => {
                    names.insert(n.value.clone(), line_col(n.referenced).0);
                    Ok(n.value.clone())
                }
            },
        };
        let label = raw
            .name
            .as_ref()
            .map_or_else(|| format!("#{number}"), |n| q(&n.value));
        let repo = match &raw.repo {
            None => Err(self.error(
                entry.referenced,
                format!("package {label} needs `repo` (its clone or web URL)"),
            )),
            Some(r) => self.repo_on_forge(r, hosts),
        };
        let branch = match &raw.branch {
            None => Err(self.error(
                entry.referenced,
                format!("package {label} needs `branch` (a tag or commit is not watched)"),
            )),
            Some(b) if b.value.is_empty() => Err(self.error(b.referenced, "`branch` is empty")),
            Some(b) => Ok(b.value.clone()),
        };
        let (repo, forge) = repo?;
        Ok(PackageConfig {
            name: name?,
            repo,
            forge,
            branch: branch?,
            kind: PackageKind::Package,
        })
    }
}
