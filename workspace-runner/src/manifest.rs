//! Manifest readers: a workspace's package list, read from a file that a tool
//! writes (SPEC §5 `manifest`, notes/autoproj.md §1).
//!
//! A workspace can take its packages from a manifest that its update command
//! refreshes (SPEC §12): after each successful update the daemon calls [`read`]
//! again. Reading is pure and knows nothing of forges: URLs come back exactly as
//! written (the daemon turns them into repository identities, notes §5) and
//! `branch: None` means "the repository's default branch" (the daemon asks the
//! forge). Packages that cannot be watched (pinned to a tag or commit, not in git,
//! duplicates) are not errors: they are listed in [`Manifest::skipped`] with the
//! reason, so the daemon can say why a package is not watched.
//!
//! Two formats:
//! - [`Format::Autoproj`]: autoproj's `.autoproj/installation-manifest`, read
//!   leniently because autoproj adds keys over time (see the `autoproj` submodule);
//! - [`Format::Forgewatch`]: our own YAML or JSON list of `{name, repo, branch}`,
//!   read strictly (an unknown key is an error) because we define it.
//!
//! A null or empty document is [`ManifestError::Empty`], while an empty list
//! (`[]`) is a valid manifest without packages: the first is what an interrupted
//! write or a wrong path looks like, the second can only have been written on
//! purpose.

mod autoproj;
mod forgewatch;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, Spanned, UserMessageFormatter};

/// Which kind of file a manifest is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// autoproj's installation manifest (`<root>/.autoproj/installation-manifest`).
    Autoproj,
    /// forgewatch's own list of `{name, repo, branch}` (YAML or JSON).
    Forgewatch,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Autoproj => "autoproj",
            Format::Forgewatch => "forgewatch",
        })
    }
}

/// One watched package (or package set) of a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The package name; for an autoproj package set, `pkg_set:` + its
    /// repository id (the key that names it in overrides, notes §2.2).
    pub name: String,
    /// The git URL as written (autoproj's `github:` shorthand expanded).
    pub url: String,
    /// The tracked branch (may be a full ref); `None`: the repository's default
    /// branch.
    pub branch: Option<String>,
    /// `Some(repository_id)` for an autoproj package set, `None` for a package.
    pub package_set: Option<String>,
}

/// An entry of the manifest that is not watched, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The name the entry would have had as an [`Entry`].
    pub name: String,
    /// Why it is not watched, e.g. `pinned to tag v1.4.0`, `not a git package (svn)`,
    /// `duplicate name`.
    pub reason: String,
}

/// The content of a manifest: watched entries and skipped ones, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    pub skipped: Vec<Skipped>,
}

/// Why a manifest could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file does not exist.
    #[error("{}", missing_message(path, *format))]
    Missing { path: PathBuf, format: Format },
    /// The file exists but cannot be read (permissions, not UTF-8, ...).
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    /// The file is empty, or holds only comments or a null document.
    #[error("{}: the manifest is empty (expected a list of packages)", path.display())]
    Empty { path: PathBuf },
    /// Not valid YAML/JSON, or not shaped like a manifest. `line` and `column` are
    /// 1-based; both are 0 when the parser gives no location.
    #[error("{}", located(path, *line, *column, message))]
    Malformed {
        path: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    /// A scalar at the top level: autoproj's obsolete CSV manifest.
    #[error(
        "{}: this is autoproj's obsolete CSV installation manifest, which forgewatch \
         does not read: run `autoproj envsh` with a current autoproj to rewrite it",
        path.display()
    )]
    ObsoleteCsv { path: PathBuf },
    /// One entry of the list is unusable (no name, a git package without URL...).
    /// `entry` is its 0-based index in the list; `message` starts with its line.
    #[error("{}: entry [{entry}]: {message}", path.display())]
    Invalid {
        path: PathBuf,
        entry: usize,
        message: String,
    },
}

fn missing_message(path: &Path, format: Format) -> String {
    match format {
        Format::Autoproj => format!(
            "{} does not exist: run `autoproj envsh` in the workspace to create it",
            path.display()
        ),
        Format::Forgewatch => format!("{} does not exist", path.display()),
    }
}

fn located(path: &Path, line: u64, column: u64, message: &str) -> String {
    if line == 0 {
        format!("{}: {message}", path.display())
    } else {
        format!("{}:{line}:{column}: {message}", path.display())
    }
}

/// Reads the manifest at `path`.
pub fn read(path: &Path, format: Format) -> Result<Manifest, ManifestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(ManifestError::Missing {
                path: path.to_owned(),
                format,
            });
        }
        Err(source) => {
            return Err(ManifestError::Unreadable {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse(&text, format, path)
}

/// Parses manifest text; `path` is only used in error messages.
pub fn parse(text: &str, format: Format, path: &Path) -> Result<Manifest, ManifestError> {
    match format {
        Format::Autoproj => autoproj::parse(text, path),
        Format::Forgewatch => forgewatch::parse(text, path),
    }
}

/// The top level of a manifest document, whatever it is, so that each format can
/// say what is wrong with a document that is not a list.
enum TopLevel<T> {
    Null,
    Scalar,
    Mapping,
    List(Vec<Spanned<T>>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TopLevel<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for TopVisitor<T> {
            type Value = TopLevel<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of packages")
            }

            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(TopLevel::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(TopLevel::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Self::Value, E> {
                Ok(TopLevel::Scalar)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(TopLevel::Mapping)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(TopLevel::List(items))
            }
        }

        deserializer.deserialize_any(TopVisitor(PhantomData))
    }
}

/// Parses `text` as one YAML (or JSON) document. `lenient`: duplicate keys are
/// accepted, the last one winning (as Ruby's YAML loader does); otherwise they
/// are errors.
fn parse_document<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    lenient: bool,
) -> Result<Spanned<TopLevel<T>>, ManifestError> {
    let duplicate_keys = if lenient {
        DuplicateKeyPolicy::LastWins
    } else {
        DuplicateKeyPolicy::Error
    };
    // Large workspaces with package metadata have many nodes: raise the node and
    // event caps well above the defaults, keep the other protections.
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: duplicate_keys,
        budget: serde_saphyr::budget! { max_nodes: 5_000_000, max_events: 20_000_000 },
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((0, 0), |location| (location.line(), location.column()));
        malformed(
            path,
            line,
            column,
            &UserMessageFormatter.format_message(&err),
        )
    })
}

/// A [`ManifestError::Malformed`], the message made one line.
fn malformed(path: &Path, line: u64, column: u64, message: &str) -> ManifestError {
    ManifestError::Malformed {
        path: path.to_owned(),
        line,
        column,
        message: message
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    }
}

/// `text` in backquotes, control characters escaped: for names in messages.
fn quoted(text: &str) -> String {
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
