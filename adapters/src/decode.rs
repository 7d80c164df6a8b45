//! Decoding forge answers: errors on one bounded line, and lists read item by item
//! so that garbage in one pull request is confined to it (SPEC: forge garbage is
//! confined to that item).

use crate::forge::ForgeError;
use crate::http::{Page, one_line};

/// A decoding error for `url`, its message on one bounded line.
pub fn decode_error(url: &str, e: &serde_json::Error) -> ForgeError {
    ForgeError::Decode {
        url: url.to_owned(),
        message: one_line(&e.to_string(), 300),
    }
}

/// Parses a JSON list page into its items, so that each item can be decoded (and
/// refused) on its own. Invalid UTF-8 is replaced first, so a broken byte in one
/// item does not fail the whole page.
pub fn list_items(url: &str, body: &[u8]) -> Result<Vec<serde_json::Value>, ForgeError> {
    let text = String::from_utf8_lossy(body);
    serde_json::from_str(&text).map_err(|e| decode_error(url, &e))
}

/// Every page's items read as `T` and converted to pull requests; an item that is
/// garbage (unreadable, or refused by `convert`) is skipped with a warning, the
/// others are kept. Sorted by number, duplicates (a PR moving between pages)
/// removed.
pub fn pull_requests_of<T: serde::de::DeserializeOwned>(
    url: &str,
    pages: &[Page],
    what: &str,
    convert: impl Fn(T) -> Result<crate::forge::PullRequest, String>,
) -> Result<Vec<crate::forge::PullRequest>, ForgeError> {
    let mut pulls = Vec::new();
    for page in pages {
        for item in list_items(url, &page.body)? {
            match serde_json::from_value::<T>(item)
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(&convert)
            {
                Ok(pr) => pulls.push(pr),
                Err(message) => tracing::warn!(%url, "skipping a {what}: {message}"),
            }
        }
    }
    pulls.sort_by_key(|p| p.number);
    pulls.dedup_by_key(|p| p.number);
    Ok(pulls)
}
