//! Table-driven tests of the dependency syntax: every form of notes/autoproj.md §3,
//! its example body in both a GitHub and a GitLab context, and the edge cases
//! (headers, list ends, CRLF, Unicode, huge bodies).

use std::time::Instant;

use forgewatch_adapters::github::references::GitHubReferences;
use forgewatch_adapters::gitlab::references::GitLabReferences;
use regex::Regex;

use super::*;

/// The forge a body is read on: its syntax, and the host and repository of the
/// test's base PR.
#[derive(Clone, Copy, Debug)]
enum On {
    GitHub,
    GitLab,
}

impl On {
    fn syntax(self) -> &'static dyn ReferenceSyntax {
        match self {
            On::GitHub => &GitHubReferences,
            On::GitLab => &GitLabReferences,
        }
    }
}

// The reasons the forges' syntaxes give, as users read them.
const NOT_GITHUB_REF: &str = "not a GitHub reference";
const NOT_GITLAB_REF: &str = "not a GitLab reference";
const NOT_PR_URL: &str = "not a pull request URL";
const NOT_MR_URL: &str = "not a merge request URL";
const MALFORMED_NUMBER: &str = "malformed number";

const GH_HOST: &str = "github.com";
const GH_PATH: &str = "acme-robotics/base-types";
const GL_HOST: &str = "gitlab.example.org";
const GL_PATH: &str = "sensors/drivers/imu";

fn hosts(host: &str) -> Option<&'static dyn ReferenceSyntax> {
    match host {
        "github.com" | "ghe.acme.internal" => Some(On::GitHub.syntax()),
        "gitlab.example.org" | "gitlab.com" => Some(On::GitLab.syntax()),
        _ => None,
    }
}

fn parse_in(on: On, host: &str, path: &str, body: Option<&str>) -> Vec<Reference> {
    let hosts = &hosts;
    parse_dependencies(
        body,
        &Context {
            syntax: on.syntax(),
            host,
            path,
            hosts,
        },
    )
}

fn parse(on: On, body: Option<&str>) -> Vec<Reference> {
    match on {
        On::GitHub => parse_in(on, GH_HOST, GH_PATH, body),
        On::GitLab => parse_in(on, GL_HOST, GL_PATH, body),
    }
}

fn pr(host: &str, path: &str, number: u64) -> Reference {
    Reference::Pr(PrRef {
        host: host.to_owned(),
        path: path.to_owned(),
        number,
    })
}

fn gh(path: &str, number: u64) -> Reference {
    pr(GH_HOST, path, number)
}

fn gl(path: &str, number: u64) -> Reference {
    pr(GL_HOST, path, number)
}

fn un(reference: &str, reason: &str) -> Reference {
    Reference::Unresolved {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

const EXAMPLE: &str = "Adds the new calibration pipeline.

Depends on:

- [ ] https://github.com/acme-robotics/base-geometry/pull/12
- [ ] https://www.github.com//acme-robotics//base-types//pull//40
- [ ] acme-robotics/package_set#31
- [ ] #57
- [ ] !7
- [ ] lidar-x!9
- [ ] sensors/drivers/lidar-x!11
- [ ] https://gitlab.example.org/sensors/drivers/lidar-x/-/merge_requests/13
- [ ] https://gitlab.example.org/sensors/drivers/lidar-x/merge_requests/14
  - [ ] acme-robotics/base-types#41
- [x] acme-robotics/base-geometry#10

Testing instructions follow here; this line ends the dependency list.
- [ ] #99
";

use On::{GitHub, GitLab};

fn cases() -> Vec<(&'static str, On, &'static str, Vec<Reference>)> {
    let lidar = "sensors/drivers/lidar-x";
    let base = GH_PATH;
    vec![
        // notes §3.3, as written (a GitHub PR on acme-robotics/base-types).
        (
            "example body, GitHub PR",
            GitHub,
            EXAMPLE,
            vec![
                gh("acme-robotics/base-geometry", 12),
                gh(base, 40),
                gh("acme-robotics/package_set", 31),
                gh(base, 57),
                un("!7", NOT_GITHUB_REF),
                un("lidar-x!9", NOT_GITHUB_REF),
                un("sensors/drivers/lidar-x!11", NOT_GITHUB_REF),
                gl(lidar, 13),
                gl(lidar, 14),
                gh(base, 41),
            ],
        ),
        // The same body read from a GitLab MR on sensors/drivers/imu.
        (
            "example body, GitLab MR",
            GitLab,
            EXAMPLE,
            vec![
                gh("acme-robotics/base-geometry", 12),
                gh(base, 40),
                un("acme-robotics/package_set#31", NOT_GITLAB_REF),
                un("#57", NOT_GITLAB_REF),
                gl(GL_PATH, 7),
                gl(lidar, 9),
                gl(lidar, 11),
                gl(lidar, 13),
                gl(lidar, 14),
                un("acme-robotics/base-types#41", NOT_GITLAB_REF),
            ],
        ),
        // --- GitHub forms ---
        (
            "GitHub PR URL, https or http",
            GitHub,
            "Depends on:\n- [ ] https://github.com/acme/geo/pull/3\n\
             - [ ] http://github.com/acme/geo/pull/4\n",
            vec![gh("acme/geo", 3), gh("acme/geo", 4)],
        ),
        (
            "www., repeated slashes, upper case host and path",
            GitHub,
            "Depends on:\n- [ ] HTTPS://WWW.GitHub.com///Acme//Geo///pull//3\n",
            vec![gh("acme/geo", 3)],
        ),
        (
            "trailing /files, query and fragment",
            GitHub,
            "Depends on:\n- [ ] https://github.com/acme/geo/pull/3/files\n\
             - [ ] https://github.com/acme/geo/pull/4?w=1\n\
             - [ ] https://github.com/acme/geo/pull/5#issuecomment-1\n",
            vec![gh("acme/geo", 3), gh("acme/geo", 4), gh("acme/geo", 5)],
        ),
        (
            "/pulls/ and other GitHub pages are not PR URLs",
            GitHub,
            "Depends on:\n- [ ] https://github.com/acme/geo/pulls/3\n\
             - [ ] https://github.com/acme/geo/issues/3\n\
             - [ ] https://github.com/acme/geo\n",
            vec![
                un("https://github.com/acme/geo/pulls/3", NOT_PR_URL),
                un("https://github.com/acme/geo/issues/3", NOT_PR_URL),
                un("https://github.com/acme/geo", NOT_PR_URL),
            ],
        ),
        (
            "user and port in the URL",
            GitHub,
            "Depends on:\n- [ ] https://someone@github.com:443/acme/geo/pull/3\n",
            vec![gh("acme/geo", 3)],
        ),
        (
            "GitHub Enterprise host configured as GitHub",
            GitHub,
            "Depends on:\n- [ ] https://ghe.acme.internal/Robots/Arm/pull/5\n",
            vec![pr("ghe.acme.internal", "robots/arm", 5)],
        ),
        (
            "unknown host",
            GitHub,
            "Depends on:\n- [ ] https://bitbucket.org/acme/geo/pull-requests/2\n",
            vec![un(
                "https://bitbucket.org/acme/geo/pull-requests/2",
                "unknown host `bitbucket.org`",
            )],
        ),
        (
            "owner/repo#N, lower-cased; #N is the same repository",
            GitHub,
            "Depends on:\n- [ ] Acme-Robotics/Base.Geometry_2#8\n- [ ] #8\n",
            vec![gh("acme-robotics/base.geometry_2", 8), gh(base, 8)],
        ),
        (
            "GitHub forms are unanchored: text around is fine",
            GitHub,
            "Depends on:\n- [ ] #12 (the driver fix)\n- [ ] needs acme/geo#3 first\n",
            vec![gh(base, 12), gh("acme/geo", 3)],
        ),
        (
            "owner/repo#N wins over an earlier #N, as upstream",
            GitHub,
            "Depends on:\n- [ ] #5 and acme/geo#6\n",
            vec![gh("acme/geo", 6)],
        ),
        (
            "GitHub PR URL with text around, markdown link, autolink",
            GitHub,
            "Depends on:\n- [ ] https://github.com/acme/geo/pull/3 (geometry)\n\
             - [ ] geometry: https://github.com/acme/geo/pull/4.\n\
             - [ ] [the fix](https://github.com/acme/geo/pull/5)\n\
             - [ ] <https://github.com/acme/geo/pull/6>\n",
            vec![
                gh("acme/geo", 3),
                gh("acme/geo", 4),
                gh("acme/geo", 5),
                gh("acme/geo", 6),
            ],
        ),
        (
            "scp-like URLs (and other schemes) name a repository, not a PR",
            GitHub,
            "Depends on:\n- [ ] git@github.com:acme/geo\n- [ ] git@gitlab.example.org:sensors/x.git\n\
             - [ ] git@elsewhere.org:acme/geo\n- [ ] ssh://git@github.com/acme/geo\n",
            vec![
                un("git@github.com:acme/geo", NOT_PR_URL),
                un("git@gitlab.example.org:sensors/x.git", NOT_MR_URL),
                un("git@elsewhere.org:acme/geo", "unknown host `elsewhere.org`"),
                un("ssh://git@github.com/acme/geo", NOT_PR_URL),
            ],
        ),
        (
            "malformed numbers",
            GitHub,
            "Depends on:\n- [ ] #99999999999999999999999\n- [ ] #0\n- [ ] acme/geo#00\n\
             - [ ] https://github.com/acme/geo/pull/0\n- [ ] #007\n- [ ] #١٢\n",
            vec![
                un("#99999999999999999999999", MALFORMED_NUMBER),
                un("#0", MALFORMED_NUMBER),
                un("acme/geo#00", MALFORMED_NUMBER),
                un("https://github.com/acme/geo/pull/0", MALFORMED_NUMBER),
                gh(base, 7),
                // Arabic-Indic digits are not digits here.
                un("#١٢", NOT_GITHUB_REF),
            ],
        ),
        (
            "duplicates removed, first appearance kept",
            GitHub,
            "Depends on:\n- [ ] acme/geo#3\n- [ ] #4\n- [ ] https://github.com/Acme/Geo/pull/3\n\
             - [ ] acme-robotics/base-types#4\n- [ ] !7\n- [ ] !7\n- [ ] acme/geo#3\n",
            vec![gh("acme/geo", 3), gh(base, 4), un("!7", NOT_GITHUB_REF)],
        ),
        // --- GitLab forms ---
        (
            "GitLab short forms",
            GitLab,
            "Depends on:\n- [ ] !7\n- [ ] lidar-x!9\n- [ ] Sensors/Drivers/Lidar-X!11\n\
             - [ ] top/!12\n",
            vec![gl(GL_PATH, 7), gl(lidar, 9), gl(lidar, 11), gl("top", 12)],
        ),
        (
            "GitLab short forms are anchored",
            GitLab,
            "Depends on:\n- [ ] !7 (driver)\n- [ ] see lidar-x!9\n- [ ] #57\n- [ ] group/proj#3\n",
            vec![
                un("!7 (driver)", NOT_GITLAB_REF),
                un("see lidar-x!9", NOT_GITLAB_REF),
                un("#57", NOT_GITLAB_REF),
                un("group/proj#3", NOT_GITLAB_REF),
            ],
        ),
        (
            "GitLab MR URL suffixes",
            GitLab,
            "Depends on:\n- [ ] https://gitlab.example.org/a/b/-/merge_requests/1/\n\
             - [ ] https://gitlab.example.org/a/b/-/merge_requests/2/diffs\n\
             - [ ] https://gitlab.example.org/a/b/-/merge_requests/3#note_123\n\
             - [ ] https://www.gitlab.example.org//a//b//merge_requests//4?tab=x\n",
            vec![gl("a/b", 1), gl("a/b", 2), gl("a/b", 3), gl("a/b", 4)],
        ),
        (
            "GitLab MR URL, deep project path, any forge reading",
            GitHub,
            "Depends on:\n- [ ] https://gitlab.com/A/B/C/D/-/merge_requests/5\n",
            vec![pr("gitlab.com", "a/b/c/d", 5)],
        ),
        (
            "not GitLab MR URLs",
            GitLab,
            "Depends on:\n- [ ] https://gitlab.example.org/a/b/-/issues/3\n\
             - [ ] https://gitlab.example.org/-/merge_requests/3\n\
             - [ ] https://gitlab.example.org/a/b/-/merge_requests/3x\n\
             - [ ] https://gitlab.example.org/a/b/pull/3\n\
             - [ ] https://github.com/a/b/-/merge_requests/3\n",
            vec![
                un("https://gitlab.example.org/a/b/-/issues/3", NOT_MR_URL),
                un("https://gitlab.example.org/-/merge_requests/3", NOT_MR_URL),
                un(
                    "https://gitlab.example.org/a/b/-/merge_requests/3x",
                    NOT_MR_URL,
                ),
                un("https://gitlab.example.org/a/b/pull/3", NOT_MR_URL),
                un("https://github.com/a/b/-/merge_requests/3", NOT_PR_URL),
            ],
        ),
        (
            "GitLab malformed numbers",
            GitLab,
            "Depends on:\n- [ ] !0\n- [ ] x!99999999999999999999\n\
             - [ ] https://gitlab.example.org/a/b/-/merge_requests/0\n",
            vec![
                un("!0", MALFORMED_NUMBER),
                un("x!99999999999999999999", MALFORMED_NUMBER),
                un(
                    "https://gitlab.example.org/a/b/-/merge_requests/0",
                    MALFORMED_NUMBER,
                ),
            ],
        ),
        // --- Header ---
        (
            "last header wins",
            GitHub,
            "Depends on:\n- [ ] #1\n\nUpdate: this now depends on:\n- [ ] #2\n",
            vec![gh(base, 2)],
        ),
        (
            "header in prose",
            GitHub,
            "This depends on:\n- [ ] #3\n",
            vec![gh(base, 3)],
        ),
        (
            "header: Depend, no colon",
            GitHub,
            "Depend\n- [ ] #1\n",
            vec![gh(base, 1)],
        ),
        (
            "header: DEPENDS ON :",
            GitHub,
            "DEPENDS ON :   \n\n\n   - [ ] #1\n",
            vec![gh(base, 1)],
        ),
        (
            "header: depend on, no colon",
            GitHub,
            "It depend on\n- [ ] #1\n",
            vec![gh(base, 1)],
        ),
        (
            "header with nothing after it",
            GitHub,
            "Depends on:\n",
            vec![],
        ),
        (
            "header at the very end, no line break",
            GitHub,
            "- [ ] #1\nDepends on:",
            vec![],
        ),
        (
            "items on the header line are not seen (and make it no header)",
            GitHub,
            "Depends on: - [ ] #1\n- [ ] #2\n",
            vec![],
        ),
        (
            "a later non-header line does not hide an earlier header",
            GitHub,
            "Depends on:\n- [ ] #1\nIt also depends on: nothing else\n",
            vec![gh(base, 1)],
        ),
        ("no header", GitHub, "Fixes #12.\n- [ ] #13\n", vec![]),
        ("empty body", GitHub, "", vec![]),
        // --- List ---
        (
            "checked items are ignored ([x], [X], [ x ])",
            GitHub,
            "Depends on:\n- [x] #1\n- [X] #2\n- [ x ] #3\n- [ ] #4\n- [  ] #5\n-[] #6\n",
            vec![gh(base, 4), gh(base, 5), gh(base, 6)],
        ),
        (
            "nested items count, blank lines do not end the list",
            GitHub,
            "Depends on:\n- [ ] #1\n    - [ ] #2\n\n\t\t- [ ] #3\n",
            vec![gh(base, 1), gh(base, 2), gh(base, 3)],
        ),
        (
            "prose ends the list",
            GitHub,
            "Depends on:\n- [ ] #1\nThanks!\n- [ ] #2\n",
            vec![gh(base, 1)],
        ),
        (
            "* bullets end the list",
            GitHub,
            "Depends on:\n- [ ] #1\n* [ ] #2\n- [ ] #3\n",
            vec![gh(base, 1)],
        ),
        (
            "+ bullets and numbered lists are not items",
            GitHub,
            "Depends on:\n+ [ ] #1\n",
            vec![],
        ),
        (
            "numbered list",
            GitHub,
            "Depends on:\n1. [ ] #1\n- [ ] #2\n",
            vec![],
        ),
        (
            "- #12 without a checkbox, empty items: no reference, the list goes on",
            GitHub,
            "Depends on:\n- #12\n- [ ]\n- [ ]    \n- [ ] #13\n",
            vec![gh(base, 13)],
        ),
        (
            "the task regex is unanchored in its line, as upstream",
            GitHub,
            "Depends on:\n- [x] done - [ ] #5\n",
            vec![gh(base, 5)],
        ),
        (
            "CRLF line endings",
            GitHub,
            "Intro\r\nDepends on:\r\n\r\n- [ ] #1\r\n- [ ] https://gitlab.example.org/a/b/-/merge_requests/2\r\n\
             Prose\r\n- [ ] #3\r\n",
            vec![gh(base, 1), gl("a/b", 2)],
        ),
        (
            "Unicode around",
            GitHub,
            "Überblick 🚀 — ça dépend\nDépendances — depends on:\n- [ ] #3 — ünïcödé 🎉\n\
             - [ ] 日本語/リポ#4\n- [ ] ✨\nFin ✅\n",
            vec![gh(base, 3), gh(base, 4), un("✨", NOT_GITHUB_REF)],
        ),
        (
            "emoji in titles",
            GitHub,
            "🐛 Fix 🐛\n\nDepends on:\n- [ ] 🐛 acme/geo#5 🎉\n- [ ] 🚀 #6 🚀\n",
            vec![gh("acme/geo", 5), gh(base, 6)],
        ),
        (
            "an emoji between header and colon makes no header",
            GitHub,
            "Depends on:\n- [ ] #1\nDepends on 🙏:\n- [ ] #2\n",
            vec![gh(base, 1)],
        ),
        // --- Depends-On ---
        (
            "Depends-On lines, any case, any forge, no header needed",
            GitHub,
            "Fixes things.\nDepends-On: https://github.com/acme/geo/pull/3\n\
             depends-on:https://gitlab.example.org/a/b/-/merge_requests/4\n\
             \u{20}  DEPENDS-ON :  https://ghe.acme.internal/x/y/pull/5  \n",
            vec![
                gh("acme/geo", 3),
                gl("a/b", 4),
                pr("ghe.acme.internal", "x/y", 5),
            ],
        ),
        (
            "Depends-On needs a URL; an empty one is ignored",
            GitHub,
            "Depends-On: #12\nDepends-On: acme/geo#3\nDepends-On:\n\
             Depends-On: https://x.example/a/b/pull/1\n",
            vec![
                un("#12", NOT_A_URL),
                un("acme/geo#3", NOT_A_URL),
                un("https://x.example/a/b/pull/1", "unknown host `x.example`"),
            ],
        ),
        (
            "Depends-On and the task list, in order of appearance, deduplicated",
            GitLab,
            "Depends-On: https://github.com/acme/geo/pull/1\nDepends on:\n- [ ] !2\n\
             - [ ] https://github.com/acme/geo/pull/1\n\nDepends-On: https://gitlab.example.org/sensors/drivers/imu/-/merge_requests/2\n\
             Depends-On: https://github.com/acme/geo/pull/9\n",
            vec![gh("acme/geo", 1), gl(GL_PATH, 2), gh("acme/geo", 9)],
        ),
        (
            "a Depends-On line ends the task list",
            GitHub,
            "Depends on:\n- [ ] #1\nDepends-On: https://github.com/acme/geo/pull/2\n- [ ] #3\n",
            vec![gh(base, 1), gh("acme/geo", 2)],
        ),
    ]
}

#[test]
fn table() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (name, on, body, expected) in &cases {
        let got = parse(*on, Some(body));
        if &got != expected {
            failures.push(format!(
                "{name}:\n  expected {expected:?}\n  got      {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The header is found as upstream's greedy regex finds it (see [`HEADER`]).
#[test]
fn header_matches_upstream_regex() {
    let upstream = Regex::new(r"(?is)(?:.*depends?(?:\s+on)?\s*:?\s*\n)(.*)").unwrap();
    let mut bodies: Vec<String> = cases()
        .into_iter()
        .map(|(_, _, body, _)| body.replace("\r\n", "\n"))
        .collect();
    bodies.extend(
        [
            "dependepends\n- [ ] #1",
            "depends on on:\n",
            "depends\non\n:\n\n x",
            "Depends on:\n\n  \n",
            "dependſ\nrest",
            "independ\nrest",
            "depend on:depend:\nx",
            "nothing here",
        ]
        .map(str::to_owned),
    );
    for body in &bodies {
        let expected = upstream
            .captures(body)
            .and_then(|c| c.get(1))
            .map(|m| m.start());
        let got = HEADER.find_iter(body).last().map(|m| m.end());
        assert_eq!(got, expected, "{body:?}");
    }
}

#[test]
fn other_contexts() {
    let body = Some("Depends on:\n- [ ] #3\n- [ ] a/b#4\n- [ ] other!5\n");
    // The context's host and path are normalised.
    let got = parse_in(GitHub, "WWW.GitHub.com", "Acme/Geo", body);
    assert_eq!(got[..2], [gh("acme/geo", 3), gh("a/b", 4)]);
    // Short forms in a GitHub Enterprise PR stay on its host.
    let ghe = "ghe.acme.internal";
    let got = parse_in(GitHub, ghe, "x/y", body);
    assert_eq!(got[..2], [pr(ghe, "x/y", 3), pr(ghe, "a/b", 4)]);
    // The sibling of a top-level project.
    let got = parse_in(GitLab, GL_HOST, "lonely", body);
    assert_eq!(got[2], gl("other", 5));
}

#[test]
fn none_body_and_display() {
    assert_eq!(parse(GitHub, None), vec![]);
    assert_eq!(parse(GitLab, None), vec![]);
    let Reference::Pr(r) = gl("a/b/c", 4) else {
        unreachable!()
    };
    assert_eq!(r.to_string(), "gitlab.example.org/a/b/c#4");
}

const MB: usize = 1 << 20;

#[test]
fn one_megabyte_bodies() {
    let mut body = String::from("Depends on:\n");
    for n in 1..=10_000u64 {
        body.push_str(&format!("- [ ] #{n} {}\n", "é".repeat(48)));
    }
    body.push_str("Done.\n");
    assert!(body.len() >= MB, "{}", body.len());
    let started = Instant::now();
    let got = parse(GitHub, Some(&body));
    let expected: Vec<_> = (1..=10_000).map(|n| gh(GH_PATH, n)).collect();
    assert_eq!(got, expected);
    eprintln!("1 MB of items: {:?}", started.elapsed());

    let line = "Lorem ipsum dolor sit amet, it depends — ünïcödé 🚀 #12 acme/x#3\n";
    let mut body = line.repeat(MB / line.len() + 1);
    body.push_str("Depends on:\n- [ ] #7\n");
    body.push_str(&"- [x] #1\n".repeat(10_000));
    let started = Instant::now();
    assert_eq!(parse(GitHub, Some(&body)), vec![gh(GH_PATH, 7)]);
    eprintln!("1 MB of prose: {:?}", started.elapsed());
}

#[test]
fn adversarial_megabytes() {
    let deep = "a/".repeat(MB / 2);
    let bodies = [
        "depends ".repeat(MB / 8),
        "depends on:\n".repeat(MB / 12),
        format!("Depends on:\n{}", "depends".repeat(MB / 7)),
        format!("depends{}x", " ".repeat(MB)),
        format!("Depends on:\n- [ ] {deep}!1\n"),
        format!("Depends on:\n- [ ] https://github.com/{}\n", "/".repeat(MB)),
        "Depends-On: x\n".repeat(MB / 14),
        format!("Depends on:\n{}", "- [ ] ".repeat(MB / 6)),
    ];
    for body in &bodies {
        for on in [GitHub, GitLab] {
            let started = Instant::now();
            let got = parse(on, Some(body));
            eprintln!("{} results in {:?}", got.len(), started.elapsed());
        }
    }
    let got = parse(GitLab, Some(&bodies[4]));
    assert_eq!(got, [gl(deep.trim_end_matches('/'), 1)]);
}
