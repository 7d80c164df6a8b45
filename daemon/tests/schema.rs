//! The JSON Schema of the configuration file (`forgewatch schema`, SPEC §6) kept in
//! step with the loader.
//!
//! `schema.json` is written by hand, so nothing but these tests ties it to the serde
//! structs of `config/raw.rs`. Rather than parse Rust, the expected keys of every
//! object are written down below ([`OBJECTS`]) and checked three ways: against the
//! schema (exactly these properties, nothing else anywhere), against the loader
//! (its "unknown field, expected one of ..." message lists exactly these keys), and by
//! example (each key inserted into a small file is accepted by both the loader and
//! the schema; a made-up key, an inline secret or a key of another CI kind is refused
//! by both; without any one of its keys, a file gets the same verdict from both).
//! A small validator below implements exactly the keywords the schema uses (it fails
//! on any other), and validates the example configuration, the configurations of the
//! other integration tests, and refusals.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use forgewatch::config::schema::{SCHEMA, schema};
use forgewatch::config::{Config, load_with_env, parse_duration};
use regex::Regex;
use serde_json::Value;
use tempfile::TempDir;

// ---- expected keys -------------------------------------------------------------

/// Every object of the file with fixed keys: its name, its place in the schema (a
/// JSON pointer) and its keys, as in `config/raw.rs`. The inline-secret keys that
/// raw.rs reads only to refuse them (`token`, `secret`, `password`, `admin_token`)
/// are not keys of the file.
const OBJECTS: &[(&str, &str, &[&str])] = &[
    (
        "top level",
        "",
        &[
            "state_dir",
            "poll_interval",
            "max_parallel_updates",
            "shutdown_grace",
            "http_cache_retention",
            "history",
            "delivery",
            "http",
            "forges",
            "ci",
            "workspaces",
        ],
    ),
    ("history", "/properties/history", &["keep"]),
    (
        "delivery",
        "/properties/delivery",
        &["retry_initial", "retry_cap", "timeout"],
    ),
    (
        "http",
        "/properties/http",
        &[
            "listen",
            "public_url",
            "admin_token_env",
            "admin_token_file",
            "admin_token_credential",
            "header_timeout",
            "body_timeout",
            "max_connections",
        ],
    ),
    (
        "forge",
        "/properties/forges/additionalProperties",
        &[
            "kind",
            "host",
            "api_url",
            "token_env",
            "token_file",
            "token_credential",
            "max_concurrency",
            "connect_timeout",
            "request_timeout",
            "rate_limit_reserve",
            "secondary_limit_wait",
            "requests_per_minute",
            "status_writes_per_minute",
            "status_writes_per_hour",
            "webhook_secret_env",
            "webhook_secret_file",
            "webhook_secret_credential",
        ],
    ),
    (
        "ci",
        "/properties/ci/additionalProperties",
        &[
            "kind",
            "url",
            "basic_auth",
            "secret_env",
            "secret_file",
            "secret_credential",
            "forge",
            "project",
            "ref",
            "token_env",
            "token_file",
            "token_credential",
            "argv",
            "timeout",
            "results_secret_env",
            "results_secret_file",
            "results_secret_credential",
        ],
    ),
    (
        "basic_auth",
        "/properties/ci/additionalProperties/properties/basic_auth",
        &[
            "user",
            "password_env",
            "password_file",
            "password_credential",
        ],
    ),
    (
        "workspace",
        "/properties/workspaces/items",
        &[
            "name",
            "ci",
            "packages",
            "manifest",
            "update",
            "discover",
            "buildconf",
            "pull_requests",
            "report",
        ],
    ),
    (
        "report",
        "/properties/workspaces/items/properties/report",
        &["statuses", "dependencies", "context"],
    ),
    (
        "package",
        "/properties/workspaces/items/properties/packages/items",
        &["name", "repo", "branch"],
    ),
    (
        "manifest",
        "/properties/workspaces/items/properties/manifest",
        &["format", "path"],
    ),
    (
        "update",
        "/properties/workspaces/items/properties/update",
        &[
            "argv",
            "dir",
            "timeout",
            "kill_grace",
            "env",
            "when",
            "every",
        ],
    ),
    (
        "discover",
        "/properties/workspaces/items/properties/discover",
        &["argv", "dir", "timeout", "kill_grace", "env"],
    ),
    (
        "buildconf",
        "/properties/workspaces/items/properties/buildconf",
        &["repo", "branch"],
    ),
    (
        "pull_requests",
        "/properties/workspaces/items/properties/pull_requests",
        &[
            "enabled",
            "pr_ref",
            "include_drafts",
            "stale_after",
            "skip_labels",
            "rebuild_on_base_change",
            "trust",
        ],
    ),
    (
        "trust",
        "/properties/workspaces/items/properties/pull_requests/properties/trust",
        &[
            "authors",
            "author_associations",
            "same_repository",
            "approve_label",
        ],
    ),
];

/// Objects whose keys are names of the user's choice (a schema as
/// `additionalProperties`, no `properties`).
const MAPS: &[&str] = &[
    "/properties/forges",
    "/properties/ci",
    "/properties/workspaces/items/properties/update/properties/env",
    "/properties/workspaces/items/properties/discover/properties/env",
];

/// Keys that raw.rs accepts only to refuse them as inline secrets.
const INLINE_SECRETS: [&str; 5] = [
    "token",
    "secret",
    "password",
    "admin_token",
    "results_secret",
];

/// The keys of a CI target of each kind (besides `kind`), as the loader checks them.
const CI_KIND_KEYS: &[(&str, &[&str])] = &[
    (
        "buildbot",
        &[
            "url",
            "basic_auth",
            RESULTS_ENV,
            RESULTS_FILE,
            RESULTS_CREDENTIAL,
        ],
    ),
    (
        "webhook",
        &[
            "url",
            "secret_env",
            "secret_file",
            "secret_credential",
            RESULTS_ENV,
            RESULTS_FILE,
            RESULTS_CREDENTIAL,
        ],
    ),
    (
        "gitlab_pipeline",
        &[
            "forge",
            "project",
            "ref",
            "token_env",
            "token_file",
            "token_credential",
            RESULTS_ENV,
            RESULTS_FILE,
            RESULTS_CREDENTIAL,
        ],
    ),
    (
        "command",
        &[
            "argv",
            "timeout",
            RESULTS_ENV,
            RESULTS_FILE,
            RESULTS_CREDENTIAL,
        ],
    ),
];

/// The keys every kind of CI target has.
const RESULTS_ENV: &str = "results_secret_env";
const RESULTS_FILE: &str = "results_secret_file";
const RESULTS_CREDENTIAL: &str = "results_secret_credential";

// ---- cases: small files, one object filled in ---------------------------------

/// A file in which `HERE` stands for the `key: value` pairs of one object (flow style).
struct Case {
    /// The name of the object in [`OBJECTS`].
    object: &'static str,
    template: &'static str,
    /// Pairs present in every file of the case (the object's required keys).
    required: &'static [(&'static str, &'static str)],
    /// Pairs added one at a time to the required ones.
    optional: &'static [(&'static str, &'static str)],
}

/// A GitHub forge and a `command` CI target `c`: what a workspace needs.
macro_rules! ws_prefix {
    () => {
        "{state_dir: s, forges: {gh: {kind: github, host: github.com}}, \
         ci: {c: {kind: command, argv: [x]}}, workspaces: "
    };
}

/// A GitLab forge `lab` (for `gitlab_pipeline` targets), then `ci: {c: HERE}`.
macro_rules! ci_template {
    () => {
        "{state_dir: s, forges: {lab: {kind: gitlab, host: gitlab.example.org}}, ci: {c: {HERE}}}"
    };
}

const CASES: &[Case] = &[
    Case {
        object: "top level",
        template: "{HERE}",
        required: &[("state_dir", "s")],
        optional: &[
            ("poll_interval", "10m"),
            ("max_parallel_updates", "3"),
            ("shutdown_grace", "30s"),
            ("http_cache_retention", "30d"),
            ("history", "{keep: 30d}"),
            ("delivery", "{timeout: 5s}"),
            ("http", "{listen: '127.0.0.1:8471'}"),
            ("forges", "{}"),
            ("ci", "{}"),
            ("workspaces", "[]"),
        ],
    },
    Case {
        object: "delivery",
        template: "{state_dir: s, delivery: {HERE}}",
        required: &[],
        optional: &[
            ("retry_initial", "1s"),
            ("retry_cap", "1m"),
            ("timeout", "500ms"),
        ],
    },
    Case {
        object: "http",
        template: "{state_dir: s, http: {HERE}}",
        required: &[],
        optional: &[
            ("listen", "'0.0.0.0:9000'"),
            ("public_url", "'https://ci.example.org/forgewatch/'"),
            ("admin_token_env", "PATH"),
            ("admin_token_file", "secret"),
            ("admin_token_credential", "secret"),
            ("header_timeout", "5s"),
            ("body_timeout", "1m"),
            ("max_connections", "64"),
        ],
    },
    Case {
        object: "forge",
        template: "{state_dir: s, forges: {f: {HERE}}}",
        required: &[("kind", "github"), ("host", "github.com")],
        optional: &[
            ("api_url", "'https://api.github.com'"),
            ("token_env", "PATH"),
            ("token_file", "secret"),
            ("token_credential", "secret"),
            ("max_concurrency", "4"),
            ("connect_timeout", "5s"),
            ("request_timeout", "1m30s"),
            ("rate_limit_reserve", "5%"),
            ("secondary_limit_wait", "2m"),
            ("requests_per_minute", "100"),
            ("status_writes_per_minute", "20"),
            ("status_writes_per_hour", "200"),
            ("webhook_secret_env", "PATH"),
            ("webhook_secret_file", "secret"),
            ("webhook_secret_credential", "secret"),
        ],
    },
    Case {
        object: "forge",
        template: "{state_dir: s, forges: {f: {HERE}}}",
        required: &[("kind", "gitlab"), ("host", "GitLab.Example.org")],
        optional: &[("api_url", "'https://gitlab.example.org/api/v4'")],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "buildbot"),
            ("url", "'http://127.0.0.1:8010/change_hook/base'"),
        ],
        optional: &[
            ("basic_auth", "{user: u, password_file: secret}"),
            ("results_secret_file", "secret"),
            ("results_secret_credential", "secret"),
        ],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "webhook"),
            ("url", "'https://ci.example.org/hook'"),
            ("secret_file", "secret"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "webhook"),
            ("url", "'https://ci.example.org/hook'"),
            ("secret_env", "PATH"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "webhook"),
            ("url", "'https://ci.example.org/hook'"),
            ("secret_credential", "secret"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "gitlab_pipeline"),
            ("forge", "lab"),
            ("project", "infra/ci"),
            ("ref", "main"),
            ("token_credential", "secret"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "gitlab_pipeline"),
            ("forge", "lab"),
            ("project", "infra/ci"),
            ("ref", "main"),
            ("token_file", "secret"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "gitlab_pipeline"),
            ("forge", "lab"),
            ("project", "'42'"),
            ("ref", "v1.0"),
            ("token_env", "PATH"),
        ],
        optional: &[],
    },
    Case {
        object: "ci",
        template: ci_template!(),
        required: &[
            ("kind", "command"),
            ("argv", "[/usr/local/bin/start-build, -q]"),
        ],
        optional: &[("timeout", "2m"), ("results_secret_env", "PATH")],
    },
    Case {
        object: "basic_auth",
        template: "{state_dir: s, ci: {c: {kind: buildbot, url: 'http://h/x', basic_auth: {HERE}}}}",
        required: &[("user", "u"), ("password_file", "secret")],
        optional: &[],
    },
    Case {
        object: "basic_auth",
        template: "{state_dir: s, ci: {c: {kind: buildbot, url: 'http://h/x', basic_auth: {HERE}}}}",
        required: &[("user", "u"), ("password_credential", "secret")],
        optional: &[],
    },
    Case {
        object: "basic_auth",
        template: "{state_dir: s, ci: {c: {kind: buildbot, url: 'http://h/x', basic_auth: {HERE}}}}",
        required: &[("user", "u"), ("password_env", "PATH")],
        optional: &[],
    },
    Case {
        object: "workspace",
        template: concat!(ws_prefix!(), "[{HERE}]}"),
        required: &[("name", "rock_nightly-2.x"), ("ci", "c")],
        optional: &[
            ("packages", "[]"),
            ("manifest", "{path: m}"),
            (
                "buildconf",
                "{repo: 'https://github.com/a/conf', branch: master}",
            ),
            ("pull_requests", "{}"),
            ("report", "{}"),
        ],
    },
    Case {
        object: "workspace",
        template: concat!(ws_prefix!(), "[{HERE}]}"),
        required: &[("name", "w"), ("ci", "c"), ("manifest", "{path: m}")],
        optional: &[
            ("update", "{argv: [x], dir: d}"),
            ("discover", "{argv: [x], dir: d}"),
        ],
    },
    Case {
        object: "package",
        template: concat!(ws_prefix!(), "[{name: w, ci: c, packages: [{HERE}]}]}"),
        required: &[
            ("name", "base/types"),
            ("repo", "'git@github.com:rock-core/base-types.git'"),
            ("branch", "master"),
        ],
        optional: &[],
    },
    Case {
        object: "manifest",
        template: concat!(ws_prefix!(), "[{name: w, ci: c, manifest: {HERE}}]}"),
        required: &[("path", "ws/.autoproj/installation-manifest")],
        optional: &[("format", "forgewatch")],
    },
    Case {
        object: "update",
        template: concat!(
            ws_prefix!(),
            "[{name: w, ci: c, manifest: {path: m}, update: {HERE}}]}"
        ),
        required: &[("argv", "[autoproj, update, -k]"), ("dir", "ws")],
        optional: &[
            ("timeout", "5m"),
            ("kill_grace", "2s"),
            ("env", "{AUTOPROJ_NONINTERACTIVE: '1'}"),
            ("when", "[config_change]"),
            ("every", "24h"),
        ],
    },
    Case {
        object: "discover",
        template: concat!(
            ws_prefix!(),
            "[{name: w, ci: c, manifest: {path: m}, discover: {HERE}}]}"
        ),
        required: &[("argv", "[sh, discover.sh]"), ("dir", "scratch")],
        optional: &[
            ("timeout", "5m"),
            ("kill_grace", "2s"),
            ("env", "{AUTOPROJ_NONINTERACTIVE: '1'}"),
        ],
    },
    Case {
        object: "buildconf",
        template: concat!(ws_prefix!(), "[{name: w, ci: c, buildconf: {HERE}}]}"),
        required: &[
            ("repo", "'https://github.com/rock-core/buildconf'"),
            ("branch", "master"),
        ],
        optional: &[],
    },
    Case {
        object: "pull_requests",
        template: concat!(ws_prefix!(), "[{name: w, ci: c, pull_requests: {HERE}}]}"),
        required: &[],
        optional: &[
            ("enabled", "false"),
            ("pr_ref", "merge"),
            ("include_drafts", "false"),
            ("stale_after", "0s"),
            ("skip_labels", "[no-ci, wip]"),
            ("rebuild_on_base_change", "true"),
            ("trust", "{}"),
        ],
    },
    Case {
        object: "history",
        template: "{state_dir: s, history: {HERE}}",
        required: &[],
        optional: &[("keep", "120d")],
    },
    Case {
        object: "report",
        template: concat!(ws_prefix!(), "[{name: w, ci: c, report: {HERE}}]}"),
        required: &[("statuses", "true")],
        optional: &[("dependencies", "true"), ("context", "'ci/{workspace}'")],
    },
    Case {
        object: "trust",
        template: concat!(
            ws_prefix!(),
            "[{name: w, ci: c, pull_requests: {trust: {HERE}}}]}"
        ),
        required: &[],
        optional: &[
            ("authors", "[alice, bob]"),
            (
                "author_associations",
                "[OWNER, FIRST_TIME_CONTRIBUTOR, NONE]",
            ),
            ("same_repository", "false"),
            ("approve_label", "''"),
        ],
    },
];

impl Case {
    fn fill(&self, pairs: &[(&str, &str)]) -> String {
        let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert!(self.template.contains("HERE"), "{}", self.template);
        self.template.replace("HERE", &pairs.join(", "))
    }

    /// The required pairs followed by `more`.
    fn with(&self, more: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = self.required.to_vec();
        pairs.extend_from_slice(more);
        self.fill(&pairs)
    }

    /// The CI kind of a `ci` case.
    fn ci_kind(&self) -> Option<&'static str> {
        let kind = self.required.iter().find(|(k, _)| *k == "kind")?.1;
        (self.object == "ci").then_some(kind)
    }
}

fn object_keys(name: &str) -> BTreeSet<&'static str> {
    let (_, _, keys) = OBJECTS
        .iter()
        .find(|(n, _, _)| *n == name)
        .unwrap_or_else(|| panic!("no object {name}"));
    keys.iter().copied().collect()
}

// ---- the loader and the schema side by side ------------------------------------

/// A directory holding a non-empty file `secret` (every `*_file` of the cases) and
/// where configuration files are said to be.
struct Env {
    dir: TempDir,
    schema: Value,
}

impl Env {
    fn new() -> Env {
        assert!(
            std::env::var("PATH").is_ok_and(|p| !p.is_empty()),
            "the cases read secrets from the environment variable PATH"
        );
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("secret"), "s3cr3t\n").expect("secret file");
        let schema = serde_json::from_str(SCHEMA).expect("the schema is JSON");
        Env { dir, schema }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// The loader's errors (`Ok` when it accepts the file).
    fn load(&self, text: &str) -> Result<Config, Vec<String>> {
        // Credentials are the files of the case's directory.
        let dir = self.dir.path().display().to_string();
        let env = |name: &str| match name {
            "CREDENTIALS_DIRECTORY" => Some(dir.clone()),
            _ => std::env::var(name).ok(),
        };
        load_with_env(text, &self.path(), &env)
            .map_err(|e| e.0.into_iter().map(|e| e.message).collect())
    }

    /// The schema's errors for `text` (read as YAML).
    fn schema_errors(&self, text: &str) -> Vec<String> {
        Validator::new(&self.schema).errors(&to_json(text))
    }

    fn accepted_by_both(&self, text: &str) {
        if let Err(errors) = self.load(text) {
            panic!("the loader refuses\n{text}\n{errors:#?}");
        }
        let errors = self.schema_errors(text);
        assert!(errors.is_empty(), "the schema refuses\n{text}\n{errors:#?}");
    }

    /// Asserts that both refuse `text`; returns the loader's messages.
    fn refused_by_both(&self, text: &str) -> Vec<String> {
        let errors = match self.load(text) {
            Ok(_) => panic!("the loader accepts\n{text}"),
            Err(errors) => errors,
        };
        assert!(
            !self.schema_errors(text).is_empty(),
            "the schema accepts\n{text}\nwhich the loader refuses with {errors:#?}"
        );
        errors
    }
}

/// A YAML document as JSON, as an editor would see it.
fn to_json(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// The keys listed in the loader's "unknown field `X`, expected one of ..." message.
fn expected_keys(message: &str) -> BTreeSet<String> {
    let (_, expected) = message
        .split_once(", expected")
        .unwrap_or_else(|| panic!("not an unknown-field message: {message}"));
    let quoted = Regex::new("`([^`]*)`").expect("regex");
    quoted
        .captures_iter(expected)
        .map(|c| c[1].to_owned())
        .collect()
}

// ---- a validator of the keywords the schema uses -------------------------------

/// A JSON Schema validator for exactly the keywords of `schema.json`; any other
/// keyword is a test failure (so the schema cannot use one these tests ignore).
struct Validator<'a> {
    root: &'a Value,
}

impl<'a> Validator<'a> {
    fn new(root: &'a Value) -> Validator<'a> {
        Validator { root }
    }

    fn errors(&self, instance: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(self.root, instance, "", &mut errors);
        errors
    }

    fn valid(&self, schema: &Value, instance: &Value) -> bool {
        let mut errors = Vec::new();
        self.check(schema, instance, "", &mut errors);
        errors.is_empty()
    }

    fn resolve(&self, reference: &Value) -> &'a Value {
        let pointer = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .unwrap_or_else(|| panic!("only local references are supported: {reference}"));
        self.root
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {reference}"))
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{at}: not allowed")),
            Value::Object(schema) => schema,
            other => panic!("a schema is an object or a boolean, not {other}"),
        };
        let mut error = |message: String| errors.push(format!("{at}: {message}"));
        let mut nested = Vec::new();
        for (keyword, arg) in schema {
            match keyword.as_str() {
                "$schema" | "title" | "description" | "default" | "$defs" | "then" | "else" => {}
                "$ref" => self.check(self.resolve(arg), value, at, &mut nested),
                "type" => {
                    let types = match arg {
                        Value::Array(types) => types.iter().collect(),
                        one => vec![one],
                    };
                    let is = |ty: &Value| match ty.as_str().expect("a type is a string") {
                        "object" => value.is_object(),
                        "array" => value.is_array(),
                        "string" => value.is_string(),
                        "boolean" => value.is_boolean(),
                        "integer" => value.is_i64() || value.is_u64(),
                        "number" => value.is_number(),
                        "null" => value.is_null(),
                        other => panic!("unknown type {other}"),
                    };
                    if !types.into_iter().any(is) {
                        error(format!("expected {arg}, not {value}"));
                    }
                }
                "properties" => {
                    let properties = arg.as_object().expect("`properties` is an object");
                    if let Value::Object(object) = value {
                        for (key, sub) in properties {
                            if let Some(v) = object.get(key) {
                                self.check(sub, v, &format!("{at}/{key}"), &mut nested);
                            }
                        }
                    }
                }
                "additionalProperties" => {
                    let known = schema.get("properties").and_then(Value::as_object);
                    if let Value::Object(object) = value {
                        for (key, v) in object {
                            if !known.is_some_and(|p| p.contains_key(key)) {
                                self.check(arg, v, &format!("{at}/{key}"), &mut nested);
                            }
                        }
                    }
                }
                "required" => {
                    if let Value::Object(object) = value {
                        for key in arg.as_array().expect("`required` is a list") {
                            let key = key.as_str().expect("a key");
                            if !object.contains_key(key) {
                                error(format!("missing key `{key}`"));
                            }
                        }
                    }
                }
                "dependentRequired" => {
                    let rules = arg.as_object().expect("`dependentRequired` is an object");
                    if let Value::Object(object) = value {
                        for (key, needs) in rules {
                            for need in needs.as_array().expect("a list") {
                                let need = need.as_str().expect("a key");
                                if object.contains_key(key) && !object.contains_key(need) {
                                    error(format!("`{key}` needs `{need}`"));
                                }
                            }
                        }
                    }
                }
                "enum" => {
                    if !arg.as_array().expect("`enum` is a list").contains(value) {
                        error(format!("{value} is not one of {arg}"));
                    }
                }
                "const" => {
                    if value != arg {
                        error(format!("expected {arg}, not {value}"));
                    }
                }
                "items" => {
                    if let Value::Array(items) = value {
                        for (i, item) in items.iter().enumerate() {
                            self.check(arg, item, &format!("{at}/{i}"), &mut nested);
                        }
                    }
                }
                "pattern" => {
                    let pattern = arg.as_str().expect("`pattern` is a string");
                    let regex = Regex::new(pattern).expect("`pattern` is a regular expression");
                    if let Value::String(s) = value
                        && !regex.is_match(s)
                    {
                        error(format!("{value} does not match {pattern}"));
                    }
                }
                "minimum" | "maximum" => {
                    let bound = arg.as_f64().expect("a number");
                    if let Some(n) = value.as_f64() {
                        let ok = if keyword == "minimum" {
                            n >= bound
                        } else {
                            n <= bound
                        };
                        if !ok {
                            error(format!("{value}: {keyword} is {arg}"));
                        }
                    }
                }
                "minLength" => {
                    let min = arg.as_u64().expect("a number");
                    if let Value::String(s) = value
                        && (s.chars().count() as u64) < min
                    {
                        error(format!("{value} is shorter than {min}"));
                    }
                }
                "minItems" => {
                    let min = arg.as_u64().expect("a number");
                    if let Value::Array(items) = value
                        && (items.len() as u64) < min
                    {
                        error(format!("fewer than {min} items"));
                    }
                }
                "allOf" => {
                    for sub in arg.as_array().expect("`allOf` is a list") {
                        self.check(sub, value, at, &mut nested);
                    }
                }
                "anyOf" | "oneOf" => {
                    let subs = arg.as_array().expect("a list");
                    let matching = subs.iter().filter(|s| self.valid(s, value)).count();
                    if keyword == "anyOf" && matching == 0 {
                        error(format!("matches none of {arg}"));
                    }
                    if keyword == "oneOf" && matching != 1 {
                        error(format!("matches {matching} of {arg}, not one"));
                    }
                }
                "not" => {
                    if self.valid(arg, value) {
                        error(format!("must not match {arg}"));
                    }
                }
                "if" => {
                    let branch = if self.valid(arg, value) {
                        "then"
                    } else {
                        "else"
                    };
                    if let Some(sub) = schema.get(branch) {
                        self.check(sub, value, at, &mut nested);
                    }
                }
                other => panic!("the test validator does not support `{other}`"),
            }
        }
        errors.extend(nested);
    }
}

/// Every schema node (objects only) with its JSON pointer.
fn nodes<'v>(schema: &'v Value, at: String, out: &mut Vec<(String, &'v Value)>) {
    let Value::Object(object) = schema else {
        return;
    };
    out.push((at.clone(), schema));
    for (keyword, arg) in object {
        let here = format!("{at}/{keyword}");
        match keyword.as_str() {
            "properties" | "$defs" | "dependentRequired" => {
                for (name, sub) in arg.as_object().into_iter().flatten() {
                    nodes(sub, format!("{here}/{name}"), out);
                }
            }
            "allOf" | "anyOf" | "oneOf" => {
                for (i, sub) in arg.as_array().into_iter().flatten().enumerate() {
                    nodes(sub, format!("{here}/{i}"), out);
                }
            }
            "items" | "additionalProperties" | "not" | "if" | "then" | "else" => {
                nodes(arg, here, out);
            }
            _ => {}
        }
    }
}

fn property_names(node: &Value) -> BTreeSet<&str> {
    node.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect()
}

// ---- (a) the document ----------------------------------------------------------

#[test]
fn the_schema_is_a_draft_2020_12_json_document() {
    assert_eq!(schema(), SCHEMA);
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    // Every key says what it is for.
    for (name, pointer, keys) in OBJECTS {
        for key in *keys {
            let at = format!("{pointer}/properties/{key}/description");
            let description = schema.pointer(&at).and_then(Value::as_str);
            assert!(
                description.is_some_and(|d| !d.is_empty()),
                "{name}: `{key}` has no description"
            );
        }
    }
    let mut all = Vec::new();
    nodes(&schema, String::new(), &mut all);
    // Every pattern compiles, every reference resolves.
    let validator = Validator::new(&schema);
    for (at, node) in &all {
        if let Some(pattern) = node.get("pattern").and_then(Value::as_str) {
            Regex::new(pattern).unwrap_or_else(|e| panic!("{at}: {e}"));
        }
        if let Some(reference) = node.get("$ref") {
            validator.resolve(reference);
        }
    }
}

#[test]
fn every_default_is_valid_for_its_key() {
    let schema: Value = serde_json::from_str(SCHEMA).expect("JSON");
    let validator = Validator::new(&schema);
    let mut all = Vec::new();
    nodes(&schema, String::new(), &mut all);
    let mut count = 0;
    for (at, node) in all {
        if let Some(default) = node.get("default") {
            let mut errors = Vec::new();
            validator.check(node, default, &at, &mut errors);
            assert!(errors.is_empty(), "{errors:#?}");
            count += 1;
        }
    }
    assert!(count >= 25, "only {count} defaults");
}

// ---- (b) the keys --------------------------------------------------------------

#[test]
fn each_object_of_the_schema_has_exactly_the_keys_of_raw_rs() {
    let schema: Value = serde_json::from_str(SCHEMA).expect("JSON");
    for (name, pointer, keys) in OBJECTS {
        let node = schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{name}: nothing at {pointer}"));
        assert_eq!(node["type"], "object", "{name}");
        assert_eq!(node["additionalProperties"], false, "{name}");
        let expected: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(property_names(node), expected, "{name}");
    }
    for pointer in MAPS {
        let node = schema.pointer(pointer).expect("a map");
        assert_eq!(node["type"], "object", "{pointer}");
        assert!(node.get("properties").is_none(), "{pointer}");
        assert!(node["additionalProperties"].is_object(), "{pointer}");
    }

    // No other key anywhere: every list of properties is one of the objects above,
    // or a kind-specific subset of its object's keys.
    let mut all = Vec::new();
    nodes(&schema, String::new(), &mut all);
    for (at, node) in &all {
        if node.get("type") == Some(&Value::from("object")) {
            assert!(
                node.get("additionalProperties").is_some(),
                "{at}: unknown keys must be refused"
            );
        }
        let names = property_names(node);
        if names.is_empty() {
            continue;
        }
        for secret in INLINE_SECRETS {
            assert!(!names.contains(secret), "{at} allows inline `{secret}`");
        }
        if OBJECTS.iter().any(|(_, pointer, _)| pointer == at) {
            continue;
        }
        let owner = OBJECTS
            .iter()
            .filter(|(_, pointer, _)| at.starts_with(&format!("{pointer}/allOf/")))
            .max_by_key(|(_, pointer, _)| pointer.len());
        let Some((name, _, keys)) = owner else {
            panic!("{at}: properties {names:?} outside of the known objects");
        };
        let keys: BTreeSet<&str> = keys.iter().copied().collect();
        assert!(names.is_subset(&keys), "{at}: {names:?} not keys of {name}");
    }
}

#[test]
fn the_cases_cover_every_key() {
    for (name, _, keys) in OBJECTS {
        let covered: BTreeSet<&str> = CASES
            .iter()
            .filter(|c| c.object == *name)
            .flat_map(|c| c.required.iter().chain(c.optional))
            .map(|(k, _)| *k)
            .collect();
        let keys: BTreeSet<&str> = keys.iter().copied().collect();
        assert_eq!(covered, keys, "cases of {name}");
    }
    let kinds: BTreeSet<&str> = CASES.iter().filter_map(Case::ci_kind).collect();
    let expected: BTreeSet<&str> = CI_KIND_KEYS.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, expected);
}

#[test]
fn every_key_is_accepted_by_the_loader_and_the_schema() {
    let env = Env::new();
    for case in CASES {
        env.accepted_by_both(&case.with(&[]));
        for pair in case.optional {
            env.accepted_by_both(&case.with(&[*pair]));
        }
    }
}

#[test]
fn an_unknown_key_is_refused_by_both_and_the_loader_expects_the_schema_keys() {
    let env = Env::new();
    for case in CASES {
        let text = case.with(&[("bogus_key", "1")]);
        let errors = env.refused_by_both(&text);
        let [message] = errors.as_slice() else {
            panic!("one error expected: {errors:#?}");
        };
        assert!(message.contains("unknown field `bogus_key`"), "{message}");
        // The loader leaves inline-secret keys out of the list (a key such as
        // `admin_token` may still be named: it is not a key of the file either).
        let mut listed = expected_keys(message);
        listed.retain(|k| !INLINE_SECRETS.contains(&k.as_str()));
        let expected: BTreeSet<String> = object_keys(case.object)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            listed, expected,
            "raw.rs and the schema disagree on the keys of {}",
            case.object
        );
        let errors = env.schema_errors(&text);
        assert!(
            errors.iter().any(|e| e.contains("/bogus_key: not allowed")),
            "{errors:#?}"
        );
    }
}

#[test]
fn inline_secrets_are_refused_by_both() {
    let env = Env::new();
    for case in CASES {
        for key in INLINE_SECRETS {
            let text = case.with(&[(key, "hunter2")]);
            let errors = env.refused_by_both(&text);
            assert!(errors.iter().all(|e| !e.contains("hunter2")), "{errors:#?}");
        }
    }
}

#[test]
fn without_a_key_both_give_the_same_verdict() {
    let env = Env::new();
    let mut refused = 0;
    for case in CASES {
        for i in 0..case.required.len() {
            let mut pairs = case.required.to_vec();
            let (key, _) = pairs.remove(i);
            let text = case.fill(&pairs);
            let loader = env.load(&text);
            let schema = env.schema_errors(&text);
            assert_eq!(
                loader.is_ok(),
                schema.is_empty(),
                "without `{key}`:\n{text}\nloader: {:?}\nschema: {schema:#?}",
                loader.map(|_| ())
            );
            refused += usize::from(loader.is_err());
        }
    }
    assert!(refused >= 25, "only {refused} refusals");
    // `update` needs `manifest`.
    let text = concat!(
        ws_prefix!(),
        "[{name: w, ci: c, update: {argv: [x], dir: d}}]}"
    );
    let errors = env.refused_by_both(text);
    assert!(
        errors.iter().any(|e| e.contains("but no `manifest`")),
        "{errors:#?}"
    );
    // So does `discover`.
    let text = concat!(
        ws_prefix!(),
        "[{name: w, ci: c, discover: {argv: [x], dir: d}}]}"
    );
    let errors = env.refused_by_both(text);
    assert!(
        errors.iter().any(|e| e.contains("but no `manifest`")),
        "{errors:#?}"
    );
}

/// YAML reads `42`, `1.0` or `true` as a number or a boolean; the loader takes free
/// text as written, and so does the schema.
#[test]
fn unquoted_numbers_and_booleans_are_text_where_text_is_expected() {
    let env = Env::new();
    let text = concat!(
        "{state_dir: 2024, forges: {lab: {kind: gitlab, host: gitlab.example.org}}, ",
        "ci: {p: {kind: gitlab_pipeline, forge: lab, project: 42, ref: 1.0, token_file: secret}, ",
        "c: {kind: command, argv: [sleep, 10]}}, ",
        "workspaces: [{name: 2.0, ci: p, ",
        "packages: [{name: 1.5, repo: 'https://gitlab.example.org/a/b', branch: 2024}], ",
        "manifest: {path: 7}, update: {argv: [make, -j, 4], dir: 8, env: {A: 1, B: true}}, ",
        "pull_requests: {skip_labels: [1], trust: {authors: [007], approve_label: 42}}}]}"
    );
    env.accepted_by_both(text);
    // Not where a duration, a kind or a count is expected.
    env.refused_by_both("{state_dir: s, poll_interval: 10}");
    env.refused_by_both("{state_dir: s, forges: {g: {kind: 1, host: h}}}");
    env.refused_by_both("{state_dir: s, max_parallel_updates: many}");
}

#[test]
fn keys_of_another_ci_kind_are_refused_by_both() {
    let env = Env::new();
    let schema: Value = serde_json::from_str(SCHEMA).expect("JSON");
    let ci = schema
        .pointer("/properties/ci/additionalProperties")
        .expect("ci");
    // A valid value of every key, to insert into targets of the other kinds.
    let values: BTreeMap<&str, &str> = CASES
        .iter()
        .filter(|c| c.object == "ci")
        .flat_map(|c| c.required.iter().chain(c.optional))
        .map(|(k, v)| (*k, *v))
        .collect();
    for (kind, keys) in CI_KIND_KEYS {
        // The schema's kind-specific keys are the loader's.
        let then = ci["allOf"]
            .as_array()
            .expect("allOf")
            .iter()
            .find(|rule| rule["if"]["properties"]["kind"]["const"] == *kind)
            .map(|rule| &rule["then"])
            .unwrap_or_else(|| panic!("no rule for kind {kind}"));
        let mut expected: BTreeSet<&str> = keys.iter().copied().collect();
        expected.insert("kind");
        assert_eq!(property_names(then), expected, "{kind}");
        for case in CASES.iter().filter(|c| c.ci_kind() == Some(kind)) {
            for (key, value) in &values {
                if !expected.contains(key) {
                    let errors = env.refused_by_both(&case.with(&[(key, value)]));
                    let apply = format!("`{key}` does not apply to a `{kind}` target");
                    assert!(errors.iter().any(|e| e.contains(&apply)), "{errors:#?}");
                }
            }
        }
    }
}

#[test]
fn either_env_or_file_not_both() {
    let env = Env::new();
    for (object, base) in [
        ("forge", "token"),
        ("forge", "webhook_secret"),
        ("http", "admin_token"),
    ] {
        let case = CASES.iter().find(|c| c.object == object).expect("a case");
        let (env_key, file_key) = (format!("{base}_env"), format!("{base}_file"));
        let credential_key = format!("{base}_credential");
        for pair in [
            [(&env_key, "PATH"), (&file_key, "secret")],
            [(&env_key, "PATH"), (&credential_key, "secret")],
            [(&file_key, "secret"), (&credential_key, "secret")],
        ] {
            let pair = pair.map(|(k, v)| (k.as_str(), v));
            let errors = env.refused_by_both(&case.with(&pair));
            assert!(errors.iter().any(|e| e.contains("not more")), "{errors:#?}");
        }
    }
    for kind in ["webhook", "gitlab_pipeline"] {
        let case = CASES
            .iter()
            .find(|c| {
                c.ci_kind() == Some(kind) && c.required.iter().any(|(k, _)| k.ends_with("_file"))
            })
            .expect("a case");
        let (file_key, _) = case
            .required
            .iter()
            .find(|(k, _)| k.ends_with("_file"))
            .expect("_file");
        let env_key = file_key.replace("_file", "_env");
        env.refused_by_both(&case.with(&[(&env_key, "PATH")]));
    }
    let case = CASES
        .iter()
        .find(|c| c.object == "basic_auth")
        .expect("a case");
    env.refused_by_both(&case.with(&[("password_env", "PATH")]));
}

/// The defaults the schema documents are the loader's.
#[test]
fn schema_defaults_are_the_loaders() {
    let env = Env::new();
    let schema: Value = serde_json::from_str(SCHEMA).expect("JSON");
    let default = |pointer: &str| -> &Value {
        let at = format!("{pointer}/default");
        schema
            .pointer(&at)
            .unwrap_or_else(|| panic!("no default at {pointer}"))
    };
    let duration = |pointer: &str| -> Duration {
        let text = default(pointer).as_str().expect("a duration");
        parse_duration(text).expect("a valid duration")
    };
    let text = concat!(
        "{state_dir: s, forges: {gh: {kind: github, host: github.com}}, ",
        "ci: {c: {kind: command, argv: [x]}}, ",
        "workspaces: [{name: w, ci: c, manifest: {path: m}, update: {argv: [x], dir: d}}]}"
    );
    let config = env.load(text).expect("valid");
    assert_eq!(config.poll_interval, duration("/properties/poll_interval"));
    assert_eq!(
        config.max_parallel_updates as u64,
        default("/properties/max_parallel_updates")
            .as_u64()
            .expect("n")
    );
    let delivery = "/properties/delivery/properties";
    assert_eq!(
        config.delivery.retry_initial,
        duration(&format!("{delivery}/retry_initial"))
    );
    assert_eq!(
        config.delivery.retry_cap,
        duration(&format!("{delivery}/retry_cap"))
    );
    assert_eq!(
        config.delivery.timeout,
        duration(&format!("{delivery}/timeout"))
    );
    assert_eq!(
        config.http.listen.to_string(),
        default("/properties/http/properties/listen")
            .as_str()
            .expect("s")
    );
    let http = "/properties/http/properties";
    let limits = config.http.limits;
    assert_eq!(
        limits.header_timeout,
        duration(&format!("{http}/header_timeout"))
    );
    assert_eq!(
        limits.body_timeout,
        duration(&format!("{http}/body_timeout"))
    );
    assert_eq!(
        limits.max_connections as u64,
        default(&format!("{http}/max_connections"))
            .as_u64()
            .expect("n")
    );

    let forge = &config.forges["gh"];
    let f = "/properties/forges/additionalProperties/properties";
    assert_eq!(
        forge.max_concurrency as u64,
        default(&format!("{f}/max_concurrency"))
            .as_u64()
            .expect("n")
    );
    assert_eq!(
        forge.connect_timeout,
        duration(&format!("{f}/connect_timeout"))
    );
    assert_eq!(
        forge.request_timeout,
        duration(&format!("{f}/request_timeout"))
    );
    assert_eq!(
        forge.secondary_limit_wait,
        duration(&format!("{f}/secondary_limit_wait"))
    );
    let reserve = default(&format!("{f}/rate_limit_reserve"))
        .as_str()
        .and_then(|p| p.strip_suffix('%'))
        .and_then(|p| p.parse::<f64>().ok())
        .expect("a percentage");
    assert!((forge.rate_limit_reserve - reserve / 100.0).abs() < 1e-9);
    assert!(forge.requests_per_minute.is_none());
    let number = |key: &str| default(&format!("{f}/{key}")).as_u64().expect("a number");
    assert_eq!(
        u64::from(forge.status_writes_per_minute),
        number("status_writes_per_minute")
    );
    assert_eq!(
        u64::from(forge.status_writes_per_hour),
        number("status_writes_per_hour")
    );

    match &config.ci["c"] {
        forgewatch::config::CiConfig::Command { timeout, .. } => assert_eq!(
            *timeout,
            duration("/properties/ci/additionalProperties/properties/timeout")
        ),
        other => panic!("{other:?}"),
    }

    let ws = &config.workspaces[0];
    let w = "/properties/workspaces/items/properties";
    let manifest = ws.manifest.as_ref().expect("manifest");
    assert_eq!(
        default(&format!("{w}/manifest/properties/format")),
        match manifest.format {
            forgewatch::config::ManifestFormat::Autoproj => "autoproj",
            forgewatch::config::ManifestFormat::Forgewatch => "forgewatch",
        }
    );
    let update = ws.update.as_ref().expect("update");
    let u = format!("{w}/update/properties");
    assert_eq!(update.timeout, duration(&format!("{u}/timeout")));
    assert_eq!(update.kill_grace, duration(&format!("{u}/kill_grace")));
    assert_eq!(
        default(&format!("{u}/when")),
        &serde_json::json!(["startup", "config_change"])
    );
    assert!(update.on_startup && update.on_config_change && update.every.is_none());
    assert!(update.env.is_empty());

    let pr = &ws.pull_requests;
    let p = format!("{w}/pull_requests/properties");
    assert_eq!(default(&format!("{p}/enabled")), pr.enabled);
    let pr_ref = match pr.pr_ref {
        forgewatch::config::PrRefMode::Auto => "auto",
        forgewatch::config::PrRefMode::Merge => "merge",
        forgewatch::config::PrRefMode::Head => "head",
    };
    assert_eq!(default(&format!("{p}/pr_ref")), pr_ref);
    assert_eq!(default(&format!("{p}/include_drafts")), pr.include_drafts);
    assert_eq!(pr.stale_after, duration(&format!("{p}/stale_after")));
    assert_eq!(
        default(&format!("{p}/skip_labels")),
        &serde_json::json!(pr.skip_labels)
    );
    assert_eq!(
        default(&format!("{p}/rebuild_on_base_change")),
        pr.rebuild_on_base_change
    );
    let t = format!("{p}/trust/properties");
    let trust = &pr.trust;
    assert_eq!(
        default(&format!("{t}/authors")),
        &serde_json::json!(trust.authors)
    );
    assert_eq!(
        default(&format!("{t}/author_associations")),
        &serde_json::json!(trust.author_associations)
    );
    assert_eq!(
        default(&format!("{t}/same_repository")),
        trust.same_repository
    );
    assert_eq!(
        default(&format!("{t}/approve_label")).as_str(),
        trust.approve_label.as_deref()
    );
}

// ---- (c) whole files -----------------------------------------------------------

fn example_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.example.yml");
    std::fs::read_to_string(path).expect("config.example.yml")
}

/// Every `*_file` names the test's `secret` file, every `*_env` the variable PATH.
fn with_test_secrets(text: &str) -> String {
    let file = Regex::new(r"(\w+_file): *[^\s,}\]]+").expect("regex");
    let var = Regex::new(r"(\w+_env): *[^\s,}\]]+").expect("regex");
    let text = file.replace_all(text, "$1: secret");
    var.replace_all(&text, "$1: PATH").into_owned()
}

/// The example with its commented-out keys enabled: a comment line that is a key
/// (`# key: value`, `# - key: value`) loses its `# `; of `X_env` directly followed by
/// `X_file`, and of `X_file` directly followed by `X_credential` (the example shows
/// the alternatives), only the file is kept.
fn example_with_every_key() -> String {
    let commented = Regex::new(r"^(\s*)# ( *(- )?[a-z_][a-z0-9_]*:( |$))").expect("regex");
    let lines: Vec<String> = example_text()
        .lines()
        .map(|line| commented.replace(line, "$1$2").into_owned())
        .collect();
    let key = Regex::new(r"^(\s*)([a-z_]+)_(env|file|credential):").expect("regex");
    let alternatives = |first: &str, second: &str| {
        key.captures(first)
            .zip(key.captures(second))
            .is_some_and(|(a, b)| {
                a[1] == b[1] && a[2] == b[2] && (&a[3], &b[3]) != ("env", "credential")
            })
    };
    let mut kept = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let env_then_file = lines
            .get(i + 1)
            .is_some_and(|next| alternatives(line, next) && line.contains("_env:"));
        let credential_after_file =
            i > 0 && line.contains("_credential:") && alternatives(&lines[i - 1], line);
        if env_then_file || credential_after_file {
            continue;
        }
        kept.push(line.as_str());
    }
    kept.join("\n")
}

#[test]
fn the_example_configuration_is_valid() {
    let env = Env::new();
    env.accepted_by_both(&example_text());
}

#[test]
fn the_example_with_every_commented_key_enabled_is_valid() {
    let env = Env::new();
    let text = with_test_secrets(&example_with_every_key());
    assert!(
        text.contains("kind: gitlab_pipeline") && text.contains("update:"),
        "{text}"
    );
    env.accepted_by_both(&text);
    // Every CI kind is shown.
    let json = to_json(&text);
    let kinds: BTreeSet<&str> = json["ci"]
        .as_object()
        .expect("ci")
        .values()
        .filter_map(|t| t["kind"].as_str())
        .collect();
    assert_eq!(kinds.len(), CI_KIND_KEYS.len(), "{kinds:?}");
}

/// Keys that `config.example.yml` does not document yet (SPEC §5 wants every key
/// there): remove them from here once it does.
const NOT_YET_IN_THE_EXAMPLE: &[&str] = &[];

#[test]
fn the_example_documents_every_key() {
    let text = example_text();
    let missing: Vec<String> = OBJECTS
        .iter()
        .flat_map(|(name, _, keys)| keys.iter().map(move |k| (name, k)))
        .filter(|(_, key)| !NOT_YET_IN_THE_EXAMPLE.contains(key))
        .filter(|(_, key)| {
            !text.contains(&format!("{key}:")) && !text.contains(&format!("`{key}`"))
        })
        .map(|(name, key)| format!("{name}.{key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "config.example.yml does not document {missing:?}"
    );
}

/// The files the loader's own integration tests accept (`tests/config*.rs`).
const ACCEPTED_ELSEWHERE: &[&str] = &[
    // config.rs: full_file
    "state_dir: ./state
poll_interval: 1h30m
forges:
  github:
    kind: github
    host: WWW.GitHub.com
    token_file: secrets/github-token
  ghe:
    kind: github
    host: git.example.org
    token_file: ghe-token
    max_concurrency: 2
  ghe2:
    kind: github
    host: git2.example.org
    api_url: https://api.git2.example.org/v3/
ci:
  bb:
    kind: buildbot
    url: http://127.0.0.1:8010/change_hook/base
    basic_auth: { user: forgewatch, password_file: bb-pass }
  hook:
    kind: webhook
    url: https://ci.example.org/forgewatch
    secret_file: hook-secret
workspaces:
  - name: rock_nightly
    ci: bb
    packages:
      - { name: base/types, repo: 'git@github.com:Rock-Core/base-types.git', branch: master }
      - { name: base/types2, repo: https://github.com/rock-core/base-types, branch: master }
      - { name: lidar, repo: https://git.example.org/sensors/lidar, branch: main }
  - name: hooked
    ci: hook
    pull_requests:
      enabled: false
",
    // config_gitlab.rs: a_mixed_workspace_with_a_pipeline_target
    "state_dir: s
forges:
  lab:
    kind: gitlab
    host: GitLab.Example.org
    token_file: trigger-token
  github:
    kind: github
    host: github.com
ci:
  pipeline:
    kind: gitlab_pipeline
    forge: lab
    project: infra/ci
    ref: main
    token_file: trigger-token
workspaces:
  - name: mixed
    ci: pipeline
    packages:
      - { name: drivers/lidar_x, repo: 'git@gitlab.example.org:Sensors/Drivers/lidar-x.git', branch: develop }
      - { name: base/types, repo: https://github.com/rock-core/base-types, branch: master }
",
    // config_workspace.rs: update_triggers_and_limits
    "state_dir: s
max_parallel_updates: 5
forges:
  github: { kind: github, host: github.com }
ci:
  script:
    kind: command
    argv: [./start-build, --fast]
workspaces:
  - name: rock
    ci: script
    manifest:
      path: ws/.autoproj/installation-manifest
    update:
      argv: [autoproj, update, -k]
      dir: ws
      env: { AUTOPROJ_NONINTERACTIVE: '1' }
      when: [config_change]
      timeout: 5m
      kill_grace: 2s
    buildconf: { repo: 'git@github.com:rock-core/buildconf.git', branch: master }
",
];

#[test]
fn the_configurations_of_the_other_tests_are_valid() {
    let env = Env::new();
    for text in ACCEPTED_ELSEWHERE {
        env.accepted_by_both(&with_test_secrets(text));
    }
}

/// `(text, schema error fragment, loader error fragment)`.
const REFUSED: &[(&str, &str, &str)] = &[
    (
        "state_dir: s\nforges:\n  github:\n    kind: github\n    host: github.com\n    tokn: x",
        "/forges/github/tokn: not allowed",
        "unknown field `tokn`",
    ),
    (
        "state_dir: s\nstate_dirs: t",
        "/state_dirs: not allowed",
        "unknown field `state_dirs`",
    ),
    (
        "state_dir: s\npoll_interval: 10 m",
        "/poll_interval: \"10 m\" does not match",
        "invalid duration `10 m`",
    ),
    (
        "state_dir: s\npoll_interval: 10",
        "/poll_interval: expected \"string\", not 10",
        "",
    ),
    (
        "state_dir: s\ndelivery: {retry_cap: 1.5h}",
        "/delivery/retry_cap: \"1.5h\" does not match",
        "fractions are not supported",
    ),
    (
        "state_dir: s\ndelivery: {timeout: 0s}",
        "/delivery/timeout: \"0s\" does not match",
        "more than 0s",
    ),
    (
        "state_dir: s\nforges: {g: {kind: gerrit, host: review.example.org}}",
        "/forges/g/kind: \"gerrit\" is not one of",
        "unknown forge kind `gerrit`",
    ),
    (
        "state_dir: s\nci: {bb: {kind: script, url: 'http://h/x'}}",
        "/ci/bb/kind: \"script\" is not one of",
        "unknown CI target kind `script`",
    ),
    (
        "state_dir: s\nci: {hook: {kind: webhook, url: 'https://ci.example.org/x'}}",
        "/ci/hook: matches 0 of",
        "needs `secret_env`, `secret_file` or `secret_credential`",
    ),
    (
        "state_dir: s\nci: {hook: {kind: webhook, url: 'https://ci.example.org/x', secret: k}}",
        "/ci/hook/secret: not allowed",
        "`secret` must not be written inline",
    ),
    (
        "state_dir: s\nforges: {g: {kind: github, host: github.com, rate_limit_reserve: 10}}",
        "/forges/g/rate_limit_reserve: expected \"string\", not 10",
        "expected a percentage",
    ),
    (
        "state_dir: s\nforges: {g: {kind: github, host: github.com, max_concurrency: 0}}",
        "/forges/g/max_concurrency: 0: minimum is 1",
        "must be from 1 to 256, not 0",
    ),
    (
        "state_dir: s\nci: {c: {kind: buildbot, url: 'ftp://h/x'}}",
        "/ci/c/url: \"ftp://h/x\" does not match",
        "must be an http:// or https:// URL",
    ),
    (
        "state_dir: s\nci: {c: {kind: command, argv: []}}",
        "/ci/c/argv: fewer than 1 items",
        "needs at least the program",
    ),
    (
        "state_dir: s\nforges: {g: {kind: github, host: 'https://github.com'}}",
        "/forges/g/host: \"https://github.com\" does not match",
        "not a URL",
    ),
    (
        "state_dir: s\nhttp: {listen: localhost}",
        "/http/listen: \"localhost\" does not match",
        "`listen` must be an address and port",
    ),
    (
        "poll_interval: 10m",
        ": missing key `state_dir`",
        "missing key `state_dir`",
    ),
];

#[test]
fn bad_files_are_refused_by_both() {
    let env = Env::new();
    for (text, schema_fragment, loader_fragment) in REFUSED {
        let errors = env.refused_by_both(text);
        assert!(
            errors.iter().any(|e| e.contains(loader_fragment)),
            "{text}\n{errors:#?}"
        );
        let errors = env.schema_errors(text);
        assert!(
            errors.iter().any(|e| e.contains(schema_fragment)),
            "{text}\n{errors:#?}"
        );
    }
    // Each kind of value refused by the schema alone is also refused when nested in
    // a valid file.
    let text = concat!(
        ws_prefix!(),
        "[{name: w, ci: c, pull_requests: {pr_ref: latest, trust: {author_associations: [ADMIN]}}, ",
        "manifest: {format: cmake, path: m}, update: {argv: [x], dir: d, when: [nightly]}}]}"
    );
    let errors = env.refused_by_both(text);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    let errors = env.schema_errors(text);
    for fragment in [
        "/pull_requests/pr_ref: \"latest\" is not one of",
        "/author_associations/0: \"ADMIN\" is not one of",
        "/manifest/format: \"cmake\" is not one of",
        "/update/when/0: \"nightly\" is not one of",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(fragment)),
            "{fragment}\n{errors:#?}"
        );
    }
    let errors = env.schema_errors("state_dir: s\nworkspaces: [{name: 'a b', ci: c}]");
    assert!(
        errors.iter().any(|e| e.contains("/workspaces/0/name")),
        "{errors:#?}"
    );
}
