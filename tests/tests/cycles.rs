//! End-to-end: the real `forgewatch once` against a fake GitHub and a fake CI,
//! asserting exactly which deliveries arrived and which requests were made.

mod support;

use forgewatch_tests::fake_github::NewPr;
use support::{Env, Ws};

const MAIN: &str = "main";

/// ws1 and ws2 share acme/shared; ws3 watches only acme/other.
async fn three_workspaces() -> Env {
    let env = Env::new().await;
    for repo in ["acme/shared", "acme/one", "acme/two", "acme/other"] {
        env.github.create_repo(repo, MAIN);
    }
    env.configure(&[
        Ws {
            name: "ws1",
            ci: "bb",
            packages: &[("shared", "acme/shared", MAIN), ("one", "acme/one", MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "ws2",
            ci: "bb",
            packages: &[
                ("shared", "Acme/Shared.git", MAIN),
                ("two", "acme/two", MAIN),
            ],
            pull_requests: true,
        },
        Ws {
            name: "ws3",
            ci: "bb",
            packages: &[("other", "acme/other", MAIN)],
            pull_requests: true,
        },
    ]);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_target_is_polled_once_and_each_mainline_triggered_once() {
    let env = three_workspaces().await;
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        [
            "ws1/mainline delivered",
            "ws2/mainline delivered",
            "ws3/mainline delivered"
        ]
    );
    for (_, _, reason) in run.lines() {
        assert_eq!(reason, "first delivery");
    }
    let mut keys = env.delivered_keys(0);
    keys.sort();
    assert_eq!(keys, ["ws1/mainline", "ws2/mainline", "ws3/mainline"]);
    // Four distinct targets, each asked for its head and its open PRs exactly once.
    assert_eq!(
        env.github.count_path_prefix("/repos/acme/shared/branches/"),
        1
    );
    assert_eq!(env.github.count_path_prefix("/repos/acme/shared/pulls"), 1);
    assert_eq!(env.statuses(), (8, 0, 0));
    // Every request carried the token.
    assert!(
        env.github
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {}", support::TOKEN)))
    );

    // First mainline delivery: all packages changed, old heads null.
    let ws1 = env
        .ci
        .accepted()
        .into_iter()
        .find(|d| d.properties()["build_key"] == "ws1/mainline")
        .unwrap();
    let props = ws1.properties();
    assert_eq!(props["kind"], "mainline");
    assert_eq!(props["package_names"], serde_json::json!(["one", "shared"]));
    assert_eq!(props["changed_packages"][0]["old"], serde_json::Value::Null);
    assert_eq!(ws1.field("category"), Some("push"));
    assert_eq!(ws1.field("repository"), Some("https://github.com/acme/one"));
    assert_eq!(ws1.field("author"), Some("forgewatch"));
    assert_eq!(ws1.field("project"), Some("ws1"));

    // A second cycle with no change: nothing delivered, every answer a 304.
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    assert_eq!(env.ci.accepted().len(), 3);
    assert_eq!(env.statuses(), (0, 8, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_shared_repository_triggers_each_watching_mainline_once() {
    let env = three_workspaces().await;
    env.once().await;
    let before = env.ci.accepted().len();
    let new = env.github.push("acme/shared", MAIN);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["ws1/mainline delivered", "ws2/mainline delivered"]
    );
    let mut keys = env.delivered_keys(before);
    keys.sort();
    assert_eq!(keys, ["ws1/mainline", "ws2/mainline"]);
    // Only the moved branch answered 200.
    assert_eq!(env.statuses(), (1, 7, 0));

    let delivery = &env.ci.accepted()[before];
    let props = delivery.properties();
    assert_eq!(props["package_names"], serde_json::json!(["shared"]));
    assert_eq!(props["changed_packages"][0]["new"], new.as_str());
    assert_eq!(props["source_branch"], MAIN);
    assert_eq!(delivery.field("revision"), Some(new.as_str()));
    assert_eq!(
        delivery.field("repository"),
        Some("https://github.com/acme/shared")
    );
    let (_, _, reason) = &run.lines()[0];
    assert!(
        reason.starts_with("shared ") && reason.contains('→'),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_is_delivered_when_opened_and_pushed_never_when_closed() {
    let env = three_workspaces().await;
    env.once().await;
    let base = env.ci.accepted().len();

    let number = env.github.open_pr("acme/one", NewPr::new(MAIN, "feature"));
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["ws1/pr/github.com/acme/one/1 delivered"]
    );
    assert_eq!(run.lines()[0].2, "new PR");
    let pr = env.ci.accepted()[base].clone();
    let props = pr.properties();
    assert_eq!(pr.field("category"), Some("pull_request"));
    assert_eq!(pr.field("branch"), Some("refs/pull/1/head"));
    assert_eq!(pr.field("author"), Some("alice"));
    assert_eq!(
        pr.field("revlink"),
        Some("https://github.com/acme/one/pull/1")
    );
    assert_eq!(pr.field("repository"), Some("https://github.com/acme/one"));
    assert_eq!(props["kind"], "pull_request");
    assert_eq!(props["package_names"], serde_json::json!(["one"]));
    assert_eq!(props["source_branch"], "feature");
    assert_eq!(props["pull_request"]["number"], number);
    assert_eq!(props["pull_request"]["ref"], "refs/pull/1/head");
    assert_eq!(
        props["overrides"],
        serde_json::json!([{"one": {"remote_branch": "refs/pull/1/head", "single_branch": false, "shallow": false}}])
    );
    assert_eq!(props["dependencies"], serde_json::json!([]));
    assert_eq!(props["unresolved_dependencies"], serde_json::json!([]));
    assert_eq!(
        pr.field("revision"),
        props["pull_request"]["head_sha"].as_str()
    );

    // A title edit is not an input: nothing is delivered.
    env.github
        .set_pr_title("acme/one", number, "A better title");
    assert_eq!(env.once().await.stdout, "");

    let head = env.github.push_pr("acme/one", number);
    let run = env.once().await;
    assert_eq!(
        run.keys_and_statuses(),
        ["ws1/pr/github.com/acme/one/1 delivered"]
    );
    assert!(run.lines()[0].2.starts_with("head "), "{:?}", run.lines());
    assert_eq!(
        env.ci.accepted()[base + 1].field("revision"),
        Some(head.as_str())
    );

    env.github.close_pr("acme/one", number);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.ci.accepted().len(), base + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_from_a_deleted_fork_is_still_built() {
    let env = three_workspaces().await;
    let mut pr = NewPr::new(MAIN, "patch");
    pr.head_repo = Some("stranger/one".into());
    pr.author = "stranger".into();
    let number = env.github.open_pr("acme/one", pr);
    env.github.delete_head_repo("acme/one", number);
    let run = env.once().await;
    assert!(
        run.keys_and_statuses()
            .contains(&"ws1/pr/github.com/acme/one/1 delivered".to_owned()),
        "{run:#?}"
    );
    let delivery = env
        .ci
        .accepted()
        .into_iter()
        .find(|d| d.properties()["kind"] == "pull_request")
        .unwrap();
    assert_eq!(
        delivery.properties()["source_project_id"],
        serde_json::Value::Null
    );
    assert_eq!(delivery.field("branch"), Some("refs/pull/1/head"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_delivery_is_not_recorded_and_is_delivered_next_cycle() {
    let env = three_workspaces().await;
    env.ci.fail_next(1, 500);
    env.github.clear_requests();
    let run = env.forgewatch(&["once", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    let outcomes: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let failed: Vec<_> = outcomes
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{outcomes:#}");
    assert!(failed[0]["reason"].as_str().unwrap().contains("HTTP 500"));
    assert_eq!(env.ci.accepted().len(), 2);
    assert_eq!(env.ci.rejected_count(), 1);

    let run = env.once().await;
    assert_eq!(run.lines().len(), 1, "{run:#?}");
    assert_eq!(run.lines()[0].0, failed[0]["build_key"].as_str().unwrap());
    assert_eq!(run.lines()[0].1, "delivered");
    // The retry carries the delivery id of the failed attempt.
    let retried = env.ci.accepted().last().unwrap().properties();
    assert_eq!(retried["delivery_id"], failed[0]["delivery_id"]);
    assert_eq!(retried["fingerprint"], failed[0]["fingerprint"]);
    assert_eq!(env.once().await.stdout, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_and_fifty_pull_requests_are_all_seen() {
    let env = Env::new().await;
    env.github.create_repo("acme/big", MAIN);
    for i in 0..150 {
        env.github
            .open_pr("acme/big", NewPr::new(MAIN, &format!("topic-{i}")));
    }
    env.configure(&[Ws {
        name: "big",
        ci: "bb",
        packages: &[("big", "acme/big", MAIN)],
        pull_requests: true,
    }]);
    let run = env.once().await;
    assert_eq!(run.lines().len(), 151);
    let mut numbers: Vec<u64> = env
        .ci
        .accepted()
        .iter()
        .filter_map(|d| d.properties()["pull_request"]["number"].as_u64())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=150).collect::<Vec<_>>());
    // Two pages of 100, one branch request.
    assert_eq!(env.github.count_path_prefix("/repos/acme/big/pulls"), 2);
    assert!(
        env.github
            .requests()
            .iter()
            .all(|r| !r.path.contains("pulls") || r.query.contains("per_page=100"))
    );
    assert_eq!(env.statuses(), (3, 0, 0));
    // The next cycle revalidates both pages.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.statuses(), (0, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_records_nothing() {
    let env = three_workspaces().await;
    env.github.open_pr("acme/two", NewPr::new(MAIN, "x"));
    env.github.clear_requests();
    let run = env.forgewatch(&["once", "--dry-run"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.keys_and_statuses(),
        [
            "ws1/mainline would-deliver",
            "ws2/mainline would-deliver",
            "ws2/pr/github.com/acme/two/1 would-deliver",
            "ws3/mainline would-deliver"
        ]
    );
    assert_eq!(env.ci.accepted().len() + env.ci.rejected_count(), 0);
    assert!(!env.state_dir().join("state.sqlite3").exists());

    // Nothing was recorded: the real run delivers everything and sees no 304.
    let run = env.once().await;
    assert_eq!(run.lines().len(), 4);
    assert_eq!(env.statuses(), (8, 0, 0));

    // A dry run over existing state reports only what changed, and changes nothing.
    env.github.push("acme/other", MAIN);
    let run = env.forgewatch(&["once", "--dry-run"]).await;
    assert_eq!(run.keys_and_statuses(), ["ws3/mainline would-deliver"]);
    assert_eq!(env.ci.accepted().len(), 4);
    assert_eq!(
        env.once().await.keys_and_statuses(),
        ["ws3/mainline delivered"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_are_signed_and_carry_the_delivery_id() {
    let env = Env::new().await;
    env.github.create_repo("acme/hooked", MAIN);
    env.configure(&[Ws {
        name: "hooked",
        ci: "hook",
        packages: &[("hooked", "acme/hooked", MAIN)],
        pull_requests: false,
    }]);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["hooked/mainline delivered"]);
    let delivery = &env.ci.accepted()[0];
    assert!(delivery.verify_signature(support::HOOK_SECRET.as_bytes()));
    let body = delivery.json.clone().unwrap();
    assert_eq!(
        delivery.header("x-forgewatch-delivery"),
        body["delivery_id"].as_str()
    );
    assert_eq!(delivery.header("x-forgewatch-event"), Some("build"));
    assert_eq!(body["event"], "build");
    assert_eq!(body["category"], "push");
    assert_eq!(body["build_key"], "hooked/mainline");
    // Without pull requests enabled, no PR list is requested.
    assert_eq!(env.github.count_path_prefix("/repos/acme/hooked/pulls"), 0);
}
