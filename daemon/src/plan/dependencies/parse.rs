//! Reads the dependencies a pull/merge request description declares (SPEC §3,
//! notes/autoproj.md §3), compatible with autoproj-daemon: the unchecked task items
//! after the last "Depends on:" header, plus Zuul-style `Depends-On: URL` lines.
//!
//! It exists so that the syntax — upstream's regexes, their quirks and forgewatch's
//! additions (any configured host, cross-forge URLs) — lives in one pure function:
//! a body goes in, references come out, in order of appearance and without
//! duplicates. A reference that cannot be read is returned as
//! [`Reference::Unresolved`] with a reason, never an error. Looking PRs up, and
//! dropping a PR's reference to itself, is the caller's job.
//!
//! The structure (headers, task items, `Depends-On:` lines, finding URLs and their
//! hosts) is autoproj-daemon's and lives here; what a short reference (`#12`,
//! `!12`) or a URL's path means is the forge's, asked of its
//! [`ReferenceSyntax`]: this parser cannot tell forges apart.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use forgewatch_adapters::references::{PrPath, ReferenceError, ReferenceSyntax};
use regex::{Captures, Regex};

/// A pull/merge request identity. `path` is lower-cased (`owner/repo`,
/// `group/sub/project`), host lower-cased without `www.`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PrRef {
    pub host: String,
    pub path: String,
    pub number: u64,
}

impl fmt::Display for PrRef {
    /// `host/path#N`, whatever the forge (used in messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}#{}", self.host, self.path, self.number)
    }
}

/// One declared dependency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Pr(PrRef),
    /// `reference` is the text as written (the trimmed task item, or the value of a
    /// `Depends-On:` line); `reason` says why it could not be read.
    Unresolved {
        reference: String,
        reason: String,
    },
}

/// What the parser needs to know about where the body comes from (`'s`: the
/// forges' syntaxes).
pub struct Context<'a, 's> {
    /// The syntax of the PR's forge: it reads the short forms (`#N`, `!N`, ...).
    pub syntax: &'s dyn ReferenceSyntax,
    /// Its base repository's host.
    pub host: &'a str,
    /// Its base repository's path (lower-cased).
    pub path: &'a str,
    /// The syntax of the configured forge that owns a host (already lower-cased,
    /// `www.` stripped): it reads that host's URLs; `None` = unknown host.
    pub hosts: &'a dyn Fn(&str) -> Option<&'s dyn ReferenceSyntax>,
}

pub(crate) const NOT_A_URL: &str = "not a URL";

/// Upstream's header `(?is)(?:.*depends?(?:\s+on)?\s*:?\s*\n)(.*)` without the greedy
/// prefix: the last match of this one starts where the greedy `.*` stops (no match
/// can start inside another, since nothing after `depend` may contain a `d`), and
/// ends where upstream's capture starts. One linear scan instead of a capture of
/// the whole body.
static HEADER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)depends?(?:\s+on)?\s*:?\s*\n").expect("constant regex"));

/// Upstream's open task item `(?:-\s*\[\s*\]\s*)(.*)`, unanchored as upstream
/// (`scan` on each list line): the reference is the rest of the line after this
/// prefix (found without a capture, which would be slow on a huge line).
static OPEN_TASK: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-\s*\[\s*\]\s*").expect("constant regex"));

/// Zuul style, anywhere in the body.
static DEPENDS_ON_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?im)^[\t ]*depends-on[\t ]*:(.*)$").expect("constant regex"));

/// A token that is a URL by itself: a scheme, or scp-like `user@host:path`
/// (upstream's `GIT_RX`).
static SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9+.\-]*://").expect("constant regex"));
static SCP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9\-_.]+@[A-Za-z0-9\-_.]+:").expect("constant regex"));

/// An http(s) URL anywhere in the text (markdown links, a word before the URL).
static HTTP_URL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(?-u:\b)https?://[^\s<>()\[\]{}"'`]+"#).expect("constant regex")
});

/// The dependencies `body` declares, in order of first appearance, duplicates
/// removed (a PR once; an unresolved text once). `None`, an empty body or one with
/// neither a header nor a `Depends-On:` line declares none.
pub fn parse_dependencies(body: Option<&str>, cx: &Context<'_, '_>) -> Vec<Reference> {
    let Some(body) = body else {
        return Vec::new();
    };
    let body = body.replace("\r\n", "\n");
    let mut found: Vec<(usize, &str, Source)> = task_items(&body)
        .map(|(offset, text)| (offset, text, Source::TaskItem))
        .chain(depends_on_lines(&body).map(|(offset, text)| (offset, text, Source::DependsOn)))
        .collect();
    found.sort_by_key(|(offset, _, _)| *offset);

    let base = Base {
        host: normalise_host(cx.host),
        path: cx.path.to_lowercase(),
    };
    let mut seen_prs = HashSet::new();
    let mut seen_texts = HashSet::new();
    let mut out = Vec::new();
    for (_, text, source) in found {
        match read_reference(text, source, &base, cx) {
            Ok(pr) => {
                if seen_prs.insert(pr.clone()) {
                    out.push(Reference::Pr(pr));
                }
            }
            Err(reason) => {
                if seen_texts.insert(text) {
                    out.push(Reference::Unresolved {
                        reference: text.to_owned(),
                        reason: reason.to_owned(),
                    });
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, Debug)]
enum Source {
    TaskItem,
    DependsOn,
}

/// The PR being read, normalised.
struct Base {
    host: String,
    path: String,
}

/// The unchecked task items after the last header, with the offset of their line.
fn task_items(body: &str) -> impl Iterator<Item = (usize, &str)> {
    let start = HEADER.find_iter(body).last().map(|m| m.end());
    let list = start.map_or("", |start| &body[start..]);
    let base = start.unwrap_or(0);
    list.split('\n')
        .scan(base, |offset, line| {
            let line_offset = *offset;
            *offset += line.len() + 1;
            Some((line_offset, line.trim()))
        })
        .filter(|(_, line)| !line.is_empty())
        .take_while(|(_, line)| line.starts_with('-'))
        .filter_map(|(offset, line)| {
            let text = line[OPEN_TASK.find(line)?.end()..].trim();
            (!text.is_empty()).then_some((offset, text))
        })
}

/// The values of `Depends-On:` lines, with their offset.
fn depends_on_lines(body: &str) -> impl Iterator<Item = (usize, &str)> {
    DEPENDS_ON_LINE.captures_iter(body).filter_map(|captures| {
        let offset = captures.get(0).map_or(0, |m| m.start());
        let value = group(&captures, 1).trim();
        (!value.is_empty()).then_some((offset, value))
    })
}

fn group<'h>(captures: &Captures<'h>, i: usize) -> &'h str {
    captures.get(i).map_or("", |m| m.as_str())
}

/// One reference: a URL is read by the forge owning its host, anything else by the
/// forge of the PR being read (a `Depends-On:` value must be a URL).
fn read_reference(
    text: &str,
    source: Source,
    base: &Base,
    cx: &Context<'_, '_>,
) -> Result<PrRef, String> {
    if let Some(url) = find_url(text) {
        return read_url(url, cx);
    }
    match source {
        Source::DependsOn => Err(NOT_A_URL.to_owned()),
        Source::TaskItem => {
            let found = cx.syntax.short(text, &base.path);
            on_host(base.host.clone(), found)
        }
    }
}

/// The URL a reference names: its first token if that is a URL (any scheme, or
/// scp-like), else the first http(s) URL anywhere in it.
fn find_url(text: &str) -> Option<&str> {
    let first = text.split_whitespace().next()?;
    let first = first.strip_prefix('<').unwrap_or(first);
    let url = if SCHEME.is_match(first) || SCP.is_match(first) {
        first
    } else {
        HTTP_URL.find(text)?.as_str()
    };
    Some(url.trim_end_matches(['>', ')', ']', '.', ',', ';', '!', '?', '"', '\'']))
}

fn read_url(url: &str, cx: &Context<'_, '_>) -> Result<PrRef, String> {
    let (authority, path) = if SCHEME.is_match(url) {
        let rest = url.split_once("://").map_or("", |(_, rest)| rest);
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        rest.split_at(end)
    } else {
        // scp-like `user@host:path`, read as `ssh://user@host/path`.
        url.split_once(':').unwrap_or((url, ""))
    };
    let host = host_of(authority);
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (cx.hosts)(&host) {
        None => Err(format!("unknown host `{host}`")),
        Some(syntax) => {
            let found = syntax.url(&segments);
            on_host(host, found)
        }
    }
}

/// What a forge's syntax read, on `host`.
fn on_host(host: String, found: Result<PrPath, ReferenceError>) -> Result<PrRef, String> {
    found
        .map(|PrPath { path, number }| PrRef { host, path, number })
        .map_err(|e| e.to_string())
}

/// The host of a URL authority: user and port dropped, lower-cased, no `www.`.
fn host_of(authority: &str) -> String {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host_port,
    };
    normalise_host(host)
}

fn normalise_host(host: &str) -> String {
    let host = host.to_lowercase();
    match host.strip_prefix("www.") {
        Some(stripped) => stripped.to_owned(),
        None => host,
    }
}

#[cfg(test)]
mod tests;
