//! Tests of the fake GitLab's fault injection: an exhausted budget answered GitLab's way
//! (429 `Retry later` with `RateLimit-*` and `Retry-After`) and refilled at its reset,
//! hanging requests, and 401s echoing secrets back.

use std::time::Duration;

use forgewatch_tests::fake_gitlab::{Failure, FakeGitLab};
use forgewatch_tests::wait::eventually;
use reqwest::{Client, StatusCode};

use super::fake_http::now_epoch;
use super::{LIDAR, LIDAR_ENC, WAIT, get, header, json};

fn statuses(gl: &FakeGitLab) -> Vec<u16> {
    gl.requests().iter().map(|r| r.status).collect()
}

fn project_url(gl: &FakeGitLab) -> String {
    format!("{}/projects/{LIDAR_ENC}", gl.api_url())
}

#[tokio::test]
async fn exhausted_budget_answers_429_retry_later_until_reset_then_refills() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let url = project_url(&gl);
    let token = ("private-token", "glpat-secret");

    let before = now_epoch();
    gl.set_budget(1, Duration::from_secs(2));
    let last = get(&url, &[]).await;
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(header(&last, "ratelimit-remaining"), "0");
    assert_eq!(header(&last, "ratelimit-limit"), "2000");
    assert_eq!(header(&last, "ratelimit-observed"), "2000");
    let reset: u64 = header(&last, "ratelimit-reset")
        .parse()
        .expect("epoch seconds");
    assert!(
        (before + 2..=now_epoch() + 3).contains(&reset),
        "now + 2 s rounded up: {reset}"
    );

    let limited = get(&url, &[]).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&limited, "ratelimit-remaining"), "0");
    assert_eq!(header(&limited, "ratelimit-reset"), reset.to_string());
    assert!(header(&limited, "ratelimit-resettime").ends_with(" GMT"));
    let retry_after: u64 = header(&limited, "retry-after")
        .parse()
        .expect("Retry-After seconds");
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    assert!(now_epoch() + retry_after >= reset);
    assert_eq!(limited.text().await.expect("body"), "Retry later\n");

    // Every credential got the same allowance.
    assert_eq!(get(&url, &[token]).await.status(), StatusCode::OK);
    assert_eq!(
        get(&url, &[token]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(statuses(&gl), [200, 429, 200, 429]);

    let refilled = eventually(WAIT, || async {
        let resp = get(&url, &[]).await;
        match resp.status() {
            StatusCode::OK => Some(resp),
            status => {
                assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "limited until reset");
                None
            }
        }
    })
    .await
    .expect("the budget refills at its reset time");
    assert!(now_epoch() >= reset, "not refilled before {reset}");
    assert_eq!(header(&refilled, "ratelimit-remaining"), "1999");
    assert_eq!(header(&refilled, "ratelimit-observed"), "1");
    assert_eq!(get(&url, &[token]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn hung_request_times_out_while_others_are_answered_and_queue_in_order() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let url = project_url(&gl);

    gl.fail_next(1, Failure::Html502);
    gl.hang_next(1);
    gl.fail_next(1, Failure::Status403Plain);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::BAD_GATEWAY);
    let hung = tokio::spawn({
        let url = url.clone();
        async move {
            let client = Client::builder()
                .no_proxy()
                .timeout(Duration::from_millis(500))
                .build()
                .expect("reqwest client");
            client.get(&url).send().await
        }
    });
    assert!(gl.wait_for_hung(1, WAIT).await);
    assert_eq!(gl.hung_count(), 1);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&url, &[]).await.status(), StatusCode::OK);

    let outcome = tokio::time::timeout(WAIT, hung)
        .await
        .expect("the client gives up on its own")
        .expect("task did not panic");
    let error = outcome.expect_err("a hung request is never answered");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(statuses(&gl), [502, 0, 403, 200]);
    gl.release_hung();
    assert_eq!(gl.hung_count(), 0);
}

#[tokio::test]
async fn hang_path_hangs_one_project_until_release() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    gl.create_project("sensors/other", "main");
    let stuck = format!("{}/repository/branches", project_url(&gl));
    let fine = format!("{}/projects/sensors%2Fother", gl.api_url());

    gl.hang_path(&format!("/api/v4/projects/{LIDAR_ENC}"));
    let mut hung = tokio::task::JoinSet::new();
    for n in 1..=2 {
        let stuck = stuck.clone();
        hung.spawn(async move { get(&stuck, &[]).await });
        assert!(gl.wait_for_hung(n, WAIT).await);
    }
    assert_eq!(get(&fine, &[]).await.status(), StatusCode::OK);
    assert!(hung.try_join_next().is_none(), "still hung");
    assert_eq!(statuses(&gl), [0, 0, 200]);

    gl.release_hung();
    while let Some(resp) = tokio::time::timeout(WAIT, hung.join_next())
        .await
        .expect("released requests are answered")
    {
        let resp = resp.expect("task did not panic");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json(resp).await["message"], "503 Service Unavailable");
    }
    assert_eq!(gl.hung_count(), 0);
    assert_eq!(
        get(&stuck, &[]).await.status(),
        StatusCode::OK,
        "release_hung ends the rule"
    );

    // Dropping every handle the test holds answers what still hangs.
    gl.hang_next(1);
    let hung = tokio::spawn(async move { get(&stuck, &[]).await.status() });
    assert!(gl.wait_for_hung(1, WAIT).await);
    drop(gl);
    let status = tokio::time::timeout(WAIT, hung).await.expect("answered");
    assert_eq!(status.expect("task"), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn echo_headers_on_401_sends_the_secrets_back() {
    let gl = FakeGitLab::start().await;
    gl.create_project(LIDAR, "main");
    let url = project_url(&gl);
    let user = format!("{}/user", gl.api_url());
    gl.require_token(Some("glpat-secret"));
    let sent = [("private-token", "glpat-wr0ng"), ("x-custom", "visible")];

    let quiet = json(get(&url, &sent).await).await;
    assert_eq!(quiet["message"], "401 Unauthorized");
    assert!(quiet.get("request_headers").is_none(), "off by default");

    gl.echo_headers_on_401(true);
    let resp = get(&url, &sent).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(!header(&resp, "ratelimit-remaining").is_empty());
    let body = json(resp).await;
    assert_eq!(body["message"], "401 Unauthorized");
    assert_eq!(body["request_headers"]["private-token"], "glpat-wr0ng");
    assert_eq!(body["request_headers"]["x-custom"], "visible");
    let bearer = json(get(&user, &[("authorization", "Bearer glpat-wr0ng")]).await).await;
    assert_eq!(
        bearer["request_headers"]["authorization"],
        "Bearer glpat-wr0ng"
    );

    let ok = get(&url, &[("private-token", "glpat-secret")]).await;
    assert_eq!(ok.status(), StatusCode::OK, "only 401s echo");
    assert!(json(ok).await.get("request_headers").is_none());
    gl.echo_headers_on_401(false);
    assert!(
        json(get(&url, &sent).await)
            .await
            .get("request_headers")
            .is_none()
    );
}
