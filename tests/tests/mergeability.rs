//! End-to-end: GitHub's `mergeable` (the single-PR endpoint) is asked only where
//! a build uses it — for PRs some workspace builds with `pr_ref: auto`, and for the
//! PRs their overrides point at — once per (base sha, head sha); a `null` (GitHub
//! still computing) is asked again once per poll interval in `run`, not every slice;
//! and a moved base leaves a PR's ref as it was until GitHub answers for it.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::fake_github::NewPr;
use serde_json::{Value, json};
use support::{DEADLINE, Env};

const MAIN: &str = "main";

/// The single-PR requests to the fake GitHub since it was last cleared, as paths
/// in arrival order.
fn asked(env: &Env) -> Vec<String> {
    env.single_pr_requests()
        .into_iter()
        .map(|r| r.path)
        .collect()
}

/// The properties of the last accepted delivery of `key`.
fn last(env: &Env, key: &str) -> Value {
    env.ci
        .accepted()
        .into_iter()
        .rev()
        .map(|d| d.properties())
        .find(|p| p["build_key"] == key)
        .unwrap_or_else(|| panic!("no delivery of {key}"))
}

fn override_of(pkg: &str, reference: &str) -> Value {
    json!({ pkg: {"remote_branch": reference, "single_branch": false, "shallow": false}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prs_nobody_builds_and_refs_not_chosen_by_mergeability_are_not_asked() {
    let env = Env::new().await;
    env.github.create_repo("acme/old", MAIN);
    env.github.create_repo("acme/fixed", MAIN);
    // acme/old: every PR is excluded, each by another rule.
    for head in ["stale-1", "stale-2"] {
        let n = env.github.open_pr("acme/old", NewPr::new(MAIN, head));
        env.github.age_pr("acme/old", n, 200);
    }
    let mut stranger = NewPr::new(MAIN, "patch");
    stranger.head_repo = Some("stranger/old".into());
    stranger.author = "stranger".into();
    stranger.author_association = "FIRST_TIME_CONTRIBUTOR".into();
    env.github.open_pr("acme/old", stranger);
    let mut draft = NewPr::new(MAIN, "wip");
    draft.draft = true;
    env.github.open_pr("acme/old", draft);
    env.github.open_pr("acme/old", NewPr::new(MAIN, "skipped"));
    env.github.set_labels("acme/old", 5, &["no-ci"]);
    // acme/fixed: one ordinary PR, built where the ref does not follow mergeability.
    env.github
        .open_pr("acme/fixed", NewPr::new(MAIN, "feature"));
    env.configure_yaml(
        "  - name: old
    ci: bb
    packages: [ { name: old, repo: 'https://github.com/acme/old', branch: main } ]
    pull_requests: { stale_after: 30d, include_drafts: false, skip_labels: [no-ci] }
  - name: merge
    ci: bb
    packages: [ { name: fixed, repo: 'https://github.com/acme/fixed', branch: main } ]
    pull_requests: { pr_ref: merge }
  - name: head
    ci: bb
    packages: [ { name: fixed, repo: 'https://github.com/acme/fixed', branch: main } ]
    pull_requests: { pr_ref: head }
",
    );
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "head/mainline delivered",
            "head/pr/github.com/acme/fixed/1 delivered",
            "merge/mainline delivered",
            "merge/pr/github.com/acme/fixed/1 delivered",
            "old/mainline delivered",
        ]
    );
    for (n, why) in [
        (1, "stale"),
        (2, "stale"),
        (3, "awaiting_approval"),
        (4, "draft"),
        (5, "labelled `no-ci`"),
    ] {
        let line = format!("old/pr/github.com/acme/old/{n}: not built: {why}");
        assert!(run.stderr.contains(&line), "{line}: {}", run.stderr);
    }
    assert_eq!(
        last(&env, "merge/pr/github.com/acme/fixed/1")["pull_request"]["ref"],
        "refs/pull/1/merge"
    );
    assert_eq!(
        last(&env, "head/pr/github.com/acme/fixed/1")["pull_request"]["ref"],
        "refs/pull/1/head"
    );
    assert_eq!(asked(&env), Vec::<String>::new());
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(asked(&env), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_pr_and_the_dependency_it_overrides_are_asked_once_per_base_and_head() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.github.create_repo("acme/lib", MAIN);
    // lib#1 is stale (not built) but app#1's build points `lib` at its ref; app#2 is
    // stale and nobody's dependency.
    env.github.open_pr("acme/lib", NewPr::new(MAIN, "lib-fix"));
    env.github.age_pr("acme/lib", 1, 200);
    let mut app = NewPr::new(MAIN, "use-fix");
    app.body = Some("Depends on:\n- [ ] acme/lib#1\n".into());
    env.github.open_pr("acme/app", app);
    env.github.open_pr("acme/app", NewPr::new(MAIN, "old"));
    env.github.age_pr("acme/app", 2, 200);
    env.configure_yaml(
        "  - name: ws
    ci: bb
    packages:
      - { name: app, repo: 'https://github.com/acme/app', branch: main }
      - { name: lib, repo: 'https://github.com/acme/lib', branch: main }
  - name: other
    ci: bb
    packages: [ { name: app, repo: 'https://github.com/acme/app', branch: main } ]
",
    );
    const A: &str = "ws/pr/github.com/acme/app/1";
    const OTHER: &str = "other/pr/github.com/acme/app/1";
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "other/mainline delivered".into(),
            format!("{OTHER} delivered"),
            "ws/mainline delivered".into(),
            format!("{A} delivered"),
        ]
    );
    // Two workspaces build app#1: asked once.
    assert_eq!(
        asked(&env),
        ["/repos/acme/app/pulls/1", "/repos/acme/lib/pulls/1"]
    );
    assert_eq!(
        last(&env, A)["overrides"],
        json!([
            override_of("app", "refs/pull/1/merge"),
            override_of("lib", "refs/pull/1/merge")
        ])
    );
    assert_eq!(
        last(&env, OTHER)["pull_request"]["ref"],
        "refs/pull/1/merge"
    );

    // Remembered in the state: nothing asked.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(asked(&env), Vec::<String>::new());

    // A new head: asked once again.
    env.github.push_pr("acme/app", 1);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{OTHER} delivered"), format!("{A} delivered")]
    );
    assert_eq!(asked(&env), ["/repos/acme/app/pulls/1"]);

    // A new base: asked once again (the PR builds are unchanged).
    env.github.push("acme/app", MAIN);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["other/mainline delivered", "ws/mainline delivered"]
    );
    assert_eq!(asked(&env), ["/repos/acme/app/pulls/1"]);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(asked(&env), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_base_keeps_the_ref_until_github_answers_for_it() {
    let env = Env::new().await;
    env.github.compute_mergeability_lazily();
    env.github.create_repo("acme/app", MAIN);
    env.github.open_pr("acme/app", NewPr::new(MAIN, "feature"));
    env.github
        .open_pr("acme/app", NewPr::new(MAIN, "conflicting"));
    env.configure_yaml(
        "  - name: ws
    ci: bb
    packages: [ { name: app, repo: 'https://github.com/acme/app', branch: main } ]
",
    );
    const ONE: &str = "ws/pr/github.com/acme/app/1";
    const TWO: &str = "ws/pr/github.com/acme/app/2";
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "ws/mainline delivered".into(),
            format!("{ONE} delivered"),
            format!("{TWO} delivered")
        ]
    );
    assert_eq!(last(&env, TWO)["pull_request"]["ref"], "refs/pull/2/merge");

    // The base moves, #2 now conflicts; GitHub answers `null` for both at first:
    // neither PR changes (no build at the head while GitHub computes).
    env.github.push("acme/app", MAIN);
    env.github.set_mergeable("acme/app", 2, Some(false));
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["ws/mainline delivered"]);
    assert_eq!(
        asked(&env),
        ["/repos/acme/app/pulls/1", "/repos/acme/app/pulls/2"]
    );

    // The answers: #1 is still mergeable (nothing to send), #2 is built at its head.
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{TWO} delivered")]);
    assert_eq!(last(&env, TWO)["pull_request"]["ref"], "refs/pull/2/head");
    assert_eq!(last(&env, ONE)["pull_request"]["ref"], "refs/pull/1/merge");
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(asked(&env), Vec::<String>::new());
}

/// One letter per request of `requests` that matters here: `b` a branch head (one
/// per slice), `m` PR r0#1's mergeability, `n` PR r1#1's.
fn letters(requests: &[forgewatch_tests::fake_github::RequestRecord]) -> String {
    requests
        .iter()
        .filter_map(|r| match r.path.as_str() {
            "/repos/acme/r0/pulls/1" => Some('m'),
            "/repos/acme/r1/pulls/1" => Some('n'),
            p if p.starts_with("/repos/acme/r") && p.contains("/branches/") => Some('b'),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_asks_a_null_mergeability_again_once_per_interval_not_every_slice() {
    let env = Env::new().await;
    // Four targets: each of the four slices of an interval polls one branch.
    let mut packages = String::new();
    for i in 0..4 {
        env.github.create_repo(&format!("acme/r{i}"), MAIN);
        packages.push_str(&format!(
            "      - {{ name: r{i}, repo: 'https://github.com/acme/r{i}', branch: main }}\n"
        ));
    }
    env.github.open_pr("acme/r0", NewPr::new(MAIN, "computing"));
    env.github.set_mergeable("acme/r0", 1, None);
    env.github.open_pr("acme/r1", NewPr::new(MAIN, "ready"));
    env.configure_yaml(&format!(
        "  - name: ws\n    ci: bb\n    packages:\n{packages}"
    ));
    let _daemon = env.command(&["run"]).spawn().unwrap();

    // The first (full) cycle and four more whole intervals of four slices.
    let branches = |env: &Env| letters(&env.github.requests()).matches('b').count();
    let enough = forgewatch_tests::wait::eventually(DEADLINE, || async {
        (branches(&env) >= 4 + 4 * 4).then_some(())
    })
    .await;
    assert!(enough.is_some(), "{}", letters(&env.github.requests()));

    // Any snapshot of the log is a prefix of: the full first cycle (four branches,
    // then the question; it is slice 0 of the first interval), then slices 1, 2, 3
    // and 0 of one branch each, slice 0 starting the next interval and asking
    // again. So over N whole intervals after the first the null PR is asked N + 1
    // times. The ready PR is asked once (its answer is remembered).
    let seen = letters(&env.github.requests());
    let null_and_branches: String = seen.chars().filter(|c| *c != 'n').collect();
    let expected = format!("bbbbm{}", "bbbbm".repeat(null_and_branches.len()));
    assert!(
        expected.starts_with(&null_and_branches),
        "{null_and_branches}"
    );
    // Whole intervals: those whose slice 0 question is in (a snapshot may end
    // between slice 0's branch and its question).
    let whole_intervals = (null_and_branches.len() - 5) / 5;
    assert!(whole_intervals >= 3, "{seen}");
    let whole = &null_and_branches[..5 + 5 * whole_intervals];
    assert_eq!(whole.matches('m').count(), whole_intervals + 1, "{seen}");
    assert_eq!(seen.matches('n').count(), 1, "{seen}");
    // Meanwhile the PR is built at its head (no merge ref without an answer), once.
    let mut delivered = env.delivered_keys(0);
    delivered.sort();
    assert_eq!(
        delivered,
        [
            "ws/mainline",
            "ws/pr/github.com/acme/r0/1",
            "ws/pr/github.com/acme/r1/1"
        ]
    );
    assert_eq!(
        last(&env, "ws/pr/github.com/acme/r0/1")["pull_request"]["ref"],
        "refs/pull/1/head"
    );
    assert_eq!(
        last(&env, "ws/pr/github.com/acme/r1/1")["pull_request"]["ref"],
        "refs/pull/1/merge"
    );
}
