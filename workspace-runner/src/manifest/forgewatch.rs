//! forgewatch's own manifest format: a YAML or JSON list of
//! `{name, repo, branch}` (SPEC §5 `manifest.format: forgewatch`), for workspaces
//! whose package list comes from a tool other than autoproj.
//!
//! We define this format, so it is read strictly: an unknown or repeated key is a
//! located [`ManifestError::Malformed`]; a missing or empty `name` or `repo`, an
//! empty `branch`, or a name used twice, is [`ManifestError::Invalid`]. `branch` is
//! optional (absent or null: the repository's default branch). JSON needs no separate parser: it is
//! read as YAML (flow style).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::{Entry, Manifest, ManifestError, TopLevel, malformed, parse_document, quoted};

/// One element of the list as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Option<String>,
    repo: Option<String>,
    branch: Option<String>,
}

/// Parses the text of a forgewatch manifest.
pub(super) fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
    let top = parse_document::<RawPackage>(text, path, false)?;
    let found = match top.value {
        TopLevel::Null => {
            return Err(ManifestError::Empty {
                path: path.to_owned(),
            });
        }
        TopLevel::List(items) => return packages(items, path),
        TopLevel::Scalar => "a scalar",
        TopLevel::Mapping => "a mapping",
    };
    Err(malformed(
        path,
        top.referenced.line(),
        top.referenced.column(),
        &format!("expected a list of `{{name, repo, branch}}`, found {found}"),
    ))
}

fn packages(
    items: Vec<serde_saphyr::Spanned<RawPackage>>,
    path: &Path,
) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest::default();
    // Name → index of its first entry.
    let mut seen = HashMap::new();
    for (index, item) in items.into_iter().enumerate() {
        let line = item.referenced.line();
        let invalid = |message: String| ManifestError::Invalid {
            path: path.to_owned(),
            entry: index,
            message: format!("line {line}: {message}"),
        };
        let raw = item.value;
        let name = raw
            .name
            .filter(|name| !name.is_empty())
            .ok_or_else(|| invalid("missing `name`".to_owned()))?;
        let url = raw
            .repo
            .filter(|repo| !repo.is_empty())
            .ok_or_else(|| invalid(format!("package {}: missing `repo`", quoted(&name))))?;
        if let Some(first) = seen.insert(name.clone(), index) {
            return Err(invalid(format!(
                "package {}: name already used by entry [{first}]",
                quoted(&name)
            )));
        }
        if raw.branch.as_deref() == Some("") {
            return Err(invalid(format!(
                "package {}: empty `branch` (leave it out for the default branch)",
                quoted(&name)
            )));
        }
        manifest.entries.push(Entry {
            name,
            url,
            branch: raw.branch,
            package_set: None,
        });
    }
    Ok(manifest)
}
