//! The configuration loader seen from outside (SPEC §5): real files in a temporary
//! directory, every refused file checked for the exact `line:col` of its error and a
//! distinctive part of the message, so that `forgewatch check` points at the right
//! place. Secrets from environment variables are tested next to `load_with_env`, in
//! the crate (the process environment is not modified here).

use std::path::{Path, PathBuf};
use std::time::Duration;

use forgewatch::config::{CiConfig, Config, ConfigError, ForgeKind, load};
use tempfile::TempDir;

/// A configuration file in a fresh directory, with optional neighbour files.
struct Fixture {
    dir: TempDir,
    path: PathBuf,
}

impl Fixture {
    fn new(lines: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("config.yml");
        std::fs::write(&path, lines.join("\n") + "\n").expect("write the configuration");
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

    /// Asserts that loading fails with exactly one error, at `line:column`, whose
    /// message contains `fragment`; returns the message.
    fn single_error(&self, line: u32, column: u32, fragment: &str) -> String {
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

const FORGE: [&str; 4] = [
    "forges:",
    "  github:",
    "    kind: github",
    "    host: github.com",
];

const CI: [&str; 4] = [
    "ci:",
    "  bb:",
    "    kind: buildbot",
    "    url: http://127.0.0.1:8010/change_hook/base",
];

/// `state_dir`, `FORGE`, `CI` then `rest`; `rest[0]` is line 10.
fn file(rest: &[&str]) -> Fixture {
    let mut lines = vec!["state_dir: ./state"];
    lines.extend(FORGE);
    lines.extend(CI);
    lines.extend(rest);
    Fixture::new(&lines)
}

const WORKSPACE: [&str; 5] = [
    "workspaces:",
    "  - name: nightly",
    "    ci: bb",
    "    packages:",
    "      - { name: base/types, repo: https://github.com/rock-core/base-types, branch: master }",
];

// ---- refused files -------------------------------------------------------------

#[test]
fn unknown_key_lists_what_is_expected_without_inline_secret_keys() {
    let f = Fixture::new(&[
        "state_dir: ./state",
        "forges:",
        "  github:",
        "    kind: github",
        "    tokn: x",
    ]);
    let msg = f.single_error(
        5,
        5,
        "unknown field `tokn`, expected one of `kind`, `host`, `api_url`",
    );
    assert!(msg.contains("`token_file`, `max_concurrency`"), "{msg}");
    assert!(
        !msg.contains("`token`,") && !msg.contains("`secret`"),
        "{msg}"
    );
}

#[test]
fn unknown_top_level_key_of_a_later_release() {
    let f = Fixture::new(&["state_dir: ./state", "max_parallel_updates: 2"]);
    f.single_error(
        2,
        1,
        "`max_parallel_updates` is not supported by this version",
    );
}

#[test]
fn unknown_pull_request_key_of_a_later_release() {
    let mut lines = WORKSPACE.to_vec();
    lines.extend([
        "    pull_requests:",
        "      enabled: true",
        "      pr_ref: merge",
    ]);
    file(&lines).single_error(17, 7, "unknown field `pr_ref`, expected `enabled`");
}

#[test]
fn bad_duration_is_located_at_the_value() {
    let f = Fixture::new(&["state_dir: ./state", "poll_interval: 10 m"]);
    f.single_error(2, 16, "invalid duration `10 m`: unexpected space");
    let f = Fixture::new(&["state_dir: ./state", "poll_interval: 10"]);
    f.single_error(2, 16, "`10` has no unit");
}

#[test]
fn poll_interval_below_one_second() {
    let f = Fixture::new(&["state_dir: ./state", "poll_interval: 500ms"]);
    f.single_error(2, 16, "`poll_interval` must be at least 1s");
}

#[test]
fn workspace_naming_a_missing_ci_target() {
    let mut lines = WORKSPACE.to_vec();
    lines[2] = "    ci: buildbot";
    file(&lines).single_error(
        12,
        9,
        "names CI target `buildbot`, which is not defined (defined: bb)",
    );
}

#[test]
fn package_on_a_host_without_forge() {
    let mut lines = WORKSPACE.to_vec();
    lines[4] = "      - { name: lidar, repo: 'https://gitlab.com/acme/lidar.git', branch: main }";
    file(&lines).single_error(
        14,
        30,
        "no forge is configured for host `gitlab.com` (configured: github.com)",
    );
}

#[test]
fn duplicate_workspace_names_point_at_the_second() {
    let mut lines = WORKSPACE.to_vec();
    lines.extend([
        "  - name: other",
        "    ci: bb",
        "  - name: nightly",
        "    ci: bb",
    ]);
    file(&lines).single_error(
        17,
        11,
        "workspace `nightly` is defined twice (first at line 11)",
    );
}

#[test]
fn bad_urls() {
    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  bb:",
        "    kind: buildbot",
        "    url: not a url",
    ]);
    f.single_error(5, 10, "`url`: `not a url` is not a valid URL");
    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  bb:",
        "    kind: buildbot",
        "    url: ftp://h/x",
    ]);
    f.single_error(5, 10, "must be an http:// or https:// URL, not a `ftp` URL");
    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.push("    api_url: github.com/api");
    Fixture::new(&lines).single_error(6, 14, "`api_url`: `github.com/api` is not a valid URL");
}

#[test]
fn url_with_an_inline_password_is_refused_without_echoing_it() {
    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  bb:",
        "    kind: buildbot",
        "    url: http://fw:hunter2@ci.example.org/change_hook/base",
    ]);
    let msg = f.single_error(5, 10, "`url` must not contain a password");
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn missing_required_keys() {
    Fixture::new(&["poll_interval: 10m"]).single_error(1, 1, "missing key `state_dir`");
    let f = Fixture::new(&["state_dir: s", "forges:", "  github:", "    kind: github"]);
    f.single_error(3, 3, "forge `github` needs `host`");
    let mut lines = WORKSPACE.to_vec();
    lines[4] = "      - { name: base/types, repo: https://github.com/rock-core/base-types }";
    file(&lines).single_error(
        14,
        9,
        "package `base/types` needs `branch` (a tag or commit is not watched)",
    );
    let lines = ["workspaces:", "  - name: nightly"];
    file(&lines).single_error(11, 5, "workspace `nightly` needs `ci`");
}

#[test]
fn inline_secret_is_refused_without_echoing_it() {
    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.push("    token: ghp_v3ryS3cr3t");
    let f = Fixture::new(&lines);
    let msg = f.single_error(
        6,
        12,
        "`token` must not be written inline: use `token_env` (an environment variable name) or `token_file` (a path)",
    );
    assert!(!msg.contains("v3ryS3cr3t"));
    let all = load(&f.path).expect_err("refused").to_string();
    assert!(!all.contains("v3ryS3cr3t"), "{all}");

    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  bb:",
        "    kind: buildbot",
        "    url: http://127.0.0.1:8010/change_hook/base",
        "    basic_auth: { user: fw, password: hunter2 }",
    ]);
    let msg = f.single_error(
        6,
        39,
        "`password` must not be written inline: use `password_env`",
    );
    assert!(!msg.contains("hunter2"));
}

#[test]
fn empty_or_unreadable_secret_files() {
    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.push("    token_file: ./empty-token");
    let f = Fixture::new(&lines).with_file("empty-token", "\n");
    let expected = f.dir.path().join("empty-token");
    f.single_error(
        6,
        17,
        &format!("token file `{}` is empty", expected.display()),
    );

    lines[5] = "    token_file: ./nonexistent";
    let f = Fixture::new(&lines);
    f.single_error(6, 17, "cannot read token file");

    // A value without a slash may be a pasted token: it is not repeated.
    lines[5] = "    token_file: ghp_pasted";
    let msg =
        Fixture::new(&lines).single_error(6, 17, "cannot read the file named by `token_file`");
    assert!(!msg.contains("pasted"), "{msg}");
}

#[test]
fn unknown_kinds() {
    let f = Fixture::new(&[
        "state_dir: s",
        "forges:",
        "  lab:",
        "    kind: gitlab",
        "    host: gitlab.com",
    ]);
    f.single_error(
        4,
        11,
        "unknown forge kind `gitlab`; this version supports: github",
    );
    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  run:",
        "    kind: command",
        "    url: http://x/",
    ]);
    f.single_error(
        4,
        11,
        "unknown CI target kind `command`; this version supports: buildbot, webhook",
    );
}

#[test]
fn wrong_type() {
    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.push("    max_concurrency: many");
    Fixture::new(&lines).single_error(6, 22, "expected a non-negative integer");
    lines[5] = "    max_concurrency: 0";
    Fixture::new(&lines).single_error(6, 22, "`max_concurrency` must be at least 1");
    Fixture::new(&["state_dir: [a, b]"]).single_error(1, 12, "expected a string");
    Fixture::new(&["state_dir: s", "workspaces: {a: 1}"]).single_error(2, 13, "expected a list");
}

#[test]
fn fields_of_another_kind() {
    let mut lines = vec!["state_dir: s"];
    lines.extend(CI);
    lines.push("    secret_file: /etc/forgewatch/hook-secret");
    Fixture::new(&lines).single_error(6, 18, "`secret_file` does not apply to a `buildbot` target");
    let f = Fixture::new(&[
        "state_dir: s",
        "ci:",
        "  hook:",
        "    kind: webhook",
        "    url: https://ci.example.org/fw",
    ]);
    f.single_error(
        3,
        3,
        "CI target `hook` of kind `webhook` needs `secret_env` or `secret_file`",
    );
}

#[test]
fn two_forges_on_one_host() {
    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.extend(["  again:", "    kind: github", "    host: WWW.GitHub.com"]);
    Fixture::new(&lines).single_error(
        8,
        11,
        "forge `again` has the same host `github.com` as forge `github` (line 5)",
    );
}

#[test]
fn duplicate_package_names_and_both_token_sources() {
    let mut lines = WORKSPACE.to_vec();
    lines.push("      - { name: base/types, repo: https://github.com/rock-core/base-cmake, branch: master }");
    file(&lines).single_error(
        15,
        17,
        "package `base/types` is defined twice in workspace `nightly` (first at line 14)",
    );

    let mut lines = vec!["state_dir: s"];
    lines.extend(FORGE);
    lines.extend(["    token_env: GITHUB_TOKEN", "    token_file: /etc/token"]);
    Fixture::new(&lines).single_error(7, 17, "give either `token_env` or `token_file`, not both");
}

#[test]
fn yaml_syntax_error_is_one_located_error() {
    Fixture::new(&["state_dir: s", "forges: {github: {kind: github"]).single_error(
        2,
        18,
        "unclosed bracket",
    );
    Fixture::new(&["state_dir: s", "state_dir: t"]).single_error(
        2,
        1,
        "duplicate mapping key `state_dir`",
    );
}

#[test]
fn all_semantic_errors_are_reported_in_file_order() {
    let f = Fixture::new(&[
        "state_dir: s",
        "poll_interval: 0s",
        "forges:",
        "  github:",
        "    kind: gitlab",
        "    host: github.com",
        "workspaces:",
        "  - name: a",
        "    ci: nowhere",
        "  - name: a",
        "    ci: nowhere",
    ]);
    let errors = f.load().expect_err("refused");
    let located: Vec<(u32, u32)> = errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        located,
        [(2, 16), (5, 11), (9, 9), (10, 11), (11, 9)],
        "{errors:#?}"
    );
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
    assert!(
        text.starts_with(&format!(
            "{}: cannot read the configuration file",
            path.display()
        )),
        "{text}"
    );
}

// ---- accepted files ------------------------------------------------------------

#[test]
fn minimal_file_gets_the_defaults() {
    let f = Fixture::new(&["state_dir: /var/lib/forgewatch"]);
    let config = f.loaded();
    assert_eq!(config.path, f.path);
    assert_eq!(config.state_dir, Path::new("/var/lib/forgewatch"));
    assert_eq!(config.poll_interval, Duration::from_secs(60));
    assert!(config.forges.is_empty() && config.ci.is_empty() && config.workspaces.is_empty());
}

#[test]
fn full_file() {
    let f = Fixture::new(&[
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
    ]);
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
