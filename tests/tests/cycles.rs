//! End-to-end: the real `forgewatch once` against a fake forge and a fake CI,
//! asserting exactly which deliveries arrived and which requests were made. Every
//! test runs once against the fake GitHub and once against the fake GitLab (with
//! projects in a subgroup): the daemon must not be able to tell them apart.

#![allow(clippy::unwrap_used)] // test bodies are plain functions instantiated per forge

mod support;

use serde_json::json;
use support::{Env, Kind, Ws};

const MAIN: &str = "main";

macro_rules! on_both_forges {
    ($($test:ident),* $(,)?) => {
        mod github {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Kind::GitHub).await
            })*
        }
        mod gitlab {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test(super::Kind::GitLab).await
            })*
        }
    };
}

on_both_forges!(
    shared_target_is_polled_once_and_each_mainline_triggered_once,
    a_push_to_a_shared_repository_triggers_each_watching_mainline_once,
    a_pull_request_is_delivered_when_opened_and_pushed_never_when_closed,
    a_pull_request_whose_fork_is_gone_is_still_built,
    a_rejected_delivery_is_not_recorded_and_is_delivered_next_cycle,
    one_hundred_and_fifty_pull_requests_are_all_seen,
    dry_run_sends_nothing_and_records_nothing,
    webhook_deliveries_are_signed_and_carry_the_delivery_id,
);

/// The repository path of `name` on that forge: GitLab ones sit in a subgroup.
fn path(kind: Kind, name: &str) -> String {
    match kind {
        Kind::GitHub => format!("acme/{name}"),
        Kind::GitLab => format!("acme/robots/{name}"),
    }
}

fn url(env: &Env, kind: Kind, name: &str) -> String {
    format!("https://{}/{}", env.forge(kind).host(), path(kind, name))
}

/// `host/path` of `name`, as in build keys.
fn id(env: &Env, kind: Kind, name: &str) -> String {
    format!("{}/{}", env.forge(kind).host(), path(kind, name))
}

/// ws1 and ws2 share `shared`; ws3 watches only `other`.
async fn three_workspaces(kind: Kind) -> Env {
    let env = Env::new().await;
    for name in ["shared", "one", "two", "other"] {
        env.forge(kind).create_repo(&path(kind, name), MAIN);
    }
    let [shared, one, two, other] = ["shared", "one", "two", "other"].map(|n| url(&env, kind, n));
    // The same repository, spelled differently.
    let shared_again = format!(
        "{}.git",
        shared.to_uppercase().replace("HTTPS://", "https://")
    );
    env.configure(&[
        Ws {
            name: "ws1",
            ci: "bb",
            packages: &[("shared", &shared, MAIN), ("one", &one, MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "ws2",
            ci: "bb",
            packages: &[("shared", &shared_again, MAIN), ("two", &two, MAIN)],
            pull_requests: true,
        },
        Ws {
            name: "ws3",
            ci: "bb",
            packages: &[("other", &other, MAIN)],
            pull_requests: true,
        },
    ]);
    env
}

async fn shared_target_is_polled_once_and_each_mainline_triggered_once(kind: Kind) {
    let env = three_workspaces(kind).await;
    let forge = env.forge(kind);
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
    let count = |prefix: String| {
        env.requests()
            .iter()
            .filter(|r| r.path.starts_with(&prefix))
            .count()
    };
    assert_eq!(count(forge.branch_path(&path(kind, "shared"))), 1);
    assert_eq!(count(forge.pulls_path(&path(kind, "shared"))), 1);
    assert_eq!(env.statuses(), (8, 0, 0));
    // Every request carried the token, and nothing asked who we are.
    let credential = forge.credential(support::TOKEN);
    assert!(
        env.requests()
            .iter()
            .all(|r| r.credential.as_deref() == Some(&credential))
    );
    assert!(env.requests().iter().all(|r| !r.path.ends_with("/user")));

    // First mainline delivery: all packages changed, old heads null.
    let ws1 = env
        .ci
        .accepted()
        .into_iter()
        .find(|d| d.properties()["build_key"] == "ws1/mainline")
        .unwrap();
    let props = ws1.properties();
    assert_eq!(props["kind"], "mainline");
    assert_eq!(props["package_names"], json!(["one", "shared"]));
    assert_eq!(props["changed_packages"][0]["old"], serde_json::Value::Null);
    assert_eq!(ws1.field("category"), Some("push"));
    assert_eq!(
        ws1.field("repository"),
        Some(url(&env, kind, "one").as_str())
    );
    assert_eq!(ws1.field("author"), Some("forgewatch"));
    assert_eq!(ws1.field("project"), Some("ws1"));

    // A second cycle with no change: nothing delivered, every answer a 304.
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    assert_eq!(env.ci.accepted().len(), 3);
    assert_eq!(env.statuses(), (0, 8, 0));
}

async fn a_push_to_a_shared_repository_triggers_each_watching_mainline_once(kind: Kind) {
    let env = three_workspaces(kind).await;
    env.once().await;
    let before = env.ci.accepted().len();
    let new = env.forge(kind).push(&path(kind, "shared"), MAIN);
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
    assert_eq!(props["package_names"], json!(["shared"]));
    assert_eq!(props["changed_packages"][0]["new"], new.as_str());
    assert_eq!(props["source_branch"], MAIN);
    assert_eq!(delivery.field("revision"), Some(new.as_str()));
    assert_eq!(
        delivery.field("repository"),
        Some(url(&env, kind, "shared").as_str())
    );
    let (_, _, reason) = &run.lines()[0];
    assert_eq!(
        *reason,
        format!(
            "shared {}→{}",
            &props["changed_packages"][0]["old"].as_str().unwrap()[..7],
            &new[..7]
        )
    );
}

async fn a_pull_request_is_delivered_when_opened_and_pushed_never_when_closed(kind: Kind) {
    let env = three_workspaces(kind).await;
    let forge = env.forge(kind);
    let one = path(kind, "one");
    env.once().await;
    let base = env.ci.accepted().len();

    let number = forge.open_pr(&one, MAIN, "feature");
    let key = format!("ws1/pr/{}/{number}", id(&env, kind, "one"));
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{key} delivered")]);
    assert_eq!(run.lines()[0].2, "new PR");
    let pr = env.ci.accepted()[base].clone();
    let props = pr.properties();
    let test_ref = forge.test_ref(number);
    assert_eq!(pr.field("category"), Some("pull_request"));
    assert_eq!(pr.field("branch"), Some(test_ref.as_str()));
    assert_eq!(pr.field("author"), Some("alice"));
    assert_eq!(
        pr.field("revlink"),
        Some(forge.pr_url(&one, number).as_str())
    );
    assert_eq!(
        pr.field("repository"),
        Some(url(&env, kind, "one").as_str())
    );
    assert_eq!(props["kind"], "pull_request");
    assert_eq!(props["build_key"], key.as_str());
    assert_eq!(props["package_names"], json!(["one"]));
    assert_eq!(props["source_branch"], "feature");
    assert_eq!(props["pull_request"]["host"], forge.host());
    assert_eq!(props["pull_request"]["path"], one.as_str());
    assert_eq!(props["pull_request"]["number"], number);
    assert_eq!(props["pull_request"]["ref"], test_ref.as_str());
    assert_eq!(
        props["overrides"],
        json!([{"one": {"remote_branch": test_ref, "single_branch": false, "shallow": false}}])
    );
    assert_eq!(props["dependencies"], json!([]));
    assert_eq!(props["unresolved_dependencies"], json!([]));
    assert_eq!(
        pr.field("revision"),
        props["pull_request"]["head_sha"].as_str()
    );

    // A title edit is not an input: nothing is delivered.
    forge.set_pr_title(&one, number, "A better title");
    assert_eq!(env.once().await.stdout, "");

    let head = forge.push_pr(&one, number);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{key} delivered")]);
    assert!(run.lines()[0].2.starts_with("head "), "{:?}", run.lines());
    assert_eq!(
        env.ci.accepted()[base + 1].field("revision"),
        Some(head.as_str())
    );

    forge.close_pr(&one, number);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.ci.accepted().len(), base + 2);
}

async fn a_pull_request_whose_fork_is_gone_is_still_built(kind: Kind) {
    let env = three_workspaces(kind).await;
    let one = path(kind, "one");
    let fork = match kind {
        Kind::GitHub => "stranger/one".to_owned(),
        Kind::GitLab => "stranger/robots/one".to_owned(),
    };
    let number = env
        .forge(kind)
        .open_fork_pr(&one, MAIN, "patch", &fork, "stranger");
    // A stranger's fork: built once a maintainer approves it.
    env.forge(kind).set_labels(&one, number, &["ok-to-test"]);
    match kind {
        Kind::GitHub => env.github.delete_head_repo(&one, number),
        Kind::GitLab => env.gitlab.delete_project(&fork),
    }
    let run = env.once().await;
    let key = format!("ws1/pr/{}/{number}", id(&env, kind, "one"));
    assert!(
        run.keys_and_statuses()
            .contains(&format!("{key} delivered")),
        "{run:#?}"
    );
    let delivery = env
        .ci
        .accepted()
        .into_iter()
        .find(|d| d.properties()["kind"] == "pull_request")
        .unwrap();
    assert_eq!(delivery.field("author"), Some("stranger"));
    assert_eq!(
        delivery.field("branch"),
        Some(env.forge(kind).test_ref(number).as_str())
    );
    if kind == Kind::GitHub {
        assert_eq!(
            delivery.properties()["source_project_id"],
            serde_json::Value::Null
        );
    }
}

async fn a_rejected_delivery_is_not_recorded_and_is_delivered_next_cycle(kind: Kind) {
    let env = three_workspaces(kind).await;
    env.ci.fail_next(1, 500);
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

async fn one_hundred_and_fifty_pull_requests_are_all_seen(kind: Kind) {
    let env = Env::new().await;
    let forge = env.forge(kind);
    let big = path(kind, "big");
    forge.create_repo(&big, MAIN);
    for i in 0..150 {
        forge.open_pr(&big, MAIN, &format!("topic-{i}"));
    }
    let big_url = url(&env, kind, "big");
    env.configure(&[Ws {
        name: "big",
        ci: "bb",
        packages: &[("big", &big_url, MAIN)],
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
    let pulls = forge.pulls_path(&big);
    let list_requests: Vec<_> = env
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with(&pulls) && !forge.is_single_pr(&r.path))
        .collect();
    assert_eq!(list_requests.len(), 2);
    assert!(
        list_requests
            .iter()
            .all(|r| r.query.contains("per_page=100"))
    );
    // Asked for and sent gzip-compressed (1.8 MB a page otherwise), and decoded.
    for r in &list_requests {
        assert_eq!(r.accept_encoding.as_deref(), Some("gzip"), "{r:?}");
        assert!(r.gzip, "{r:?}");
    }
    assert_eq!(env.statuses(), (3, 0, 0));
    // GitHub tells mergeability only on the single-PR endpoint: asked once per PR.
    let asked = match kind {
        Kind::GitHub => 150,
        Kind::GitLab => 0,
    };
    assert_eq!(env.single_pr_requests().len(), asked);
    // The next cycle revalidates both pages (the validators of compressed bodies) and
    // asks nothing again.
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.statuses(), (0, 3, 0));
    assert_eq!(env.single_pr_requests().len(), 0);
}

async fn dry_run_sends_nothing_and_records_nothing(kind: Kind) {
    let env = three_workspaces(kind).await;
    let number = env.forge(kind).open_pr(&path(kind, "two"), MAIN, "x");
    env.clear_requests();
    let run = env.forgewatch(&["once", "--dry-run"]).await;
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(
        run.keys_and_statuses(),
        [
            "ws1/mainline would-deliver".to_owned(),
            "ws2/mainline would-deliver".to_owned(),
            format!("ws2/pr/{}/{number} would-deliver", id(&env, kind, "two")),
            "ws3/mainline would-deliver".to_owned(),
        ]
    );
    assert_eq!(env.ci.accepted().len() + env.ci.rejected_count(), 0);
    assert!(!env.state_dir().join("state.sqlite3").exists());

    // Nothing was recorded: the real run delivers everything and sees no 304.
    let run = env.once().await;
    assert_eq!(run.lines().len(), 4);
    assert_eq!(env.statuses(), (8, 0, 0));

    // A dry run over existing state reports only what changed, and changes nothing.
    env.forge(kind).push(&path(kind, "other"), MAIN);
    let run = env.forgewatch(&["once", "--dry-run"]).await;
    assert_eq!(run.keys_and_statuses(), ["ws3/mainline would-deliver"]);
    assert_eq!(env.ci.accepted().len(), 4);
    assert_eq!(
        env.once().await.keys_and_statuses(),
        ["ws3/mainline delivered"]
    );
}

async fn webhook_deliveries_are_signed_and_carry_the_delivery_id(kind: Kind) {
    let env = Env::new().await;
    env.forge(kind).create_repo(&path(kind, "hooked"), MAIN);
    let hooked = url(&env, kind, "hooked");
    env.configure(&[Ws {
        name: "hooked",
        ci: "hook",
        packages: &[("hooked", &hooked, MAIN)],
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
    let pulls = env.forge(kind).pulls_path(&path(kind, "hooked"));
    assert!(env.requests().iter().all(|r| !r.path.starts_with(&pulls)));
    assert_eq!(env.statuses(), (1, 0, 0));
}
