//! End-to-end, GitLab specifics: a workspace mixing github.com and a GitLab project
//! in a subgroup, merge requests from forks, offset pagination at both page caps,
//! the pipeline trigger target field by field, and GitLab's failure shapes confined
//! to their target.

#![allow(clippy::unwrap_used)] // helpers of the tests below

mod support;

use forgewatch_tests::fake_gitlab::{Failure, PipelineTrigger};
use support::{DEADLINE, Env, Ws};

const MAIN: &str = "main";
const LIDAR: &str = "acme/robots/lidar";
const LIDAR_URL: &str = "https://gitlab.example.org/acme/robots/lidar";

fn variable<'a>(trigger: &'a PipelineTrigger, name: &str) -> &'a str {
    trigger
        .variables
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no variable {name} in {trigger:?}"))
}

fn payload(trigger: &PipelineTrigger) -> serde_json::Value {
    serde_json::from_str(variable(trigger, "FORGEWATCH_PAYLOAD")).unwrap()
}

/// GET requests to both forges since the last clear: (200, 304, other).
fn get_statuses(env: &Env) -> (usize, usize, usize) {
    let gets: Vec<_> = env
        .requests()
        .into_iter()
        .filter(|r| !r.path.ends_with("/trigger/pipeline"))
        .collect();
    let ok = gets.iter().filter(|r| r.status == 200).count();
    let nm = gets.iter().filter(|r| r.status == 304).count();
    (ok, nm, gets.len() - ok - nm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_workspace_triggers_a_gitlab_pipeline_for_mainline_and_fork_merge_requests() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", MAIN);
    env.gitlab.create_project(LIDAR, MAIN);
    env.configure(&[Ws {
        name: "mixed",
        ci: "pipeline",
        packages: &[
            ("app", "https://github.com/acme/app", MAIN),
            ("drivers/lidar", LIDAR_URL, MAIN),
        ],
        pull_requests: true,
    }]);

    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["mixed/mainline delivered"]);
    assert_eq!(get_statuses(&env), (4, 0, 0));
    let pipelines = env.gitlab.pipelines();
    assert_eq!(pipelines.len(), 1);
    let mainline = &pipelines[0];
    assert_eq!(mainline.project, "infra/ci");
    assert_eq!(mainline.token, support::TRIGGER_TOKEN);
    assert_eq!(mainline.git_ref, "main");
    assert_eq!(variable(mainline, "FORGEWATCH_WORKSPACE"), "mixed");
    assert_eq!(variable(mainline, "FORGEWATCH_BUILD_KEY"), "mixed/mainline");
    let body = payload(mainline);
    assert_eq!(
        variable(mainline, "FORGEWATCH_FINGERPRINT"),
        body["fingerprint"]
    );
    assert_eq!(
        variable(mainline, "FORGEWATCH_DELIVERY_ID"),
        body["delivery_id"]
    );
    assert_eq!(body["event"], "build");
    assert_eq!(body["kind"], "mainline");
    assert_eq!(
        body["package_names"],
        serde_json::json!(["app", "drivers/lidar"])
    );
    assert_eq!(body["changed_packages"][1]["repository"], LIDAR_URL);
    assert_eq!(body["repository"], "https://github.com/acme/app");
    let fields: Vec<&str> = mainline.variables.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        fields,
        [
            "FORGEWATCH_WORKSPACE",
            "FORGEWATCH_BUILD_KEY",
            "FORGEWATCH_FINGERPRINT",
            "FORGEWATCH_DELIVERY_ID",
            "FORGEWATCH_PAYLOAD"
        ]
    );

    // A merge request from a fork, by someone else.
    env.gitlab.fork_project(LIDAR, "stranger/lidar");
    let mut mr = forgewatch_tests::fake_gitlab::NewMr::new("fix-scan", MAIN);
    mr.source_project = Some("stranger/lidar".into());
    mr.author = "stranger".into();
    // A stranger's fork: built once a maintainer approves it.
    mr.labels = vec!["ok-to-test".into()];
    let iid = env.gitlab.open_mr(LIDAR, mr);
    let key = format!("mixed/pr/gitlab.example.org/{LIDAR}/{iid}");
    let run = env.once().await;
    assert_eq!(
        run.lines(),
        [(key.clone(), "delivered".into(), "new PR".into())]
    );
    let opened = env.gitlab.pipelines()[1].clone();
    assert_eq!(variable(&opened, "FORGEWATCH_BUILD_KEY"), key);
    let body = payload(&opened);
    assert_eq!(body["category"], "pull_request");
    assert_eq!(body["author"], "stranger");
    assert_eq!(body["branch"], format!("refs/merge-requests/{iid}/merge"));
    assert_eq!(body["repository"], LIDAR_URL);
    assert_eq!(
        body["revlink"],
        format!("{LIDAR_URL}/-/merge_requests/{iid}")
    );
    assert_eq!(body["source_branch"], "fix-scan");
    assert_ne!(body["source_project_id"], serde_json::Value::Null);
    assert_eq!(body["pull_request"]["path"], LIDAR);
    assert_eq!(body["pull_request"]["number"], iid);
    assert_eq!(body["pull_request"]["draft"], false);
    assert_eq!(
        body["overrides"],
        serde_json::json!([{"drivers/lidar": {
            "remote_branch": format!("refs/merge-requests/{iid}/merge"),
            "single_branch": false, "shallow": false}}])
    );

    let head = env.gitlab.push_mr(LIDAR, iid);
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), [format!("{key} delivered")]);
    assert_eq!(
        payload(&env.gitlab.pipelines()[2])["revision"],
        head.as_str()
    );

    env.gitlab.close_mr(LIDAR, iid);
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(env.gitlab.pipelines().len(), 3);

    // A new process on the same state: nothing delivered, only 304s, no `GET /user`.
    let run = env.once().await;
    assert_eq!(run.stdout, "");
    assert_eq!(get_statuses(&env), (0, 4, 0));
    assert!(env.requests().iter().all(|r| !r.path.ends_with("/user")));
    assert_eq!(env.gitlab.pipelines().len(), 3);
}

async fn forty_five_merge_requests(server_cap: usize, pages: usize) {
    let env = Env::new().await;
    env.gitlab.set_max_per_page(server_cap);
    env.gitlab.create_project(LIDAR, MAIN);
    for i in 0..45 {
        let mr = forgewatch_tests::fake_gitlab::NewMr::new(&format!("topic-{i}"), MAIN);
        env.gitlab.open_mr(LIDAR, mr);
    }
    env.configure(&[Ws {
        name: "lidar",
        ci: "bb",
        packages: &[("lidar", LIDAR_URL, MAIN)],
        pull_requests: true,
    }]);
    let run = env.once().await;
    assert_eq!(run.lines().len(), 46);
    let mut iids: Vec<u64> = env
        .ci
        .accepted()
        .iter()
        .filter_map(|d| d.properties()["pull_request"]["number"].as_u64())
        .collect();
    iids.sort_unstable();
    assert_eq!(iids, (1..=45).collect::<Vec<_>>());
    let lists = env
        .gitlab
        .count_path_prefix("/api/v4/projects/acme%2Frobots%2Flidar/merge_requests");
    assert_eq!(lists, pages);
    assert_eq!(get_statuses(&env), (1 + pages, 0, 0));
    assert_eq!(env.once().await.stdout, "");
    assert_eq!(get_statuses(&env), (0, 1 + pages, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_five_merge_requests_on_one_page_of_100() {
    forty_five_merge_requests(100, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_five_merge_requests_on_a_server_capping_pages_at_20() {
    forty_five_merge_requests(20, 3).await;
}

/// Two workspaces on two GitLab projects, no pull requests: one branch request each.
async fn two_projects() -> Env {
    let env = Env::new().await;
    env.gitlab.create_project("acme/a", MAIN);
    env.gitlab.create_project("acme/b", MAIN);
    env.configure(&[
        Ws {
            name: "a",
            ci: "bb",
            packages: &[("a", "https://gitlab.example.org/acme/a", MAIN)],
            pull_requests: false,
        },
        Ws {
            name: "b",
            ci: "bb",
            packages: &[("b", "https://gitlab.example.org/acme/b", MAIN)],
            pull_requests: false,
        },
    ]);
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gitlab_failure_is_confined_to_its_target_and_retried_next_cycle() {
    // A 429 pauses the whole forge (see tests/rate_limits.rs), so it is not here.
    let cases = [
        (Failure::Status403Plain, "HTTP 403: 403 Forbidden"),
        (Failure::Html502, "HTTP 502: <html>"),
        (
            Failure::NonJsonProxyError,
            "HTTP 503: upstream connect error",
        ),
    ];
    for (failure, message) in cases {
        let env = two_projects().await;
        env.gitlab.fail_next(1, failure);
        let run = env.once().await;
        // One of the two targets failed (which one depends on arrival order); the
        // other workspace was delivered all the same.
        assert_eq!(run.lines().len(), 1, "{failure:?}: {run:#?}");
        assert!(run.stderr.contains(message), "{failure:?}: {}", run.stderr);
        assert!(run.stderr.contains("not computed: "), "{failure:?}");
        let next = env.once().await;
        assert_eq!(next.lines().len(), 1, "{failure:?}: {next:#?}");
        assert_ne!(next.lines()[0].0, run.lines()[0].0);
        assert_eq!(env.ci.accepted().len(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_project_is_reported_and_the_others_go_on() {
    let env = two_projects().await;
    env.gitlab.delete_project("acme/a");
    let run = env.once().await;
    assert_eq!(run.keys_and_statuses(), ["b/mainline delivered"]);
    assert!(
        run.stderr.contains("404 Project Not Found"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pipeline_trigger_is_a_failed_delivery_with_gitlabs_message() {
    let env = Env::new().await;
    env.gitlab.create_project(LIDAR, MAIN);
    env.configure(&[Ws {
        name: "lidar",
        ci: "pipeline",
        packages: &[("lidar", LIDAR_URL, MAIN)],
        pull_requests: false,
    }]);
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace("    ref: main\n", "    ref: nope\n"),
    )
    .unwrap();
    let run = env.once().await;
    assert_eq!(run.lines().len(), 1);
    let (key, status, reason) = &run.lines()[0];
    assert_eq!(
        (key.as_str(), status.as_str()),
        ("lidar/mainline", "failed")
    );
    assert!(
        reason.contains("HTTP 400") && reason.contains("Reference not found"),
        "{reason}"
    );
    assert!(run.stderr.contains("Reference not found"), "{}", run.stderr);
    assert!(!run.stderr.contains(support::TRIGGER_TOKEN));

    // An unknown trigger token: 404.
    let config = std::fs::read_to_string(env.config_path()).unwrap();
    std::fs::write(
        env.config_path(),
        config.replace("    ref: nope\n", "    ref: main\n"),
    )
    .unwrap();
    let mut cmd = env.command(&["once"]);
    cmd.env("FW_E2E_TRIGGER_TOKEN", "glptt-wrong");
    let output = tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("lidar/mainline\tfailed\trejected with HTTP 404"),
        "{stdout}"
    );
    assert!(env.gitlab.pipelines().is_empty());

    // Fixed: delivered once.
    assert_eq!(
        env.once().await.keys_and_statuses(),
        ["lidar/mainline delivered"]
    );
    assert_eq!(env.gitlab.pipelines().len(), 1);
}
