//! The configuration loader seen from outside (SPEC §5): real files in a temporary
//! directory, every refused file checked for the exact `line:col` of its error and a
//! distinctive part of the message, so that `forgewatch check` points at the right
//! place. Secrets from environment variables are tested next to `load_with_env`, in
//! the crate (the process environment is not modified here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use forgewatch::config::{CiConfig, Config, ConfigError, ForgeKind, HttpLimits, load};
use tempfile::TempDir;

/// A configuration file in a fresh directory, with optional neighbour files.
struct Fixture {
    dir: TempDir,
    path: PathBuf,
}

impl Fixture {
    /// `text` as `config.yml`; a trailing newline is added.
    fn new(text: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("config.yml");
        std::fs::write(&path, format!("{text}\n")).expect("write the configuration");
        Fixture { dir, path }
    }

    fn with_file(self, name: &str, contents: &str) -> Fixture {
        std::fs::write(self.dir.path().join(name), contents).expect("write a neighbour file");
        self
    }

    fn load(&self) -> Result<Config, Vec<ConfigError>> {
        load(&self.path).map_err(|e| e.0)
    }

    fn loaded(&self) -> Config {
        match self.load() {
            Ok(config) => config,
            Err(errors) => panic!("the configuration should load, got:\n{errors:#?}"),
        }
    }

    /// Asserts that loading fails with exactly one error, at `(line, column)`, whose
    /// message contains `fragment`; returns the message.
    fn refused(&self, (line, column): (u32, u32), fragment: &str) -> String {
        let errors = match self.load() {
            Ok(_) => panic!("the configuration should be refused"),
            Err(errors) => errors,
        };
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let error = &errors[0];
        assert_eq!(error.file, self.path);
        assert_eq!((error.line, error.column), (line, column), "{error}");
        assert!(error.message.contains(fragment), "{error}");
        let prefix = format!("{}:{line}:{column}: ", self.path.display());
        assert_eq!(error.to_string(), format!("{prefix}{}", error.message));
        error.message.clone()
    }
}

/// [`Fixture::refused`] for `text`.
fn refused(text: &str, at: (u32, u32), fragment: &str) -> String {
    Fixture::new(text).refused(at, fragment)
}

/// Lines 1 to 5: `state_dir` and a forge for github.com.
const FORGE: &str = "state_dir: s\nforges:\n  github:\n    kind: github\n    host: github.com";

/// Lines 1 to 9: [`FORGE`] and a Buildbot target `bb`.
const BASE: &str = concat!(
    "state_dir: s\nforges:\n  github:\n    kind: github\n    host: github.com\n",
    "ci:\n  bb:\n    kind: buildbot\n    url: http://127.0.0.1:8010/change_hook/base"
);

/// Lines 10 to 14, after [`BASE`]: one workspace with one package.
const WORKSPACE: &str = concat!(
    "workspaces:\n  - name: nightly\n    ci: bb\n    packages:\n",
    "      - { name: base/types, repo: https://github.com/rock-core/base-types, branch: master }"
);

/// [`BASE`], [`WORKSPACE`] with `from` replaced by `to`, then `more` from line 15.
fn workspace(from: &str, to: &str, more: &str) -> String {
    let workspace = WORKSPACE.replace(from, to);
    assert!(
        from.is_empty() || workspace != WORKSPACE,
        "`{from}` not found"
    );
    format!("{BASE}\n{workspace}{more}")
}

const PACKAGE: &str =
    "{ name: base/types, repo: https://github.com/rock-core/base-types, branch: master }";

// ---- refused files -------------------------------------------------------------

#[test]
fn unknown_key_lists_what_is_expected_without_inline_secret_keys() {
    let text = "state_dir: s\nforges:\n  github:\n    kind: github\n    tokn: x";
    let msg = refused(
        text,
        (5, 5),
        "unknown field `tokn`, expected one of `kind`, `host`",
    );
    assert!(
        msg.contains("`token_file`, `token_credential`, `max_concurrency`"),
        "{msg}"
    );
    assert!(
        !msg.contains("`token`,") && !msg.contains("`secret`"),
        "{msg}"
    );
}

#[test]
fn a_discover_needs_a_manifest_and_a_program() {
    let msg = "`listen` must be an address and port";
    refused("state_dir: s\nhttp: { listen: localhost }", (2, 17), msg);
    let text = workspace("", "", "\n    discover:\n      argv: [x]\n      dir: d");
    refused(&text, (16, 7), "has a `discover` but no `manifest`");
    let text = workspace(
        "",
        "",
        "\n    manifest: { path: m }\n    discover:\n      dir: d",
    );
    refused(
        &text,
        (17, 7),
        "the discovery of workspace `nightly` needs `argv`",
    );
}

#[test]
fn bad_duration_is_located_at_the_value() {
    let msg = "invalid duration `10 m`: unexpected space";
    refused("state_dir: s\npoll_interval: 10 m", (2, 16), msg);
    refused(
        "state_dir: s\npoll_interval: 10",
        (2, 16),
        "`10` has no unit",
    );
}

#[test]
fn http_cache_retention_is_a_positive_duration() {
    let f = Fixture::new("state_dir: s\nhttp_cache_retention: 36h");
    assert_eq!(
        f.loaded().http_cache_retention,
        Duration::from_secs(36 * 3600)
    );
    refused(
        "state_dir: s\nhttp_cache_retention: 0s",
        (2, 23),
        "the duration must be more than 0s",
    );
}

#[test]
fn history_results_secrets_and_reports() {
    let defaults = Fixture::new(&workspace("", "", "")).loaded();
    assert_eq!(defaults.history_keep, Duration::from_secs(90 * 24 * 3600));
    assert!(defaults.results_secrets.is_empty());
    let report = &defaults.workspaces[0].report;
    assert_eq!(
        (
            report.statuses,
            report.dependencies,
            report.context.as_str()
        ),
        (false, false, "forgewatch/{workspace}")
    );

    let text = workspace(
        "    ci: bb\n",
        "    ci: bb\n    report: { statuses: true, dependencies: true, context: ci/x }\n",
        "",
    )
    .replace(
        "url: http://127.0.0.1:8010/change_hook/base",
        "url: http://127.0.0.1:8010/change_hook/base\n    results_secret_file: results",
    );
    let text = format!("history:\n  keep: 30d\n{text}");
    let config = Fixture::new(&text)
        .with_file("results", "s3cret\n")
        .loaded();
    assert_eq!(config.history_keep, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(
        config.results_secrets.get("bb").map(|s| s.expose()),
        Some("s3cret")
    );
    let report = &config.workspaces[0].report;
    assert_eq!(
        (
            report.statuses,
            report.dependencies,
            report.context.as_str()
        ),
        (true, true, "ci/x")
    );

    // `dependencies` means nothing without `statuses`.
    let text = workspace(
        "    ci: bb\n",
        "    ci: bb\n    report: { dependencies: true }\n",
        "",
    );
    assert!(
        !Fixture::new(&text).loaded().workspaces[0]
            .report
            .dependencies
    );

    let inline = BASE.replace(
        "url: http://127.0.0.1:8010/change_hook/base",
        "url: http://127.0.0.1:8010/change_hook/base\n    results_secret: hunter2",
    );
    let msg = refused(&inline, (10, 21), "must not be written inline");
    assert!(msg.contains("`results_secret_file`"), "{msg}");
    assert!(!msg.contains("hunter2"), "{msg}");
    refused(
        "state_dir: s\nhistory: { keep: 0s }",
        (2, 18),
        "the duration must be more than 0s",
    );
    let text = workspace(
        "    ci: bb\n",
        "    ci: bb\n    report: { statuses: true, context: ' ' }\n",
        "",
    );
    refused(&text, (13, 40), "`report.context` is empty");
}

#[test]
fn poll_interval_below_one_second() {
    let msg = "`poll_interval` must be at least 1s";
    refused("state_dir: s\npoll_interval: 500ms", (2, 16), msg);
}

#[test]
fn workspace_naming_a_missing_ci_target() {
    let msg = "names CI target `buildbot`, which is not defined (defined: bb)";
    refused(&workspace("ci: bb", "ci: buildbot", ""), (12, 9), msg);
}

#[test]
fn package_on_a_host_without_forge() {
    let lidar = "{ name: lidar, repo: 'https://gitlab.com/acme/lidar.git', branch: main }";
    let msg = "no forge is configured for host `gitlab.com` (configured: github.com)";
    refused(&workspace(PACKAGE, lidar, ""), (14, 30), msg);
}

#[test]
fn duplicate_workspace_names_point_at_the_second() {
    let more = "\n  - name: other\n    ci: bb\n  - name: nightly\n    ci: bb";
    let msg = "workspace `nightly` is defined twice (first at line 11)";
    refused(&workspace("", "", more), (17, 11), msg);
}

#[test]
fn bad_urls() {
    let ci = "state_dir: s\nci:\n  bb:\n    kind: buildbot\n    url: ";
    refused(
        &format!("{ci}not a url"),
        (5, 10),
        "`url`: `not a url` is not a valid URL",
    );
    let msg = "must be an http:// or https:// URL, not a `ftp` URL";
    refused(&format!("{ci}ftp://h/x"), (5, 10), msg);
    let msg = "`api_url`: `github.com/api` is not a valid URL";
    refused(
        &format!("{FORGE}\n    api_url: github.com/api"),
        (6, 14),
        msg,
    );
    // A password in a URL is an inline secret.
    let text = format!("{ci}http://fw:hunter2@ci.example.org/change_hook/base");
    let msg = refused(&text, (5, 10), "`url` must not contain a password");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn public_url_is_an_http_url_without_credentials() {
    let http = "state_dir: s\nhttp:\n  public_url: ";
    assert_eq!(Fixture::new("state_dir: s").loaded().http.public_url, None);
    let config = Fixture::new(&format!("{http}https://CI.example.org/forgewatch/")).loaded();
    let url = config.http.public_url.expect("a public URL");
    assert_eq!(url.as_str(), "https://ci.example.org/forgewatch/");
    refused(
        &format!("{http}ci.example.org"),
        (3, 15),
        "`public_url`: `ci.example.org` is not a valid URL",
    );
    refused(
        &format!("{http}ftp://ci.example.org"),
        (3, 15),
        "`public_url` must be an http:// or https:// URL",
    );
    let msg = refused(
        &format!("{http}https://fw:hunter2@ci.example.org"),
        (3, 15),
        "`public_url` must not contain a password",
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn missing_required_keys() {
    refused("poll_interval: 10m", (1, 1), "missing key `state_dir`");
    let text = "state_dir: s\nforges:\n  github:\n    kind: github";
    refused(text, (3, 3), "forge `github` needs `host`");
    let no_branch = PACKAGE.replace(", branch: master", "");
    let msg = "package `base/types` needs `branch` (a tag or commit is not watched)";
    refused(&workspace(PACKAGE, &no_branch, ""), (14, 9), msg);
    let msg = "workspace `nightly` needs `ci`";
    refused(
        &format!("{BASE}\nworkspaces:\n  - name: nightly"),
        (11, 5),
        msg,
    );
}

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    let f = Fixture::new(&format!("{FORGE}\n    token: ghp_v3ryS3cr3t"));
    let msg = f.refused(
        (6, 12),
        "`token` must not be written inline: use `token_env` (an environment variable name), \
         `token_file` (a path) or `token_credential` (a systemd credential)",
    );
    assert!(!msg.contains("v3ryS3cr3t"));
    let all = load(&f.path).expect_err("refused").to_string();
    assert!(!all.contains("v3ryS3cr3t"), "{all}");

    let text = format!("{BASE}\n    basic_auth: {{ user: fw, password: hunter2 }}");
    let msg = "`password` must not be written inline: use `password_env`";
    assert!(!refused(&text, (10, 39), msg).contains("hunter2"));
}

#[test]
fn empty_or_unreadable_secret_files() {
    let f = Fixture::new(&format!("{FORGE}\n    token_file: ./empty-token"));
    let f = f.with_file("empty-token", "\n");
    let expected = f.dir.path().join("empty-token");
    f.refused(
        (6, 17),
        &format!("token file `{}` is empty", expected.display()),
    );

    let text = format!("{FORGE}\n    token_file: ./nonexistent");
    refused(&text, (6, 17), "cannot read token file");

    // A value without a slash may be a pasted token: it is not repeated.
    let text = format!("{FORGE}\n    token_file: ghp_pasted");
    let msg = refused(&text, (6, 17), "cannot read the file named by `token_file`");
    assert!(!msg.contains("pasted"), "{msg}");
}

#[test]
fn unknown_kinds() {
    let text = FORGE.replace("kind: github", "kind: gerrit");
    let msg = "unknown forge kind `gerrit`; this version supports: github, gitlab";
    refused(&text, (4, 11), msg);
    let text = BASE.replace("kind: buildbot", "kind: script");
    let msg = "unknown CI target kind `script`; this version supports: buildbot, webhook, gitlab_pipeline, command";
    refused(&text, (8, 11), msg);
}

/// Issue 14: `check` accepted counts that `run` (and a reload) then panicked on:
/// a semaphore holds at most 2^61 − 1 permits. Every count has an upper bound.
#[test]
fn counts_above_their_bound_are_refused() {
    let huge = 1u64 << 61;
    let msg = format!("`max_concurrency` must be from 1 to 256, not {huge}");
    refused(
        &format!("{FORGE}\n    max_concurrency: {huge}"),
        (6, 22),
        &msg,
    );
    let msg = "`max_concurrency` must be from 1 to 256, not 257";
    refused(&format!("{FORGE}\n    max_concurrency: 257"), (6, 22), msg);
    let msg = format!("`max_parallel_updates` must be from 1 to 256, not {huge}");
    refused(
        &format!("state_dir: s\nmax_parallel_updates: {huge}"),
        (2, 23),
        &msg,
    );
}

/// Every number has an upper bound: durations up to ten years (a deadline computed
/// from one stays inside `Instant` arithmetic), at most 60,000 requests a minute.
#[test]
fn durations_and_rates_above_their_bound_are_refused() {
    let msg = "invalid duration `3651d`: duration is too large: at most 3650d";
    refused("state_dir: s\npoll_interval: 3651d", (2, 16), msg);
    let huge = "213503982334601d";
    let msg = format!("invalid duration `{huge}`: duration is too large: at most 3650d");
    refused(
        &format!("{FORGE}\n    request_timeout: {huge}"),
        (6, 22),
        &msg,
    );
    let msg = "`requests_per_minute` must be from 1 to 60000, not 60001";
    refused(
        &format!("{FORGE}\n    requests_per_minute: 60001"),
        (6, 26),
        msg,
    );
    let msg = "`requests_per_minute` must be from 1 to 60000, not 0";
    refused(
        &format!("{FORGE}\n    requests_per_minute: 0"),
        (6, 26),
        msg,
    );
}

/// The status write budget: GitHub's 80 a minute and 500 an hour unless set, each
/// bounded.
#[test]
fn status_write_budgets_default_to_githubs_and_are_bounded() {
    let config = Fixture::new(FORGE).loaded();
    let github = &config.forges["github"];
    assert_eq!(
        (
            github.status_writes_per_minute,
            github.status_writes_per_hour
        ),
        (80, 500)
    );
    let set =
        format!("{FORGE}\n    status_writes_per_minute: 10\n    status_writes_per_hour: 1000000");
    let github = &Fixture::new(&set).loaded().forges["github"];
    assert_eq!(
        (
            github.status_writes_per_minute,
            github.status_writes_per_hour
        ),
        (10, 1_000_000)
    );
    let msg = "`status_writes_per_minute` must be from 1 to 60000, not 0";
    refused(
        &format!("{FORGE}\n    status_writes_per_minute: 0"),
        (6, 31),
        msg,
    );
    let msg = "`status_writes_per_hour` must be from 1 to 1000000, not 1000001";
    refused(
        &format!("{FORGE}\n    status_writes_per_hour: 1000001"),
        (6, 29),
        msg,
    );
}

#[test]
fn wrong_type() {
    let msg = "expected a non-negative integer";
    refused(&format!("{FORGE}\n    max_concurrency: many"), (6, 22), msg);
    let msg = "`max_concurrency` must be from 1 to 256, not 0";
    refused(&format!("{FORGE}\n    max_concurrency: 0"), (6, 22), msg);
    refused("state_dir: [a, b]", (1, 12), "expected a string");
    refused(
        "state_dir: s\nworkspaces: {a: 1}",
        (2, 13),
        "expected a list",
    );
}

#[test]
fn fields_of_another_kind() {
    let text = format!("{BASE}\n    secret_file: /etc/forgewatch/hook-secret");
    let msg = "`secret_file` does not apply to a `buildbot` target";
    refused(&text, (10, 18), msg);
    let text = BASE.replace("kind: buildbot", "kind: webhook");
    let msg =
        "CI target `bb` of kind `webhook` needs `secret_env`, `secret_file` or `secret_credential`";
    refused(&text, (7, 3), msg);
}

#[test]
fn two_forges_on_one_host() {
    let text = format!("{FORGE}\n  again:\n    kind: github\n    host: WWW.GitHub.com");
    let msg = "forge `again` has the same host `github.com` as forge `github` (line 5)";
    refused(&text, (8, 11), msg);
}

#[test]
fn duplicate_package_names_and_both_token_sources() {
    let cmake = PACKAGE.replace("base-types", "base-cmake");
    let text = workspace("", "", &format!("\n      - {cmake}"));
    let msg = "package `base/types` is defined twice in workspace `nightly` (first at line 14)";
    refused(&text, (15, 17), msg);

    let text = format!("{FORGE}\n    token_env: GITHUB_TOKEN\n    token_file: /etc/token");
    refused(
        &text,
        (7, 17),
        "give one of `token_env`, `token_file` and `token_credential`, not more",
    );
}

#[test]
fn yaml_syntax_error_is_one_located_error() {
    let text = "state_dir: s\nforges: {github: {kind: github";
    refused(text, (2, 18), "unclosed bracket");
    let text = "state_dir: s\nstate_dir: t";
    refused(text, (2, 1), "duplicate mapping key `state_dir`");
}

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let f = Fixture::new(concat!(
        "state_dir: s\npoll_interval: 0s\n",
        "forges:\n  github:\n    kind: gerrit\n    host: github.com\n",
        "workspaces:\n  - name: a\n    ci: nowhere\n  - name: a\n    ci: nowhere"
    ));
    let errors = f.load().expect_err("refused");
    let located: Vec<(u32, u32)> = errors.iter().map(|e| (e.line, e.column)).collect();
    let expected = [(2, 16), (5, 11), (9, 9), (10, 11), (11, 9)];
    assert_eq!(located, expected, "{errors:#?}");
    assert!(
        errors[2].message.contains("(no CI target is defined)"),
        "{}",
        errors[2]
    );
}

#[test]
fn unreadable_configuration_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("missing.yml");
    let errors = load(&path).expect_err("refused");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].line, 0);
    let text = errors.to_string();
    let expected = format!("{}: cannot read the configuration file", path.display());
    assert!(text.starts_with(&expected), "{text}");
}

// ---- accepted files ------------------------------------------------------------

#[test]
fn minimal_file_gets_the_defaults() {
    let f = Fixture::new("state_dir: /var/lib/forgewatch");
    let config = f.loaded();
    assert_eq!(config.path, f.path);
    assert_eq!(config.state_dir, Path::new("/var/lib/forgewatch"));
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    assert_eq!(config.http_cache_retention, Duration::from_secs(7 * 86400));
    assert!(config.forges.is_empty() && config.ci.is_empty() && config.workspaces.is_empty());
}

/// Issue 14: what one client can hold of the HTTP server; defaults without an
/// `http` block or with one that names other keys, refusals located.
#[test]
fn http_limits() {
    let defaults = HttpLimits {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        max_connections: 2048,
    };
    assert_eq!(Fixture::new("state_dir: s").loaded().http.limits, defaults);
    let f = Fixture::new("state_dir: s\nhttp: { listen: '127.0.0.1:1' }");
    assert_eq!(f.loaded().http.limits, defaults);
    let text =
        "state_dir: s\nhttp:\n  header_timeout: 2s\n  body_timeout: 1m\n  max_connections: 8";
    let limits = HttpLimits {
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(60),
        max_connections: 8,
    };
    assert_eq!(Fixture::new(text).loaded().http.limits, limits);
    let msg = "`max_connections` must be from 1 to 65536, not 0";
    refused("state_dir: s\nhttp:\n  max_connections: 0", (3, 20), msg);
    let msg = "`max_connections` must be from 1 to 65536, not 65537";
    refused(
        "state_dir: s\nhttp:\n  max_connections: 65537",
        (3, 20),
        msg,
    );
    let msg = "the duration must be more than 0s";
    refused("state_dir: s\nhttp:\n  header_timeout: 0s", (3, 19), msg);
    refused(
        "state_dir: s\nhttp:\n  body_timeout: soon",
        (3, 17),
        "invalid duration",
    );
}

#[test]
fn full_file() {
    let f = Fixture::new(
        &[
            "state_dir: ./state",
            "poll_interval: 1h30m",
            "forges:",
            "  github:",
            "    kind: github",
            "    host: WWW.GitHub.com",
            "    token_file: secrets/github-token",
            "  ghe:",
            "    kind: github",
            "    host: git.example.org",
            "    token_file: ghe-token",
            "    max_concurrency: 2",
            "  ghe2:",
            "    kind: github",
            "    host: git2.example.org",
            "    api_url: https://api.git2.example.org/v3/",
            "ci:",
            "  bb:",
            "    kind: buildbot",
            "    url: http://127.0.0.1:8010/change_hook/base",
            "    basic_auth: { user: forgewatch, password_file: bb-pass }",
            "  hook:",
            "    kind: webhook",
            "    url: https://ci.example.org/forgewatch",
            "    secret_file: hook-secret",
            "workspaces:",
            "  - name: rock_nightly",
            "    ci: bb",
            "    packages:",
            "      - { name: base/types, repo: 'git@github.com:Rock-Core/base-types.git', branch: master }",
            "      - { name: base/types2, repo: https://github.com/rock-core/base-types, branch: master }",
            "      - { name: lidar, repo: https://git.example.org/sensors/lidar, branch: main }",
            "  - name: hooked",
            "    ci: hook",
            "    pull_requests:",
            "      enabled: false",
        ]
        .join("\n"),
    );
    std::fs::create_dir(f.dir.path().join("secrets")).expect("mkdir");
    let f = f
        .with_file("secrets/github-token", "ghp_token\n")
        .with_file("ghe-token", "ghe_token\r\n")
        .with_file("bb-pass", "pass\n\n")
        .with_file("hook-secret", "hook");
    let config = f.loaded();
    let dir = f.dir.path();
    assert_eq!(config.state_dir, dir.join("state"));
    assert_eq!(
        config.state_dir.to_str(),
        dir.join("state").to_str(),
        "no `./` left"
    );
    assert_eq!(config.poll_interval, Duration::from_secs(5_400));

    let github = &config.forges["github"];
    assert_eq!(
        (github.kind, github.host.as_str()),
        (ForgeKind::GitHub, "github.com")
    );
    assert_eq!(github.api_url, "https://api.github.com");
    assert_eq!(github.max_concurrency, 8);
    assert_eq!(github.token.as_ref().map(|t| t.expose()), Some("ghp_token"));
    let ghe = &config.forges["ghe"];
    assert_eq!(ghe.api_url, "https://git.example.org/api/v3");
    assert_eq!(ghe.max_concurrency, 2);
    assert_eq!(ghe.token.as_ref().map(|t| t.expose()), Some("ghe_token"));
    let ghe2 = &config.forges["ghe2"];
    assert_eq!(ghe2.api_url, "https://api.git2.example.org/v3");
    assert!(ghe2.token.is_none());

    match &config.ci["bb"] {
        CiConfig::Buildbot {
            url,
            basic_auth: Some(auth),
        } => {
            assert_eq!(url, "http://127.0.0.1:8010/change_hook/base");
            assert_eq!(auth.user, "forgewatch");
            assert_eq!(
                auth.password.expose(),
                "pass\n",
                "only one newline is removed"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match &config.ci["hook"] {
        CiConfig::Webhook { secret, .. } => assert_eq!(secret.expose(), "hook"),
        other => panic!("unexpected {other:?}"),
    }

    let [nightly, hooked] = config.workspaces.as_slice() else {
        panic!("two workspaces expected: {:?}", config.workspaces);
    };
    assert_eq!(
        (nightly.name.as_str(), nightly.ci.as_str()),
        ("rock_nightly", "bb")
    );
    assert!(nightly.pull_requests.enabled);
    let packages: Vec<_> = nightly
        .packages
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.repo.to_string(),
                p.forge.as_str(),
                p.branch.as_str(),
            )
        })
        .collect();
    assert_eq!(
        packages,
        [
            (
                "base/types",
                "github.com/rock-core/base-types".to_owned(),
                "github",
                "master"
            ),
            (
                "base/types2",
                "github.com/rock-core/base-types".to_owned(),
                "github",
                "master"
            ),
            (
                "lidar",
                "git.example.org/sensors/lidar".to_owned(),
                "ghe",
                "main"
            ),
        ]
    );
    assert_eq!(hooked.ci, "hook");
    assert!(hooked.packages.is_empty());
    assert!(!hooked.pull_requests.enabled);
}

#[test]
fn the_example_configuration_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.yml");
    let config = match load(&path) {
        Ok(config) => config,
        Err(errors) => panic!("config.example.yml is refused:\n{errors}"),
    };
    assert_eq!(config.poll_interval, Duration::from_secs(600));
    assert!(config.state_dir.ends_with("state"));
    assert!(config.forges["github"].token.is_none());
    let repos: Vec<String> = config
        .workspaces
        .iter()
        .flat_map(|w| &w.packages)
        .map(|p| p.repo.to_string())
        .collect();
    assert_eq!(
        repos,
        [
            "github.com/rock-core/base-types",
            "github.com/rock-core/base-cmake"
        ]
    );
    assert!(config.workspaces.iter().all(|w| w.pull_requests.enabled));
}
