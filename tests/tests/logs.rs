//! End-to-end: the daemon's log as journald and a log file get it. No ANSI colours
//! unless stderr is a terminal (whatever `TERM` says); under journald
//! (`JOURNAL_STREAM` naming stderr) each line starts with its syslog priority; fields
//! print their values, not their `Debug` forms; and the near-identical warnings of
//! one burst (a rate limit answering every request of a round, the mergeability
//! requests a pause refuses) are one line with a count.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Stdio;

use forgewatch_tests::fake_github::NewPr;
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";

/// `gh` watches `acme/app` and `acme/gone`, which does not exist: a `once` logs a
/// warning (the 404) and info lines.
fn app_and_gone(env: &Env) {
    env.github.create_repo("acme/app", MAIN);
    env.configure(&[Ws {
        name: "gh",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN), ("gone", "acme/gone", MAIN)],
        pull_requests: false,
    }]);
}

/// `DEVICE:INODE` of a file, as systemd writes `JOURNAL_STREAM`.
fn identity(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Runs `forgewatch ARGS` with its stderr going to the file `name` in the test
/// directory and `vars` set (`None`: removed); returns its exit code and what it
/// wrote there.
async fn run_to_file(
    env: &Env,
    name: &str,
    args: &[&str],
    vars: &[(&str, Option<&str>)],
) -> (Option<i32>, String) {
    let path = env.dir.path().join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut cmd = env.command(args);
    cmd.stderr(Stdio::from(file)).stdout(Stdio::null());
    for (key, value) in vars {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let status = tokio::time::timeout(DEADLINE, cmd.status())
        .await
        .unwrap()
        .unwrap();
    (status.code(), std::fs::read_to_string(&path).unwrap())
}

/// [`run_to_file`] of a command that succeeds: what it wrote.
async fn stderr_in_file(
    env: &Env,
    name: &str,
    args: &[&str],
    vars: &[(&str, Option<&str>)],
) -> String {
    let (code, text) = run_to_file(env, name, args, vars).await;
    assert_eq!(code, Some(0), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_carry_no_colours_whatever_term_says() {
    let env = Env::new().await;
    app_and_gone(&env);
    for term in ["xterm-256color", "dumb"] {
        let vars = [
            ("TERM", Some(term)),
            ("NO_COLOR", None),
            ("JOURNAL_STREAM", None),
        ];
        let text = stderr_in_file(&env, &format!("{term}.log"), &["once"], &vars).await;
        assert!(text.contains(" WARN "), "{term}: {text}");
        assert!(!text.contains('\x1b'), "{term}: {text}");
    }
}

/// The priority a line starts with (`<4>` → 4), and the rest.
fn priority(line: &str) -> (Option<u8>, &str) {
    let parsed = line.strip_prefix('<').and_then(|rest| {
        let (n, rest) = rest.split_once('>')?;
        Some((n.parse().ok()?, rest))
    });
    parsed.map_or((None, line), |(n, rest)| (Some(n), rest))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_journald_each_line_starts_with_its_syslog_priority() {
    let env = Env::new().await;
    app_and_gone(&env);
    let path = env.dir.path().join("journal.log");
    std::fs::File::create(&path).unwrap();
    let journal = identity(&path);

    for format in ["human", "json"] {
        let args = ["--log-format", format, "once"];
        let vars = [("JOURNAL_STREAM", Some(journal.as_str()))];
        // The same file: its identity is the one named.
        let text = stderr_in_file(&env, "journal.log", &args, &vars).await;
        let mut seen = Vec::new();
        for line in text.lines() {
            let (priority, rest) = priority(line);
            let level = if format == "json" {
                let value: serde_json::Value =
                    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{e}: {line}"));
                value["level"].as_str().unwrap().to_owned()
            } else {
                rest.split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned()
            };
            let expected = match level.as_str() {
                "ERROR" => 3,
                "WARN" => 4,
                "INFO" => 6,
                _ => 7,
            };
            assert_eq!(priority, Some(expected), "{format}: {line}");
            seen.push(expected);
        }
        assert!(
            seen.contains(&4) && seen.contains(&6),
            "{format}: warnings and info lines: {text}"
        );
    }

    // Inherited by a process whose stderr is another file: no prefix.
    let elsewhere = identity(&env.config_path());
    let vars = [("JOURNAL_STREAM", Some(elsewhere.as_str()))];
    let text = stderr_in_file(&env, "other.log", &["once"], &vars).await;
    assert!(text.contains(" WARN "), "{text}");
    assert!(text.lines().all(|l| !l.starts_with('<')), "{text}");

    // The errors that end a command are errors too: a configuration refused.
    std::fs::write(env.config_path(), "poll_interval: soon\n").unwrap();
    let vars = [("JOURNAL_STREAM", Some(journal.as_str()))];
    let (code, text) = run_to_file(&env, "journal.log", &["check"], &vars).await;
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("invalid duration `soon`"), "{text}");
    assert!(text.lines().all(|l| l.starts_with("<3>")), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_fields_print_their_values_not_their_debug_forms() {
    let env = Env::new().await;
    app_and_gone(&env);
    let run = env.forgewatch(&["once"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("forge requests"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    // The fake GitHub's budget with a token: 5000, less what the last answer seen
    // had spent (one or both heads).
    let remaining = line
        .split_once("rate_limit_remaining=")
        .and_then(|(_, rest)| rest.split_once(" rate_limit=5000"))
        .map(|(n, _)| n);
    assert!(matches!(remaining, Some("4998" | "4999")), "{line}");
    assert!(!run.stderr.contains("Some("), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_limited_answers_is_one_warning_with_a_count() {
    let env = Env::new().await;
    env.configure_burst("");

    // All 8 branch heads are in flight before any is answered, and all 8 are limited.
    env.github.hold_responses();
    env.github.secondary_limit_next(8, None);
    let once = env.command(&["once"]).spawn().unwrap();
    assert!(env.github.wait_for_in_flight(8, DEADLINE).await);
    env.github.release_all();
    let output = tokio::time::timeout(DEADLINE, once.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("poll failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    assert!(
        failed[0].contains(
            "poll failed: github.com/acme/r1@main head and 7 more: rate limited (HTTP 403)"
        ) && failed[0].contains("count=8"),
        "{stderr}"
    );
    let pauses: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("pausing this forge"))
        .collect();
    assert_eq!(pauses.len(), 1, "{stderr}");
    // The forge's API origin as a value, not a quoted string.
    assert!(pauses[0].contains(" forge=http://127.0.0.1:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mergeability_requests_a_pause_refuses_are_one_warning_with_a_count() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    for i in 1..=5 {
        env.github
            .open_pr("acme/app", NewPr::new(MAIN, &format!("feature-{i}")));
    }
    env.configure(&[Ws {
        name: "gh",
        ci: "bb",
        packages: &[("app", "acme/app", MAIN)],
        pull_requests: true,
    }]);
    // The head and the PR list are answered; the first mergeability request (PR 1)
    // gets a secondary limit with `Retry-After`, which pauses the forge: PRs 2 to 5
    // are not asked.
    env.github.hold_responses();
    let once = env.command(&["once"]).spawn().unwrap();
    assert!(env.github.wait_for_in_flight(2, DEADLINE).await);
    env.github.release(2);
    assert!(env.github.wait_for_requests(2, DEADLINE).await);
    assert!(env.github.wait_for_in_flight(1, DEADLINE).await);
    env.github.secondary_limit_next(1, Some(60));
    env.github.release_all();
    let output = tokio::time::timeout(DEADLINE, once.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(env.github.requests().len(), 3, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("mergeability of"))
        .collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].contains("mergeability of github.com/acme/app#1: ")
            && lines[0].contains("rate limited (HTTP 403), retry after 60s"),
        "{stderr}"
    );
    assert!(
        lines[1].contains(
            "mergeability of github.com/acme/app#2 and 3 more: not sent, the forge is paused"
        ) && lines[1].contains("count=4"),
        "{stderr}"
    );
}
