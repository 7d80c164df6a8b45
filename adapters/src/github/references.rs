//! GitHub's way of referring to pull requests, as autoproj-daemon reads it
//! (notes/autoproj.md §3): `OWNER/REPO#N` and `#N` (same repository), unanchored
//! and tried in that order as upstream does, and `https://HOST/OWNER/REPO/pull/N…`
//! URLs (github.com and Enterprise hosts alike).

use std::sync::LazyLock;

use regex::{Captures, Regex};

use crate::references::{PrPath, ReferenceError, ReferenceSyntax, parse_number};

/// GitHub's [`ReferenceSyntax`].
#[derive(Clone, Copy, Debug, Default)]
pub struct GitHubReferences;

// Unanchored and tried in this order, as upstream. Digits are ASCII only (`\d`
// would accept other scripts' digits).
static OWNER_REPO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"([A-Za-z0-9+_\-.]+)/([A-Za-z0-9+_\-.]+)#([0-9]+)").expect("constant regex")
});
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"#([0-9]+)").expect("constant regex"));

const NOT_A_REFERENCE: ReferenceError = ReferenceError::NotAReference { forge: "GitHub" };
const NOT_A_PR_URL: ReferenceError = ReferenceError::NotAPullRequestUrl {
    noun: "pull request",
};

impl ReferenceSyntax for GitHubReferences {
    /// `OWNER/REPO#N`, then `#N` (same repository); text around is fine.
    fn short(&self, text: &str, base_path: &str) -> Result<PrPath, ReferenceError> {
        if let Some(c) = OWNER_REPO.captures(text) {
            Ok(PrPath {
                path: format!("{}/{}", group(&c, 1), group(&c, 2)).to_lowercase(),
                number: parse_number(group(&c, 3))?,
            })
        } else if let Some(c) = NUMBER.captures(text) {
            Ok(PrPath {
                path: base_path.to_owned(),
                number: parse_number(group(&c, 1))?,
            })
        } else {
            Err(NOT_A_REFERENCE)
        }
    }

    /// `OWNER/REPO/pull/N…`: trailing text and segments are fine (upstream's
    /// unanchored regex: `/pull/3/files`, `/pull/4x`), `/pulls/` is not.
    fn url(&self, segments: &[&str]) -> Result<PrPath, ReferenceError> {
        let [owner, repo, "pull", number, ..] = segments else {
            return Err(NOT_A_PR_URL);
        };
        let digits = leading_digits(number);
        if !is_name(owner) || !is_name(repo) || digits.is_empty() {
            return Err(NOT_A_PR_URL);
        }
        Ok(PrPath {
            path: format!("{owner}/{repo}").to_lowercase(),
            number: parse_number(digits)?,
        })
    }
}

fn group<'h>(captures: &Captures<'h>, i: usize) -> &'h str {
    captures.get(i).map_or("", |m| m.as_str())
}

/// An owner or repository name as upstream's URL regex reads it.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'_' | b'-' | b'.'))
}

fn leading_digits(s: &str) -> &str {
    let end = s
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(s.len());
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(path: &str, number: u64) -> Result<PrPath, ReferenceError> {
        Ok(PrPath {
            path: path.to_owned(),
            number,
        })
    }

    #[test]
    fn short_forms() {
        let syntax = GitHubReferences;
        let base = "acme/base";
        let cases = [
            ("#12", pr(base, 12)),
            ("#12 (the driver fix)", pr(base, 12)),
            ("Acme/Geo.x_2#3", pr("acme/geo.x_2", 3)),
            ("needs acme/geo#3 first", pr("acme/geo", 3)),
            // The owner/repo form wins over an earlier `#N`, as upstream.
            ("#5 and acme/geo#6", pr("acme/geo", 6)),
            ("#007", pr(base, 7)),
            ("#0", Err(ReferenceError::MalformedNumber)),
            (
                "#99999999999999999999999",
                Err(ReferenceError::MalformedNumber),
            ),
            ("!7", Err(NOT_A_REFERENCE)),
            ("#١٢", Err(NOT_A_REFERENCE)),
            ("", Err(NOT_A_REFERENCE)),
        ];
        for (text, expected) in cases {
            assert_eq!(syntax.short(text, base), expected, "{text:?}");
        }
        assert_eq!(NOT_A_REFERENCE.to_string(), "not a GitHub reference");
    }

    #[test]
    fn urls() {
        let syntax = GitHubReferences;
        let cases: [(&[&str], _); 8] = [
            (&["Acme", "Geo", "pull", "3"], pr("acme/geo", 3)),
            (&["acme", "geo", "pull", "3", "files"], pr("acme/geo", 3)),
            (&["acme", "geo", "pull", "4x"], pr("acme/geo", 4)),
            (
                &["acme", "geo", "pull", "0"],
                Err(ReferenceError::MalformedNumber),
            ),
            (&["acme", "geo", "pulls", "3"], Err(NOT_A_PR_URL)),
            (&["acme", "geo", "pull", "x3"], Err(NOT_A_PR_URL)),
            (&["a", "b", "-", "merge_requests", "3"], Err(NOT_A_PR_URL)),
            (&["ac:me", "geo", "pull", "3"], Err(NOT_A_PR_URL)),
        ];
        for (segments, expected) in cases {
            assert_eq!(syntax.url(segments), expected, "{segments:?}");
        }
        assert_eq!(NOT_A_PR_URL.to_string(), "not a pull request URL");
    }
}
