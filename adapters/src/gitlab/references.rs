//! GitLab's way of referring to merge requests, as autoproj-daemon reads it
//! (notes/autoproj.md §3): `!N` (same project), `PROJECT!N` (a sibling in the same
//! namespace), `GROUP/SUB/PROJECT!N`, each anchored on the whole reference; and
//! `https://HOST/PATH/-/merge_requests/N` URLs (also without the `-`), optionally
//! followed by a tab (`/diffs`, …).

use std::sync::LazyLock;

use regex::Regex;

use crate::references::{PrPath, ReferenceError, ReferenceSyntax, parse_number};

/// GitLab's [`ReferenceSyntax`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GitLabReferences;

// Anchored on the trimmed reference and tried in this order. `!` is in none of the
// path classes, so a match splits at the last `!`.
static SAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^!([0-9]+)$").expect("constant regex"));
static SIBLING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([A-Za-z0-9\-_.]+)!([0-9]+)$").expect("constant regex"));
static FULL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^((?:[A-Za-z0-9\-_.]+/?)+)!([0-9]+)$").expect("constant regex"));

/// Merge-request tabs that may follow the number in a URL.
const MR_TABS: [&str; 3] = ["diffs", "commits", "pipelines"];

const NOT_A_REFERENCE: ReferenceError = ReferenceError::NotAReference { forge: "GitLab" };
const NOT_AN_MR_URL: ReferenceError = ReferenceError::NotAPullRequestUrl {
    noun: "merge request",
};

impl ReferenceSyntax for GitLabReferences {
    /// `!N`, `PROJECT!N`, `GROUP/SUB/PROJECT!N`; nothing around.
    fn short(&self, text: &str, base_path: &str) -> Result<PrPath, ReferenceError> {
        let (prefix, number) = text.rsplit_once('!').unwrap_or(("", ""));
        let path = if SAME.is_match(text) {
            base_path.to_owned()
        } else if SIBLING.is_match(text) {
            let name = prefix.to_lowercase();
            match base_path.rsplit_once('/') {
                Some((namespace, _)) => format!("{namespace}/{name}"),
                None => name,
            }
        } else if FULL.is_match(text) {
            prefix.trim_end_matches('/').to_lowercase()
        } else {
            return Err(NOT_A_REFERENCE);
        };
        Ok(PrPath {
            path,
            number: parse_number(number)?,
        })
    }

    /// `PATH/-/merge_requests/N` or `PATH/merge_requests/N`, optionally followed
    /// by a tab (a trailing `/`, a query or a fragment such as `#note_…` are gone
    /// from the segments already).
    fn url(&self, segments: &[&str]) -> Result<PrPath, ReferenceError> {
        let segments = match segments.split_last() {
            Some((last, rest)) if MR_TABS.contains(last) => rest,
            _ => segments,
        };
        let [project @ .., "merge_requests", number] = segments else {
            return Err(NOT_AN_MR_URL);
        };
        let project = match project.split_last() {
            Some((&"-", rest)) => rest,
            _ => project,
        };
        if project.is_empty() || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NOT_AN_MR_URL);
        }
        Ok(PrPath {
            path: project.join("/").to_lowercase(),
            number: parse_number(number)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mr(path: &str, number: u64) -> Result<PrPath, ReferenceError> {
        Ok(PrPath {
            path: path.to_owned(),
            number,
        })
    }

    #[test]
    fn short_forms() {
        let syntax = GitLabReferences;
        let base = "sensors/drivers/imu";
        let cases = [
            ("!7", mr(base, 7)),
            ("lidar-x!9", mr("sensors/drivers/lidar-x", 9)),
            (
                "Sensors/Drivers/Lidar-X!11",
                mr("sensors/drivers/lidar-x", 11),
            ),
            ("top/!12", mr("top", 12)),
            ("!0", Err(ReferenceError::MalformedNumber)),
            (
                "x!99999999999999999999",
                Err(ReferenceError::MalformedNumber),
            ),
            ("!7 (driver)", Err(NOT_A_REFERENCE)),
            ("see lidar-x!9", Err(NOT_A_REFERENCE)),
            ("#57", Err(NOT_A_REFERENCE)),
            ("group/proj#3", Err(NOT_A_REFERENCE)),
        ];
        for (text, expected) in cases {
            assert_eq!(syntax.short(text, base), expected, "{text:?}");
        }
        // The sibling of a top-level project.
        assert_eq!(syntax.short("other!5", "lonely"), mr("other", 5));
        assert_eq!(NOT_A_REFERENCE.to_string(), "not a GitLab reference");
    }

    #[test]
    fn urls() {
        let syntax = GitLabReferences;
        let cases: [(&[&str], _); 9] = [
            (&["A", "B", "-", "merge_requests", "1"], mr("a/b", 1)),
            (&["a", "b", "merge_requests", "2"], mr("a/b", 2)),
            (
                &["a", "b", "-", "merge_requests", "3", "diffs"],
                mr("a/b", 3),
            ),
            (
                &["a", "b", "c", "d", "-", "merge_requests", "4"],
                mr("a/b/c/d", 4),
            ),
            (
                &["a", "b", "-", "merge_requests", "0"],
                Err(ReferenceError::MalformedNumber),
            ),
            (&["a", "b", "-", "merge_requests", "3x"], Err(NOT_AN_MR_URL)),
            (&["-", "merge_requests", "3"], Err(NOT_AN_MR_URL)),
            (&["a", "b", "-", "issues", "3"], Err(NOT_AN_MR_URL)),
            (&["a", "b", "pull", "3"], Err(NOT_AN_MR_URL)),
        ];
        for (segments, expected) in cases {
            assert_eq!(syntax.url(segments), expected, "{segments:?}");
        }
        assert_eq!(NOT_AN_MR_URL.to_string(), "not a merge request URL");
    }
}
