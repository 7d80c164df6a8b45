//! The configuration file as written, before any check (first stage of loading).
//!
//! These structs mirror the YAML one to one and exist so that every value keeps the
//! line and column it came from ([`Spanned`]): `validate` needs them to report
//! `file:line:col` for errors that serde cannot see (a CI target that does not exist,
//! a duplicate name, an unreadable token file). Hence the choices below:
//!
//! - every key is optional here, even required ones, so that a missing key is a
//!   located, collected error of `validate` instead of the one error serde stops at;
//! - `kind`-dispatched entries (forges, CI targets) are one struct holding the fields
//!   of every kind, because serde's internally tagged enums lose spans; `validate`
//!   checks that only the fields of the chosen kind are present;
//! - `token`, `secret` and `password` are accepted as [`IgnoredAny`] (the value is
//!   never stored) so that `validate` can refuse inline secrets with a helpful
//!   message; [`INLINE_SECRET_KEYS`] keeps them out of "expected one of" lists;
//! - mappings from a name to an entry are read as [`Entries`], which keeps the
//!   location of each name and the file order.
//!
//! [`parse`] also turns serde's errors into one-line messages that say what was
//! expected (serde-saphyr's own rendering adds a source snippet).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned, UserMessageFormatter};

/// Keys accepted only to be refused with "must not be written inline".
pub(super) const INLINE_SECRET_KEYS: [&str; 5] = [
    "token",
    "secret",
    "password",
    "admin_token",
    "results_secret",
];

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub state_dir: Option<Spanned<String>>,
    pub poll_interval: Option<Spanned<String>>,
    pub max_parallel_updates: Option<Spanned<usize>>,
    pub shutdown_grace: Option<Spanned<String>>,
    pub http_cache_retention: Option<Spanned<String>>,
    pub history: Option<Spanned<RawHistory>>,
    pub delivery: Option<Spanned<RawDelivery>>,
    pub http: Option<Spanned<RawHttp>>,
    pub forges: Option<Entries<Spanned<RawForge>>>,
    pub ci: Option<Entries<Spanned<RawCi>>>,
    pub workspaces: Option<Vec<Spanned<RawWorkspace>>>,
}

/// One entry of `forges`, all kinds together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForge {
    pub kind: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub api_url: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub token_credential: Option<Spanned<String>>,
    pub max_concurrency: Option<Spanned<usize>>,
    pub connect_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    /// A percentage, e.g. `10%`.
    pub rate_limit_reserve: Option<Spanned<String>>,
    pub secondary_limit_wait: Option<Spanned<String>>,
    pub requests_per_minute: Option<Spanned<u32>>,
    pub status_writes_per_minute: Option<Spanned<u32>>,
    pub status_writes_per_hour: Option<Spanned<u32>>,
    pub webhook_secret_env: Option<Spanned<String>>,
    pub webhook_secret_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub webhook_secret_credential: Option<Spanned<String>>,
    /// Refused (inline secret); the value is skipped, never stored.
    pub token: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub secret: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub password: Option<Spanned<IgnoredAny>>,
}

/// `http`: the status API, metrics and webhook receiver.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<Spanned<String>>,
    pub public_url: Option<Spanned<String>>,
    pub admin_token_env: Option<Spanned<String>>,
    pub admin_token_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub admin_token_credential: Option<Spanned<String>>,
    /// Refused (inline secret).
    pub admin_token: Option<Spanned<IgnoredAny>>,
    pub header_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<usize>>,
}

/// `history`: how long deliveries and their results are kept (SPEC §14).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    pub keep: Option<Spanned<String>>,
}

/// `delivery`: retries of failed deliveries.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub retry_initial: Option<Spanned<String>>,
    pub retry_cap: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
}

/// One entry of `ci`, all kinds together.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCi {
    pub kind: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub basic_auth: Option<Spanned<RawBasicAuth>>,
    pub secret_env: Option<Spanned<String>>,
    pub secret_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub secret_credential: Option<Spanned<String>>,
    /// `gitlab_pipeline`: the GitLab forge, project, ref and trigger token.
    pub forge: Option<Spanned<String>>,
    pub project: Option<Spanned<String>>,
    #[serde(rename = "ref")]
    pub git_ref: Option<Spanned<String>>,
    pub token_env: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub token_credential: Option<Spanned<String>>,
    /// `command`: the program and how long it may run.
    pub argv: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
    /// Any kind: the secret its results are authenticated with (SPEC §14).
    pub results_secret_env: Option<Spanned<String>>,
    pub results_secret_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub results_secret_credential: Option<Spanned<String>>,
    /// Refused (inline secret); the value is skipped, never stored.
    pub token: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub secret: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub password: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub results_secret: Option<Spanned<IgnoredAny>>,
}

/// `basic_auth` of a `buildbot` target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    pub user: Option<Spanned<String>>,
    pub password_env: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    /// The name of a systemd credential (`$CREDENTIALS_DIRECTORY/NAME`).
    pub password_credential: Option<Spanned<String>>,
    /// Refused (inline secret); the value is skipped, never stored.
    pub token: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub secret: Option<Spanned<IgnoredAny>>,
    /// Refused (inline secret).
    pub password: Option<Spanned<IgnoredAny>>,
}

/// The inline-secret keys present in an entry, with the location of their value.
pub(super) type InlineSecrets<'a> = [(&'static str, Option<&'a Spanned<IgnoredAny>>); 3];

macro_rules! inline_secrets {
    ($($ty:ty),*) => {$(
        impl $ty {
            pub(super) fn inline_secrets(&self) -> InlineSecrets<'_> {
                [
                    ("token", self.token.as_ref()),
                    ("secret", self.secret.as_ref()),
                    ("password", self.password.as_ref()),
                ]
            }
        }
    )*};
}

inline_secrets!(RawForge, RawCi, RawBasicAuth);

/// One element of `workspaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkspace {
    pub name: Option<Spanned<String>>,
    pub ci: Option<Spanned<String>>,
    pub packages: Option<Vec<Spanned<RawPackage>>>,
    pub manifest: Option<Spanned<RawManifest>>,
    pub update: Option<Spanned<RawUpdate>>,
    pub discover: Option<Spanned<RawDiscover>>,
    pub buildconf: Option<Spanned<RawBuildconf>>,
    pub pull_requests: Option<RawPullRequests>,
    pub report: Option<Spanned<RawReport>>,
}

/// A workspace's `report`: commit statuses on the forges (SPEC §14).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReport {
    pub statuses: Option<Spanned<bool>>,
    pub dependencies: Option<Spanned<bool>>,
    pub context: Option<Spanned<String>>,
}

/// A workspace's `manifest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub format: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
}

/// A workspace's `update`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpdate {
    pub argv: Option<Spanned<Vec<String>>>,
    pub dir: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub kill_grace: Option<Spanned<String>>,
    pub env: Option<Entries<Spanned<String>>>,
    pub when: Option<Vec<Spanned<String>>>,
    pub every: Option<Spanned<String>>,
}

/// A workspace's `discover`: the command that writes the manifest of the
/// configuration with an open config PR applied (SPEC §13).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDiscover {
    pub argv: Option<Spanned<Vec<String>>>,
    pub dir: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub kill_grace: Option<Spanned<String>>,
    pub env: Option<Entries<Spanned<String>>>,
}

/// A workspace's `buildconf`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuildconf {
    pub repo: Option<Spanned<String>>,
    pub branch: Option<Spanned<String>>,
}

/// One element of a workspace's `packages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPackage {
    pub name: Option<Spanned<String>>,
    pub repo: Option<Spanned<String>>,
    pub branch: Option<Spanned<String>>,
}

/// A workspace's `pull_requests`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPullRequests {
    pub enabled: Option<Spanned<bool>>,
    pub pr_ref: Option<Spanned<String>>,
    pub include_drafts: Option<Spanned<bool>>,
    pub stale_after: Option<Spanned<String>>,
    pub skip_labels: Option<Vec<String>>,
    pub rebuild_on_base_change: Option<Spanned<bool>>,
    pub trust: Option<Spanned<RawTrust>>,
}

/// `pull_requests.trust`: whose pull requests are built without a maintainer's label.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrust {
    pub authors: Option<Vec<String>>,
    pub author_associations: Option<Vec<Spanned<String>>>,
    pub same_repository: Option<Spanned<bool>>,
    pub approve_label: Option<Spanned<String>>,
}

/// A YAML mapping from names to entries, in file order, each name with its location.
/// (Duplicate names are already a syntax error of the YAML reader.)
#[derive(Debug)]
pub(super) struct Entries<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping from names to entries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}

/// Reads the file; a syntax or type error is `(line, column, message)`, `(0, 0, _)`
/// when the location is unknown.
pub(super) fn parse(text: &str) -> Result<Spanned<RawConfig>, (u32, u32, String)> {
    let options = serde_saphyr::options! { with_snippet: false };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), line_col);
        (line, column, serde_message(&e))
    })
}

/// A location as `(line, column)`, 1-based.
pub(super) fn line_col(location: Location) -> (u32, u32) {
    let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    (clamp(location.line()), clamp(location.column()))
}

/// `text` in backquotes, control characters escaped.
pub(super) fn q(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('`');
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

/// The message of a serde error: one line, no snippet, saying what was expected.
fn serde_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error;
    let mut err = err;
    while let Error::AliasError { error, .. } | Error::WithSnippet { error, .. } = err {
        err = error;
    }
    match err {
        Error::SerdeUnknownField {
            field, expected, ..
        } => unknown_field_message(field, expected),
        Error::InvalidScalar { ty, .. } => match *ty {
            t if t.starts_with('u') => "invalid value: expected a non-negative integer".into(),
            t if t.starts_with('i') => "invalid value: expected an integer".into(),
            "bool" | "boolean" => "invalid value: expected `true` or `false`".into(),
            t => format!("invalid value: expected a {t}"),
        },
        Error::Unexpected { expected, .. } => match *expected {
            "string scalar" => "expected a string".into(),
            "sequence start" => "expected a list".into(),
            "mapping start" => "expected a mapping".into(),
            other => format!("expected {other}"),
        },
        other => UserMessageFormatter
            .format_message(other)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    }
}

fn unknown_field_message(field: &str, expected: &[&str]) -> String {
    let expected: Vec<String> = expected
        .iter()
        .filter(|name| !INLINE_SECRET_KEYS.contains(name))
        .map(|name| q(name))
        .collect();
    let mut message = match expected.as_slice() {
        [] => format!("unknown field {}: no key is accepted here", q(field)),
        [one] => format!("unknown field {}, expected {one}", q(field)),
        many => format!(
            "unknown field {}, expected one of {}",
            q(field),
            many.join(", ")
        ),
    };
    if field == "tag" || field == "commit" {
        message.push_str(" (a tag or commit is not watched: give `branch`)");
    }
    message
}
