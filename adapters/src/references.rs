//! How a forge's pull requests are referred to in text: the short forms written in
//! its descriptions (`#12`, `owner/repo#12` on GitHub; `!12`, `group/project!12` on
//! GitLab) and the shape of its pull/merge request URLs.
//!
//! It exists so that the daemon's description parser (SPEC §3, the
//! autoproj-daemon "Depends on:" syntax) can read references of any forge without
//! knowing which forge it is: it finds the reference texts and the URLs' hosts, and
//! asks the [`ReferenceSyntax`] of the forge concerned what they name. Each forge
//! module provides its own (`github::references`, `gitlab::references`); every
//! [`crate::forge::Forge`] hands out the one of its forge.

/// The pull request a reference names, on the host of the forge that read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrPath {
    /// The repository (`owner/repo`, `group/sub/project`), lower-cased.
    pub path: String,
    pub number: u64,
}

/// Why a reference names no pull request. The messages are what a user reads next
/// to the reference (the status page, `/api/v1/workspaces/NAME`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// None of the forge's short forms; `forge` is its name ("GitHub").
    #[error("not a {forge} reference")]
    NotAReference { forge: &'static str },
    /// A URL on the forge's host that is not a pull request's; `noun` is the
    /// forge's name for one ("pull request", "merge request").
    #[error("not a {noun} URL")]
    NotAPullRequestUrl { noun: &'static str },
    /// Digits that do not fit a `u64`, or 0.
    #[error("malformed number")]
    MalformedNumber,
}

/// The reference syntax of one forge. Pure: text in, a pull request out.
pub trait ReferenceSyntax: Send + Sync {
    /// A reference that is not a URL, written in a pull request of this forge whose
    /// base repository is `base_path` (lower-cased): `#12`, `other!3`, …
    fn short(&self, text: &str, base_path: &str) -> Result<PrPath, ReferenceError>;

    /// A URL on this forge's host, given as the segments of its path: split on
    /// `/`, empty segments dropped, query and fragment already removed
    /// (`https://github.com//a/b/pull/3#x` → `["a", "b", "pull", "3"]`).
    fn url(&self, segments: &[&str]) -> Result<PrPath, ReferenceError>;
}

/// A pull request number: ASCII digits that fit a `u64`, not 0.
pub(crate) fn parse_number(digits: &str) -> Result<u64, ReferenceError> {
    match digits.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ReferenceError::MalformedNumber),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("007"), Ok(7));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        for bad in ["0", "00", "", "18446744073709551616", "١٢"] {
            assert_eq!(
                parse_number(bad),
                Err(ReferenceError::MalformedNumber),
                "{bad}"
            );
        }
    }

    #[test]
    fn messages() {
        let forge = "GitHub";
        assert_eq!(
            ReferenceError::NotAReference { forge }.to_string(),
            "not a GitHub reference"
        );
        let noun = "merge request";
        assert_eq!(
            ReferenceError::NotAPullRequestUrl { noun }.to_string(),
            "not a merge request URL"
        );
    }
}
