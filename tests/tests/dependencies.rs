//! End-to-end: pull-request dependencies across forges (a GitHub PR depending on a
//! GitLab MR in a subgroup), lookups of PRs outside the watched targets, unresolved
//! references, cycles, overrides, trust of fork PRs, stale PRs, drafts and the
//! switch to the merge ref once GitHub says a PR is mergeable.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::fake_gitlab::NewMr;
use serde_json::{Value, json};
use support::{Env, Ws};

const MAIN: &str = "main";
const LIDAR: &str = "acme/robots/lidar";
const LIDAR_URL: &str = "https://gitlab.example.org/acme/robots/lidar";

/// Workspace `mixed`: `app` on GitHub, `lidar` on GitLab; mainline delivered.
async fn mixed() -> Env {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project(LIDAR, MAIN);
    env.configure(&[Ws {
        name: "mixed",
        ci: "bb",
        packages: &[
            ("app", "acme/app", MAIN),
            ("drivers/lidar", LIDAR_URL, MAIN),
        ],
        pull_requests: true,
    }]);
    assert_eq!(
        env.once().await.keys_and_statuses(),
        ["mixed/mainline delivered"]
    );
    env
}

fn pr_with_body(head: &str, body: &str) -> NewPr {
    let mut pr = NewPr::new(MAIN, head);
    pr.body = Some(body.to_owned());
    pr
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

fn overrides(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(pkg, r)| json!({ *pkg: {"remote_branch": r, "single_branch": false, "shallow": false}}))
            .collect(),
    )
}

const A: &str = "mixed/pr/github.com/acme/app/1";
const B: &str = "mixed/pr/gitlab.example.org/acme/robots/lidar/1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_pr_follows_the_gitlab_mr_it_depends_on() {
    let env = mixed().await;
    let b_head = env.gitlab.open_mr(LIDAR, NewMr::new("fix-scan", MAIN));
    assert_eq!(b_head, 1);
    let body = format!(
        "Needs the driver fix.\r\n\r\nDepends on:\r\n\r\n- [ ] {LIDAR_URL}/-/merge_requests/1\r\n"
    );
    env.github
        .open_pr("acme/app", pr_with_body("use-scan", &body));
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{A} delivered"), format!("{B} delivered")]
    );
    let a = last(&env, A);
    let b = last(&env, B);
    assert_eq!(
        a["dependencies"],
        json!([{"host": "gitlab.example.org", "path": LIDAR, "number": 1,
                "head_sha": b["pull_request"]["head_sha"], "draft": false}])
    );
    assert_eq!(
        a["overrides"],
        overrides(&[
            ("app", "refs/pull/1/merge"),
            ("drivers/lidar", "refs/merge-requests/1/merge")
        ])
    );
    assert_eq!(a["unresolved_dependencies"], json!([]));
    assert_eq!(b["dependencies"], json!([]));
    assert_eq!(
        b["overrides"],
        overrides(&[("drivers/lidar", "refs/merge-requests/1/merge")])
    );

    // A push to B: A and B once each.
    env.gitlab.push_mr(LIDAR, 1);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{A} delivered"), format!("{B} delivered")]
    );
    let reason_a = &run.lines().into_iter().find(|l| l.0 == A).unwrap().2;
    assert_eq!(
        reason_a,
        "dependency gitlab.example.org/acme/robots/lidar#1 moved"
    );
    assert_eq!(env.once().await.stdout, "");

    // Checking the item off ("merged already") drops the dependency: A once.
    env.github
        .set_pr_body("acme/app", 1, Some(&body.replace("- [ ]", "- [x]")));
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    let a = last(&env, A);
    assert_eq!(a["dependencies"], json!([]));
    assert_eq!(a["overrides"], overrides(&[("app", "refs/pull/1/merge")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_outside_the_watched_targets_are_looked_up_or_reported() {
    let env = mixed().await;
    env.github.create_repo("acme/lib", MAIN);
    env.github.open_pr("acme/lib", NewPr::new(MAIN, "lib-fix"));
    env.github.create_repo("acme/gone", MAIN);
    env.github.open_pr("acme/gone", NewPr::new(MAIN, "old"));
    env.github.open_pr("acme/gone", NewPr::new(MAIN, "older"));
    env.github.close_pr("acme/gone", 2);
    let body = "Depends on:\n- [ ] acme/lib#1\n- [ ] acme/gone#2\n- [ ] https://code.example.com/x/y/pull/3\n- [ ] acme/missing#4\n  - [ ] !7\n";
    env.github
        .open_pr("acme/app", pr_with_body("feature", body));
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    let a = last(&env, A);
    assert_eq!(a["dependencies"][0]["path"], "acme/lib");
    assert_eq!(a["dependencies"].as_array().unwrap().len(), 1);
    // acme/lib is no package of the workspace: no override for it.
    assert_eq!(a["overrides"], overrides(&[("app", "refs/pull/1/merge")]));
    assert_eq!(
        a["unresolved_dependencies"],
        json!([
            {"reference": "!7", "reason": "not a GitHub reference"},
            {"reference": "github.com/acme/gone#2", "reason": "closed"},
            {"reference": "github.com/acme/missing#4", "reason": "not found"},
            {"reference": "https://code.example.com/x/y/pull/3", "reason": "unknown host `code.example.com`"},
        ])
    );

    // A push to the looked-up dependency re-triggers A once; unchanged lookups are 304s.
    env.github.push_pr("acme/lib", 1);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    assert_eq!(run.lines()[0].2, "dependency github.com/acme/lib#1 moved");
    assert_eq!(env.once().await.stdout, "");
    let lookups = env.single_pr_requests();
    assert_eq!(lookups.len(), 3, "{lookups:#?}");
    assert!(
        lookups.iter().all(|r| r.status == 304 || r.status == 404),
        "{lookups:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependency_cycle_is_no_error_and_each_member_carries_the_other() {
    let env = mixed().await;
    env.github.open_pr(
        "acme/app",
        pr_with_body(
            "one",
            &format!("Depends on:\n- [ ] {LIDAR_URL}/merge_requests/1\n"),
        ),
    );
    let mut mr = NewMr::new("two", MAIN);
    mr.description = Some("Depends on:\n- [ ] https://github.com/acme/app/pull/1\n".into());
    env.gitlab.open_mr(LIDAR, mr);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{A} delivered"), format!("{B} delivered")]
    );
    assert_eq!(
        last(&env, A)["dependencies"][0]["host"],
        "gitlab.example.org"
    );
    assert_eq!(last(&env, B)["dependencies"][0]["host"], "github.com");
    let both = overrides(&[
        ("app", "refs/pull/1/merge"),
        ("drivers/lidar", "refs/merge-requests/1/merge"),
    ]);
    assert_eq!(last(&env, A)["overrides"], both);
    // Each member's own ref first, then the other's.
    let b_overrides = last(&env, B)["overrides"].clone();
    assert_eq!(
        b_overrides[0],
        overrides(&[("drivers/lidar", "refs/merge-requests/1/merge")])[0]
    );

    env.github.push_pr("acme/app", 1);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{A} delivered"), format!("{B} delivered")]
    );
    assert_eq!(env.once().await.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_fork_pr_waits_for_the_approval_label() {
    let env = mixed().await;
    let mut pr = NewPr::new(MAIN, "patch");
    pr.head_repo = Some("stranger/app".into());
    pr.author = "stranger".into();
    pr.author_association = "FIRST_TIME_CONTRIBUTOR".into();
    env.github.open_pr("acme/app", pr);
    let mut mr = NewMr::new("patch", MAIN);
    env.gitlab.fork_project(LIDAR, "stranger/lidar");
    mr.source_project = Some("stranger/lidar".into());
    mr.author = "stranger".into();
    env.gitlab.open_mr(LIDAR, mr);

    let run = env.once().await;
    assert_eq!(run.stdout, "", "nothing reaches the CI");
    assert!(
        run.stderr
            .contains(&format!("{A}: not built: awaiting_approval")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("{B}: not built: awaiting_approval"))
    );
    assert_eq!(env.once().await.stdout, "");

    env.github.set_labels("acme/app", 1, &["ok-to-test"]);
    env.gitlab.set_labels(LIDAR, 1, &["ok-to-test"]);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [format!("{A} delivered"), format!("{B} delivered")]
    );
    assert_eq!(env.once().await.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pr_is_not_built_but_still_resolves_as_a_dependency() {
    let env = mixed().await;
    env.gitlab.open_mr(LIDAR, NewMr::new("old-fix", MAIN));
    env.gitlab.age_mr(LIDAR, 1, 200);
    env.github.open_pr(
        "acme/app",
        pr_with_body("user", "Depends on:\n- [ ] acme/robots/lidar!1\n"),
    );
    // A GitLab reference in a GitHub PR needs the URL form.
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    assert!(
        run.stderr.contains(&format!("{B}: not built: stale")),
        "{}",
        run.stderr
    );
    assert_eq!(
        last(&env, A)["unresolved_dependencies"],
        json!([{"reference": "acme/robots/lidar!1", "reason": "not a GitHub reference"}])
    );
    env.github.set_pr_body(
        "acme/app",
        1,
        Some(&format!(
            "Depends on:\n- [ ] {LIDAR_URL}/-/merge_requests/1\n"
        )),
    );
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    let a = last(&env, A);
    assert_eq!(a["dependencies"][0]["number"], 1);
    assert_eq!(a["unresolved_dependencies"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_builds_its_head_and_switches_to_merge_once_mergeable() {
    let env = mixed().await;
    let mut pr = NewPr::new(MAIN, "wip");
    pr.draft = true;
    env.github.open_pr("acme/app", pr);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{A} delivered")]);
    assert_eq!(last(&env, A)["pull_request"]["ref"], "refs/pull/1/head");
    assert!(
        env.single_pr_requests().is_empty(),
        "a draft's mergeability is not asked"
    );

    // Ready for review, but GitHub has not computed mergeability yet: still the head.
    env.github.set_mergeable("acme/app", 1, None);
    env.github.set_draft("acme/app", 1, false);
    let run = env.once().await;
    assert_eq!(
        run.lines(),
        [(A.into(), "delivered".into(), "draft→ready".into())]
    );
    assert_eq!(last(&env, A)["pull_request"]["ref"], "refs/pull/1/head");
    assert_eq!(env.single_pr_requests().len(), 1);

    // Asked again next cycle; now mergeable: the merge ref, once.
    env.github.set_mergeable("acme/app", 1, Some(true));
    let run = env.once().await;
    assert_eq!(
        run.lines(),
        [(A.into(), "delivered".into(), "ref head→merge".into())]
    );
    assert_eq!(last(&env, A)["pull_request"]["ref"], "refs/pull/1/merge");
    assert_eq!(env.single_pr_requests().len(), 1);
    // Remembered: nothing asked, nothing delivered.
    assert_eq!(env.once().await.stdout, "");
    assert!(env.single_pr_requests().is_empty());
}
