//! End-to-end with a real Buildbot 4.3 master (`forgewatch_tests::buildbot`, from the
//! venv `.ci/test` installs), both ways: `forgewatch run` triggers a mainline and two
//! PR builds through the master's `base` change hook (HTTP Basic), the master's local
//! worker runs them (the build of one PR's head fails), and its `HttpStatusPush`
//! reporter posts every build's start and end to `/hooks/buildbot` with the results
//! secret as bearer token. forgewatch records `success` for one PR and `failure` for
//! the other with the master's build URLs, and the fake GitHub receives `pending`,
//! then the final state, on exactly those PR heads under the workspace's context.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use forgewatch_tests::buildbot::{BuildbotOptions, RealBuildbot, StatusPushAuth};
use forgewatch_tests::fake_github::NewPr;
use forgewatch_tests::wait::eventually;
use serde_json::Value;
use support::{DEADLINE, Env, Ws};

const RESULTS_SECRET: &str = "results-secret-for-buildbot";
const HOOK_USER: &str = "forgewatch";
const HOOK_PASSWORD: &str = "change-hook-password";

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_buildbot_builds_what_forgewatch_sends_and_its_results_reach_the_prs() {
    let env = Env::new().await;
    env.github.create_repo("acme/app", "main");
    let passing = env.github.open_pr("acme/app", NewPr::new("main", "good"));
    let failing = env.github.open_pr("acme/app", NewPr::new("main", "bad"));
    let passing_sha = env.github.push_pr("acme/app", passing);
    let failing_sha = env.github.push_pr("acme/app", failing);

    // forgewatch's port is picked first: the master posts its results there.
    let port = free_port();
    let buildbot = RealBuildbot::start(BuildbotOptions {
        status_push_url: format!("http://127.0.0.1:{port}/hooks/buildbot"),
        status_push_auth: StatusPushAuth::Bearer(RESULTS_SECRET.into()),
        change_hook_auth: Some((HOOK_USER.into(), HOOK_PASSWORD.into())),
    })
    .await
    .unwrap();
    buildbot.set_failing(&[&failing_sha]).unwrap();

    env.configure(&[Ws {
        name: "app",
        ci: "bb",
        packages: &[("app", "acme/app", "main")],
        pull_requests: true,
    }]);
    let dir = env.config_path().parent().unwrap().to_owned();
    std::fs::write(dir.join("results-secret"), RESULTS_SECRET).unwrap();
    std::fs::write(dir.join("hook-password"), HOOK_PASSWORD).unwrap();
    let config = std::fs::read_to_string(env.config_path())
        .unwrap()
        .replacen("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"), 1)
        .replacen(
            &format!("    kind: buildbot\n    url: {}\n", env.ci.buildbot_url()),
            &format!(
                "    kind: buildbot\n    url: {}\n    basic_auth: {{ user: {HOOK_USER}, password_file: hook-password }}\n    results_secret_file: results-secret\n",
                buildbot.change_hook_url()
            ),
            1,
        )
        .replacen(
            "    pull_requests:\n",
            "    report: { statuses: true }\n    pull_requests:\n",
            1,
        );
    std::fs::write(env.config_path(), config).unwrap();

    let mut daemon = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let builds = || async {
        let body = http
            .get(format!("{base}/api/v1/builds?workspace=app"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        serde_json::from_str::<Vec<Value>>(&body).ok()
    };
    // Every build's result came back final.
    let rows = eventually(DEADLINE, || async {
        let rows = builds().await?;
        let finished = rows
            .iter()
            .filter(|r| r["state"] == "success" || r["state"] == "failure")
            .count();
        (rows.len() == 3 && finished == 3).then_some(rows)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the results never all came back: {:?}\n{}",
            env.github.statuses(),
            buildbot.log()
        )
    });
    let state_of = |key: &str| {
        let row = rows.iter().find(|r| r["build_key"] == key).unwrap();
        let url = row["url"].as_str().unwrap().to_owned();
        assert!(
            url.starts_with(&format!("{}#/builders/", buildbot.www_url())),
            "{url}"
        );
        (row["state"].as_str().unwrap().to_owned(), url)
    };
    let (good, good_url) = state_of(&format!("app/pr/github.com/acme/app/{passing}"));
    let (bad, bad_url) = state_of(&format!("app/pr/github.com/acme/app/{failing}"));
    let (mainline, _) = state_of("app/mainline");
    assert_eq!(
        (good.as_str(), bad.as_str(), mainline.as_str()),
        ("success", "failure", "success")
    );

    // The PR heads got `pending`, then the result with the master's link; the
    // mainline none.
    let final_statuses = eventually(DEADLINE, || async {
        let posts = env.github.statuses();
        let last = |sha: &str| posts.iter().rev().find(|p| p.sha == sha).cloned();
        let (good, bad) = (last(&passing_sha)?, last(&failing_sha)?);
        (good.state == "success" && bad.state == "failure").then_some(posts)
    })
    .await
    .unwrap_or_else(|| panic!("statuses: {:?}", env.github.statuses()));
    for (sha, state, url) in [
        (&passing_sha, "success", &good_url),
        (&failing_sha, "failure", &bad_url),
    ] {
        let posts: Vec<_> = final_statuses.iter().filter(|p| &p.sha == sha).collect();
        assert_eq!(posts[0].state, "pending", "{posts:?}");
        let (last, between) = posts.split_last().unwrap();
        assert!(between.iter().all(|p| p.state == "pending"), "{posts:?}");
        assert_eq!(
            (last.state.as_str(), last.target_url.as_ref()),
            (state, Some(url))
        );
        assert!(
            posts
                .iter()
                .all(|p| p.repo == "acme/app" && p.context == "forgewatch/app")
        );
    }
    assert_eq!(
        final_statuses.len(),
        final_statuses
            .iter()
            .filter(|p| p.sha == passing_sha || p.sha == failing_sha)
            .count(),
        "only the PR heads get statuses"
    );
    daemon.kill().await.unwrap();
    daemon.wait().await.unwrap();
}
