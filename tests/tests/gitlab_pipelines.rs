//! End-to-end: results from GitLab pipelines and statuses on GitLab (SPEC §14).
//! `forgewatch run` triggers a pipeline in `infra/ci` for a merge request of
//! `acme/robots/lidar` (workspace `lidar`, statuses on); the MR head gets a
//! `pending` commit status on the fake GitLab; GitLab's `Pipeline Hook` events for
//! that pipeline, posted to `/hooks/gitlab` with the forge's webhook token, set the
//! build's result (with the pipeline's URL) and its status, in GitLab's names
//! (`running`, then `failed`). A wrong token is refused and changes nothing; the
//! same event twice is one result.

#![allow(clippy::unwrap_used)] // helpers of the test below

mod support;

use forgewatch_tests::fake_gitlab::NewMr;
use forgewatch_tests::wait::eventually;
use serde_json::{Value, json};
use support::{DEADLINE, Env, GITLAB_HOOK_SECRET};

const LIDAR: &str = "acme/robots/lidar";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_events_set_the_result_and_the_merge_request_s_status() {
    let env = Env::new().await;
    env.gitlab.create_project(LIDAR, "main");
    let iid = env.gitlab.open_mr(LIDAR, NewMr::new("fix-scan", "main"));
    let head = env.gitlab.push_mr(LIDAR, iid);
    env.configure_yaml(&format!(
        "  - name: lidar
    ci: pipeline
    report: {{ statuses: true }}
    packages:
      - {{ name: lidar, repo: 'https://gitlab.example.org/{LIDAR}', branch: main }}
    pull_requests: {{ enabled: true }}
"
    ));
    let daemon = env.command(&["run"]).spawn().unwrap();
    let base = format!("http://{}", env.listen_address().await);
    let key = format!("lidar/pr/gitlab.example.org/{LIDAR}/{iid}");
    let index = eventually(DEADLINE, || async {
        env.gitlab.pipelines().iter().position(|p| {
            p.variables
                .iter()
                .any(|(k, v)| k == "FORGEWATCH_BUILD_KEY" && *v == key)
        })
    })
    .await
    .expect("the MR's pipeline was never triggered");
    let statuses = || {
        env.gitlab
            .statuses()
            .into_iter()
            .map(|s| {
                assert_eq!((s.repo.as_str(), s.sha.as_str()), (LIDAR, head.as_str()));
                assert_eq!(s.context, "forgewatch/lidar");
                (s.state, s.target_url)
            })
            .collect::<Vec<_>>()
    };
    eventually(DEADLINE, || async {
        (statuses() == [("pending".to_owned(), None)]).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no pending status: {:?}", env.gitlab.statuses()));

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |event: Value, token: &'static str| {
        let request = http
            .post(format!("{base}/hooks/gitlab"))
            .header("x-gitlab-event", "Pipeline Hook")
            .header("x-gitlab-token", token)
            .header("content-type", "application/json")
            .body(event.to_string());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let running = env.gitlab.pipeline_event(index, "running");
    let (status, body) = post(running.clone(), "not-the-secret").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = post(running, GITLAB_HOOK_SECRET).await;
    assert_eq!((status, &body["recorded"]), (200, &json!(true)), "{body}");
    let failed = env.gitlab.pipeline_event(index, "failed");
    let (status, body) = post(failed.clone(), GITLAB_HOOK_SECRET).await;
    assert_eq!((status, &body["build_key"]), (200, &json!(key)), "{body}");
    let (_, again) = post(failed, GITLAB_HOOK_SECRET).await;
    assert_eq!(again["recorded"], json!(false), "{again}");

    let pipeline_url = format!(
        "https://gitlab.example.org/infra/ci/-/pipelines/{}",
        env.gitlab.pipelines()[index].id
    );
    eventually(DEADLINE, || async {
        (statuses().last() == Some(&("failed".to_owned(), Some(pipeline_url.clone()))))
            .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("no failed status: {:?}", env.gitlab.statuses()));
    let seen: Vec<String> = statuses().into_iter().map(|(state, _)| state).collect();
    assert!(
        seen == ["pending", "running", "failed"] || seen == ["pending", "failed"],
        "{seen:?}"
    );
    let builds = http
        .get(format!(
            "{base}/api/v1/builds?workspace=lidar&state=failure"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let builds: Vec<Value> = serde_json::from_str(&builds).unwrap();
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert_eq!(builds[0]["build_key"], json!(key));
    assert_eq!(builds[0]["url"], json!(pipeline_url));
    assert_eq!(builds[0]["summary"], json!("pipeline failed"));
    support::stop(daemon).await;
}
