//! Build results as the CI reports them and commit statuses as the forges take
//! them (SPEC §14), in forge- and CI-neutral types: [`BuildState`] (the six states
//! a result or a status can have), [`BuildResult`] (what a CI said of one build)
//! and [`ResultRef`] (which delivery it answers). Each CI's own format is read in
//! its module (`ci::buildbot::reports`, `ci::gitlab_pipeline::events`); each forge's status
//! names are its client's.

pub mod generic;

use serde::{Deserialize, Serialize};

/// Where a build is, as a result says and as a commit status shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildState {
    Pending,
    Running,
    Success,
    Failure,
    Error,
    Cancelled,
}

impl BuildState {
    pub const ALL: [BuildState; 6] = [
        BuildState::Pending,
        BuildState::Running,
        BuildState::Success,
        BuildState::Failure,
        BuildState::Error,
        BuildState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildState::Pending => "pending",
            BuildState::Running => "running",
            BuildState::Success => "success",
            BuildState::Failure => "failure",
            BuildState::Error => "error",
            BuildState::Cancelled => "cancelled",
        }
    }

    /// The state named `name` (as [`BuildState::as_str`] writes it).
    pub fn parse(name: &str) -> Option<BuildState> {
        BuildState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether the build is over (no later result is expected).
    pub fn is_final(self) -> bool {
        !matches!(self, BuildState::Pending | BuildState::Running)
    }
}

impl std::fmt::Display for BuildState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which delivery a result answers: its delivery id, or its build key and
/// fingerprint (either is enough; a CI that keeps our properties sends all three).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRef {
    pub delivery_id: Option<String>,
    pub build_key: Option<String>,
    pub fingerprint: Option<String>,
}

impl ResultRef {
    /// Whether it names a delivery: a delivery id, or a build key with its
    /// fingerprint (empty strings name nothing).
    pub fn names_a_delivery(&self) -> bool {
        let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        given(&self.delivery_id) || (given(&self.build_key) && given(&self.fingerprint))
    }
}

/// Why a CI's report could not be read as a result (each message one bounded
/// line, never the body).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not the kind of object expected (`expected`: `build`, `pipeline event`).
    #[error("not a {expected}: {reason}")]
    Unexpected {
        expected: &'static str,
        reason: String,
    },
    #[error("names no forgewatch delivery (no `delivery_id`, nor `build_key` with `fingerprint`)")]
    NoReference,
}

/// What a CI says of one build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildResult {
    pub state: BuildState,
    /// The CI's page of the build.
    pub url: Option<String>,
    /// One line for people (`failed 'make test'`).
    pub summary: Option<String>,
    /// Unix seconds.
    pub started_at: Option<i64>,
    /// Unix seconds.
    pub finished_at: Option<i64>,
}

/// A result and the delivery it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportedResult {
    pub reference: ResultRef,
    pub result: BuildResult,
}

/// A commit status to set on a forge (SPEC §14): `context` tells forgewatch's
/// statuses apart from the others on the same commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    pub state: BuildState,
    pub target_url: Option<String>,
    /// One line; the forge clients cut it to what the forge takes (GitHub: 140).
    pub description: String,
    pub context: String,
}

/// The most characters of a description either forge takes (GitHub refuses more).
pub const MAX_DESCRIPTION_CHARS: usize = 140;

impl CommitStatus {
    /// The description cut to [`MAX_DESCRIPTION_CHARS`] characters.
    pub fn short_description(&self) -> &str {
        match self.description.char_indices().nth(MAX_DESCRIPTION_CHARS) {
            Some((end, _)) => &self.description[..end],
            None => &self.description,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in BuildState::ALL {
            assert_eq!(BuildState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{state}\"")
            );
        }
        assert_eq!(BuildState::parse("failed"), None);
        assert!(!BuildState::Running.is_final());
        assert!(BuildState::Cancelled.is_final());
    }

    #[test]
    fn descriptions_are_cut_on_a_character_boundary() {
        let status = |description: String| CommitStatus {
            state: BuildState::Success,
            target_url: None,
            description,
            context: "forgewatch/ws".to_owned(),
        };
        let long = status("é".repeat(MAX_DESCRIPTION_CHARS + 5));
        assert_eq!(long.short_description(), "é".repeat(MAX_DESCRIPTION_CHARS));
        let exact = status("a".repeat(MAX_DESCRIPTION_CHARS));
        assert_eq!(exact.short_description(), exact.description);
        assert_eq!(status(String::new()).short_description(), "");
    }
}
