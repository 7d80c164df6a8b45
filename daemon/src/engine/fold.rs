//! Near-identical lines folded into one: the answers of one burst (a rate limit, a
//! forge that is down, a pause refusing the requests) fail the same way for every
//! request, so a round's failures that share a reason are one line with their count
//! (`count=N`), the first of them named, and each at debug.

use tracing::Level;

/// The subjects (`what`) of one round of failures or news, grouped by their reason,
/// in the order each reason was first seen.
#[derive(Debug, Default)]
pub struct Folded {
    /// `(reason, [(what, the whole text)])`.
    groups: Vec<(String, Vec<(String, String)>)>,
}

impl Folded {
    /// A forge error about `what`: `URL: reason` (every `ForgeError` is written so),
    /// folded by the reason, which is the same for each request of a burst.
    pub fn add_error(&mut self, what: String, error: &str) {
        let reason = error
            .split_once(": ")
            .map_or(error, |(_url, reason)| reason);
        self.add(what, reason.to_owned(), error.to_owned());
    }

    /// `what` with its `reason`, and `text`, what is said of it alone.
    pub fn add(&mut self, what: String, reason: String, text: String) {
        match self.groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, items)) => items.push((what, text)),
            None => self.groups.push((reason, vec![(what, text)])),
        }
    }

    /// Logs one line per reason at `level` (error, warn, else info): `PREFIX WHAT:
    /// TEXT` for a single one, `PREFIX FIRST and N more: REASON` with `count` for
    /// several (the first in order of `what`; each of them at debug).
    pub fn log(self, level: Level, prefix: &str) {
        for (message, items) in self.lines(prefix) {
            let count = (items.len() > 1).then_some(items.len());
            match level {
                Level::ERROR => tracing::error!(count, "{message}"),
                Level::WARN => tracing::warn!(count, "{message}"),
                _ => tracing::info!(count, "{message}"),
            }
            if count.is_some() {
                for item in items {
                    tracing::debug!("{item}");
                }
            }
        }
    }

    /// Each reason's line, with the lines of its items.
    fn lines(self, prefix: &str) -> Vec<(String, Vec<String>)> {
        self.groups
            .into_iter()
            .map(|(reason, mut items)| {
                items.sort();
                let each: Vec<String> = items
                    .iter()
                    .map(|(what, text)| format!("{prefix}{what}: {text}"))
                    .collect();
                let message = match &items[..] {
                    [(first, _), _, ..] => {
                        format!("{prefix}{first} and {} more: {reason}", items.len() - 1)
                    }
                    _ => each.concat(),
                };
                (message, each)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_one_line_per_reason_naming_the_first_and_the_count() {
        let mut folded = Folded::default();
        for n in [3, 1, 2] {
            let error = format!("http://h:1/repos/a/r{n}/branches/main: rate limited (HTTP 403)");
            folded.add_error(format!("a/r{n} head"), &error);
        }
        folded.add_error(
            "a/gone head".into(),
            "http://h:1/repos/a/gone: not found (HTTP 404)",
        );
        let lines: Vec<_> = folded
            .lines("poll failed: ")
            .into_iter()
            .map(|(message, items)| (message, items.len()))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    "poll failed: a/r1 head and 2 more: rate limited (HTTP 403)".to_owned(),
                    3
                ),
                (
                    "poll failed: a/gone head: http://h:1/repos/a/gone: not found (HTTP 404)"
                        .to_owned(),
                    1
                ),
            ]
        );
    }
}
