//! The inputs of a build, their canonical serialisation and fingerprint (SPEC §2),
//! and the human-readable difference between two input sets (the REASON of
//! `forgewatch once`).
//!
//! The same versioned JSON is hashed and persisted, so the last delivered inputs can
//! be compared with the current ones after a restart.

use serde::{Deserialize, Serialize};

use crate::plan::ids::Fingerprint;

/// Everything that decides whether a build must run again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BuildInputs {
    Mainline { packages: Vec<PackageHead> },
    PullRequest(PullRequestInputs),
}

/// One watched package of a workspace and the head of its branch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PackageHead {
    pub name: String,
    /// Repository identity, `host/path`.
    pub repository: String,
    pub branch: String,
    pub head: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestInputs {
    /// `host/path#number`.
    pub id: String,
    pub head_sha: String,
    pub base_branch: String,
    pub draft: bool,
    /// `head` or `merge`.
    pub test_ref: String,
    /// Sorted; empty until dependencies are resolved.
    pub dependencies: Vec<DependencyInput>,
    /// `(package key, ref)` pairs, sorted.
    pub overrides: Vec<(String, String)>,
    /// The base branch's head, only with `rebuild_on_base_change` (absent from the
    /// canonical form otherwise, so existing fingerprints do not change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DependencyInput {
    pub id: String,
    pub head_sha: String,
    pub draft: bool,
}

/// The persisted and hashed form. Changing [`BuildInputs`] means a new version here.
#[derive(Serialize)]
struct Versioned<'a> {
    version: u32,
    inputs: &'a BuildInputs,
}

/// [`Versioned`] read back: the version first, the inputs only if it is ours.
#[derive(Deserialize)]
struct Stored {
    version: u32,
    inputs: serde_json::Value,
}

const INPUTS_VERSION: u32 = 1;

impl BuildInputs {
    /// Sorts every list, so equal inputs serialise identically.
    pub fn mainline(mut packages: Vec<PackageHead>) -> BuildInputs {
        packages.sort();
        BuildInputs::Mainline { packages }
    }

    /// The canonical serialisation: compact JSON, fields in declaration order,
    /// lists sorted by construction.
    pub fn canonical(&self) -> String {
        let versioned = Versioned {
            version: INPUTS_VERSION,
            inputs: self,
        };
        // Serialising plain strings, bools and vectors cannot fail.
        serde_json::to_string(&versioned).unwrap_or_else(|e| unreachable!("{e}"))
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_bytes(self.canonical().as_bytes())
    }

    /// Reads inputs persisted by [`BuildInputs::canonical`]; `None` for another version.
    pub fn from_stored(text: &str) -> Option<BuildInputs> {
        let stored: Stored = serde_json::from_str(text).ok()?;
        if stored.version != INPUTS_VERSION {
            return None;
        }
        serde_json::from_value(stored.inputs).ok()
    }
}

fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// What changed between the last delivered inputs and the current ones, for people.
pub fn change_reason(previous: Option<&BuildInputs>, current: &BuildInputs) -> String {
    match (previous, current) {
        (None, BuildInputs::Mainline { .. }) => "first delivery".to_owned(),
        (None, BuildInputs::PullRequest(_)) => "new PR".to_owned(),
        (
            Some(BuildInputs::Mainline { packages: old }),
            BuildInputs::Mainline { packages: new },
        ) => mainline_reason(old, new),
        (Some(BuildInputs::PullRequest(old)), BuildInputs::PullRequest(new)) => pr_reason(old, new),
        (Some(_), _) => "build kind changed".to_owned(),
    }
}

fn mainline_reason(old: &[PackageHead], new: &[PackageHead]) -> String {
    let mut parts = Vec::new();
    for n in new {
        match old.iter().find(|o| o.name == n.name) {
            None => parts.push(format!("{} added", n.name)),
            Some(o) if o.repository != n.repository || o.branch != n.branch => parts.push(format!(
                "{} {}@{}→{}@{}",
                n.name, o.repository, o.branch, n.repository, n.branch
            )),
            Some(o) if o.head != n.head => {
                parts.push(format!("{} {}→{}", n.name, short(&o.head), short(&n.head)));
            }
            Some(_) => {}
        }
    }
    for o in old {
        if !new.iter().any(|n| n.name == o.name) {
            parts.push(format!("{} removed", o.name));
        }
    }
    if parts.is_empty() {
        "inputs changed".to_owned()
    } else {
        parts.join(", ")
    }
}

fn pr_reason(old: &PullRequestInputs, new: &PullRequestInputs) -> String {
    let mut parts = Vec::new();
    if old.head_sha != new.head_sha {
        parts.push(format!(
            "head {}→{}",
            short(&old.head_sha),
            short(&new.head_sha)
        ));
    }
    if old.base_branch != new.base_branch {
        parts.push(format!("base {}→{}", old.base_branch, new.base_branch));
    }
    if old.draft != new.draft {
        parts.push(
            if new.draft {
                "ready→draft"
            } else {
                "draft→ready"
            }
            .to_owned(),
        );
    }
    if old.test_ref != new.test_ref {
        parts.push(format!("ref {}→{}", old.test_ref, new.test_ref));
    }
    for dep in &new.dependencies {
        match old.dependencies.iter().find(|d| d.id == dep.id) {
            None => parts.push(format!("dependency {} added", dep.id)),
            Some(d) if d != dep => parts.push(format!("dependency {} moved", dep.id)),
            Some(_) => {}
        }
    }
    for dep in &old.dependencies {
        if !new.dependencies.iter().any(|d| d.id == dep.id) {
            parts.push(format!("dependency {} removed", dep.id));
        }
    }
    // Overrides follow the refs and dependencies above; name them only when they
    // changed on their own (the workspace's packages changed).
    if parts.is_empty() && old.overrides != new.overrides {
        parts.push("overrides changed".to_owned());
    }
    if old.base_sha != new.base_sha {
        parts.push("base moved".to_owned());
    }
    if parts.is_empty() {
        "inputs changed".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(name: &str, sha: &str) -> PackageHead {
        PackageHead {
            name: name.into(),
            repository: format!("github.com/acme/{name}"),
            branch: "main".into(),
            head: sha.into(),
        }
    }

    #[test]
    fn order_of_packages_does_not_matter() {
        let a = BuildInputs::mainline(vec![head("a", "1"), head("b", "2")]);
        let b = BuildInputs::mainline(vec![head("b", "2"), head("a", "1")]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert_ne!(
            a.fingerprint(),
            BuildInputs::mainline(vec![head("a", "1"), head("b", "3")]).fingerprint()
        );
    }

    #[test]
    fn canonical_form_is_pinned() {
        // The fingerprint of existing deployments depends on this exact text.
        let a = BuildInputs::mainline(vec![head("a", "1")]);
        assert_eq!(
            a.canonical(),
            r#"{"version":1,"inputs":{"kind":"mainline","packages":[{"name":"a","repository":"github.com/acme/a","branch":"main","head":"1"}]}}"#
        );
        assert_eq!(BuildInputs::from_stored(&a.canonical()), Some(a));
        assert_eq!(
            BuildInputs::from_stored(r#"{"version":2,"inputs":{}}"#),
            None
        );
    }

    #[test]
    fn reasons_name_the_changed_inputs() {
        let old = BuildInputs::mainline(vec![head("pkg/a", "a1b2c3d4"), head("pkg/c", "c")]);
        let new = BuildInputs::mainline(vec![head("pkg/a", "e4f5a6b7"), head("pkg/b", "b")]);
        assert_eq!(change_reason(None, &new), "first delivery");
        assert_eq!(
            change_reason(Some(&old), &new),
            "pkg/a a1b2c3d→e4f5a6b, pkg/b added, pkg/c removed"
        );
        let pr = |sha: &str, draft: bool| {
            BuildInputs::PullRequest(PullRequestInputs {
                id: "github.com/acme/a#1".into(),
                head_sha: sha.into(),
                base_branch: "main".into(),
                draft,
                test_ref: "head".into(),
                dependencies: vec![],
                overrides: vec![],
                base_sha: None,
            })
        };
        assert_eq!(change_reason(None, &pr("1234567890", false)), "new PR");
        assert_eq!(
            change_reason(Some(&pr("1234567890", true)), &pr("abcdef1234", false)),
            "head 1234567→abcdef1, draft→ready"
        );
    }
}
